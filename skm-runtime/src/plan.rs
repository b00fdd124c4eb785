//! Stage 2, the plan: declarations resolved into fields (prefixes, profile, flattening), checked for
//! duplicates, and the backend requests one load needs, each once.
//!
//! Fields that share a backend, a path and a version cost one fetch. Requests are grouped by backend: the
//! default backend's (fields without `#[secret(backend = "...")]`) and one group per routed backend. Each
//! group goes to its backend in one [`Backend::fetch`](crate::backend::Backend::fetch) call so that it can
//! batch, and the groups are fetched concurrently, in one wave.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::error::Error;
use crate::spec::{FieldKind, LeasedSpec, SpecRef, StructSpec, VersionPin};

/// A declared secret with its nesting and prefixes resolved: what the loader and tools work on.
#[derive(Debug, Clone)]
pub struct ResolvedField {
    /// Dotted field path from the outer struct, e.g. `db.url` for a flattened field.
    pub id: String,
    /// The full backend path (prefixes applied, `{profile}` substituted), if declared.
    pub path: Option<String>,
    /// The key inside the secret.
    pub key: Option<Cow<'static, str>>,
    /// The environment variable name.
    pub env: Option<Cow<'static, str>>,
    /// The declaration this came from.
    pub spec: SpecRef,
}

/// One secret to read: a path and a version. The plan makes one per (path, version) a load needs; every
/// [`Backend::fetch`](crate::backend::Backend::fetch) call takes them (re-exported as
/// `skm_runtime::backend::FetchRequest`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FetchRequest {
    /// The backend path (an AWS SecretId, a Vault path under the mount, a local store path).
    pub path: String,
    /// Which version to read.
    pub version: VersionPin,
}

impl FetchRequest {
    /// A request for the current version of `path`.
    pub fn current(path: impl Into<String>) -> Self {
        FetchRequest {
            path: path.into(),
            version: VersionPin::Current,
        }
    }
}

/// Which backend a request goes to: `None` for the loader's default backend, or a routed backend's
/// canonical registry name (`#[secret(backend = "vault")]`).
pub type Route = Option<&'static str>;

impl ResolvedField {
    /// The backend this field's `path` is read from: `None` for the default backend, else the canonical
    /// registry name of `#[secret(backend = "...")]` (an alias such as `openbao` maps to `vault`).
    ///
    /// # Example
    /// ```
    /// use std::borrow::Cow;
    /// use skm_runtime::plan::ResolvedField;
    /// use skm_runtime::spec::{SecretSpec, Validators, VersionPin};
    ///
    /// static DB: SecretSpec = SecretSpec {
    ///     path: Some(Cow::Borrowed("db")), key: None, env: None, default: None, optional: false, plain: false,
    ///     type_name: Cow::Borrowed("SecretString"), version: VersionPin::Current, validate: Validators::NONE,
    ///     rotating: false, backend: Some("OpenBao"),
    /// };
    /// let field = ResolvedField {
    ///     id: "db".into(), path: Some("db".into()), key: None, env: None, spec: (&DB).into(),
    /// };
    /// assert_eq!(field.route(), Some("vault"));
    /// ```
    pub fn route(&self) -> Route {
        let name = self.spec.backend?;
        Some(crate::names::canonical(name).unwrap_or(name))
    }
}

impl StructSpec {
    /// Every secret of this struct and its flattened children, with prefixes applied.
    ///
    /// `profile` replaces `{profile}` in prefixes.
    ///
    /// # Errors
    /// A prefix uses `{profile}` and `profile` is `None`.
    pub fn resolve(&self, profile: Option<&str>) -> Result<Vec<ResolvedField>, Error> {
        let mut out = Vec::new();
        self.resolve_into("", &[], profile, &mut out)?;
        Ok(out)
    }

    fn resolve_into(
        &self,
        id_prefix: &str,
        prefixes: &[String],
        profile: Option<&str>,
        out: &mut Vec<ResolvedField>,
    ) -> Result<(), Error> {
        let mut prefixes = prefixes.to_vec();
        if let Some(p) = self.prefix {
            prefixes.push(substitute_profile(p, profile, self.name)?);
        }
        for field in self.fields {
            let id = if id_prefix.is_empty() {
                field.name.to_string()
            } else {
                format!("{id_prefix}.{}", field.name)
            };
            match &field.kind {
                FieldKind::Secret(spec) => {
                    let path = spec.path.as_deref().map(|p| {
                        let mut parts: Vec<&str> = prefixes.iter().map(String::as_str).collect();
                        parts.push(p);
                        parts.join("/")
                    });
                    out.push(ResolvedField {
                        id,
                        path,
                        key: spec.key.clone(),
                        env: spec.env.clone(),
                        spec: SpecRef::Static(spec),
                    });
                }
                FieldKind::Flatten(nested) => nested().resolve_into(&id, &prefixes, profile, out)?,
                // Issued by the loader's lease step, not fetched: see [`StructSpec::leased_fields`].
                FieldKind::Leased(_) => {}
            }
        }
        Ok(())
    }

    /// Every leased field (`#[secret(dynamic = "...")]`) of this struct and its flattened children, in
    /// declaration order, with its dotted id and its path as declared. Prefixes do not apply: a dynamic path
    /// names a secrets engine's endpoint, not a KV location. See [`StructSpec::leased_fields_for`] for a
    /// path holding `{profile}`.
    ///
    /// # Example
    /// ```
    /// use skm_runtime::spec::{FieldKind, FieldSpec, LeasedSpec, StructSpec};
    ///
    /// static SPEC: StructSpec = StructSpec {
    ///     name: "Db",
    ///     prefix: Some("myapp"),
    ///     fields: &[FieldSpec {
    ///         name: "db",
    ///         kind: FieldKind::Leased(LeasedSpec { path: "database/creds/app", type_name: "Leased<Creds>" }),
    ///     }],
    /// };
    /// let leased = SPEC.leased_fields();
    /// assert_eq!((leased[0].id.as_str(), leased[0].spec.path), ("db", "database/creds/app"));
    /// assert!(SPEC.resolve(None).unwrap().is_empty());
    /// ```
    pub fn leased_fields(&self) -> Vec<LeasedField> {
        let mut out = Vec::new();
        self.leased_into("", &mut out);
        out
    }

    /// [`StructSpec::leased_fields`] for a profile: `{profile}` in a dynamic path (one role per
    /// environment, e.g. `dynamic = "database/creds/{profile}-app"`) becomes the profile.
    ///
    /// # Errors
    /// A path holds `{profile}` and there is no profile.
    ///
    /// # Example
    /// ```
    /// use skm_runtime::spec::{FieldKind, FieldSpec, LeasedSpec, StructSpec};
    ///
    /// static SPEC: StructSpec = StructSpec {
    ///     name: "Db",
    ///     prefix: None,
    ///     fields: &[FieldSpec {
    ///         name: "db",
    ///         kind: FieldKind::Leased(LeasedSpec { path: "database/creds/{profile}-app", type_name: "Leased<Creds>" }),
    ///     }],
    /// };
    /// assert_eq!(SPEC.leased_fields_for(Some("prod")).unwrap()[0].path, "database/creds/prod-app");
    /// assert!(SPEC.leased_fields_for(None).is_err());
    /// ```
    pub fn leased_fields_for(&self, profile: Option<&str>) -> Result<Vec<LeasedField>, Error> {
        let mut out = self.leased_fields();
        for field in &mut out {
            field.path = replace_profile(field.spec.path, profile, || {
                format!("field `{}` has `dynamic = \"{}\"`", field.id, field.spec.path)
            })?;
        }
        Ok(out)
    }

    fn leased_into(&self, id_prefix: &str, out: &mut Vec<LeasedField>) {
        for field in self.fields {
            let id = if id_prefix.is_empty() {
                field.name.to_string()
            } else {
                format!("{id_prefix}.{}", field.name)
            };
            match &field.kind {
                FieldKind::Leased(spec) => out.push(LeasedField {
                    id,
                    path: spec.path.to_string(),
                    spec,
                }),
                FieldKind::Flatten(nested) => nested().leased_into(&id, out),
                FieldKind::Secret(_) => {}
            }
        }
    }
}

/// A leased field with its nesting resolved: the loader issues one lease for each.
#[derive(Debug, Clone)]
pub struct LeasedField {
    /// Dotted field path from the outer struct.
    pub id: String,
    /// The credentials path to read: the declared one, with `{profile}` replaced by
    /// [`StructSpec::leased_fields_for`].
    pub path: String,
    /// The declaration.
    pub spec: &'static LeasedSpec,
}

pub(crate) fn substitute_profile(prefix: &str, profile: Option<&str>, owner: &str) -> Result<String, Error> {
    replace_profile(prefix, profile, || format!("`{owner}` has prefix `{prefix}`"))
}

/// `text` with `{profile}` replaced; without a profile, an error saying `holder` (what holds the text) needs one.
fn replace_profile(text: &str, profile: Option<&str>, holder: impl FnOnce() -> String) -> Result<String, Error> {
    if !text.contains("{profile}") {
        return Ok(text.to_string());
    }
    match profile {
        Some(p) => Ok(text.replace("{profile}", p)),
        None => Err(Error::config(format!(
            "{}, which needs a profile: set SKM_PROFILE (e.g. SKM_PROFILE=dev) or call `Loader::profile(\"dev\")`",
            holder()
        ))),
    }
}

/// Checks a profile name: a single safe path segment.
pub(crate) fn check_profile(p: &str) -> Result<(), Error> {
    let ok = !p.is_empty()
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && p != "."
        && p != "..";
    if ok {
        Ok(())
    } else {
        Err(Error::config(format!(
            "invalid profile `{p}`: use letters, digits, `-`, `_` or `.` (e.g. SKM_PROFILE=prod)"
        )))
    }
}

/// Flattened structs can repeat a name the derive could not see; catch it before loading.
pub(crate) fn check_unique(fields: &[ResolvedField]) -> Result<(), Error> {
    let mut envs = HashMap::with_capacity(fields.len());
    let mut paths = HashMap::with_capacity(fields.len());
    for f in fields {
        if let Some(e) = f.env.as_deref() {
            if let Some(prev) = envs.insert(e, &f.id) {
                return Err(Error::config(format!(
                    "fields `{prev}` and `{}` both read env var {e}: give each its own name",
                    f.id
                )));
            }
        }
        if let Some(p) = &f.path {
            if let Some(prev) = paths.insert((f.route(), p.as_str(), f.key.as_deref(), &f.spec.version), &f.id) {
                return Err(Error::config(format!(
                    "fields `{prev}` and `{}` both read path `{p}`{}: give each its own key",
                    f.id,
                    f.key.as_deref().map(|k| format!(" key `{k}`")).unwrap_or_default()
                )));
            }
        }
    }
    Ok(())
}

/// The distinct requests a set of fields needs, grouped by backend, each group in a stable (sorted) order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// The default backend's requests (fields without `backend = "..."`): one per distinct (path, version).
    pub requests: Vec<FetchRequest>,
    /// The routed fields' requests, by the canonical registry name of their backend.
    pub routed: BTreeMap<&'static str, Vec<FetchRequest>>,
}

impl Plan {
    /// Groups `fields` by (backend, path, version). Fields without a path need no fetch.
    ///
    /// A [`Rotating`](crate::Rotating) field also needs the previous version of its path
    /// ([`VersionPin::Previous`]).
    ///
    /// # Example
    /// ```
    /// use std::borrow::Cow;
    /// use skm_runtime::plan::{Plan, ResolvedField};
    /// use skm_runtime::spec::{SecretSpec, Validators, VersionPin};
    ///
    /// static JWT: SecretSpec = SecretSpec {
    ///     path: Some(Cow::Borrowed("auth/jwt")), key: Some(Cow::Borrowed("secret")), env: None, default: None,
    ///     optional: false, plain: false, type_name: Cow::Borrowed("SecretString"), version: VersionPin::Current,
    ///     validate: Validators::NONE, rotating: true, backend: None,
    /// };
    /// static DB: SecretSpec = SecretSpec {
    ///     path: Some(Cow::Borrowed("auth/jwt")), key: Some(Cow::Borrowed("secret")), env: None, default: None,
    ///     optional: false, plain: false, type_name: Cow::Borrowed("SecretString"), version: VersionPin::Current,
    ///     validate: Validators::NONE, rotating: false, backend: Some("vault"),
    /// };
    /// let field = |id: &str, spec: &'static SecretSpec| ResolvedField {
    ///     id: id.into(), path: Some("auth/jwt".into()), key: Some("secret".into()), env: None,
    ///     spec: spec.into(),
    /// };
    /// // Two fields on one path, one of them rotating: the current and the previous version, once each;
    /// // the same path on Vault is a request of its own group.
    /// let plan = Plan::new(&[field("a", &JWT), field("b", &JWT), field("c", &DB)]);
    /// assert_eq!(plan.requests.len(), 2);
    /// assert_eq!(plan.requests[1].version, VersionPin::Previous);
    /// assert_eq!(plan.routed["vault"].len(), 1);
    /// ```
    pub fn new(fields: &[ResolvedField]) -> Self {
        let mut groups: BTreeMap<Route, BTreeSet<FetchRequest>> = BTreeMap::new();
        for field in fields {
            let Some(path) = &field.path else { continue };
            let request = |version| FetchRequest {
                path: path.clone(),
                version,
            };
            let group = groups.entry(field.route()).or_default();
            group.insert(request(field.spec.version.clone()));
            if field.spec.rotating {
                group.insert(request(VersionPin::Previous));
            }
        }
        let mut plan = Plan::default();
        for (route, requests) in groups {
            let requests = requests.into_iter().collect();
            match route {
                None => plan.requests = requests,
                Some(name) => {
                    plan.routed.insert(name, requests);
                }
            }
        }
        plan
    }

    /// A plan for the current versions of `paths` (deduplicated) on the default backend, for tools.
    ///
    /// # Example
    /// ```
    /// use skm_runtime::plan::Plan;
    /// let plan = Plan::for_paths(["db", "db", "jwt"]);
    /// assert_eq!(plan.requests.len(), 2);
    /// ```
    pub fn for_paths<'a>(paths: impl IntoIterator<Item = &'a str>) -> Self {
        let set: BTreeSet<FetchRequest> = paths.into_iter().map(FetchRequest::current).collect();
        Plan {
            requests: set.into_iter().collect(),
            routed: BTreeMap::new(),
        }
    }

    /// Every non-empty group: `(route, requests)`, the default backend's first.
    pub fn groups(&self) -> impl Iterator<Item = (Route, &[FetchRequest])> {
        let default = (!self.requests.is_empty()).then_some((None, self.requests.as_slice()));
        default.into_iter().chain(
            self.routed
                .iter()
                .filter(|(_, r)| !r.is_empty())
                .map(|(name, r)| (Some(*name), r.as_slice())),
        )
    }

    /// How many requests the plan holds, over all backends.
    pub fn len(&self) -> usize {
        self.groups().map(|(_, r)| r.len()).sum()
    }

    /// Whether nothing needs fetching.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

//! Stage 2, the plan: declarations resolved into fields (prefixes, profile, flattening), checked for
//! duplicates, and the backend requests one load needs, each once.
//!
//! Fields that share a path (and version) cost one fetch; the whole plan goes to the backend in one
//! [`Backend::fetch`](crate::backend::Backend::fetch) call so that it can batch.

use std::collections::{BTreeSet, HashMap};

use crate::backend::FetchRequest;
use crate::error::Error;
use crate::spec::{FieldKind, LeasedSpec, SecretSpec, StructSpec, VersionPin};

/// A declared secret with its nesting and prefixes resolved: what the loader and tools work on.
#[derive(Debug, Clone)]
pub struct ResolvedField {
    /// Dotted field path from the outer struct, e.g. `db.url` for a flattened field.
    pub id: String,
    /// The full backend path (prefixes applied, `{profile}` substituted), if declared.
    pub path: Option<String>,
    /// The key inside the secret.
    pub key: Option<&'static str>,
    /// The environment variable name.
    pub env: Option<&'static str>,
    /// The declaration this came from.
    pub spec: &'static SecretSpec,
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
                    let path = spec.path.map(|p| {
                        let mut parts: Vec<&str> = prefixes.iter().map(String::as_str).collect();
                        parts.push(p);
                        parts.join("/")
                    });
                    out.push(ResolvedField {
                        id,
                        path,
                        key: spec.key,
                        env: spec.env,
                        spec,
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
    /// declaration order, with its dotted id. Prefixes do not apply: a dynamic path names a secrets engine's
    /// endpoint, not a KV location.
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

    fn leased_into(&self, id_prefix: &str, out: &mut Vec<LeasedField>) {
        for field in self.fields {
            let id = if id_prefix.is_empty() {
                field.name.to_string()
            } else {
                format!("{id_prefix}.{}", field.name)
            };
            match &field.kind {
                FieldKind::Leased(spec) => out.push(LeasedField { id, spec }),
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
    /// The declaration.
    pub spec: &'static LeasedSpec,
}

pub(crate) fn substitute_profile(prefix: &str, profile: Option<&str>, owner: &str) -> Result<String, Error> {
    if !prefix.contains("{profile}") {
        return Ok(prefix.to_string());
    }
    match profile {
        Some(p) => Ok(prefix.replace("{profile}", p)),
        None => Err(Error::config(format!(
            "`{owner}` has prefix `{prefix}`, which needs a profile: set SKM_PROFILE (e.g. SKM_PROFILE=dev) \
             or call `Loader::profile(\"dev\")`"
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
    let mut envs = HashMap::new();
    let mut paths = HashMap::new();
    for f in fields {
        if let Some(e) = f.env {
            if let Some(prev) = envs.insert(e, &f.id) {
                return Err(Error::config(format!(
                    "fields `{prev}` and `{}` both read env var {e}: give each its own name",
                    f.id
                )));
            }
        }
        if let Some(p) = &f.path {
            if let Some(prev) = paths.insert((p.clone(), f.key, f.spec.version.clone()), &f.id) {
                return Err(Error::config(format!(
                    "fields `{prev}` and `{}` both read path `{p}`{}: give each its own key",
                    f.id,
                    f.key.map(|k| format!(" key `{k}`")).unwrap_or_default()
                )));
            }
        }
    }
    Ok(())
}

/// The distinct requests a set of fields needs, in a stable (sorted) order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// One request per distinct (path, version).
    pub requests: Vec<FetchRequest>,
}

impl Plan {
    /// Groups `fields` by (path, version). Fields without a path need no fetch.
    ///
    /// A [`Rotating`](crate::Rotating) field also needs the previous version of its path
    /// ([`VersionPin::Previous`]).
    ///
    /// # Example
    /// ```
    /// use skm_runtime::plan::{Plan, ResolvedField};
    /// use skm_runtime::spec::{SecretSpec, Validators, VersionPin};
    ///
    /// static JWT: SecretSpec = SecretSpec {
    ///     path: Some("auth/jwt"), key: Some("secret"), env: None, default: None, optional: false,
    ///     plain: false, type_name: "SecretString", version: VersionPin::Current,
    ///     validate: Validators::NONE, rotating: true,
    /// };
    /// let field = |id: &str| ResolvedField {
    ///     id: id.into(), path: Some("auth/jwt".into()), key: Some("secret"), env: None, spec: &JWT,
    /// };
    /// // Two fields on one path, one of them rotating: the current and the previous version, once each.
    /// let plan = Plan::new(&[field("a"), field("b")]);
    /// assert_eq!(plan.requests.len(), 2);
    /// assert_eq!(plan.requests[1].version, VersionPin::Previous);
    /// ```
    pub fn new(fields: &[ResolvedField]) -> Self {
        let set: BTreeSet<FetchRequest> = fields
            .iter()
            .filter_map(|f| f.path.as_ref().map(|p| (f, p)))
            .flat_map(|(f, p)| {
                let request = |version| FetchRequest {
                    path: p.clone(),
                    version,
                };
                let previous = f.spec.rotating.then(|| request(VersionPin::Previous));
                std::iter::once(request(f.spec.version.clone())).chain(previous)
            })
            .collect();
        Plan {
            requests: set.into_iter().collect(),
        }
    }

    /// A plan for the current versions of `paths` (deduplicated), for tools.
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
        }
    }

    /// Whether nothing needs fetching.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
    }
}

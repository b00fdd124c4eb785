//! `policy`: least-privilege access for exactly the declared secrets, rendered by the backend's
//! [`PolicyRenderer`](skm_runtime::backend::registry::PolicyRenderer) from the registry (AWS IAM JSON, Vault
//! HCL, GCP IAM bindings, Azure role assignments, ...), or an External Secrets Operator `ExternalSecret` (YAML).

use std::collections::BTreeSet;

use serde_json::json;
use skm_runtime::backend::registry::{
    self, kebab_name, yaml_quoted, Descriptor, ExternalSecretsOffer, PolicyBody, PolicyInput,
};
use skm_runtime::{ResolvedField, VersionPin};

use crate::args::{PolicyArgs, StoreKind};
use crate::decl::Declarations;
use crate::safe::display;
use crate::select::env_var;
use crate::{exit, Ctx, Fail};

pub(crate) fn run(ctx: &mut Ctx<'_, '_>, args: &PolicyArgs) -> Result<u8, Fail> {
    let decls = ctx.declarations("policy")?;
    let undeclared: Vec<&str> = decls
        .fields
        .iter()
        .filter(|f| f.path.is_none())
        .map(|f| f.id.as_str())
        .collect();
    let backend = chosen(args)?;
    let option = |name: &str| {
        args.registry
            .options
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    };
    // Fields without `backend` belong to the default backend: the detected one, if any.
    let default_kind = ctx.choice().ok().and_then(|c| c.backend).map(|d| d.name);
    let mut route_notes = Vec::new();
    let (kind, document, mut notes) = match backend {
        Some(d) if !args.external_secret => {
            let renderer = d
                .policy
                .ok_or_else(|| Fail::Usage(format!("{} has no policy renderer", d.title)))?;
            let (paths, elsewhere) = paths_for(&decls, d.name, default_kind);
            let paths: Vec<String> = paths.into_iter().collect();
            for (other, fields) in elsewhere {
                route_notes.push(format!(
                    "not covered (read from {other}): {}; render theirs with `skm policy --for {other}`",
                    fields.join(", ")
                ));
            }
            let doc = (renderer.render)(&PolicyInput {
                struct_name: &decls.struct_name,
                paths: &paths,
                option: &option,
                env: &env_var,
            })?;
            let document = match doc.body {
                PolicyBody::Json(v) => Document::Json(v),
                PolicyBody::Text(t) => Document::Text(t),
            };
            (doc.format, document, doc.notes)
        }
        _ => {
            let (doc, notes) = external_secret(&decls, args, backend, &option)?;
            ("external-secret-yaml", Document::Text(doc), notes)
        }
    };
    notes.extend(route_notes);
    if !undeclared.is_empty() {
        notes.push(format!(
            "not covered (no backend path declared, env/.env only): {}",
            undeclared.join(", ")
        ));
    }
    if ctx.ui.json {
        let document = match &document {
            Document::Json(v) => v.clone(),
            Document::Text(t) => json!(t),
        };
        ctx.ui
            .json(&json!({ "kind": kind, "document": document, "notes": notes }));
    } else {
        match document {
            Document::Json(v) => ctx.ui.json(&v),
            Document::Text(t) => {
                let _ = ctx.ui.io.stdout.write_all(t.as_bytes());
            }
        }
        // Notes go to stderr so that stdout stays a valid document: `skm policy --aws > policy.json`.
        for n in notes {
            ctx.ui.note(format!("note: {n}"));
        }
    }
    Ok(exit::OK)
}

/// The backend `--for NAME` or a shorthand flag (`--aws`) names; at most one.
fn chosen(args: &PolicyArgs) -> Result<Option<&'static Descriptor>, Fail> {
    let mut named: Vec<&'static Descriptor> = Vec::new();
    let by_flag = args.registry.backends.iter().copied();
    for name in args.for_backend.as_deref().into_iter().chain(by_flag) {
        let d = registry::find(name).ok_or_else(|| Fail::Usage(format!("unknown backend `{}`", display(name))))?;
        if !named.iter().any(|n| n.name == d.name) {
            named.push(d);
        }
    }
    match named.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        many => Err(Fail::Usage(format!(
            "name one backend to render a policy for, not {}",
            many.iter().map(|d| d.name).collect::<Vec<_>>().join(" and ")
        ))),
    }
}

enum Document {
    Json(serde_json::Value),
    Text(String),
}

/// The paths `backend` serves: the fields routed to it (`backend = "vault"`), and the unrouted ones, which
/// read the default backend. Those are left out only when the struct routes fields to `backend` while the
/// detected default is another backend: then `backend` serves exactly its routed fields. Also returned, by
/// backend, the fields left to others.
fn paths_for(
    decls: &Declarations,
    backend: &'static str,
    default_kind: Option<&'static str>,
) -> (BTreeSet<String>, std::collections::BTreeMap<&'static str, Vec<String>>) {
    let routed_here = decls.fields.iter().any(|f| f.route() == Some(backend));
    let default_elsewhere = default_kind.filter(|d| routed_here && *d != backend);
    let mut paths = BTreeSet::new();
    let mut elsewhere: std::collections::BTreeMap<&'static str, Vec<String>> = Default::default();
    for f in decls.fields.iter().filter(|f| f.path.is_some()) {
        match f.route().or(default_elsewhere) {
            Some(other) if other != backend => elsewhere.entry(other).or_default().push(f.id.clone()),
            _ => paths.extend(f.path.clone()),
        }
    }
    (paths, elsewhere)
}

/// An External Secrets Operator `ExternalSecret` that syncs the declared secrets into a Kubernetes Secret whose
/// keys are the env var names, so that `envFrom` gives the application the same variables as `.env`.
///
/// With `--for`, the backend's [`ExternalSecretsOffer`] shapes it: each `remoteRef.key` is the backend's name
/// for the path ([`Descriptor::name_map`]), a SecretStore with the offer's provider block comes first, and
/// version ids take the provider's form.
fn external_secret(
    decls: &Declarations,
    args: &PolicyArgs,
    backend: Option<&'static Descriptor>,
    option: &dyn Fn(&str) -> Option<String>,
) -> Result<(String, Vec<String>), Fail> {
    let name = args.name.clone().unwrap_or_else(|| kebab_name(&decls.struct_name));
    let store_kind = match args.store_kind {
        StoreKind::SecretStore => "SecretStore",
        StoreKind::ClusterSecretStore => "ClusterSecretStore",
    };
    let mut notes = Vec::new();
    let mut out = format!(
        "# Generated by `skm policy --external-secret` from `{}`.\n",
        display(&decls.struct_name),
    );
    let offer = backend
        .and_then(|d| d.external_secrets)
        .unwrap_or(ExternalSecretsOffer::GENERIC);
    let input = PolicyInput {
        struct_name: &decls.struct_name,
        paths: &[],
        option,
        env: &env_var,
    };
    if let Some(block) = offer.store.map(|store| store(&input)) {
        notes.extend(block.notes);
        out.push_str(&format!(
            "apiVersion: external-secrets.io/v1\nkind: {store_kind}\nmetadata:\n  name: {}\n",
            yaml_quoted(&args.store)
        ));
        if let (Some(ns), StoreKind::SecretStore) = (&args.namespace, args.store_kind) {
            out.push_str(&format!("  namespace: {}\n", yaml_quoted(ns)));
        }
        out.push_str(&format!("spec:\n  provider:\n{}---\n", block.yaml));
    }
    out.push_str(&format!(
        "apiVersion: external-secrets.io/v1\n\
         kind: ExternalSecret\n\
         metadata:\n  name: {}\n",
        yaml_quoted(&name)
    ));
    if let Some(ns) = &args.namespace {
        out.push_str(&format!("  namespace: {}\n", yaml_quoted(ns)));
    }
    out.push_str(&format!(
        "spec:\n  refreshInterval: {}\n  secretStoreRef:\n    name: {}\n    kind: {}\n  target:\n    name: {}\n    \
         creationPolicy: Owner\n  data:\n",
        yaml_quoted(&args.refresh_interval),
        yaml_quoted(&args.store),
        store_kind,
        yaml_quoted(&name)
    ));
    let with_path: Vec<&ResolvedField> = decls.fields.iter().filter(|f| f.path.is_some()).collect();
    if with_path.is_empty() {
        out.push_str("    []\n");
    }
    for f in with_path {
        let secret_key = f.env.as_deref().map_or_else(|| f.id.clone(), str::to_string);
        let key = remote_key(backend, f.path.as_deref().unwrap_or_default())?;
        out.push_str(&format!(
            "    - secretKey: {}\n      remoteRef:\n",
            yaml_quoted(&secret_key)
        ));
        out.push_str(&format!("        key: {}\n", yaml_quoted(&key)));
        if let Some(k) = f.key.as_deref() {
            out.push_str(&format!("        property: {}\n", yaml_quoted(k)));
        }
        let version = match &f.spec.version {
            VersionPin::Current => None,
            VersionPin::Stage(s) => Some(s.to_string()),
            VersionPin::Id(id) => Some(offer.version_id.write(id)),
            VersionPin::Number(n) => Some(n.to_string()),
            other => {
                notes.push(format!(
                    "field `{}` is pinned to the {other}, which an ExternalSecret cannot express: it reads the \
                     current one",
                    f.id
                ));
                None
            }
        };
        if let Some(v) = version {
            out.push_str(&format!("        version: {}\n", yaml_quoted(&v)));
        }
    }
    Ok((out, notes))
}

/// The `remoteRef.key` of a declared path: the backend's own name for it where that differs. One path at a
/// time: collisions are `skm check`'s to report, not a reason to withhold the document.
fn remote_key(backend: Option<&'static Descriptor>, path: &str) -> Result<String, Fail> {
    match backend.and_then(|d| d.name_map) {
        Some(map) => map(&[path])
            .remove(path)
            .unwrap_or_else(|| Ok(path.to_string()))
            .map_err(Fail::Usage),
        None => Ok(path.to_string()),
    }
}

//! The IAM bindings a service needs to load its declared secrets (`skm policy --gcp`): `roles/secretmanager.secretAccessor` on
//! exactly those secrets, nothing project-wide.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::names::resolve;
use crate::backend::registry::{
    yaml_quoted, ExternalSecretsOffer, PolicyBody, PolicyDocument, PolicyInput, PolicyOption, PolicyRenderer,
    ProviderBlock, VersionIdForm,
};
use crate::Error;

/// The registry's External Secrets part (`skm policy --external-secret --gcp`): a `gcpsm` store for the
/// project; version numbers as they are.
pub const EXTERNAL_SECRETS: ExternalSecretsOffer = ExternalSecretsOffer {
    store: Some(gcpsm_store),
    version_id: VersionIdForm::AsIs,
};

/// The `gcpsm` provider block for the project of `--project` (or the environment's).
fn gcpsm_store(input: &PolicyInput<'_>) -> ProviderBlock {
    let mut notes = Vec::new();
    let project = input
        .get("project", &["GOOGLE_CLOUD_PROJECT", "GCP_PROJECT_ID"])
        .unwrap_or_else(|| {
            notes.push("pass --project (or set GOOGLE_CLOUD_PROJECT) to replace `PROJECT_ID`".into());
            "PROJECT_ID".into()
        });
    notes.push("the gcpsm store authenticates as the controller's workload identity unless you add `auth`".into());
    ProviderBlock {
        yaml: format!("    gcpsm:\n      projectID: {}\n", yaml_quoted(&project)),
        notes,
    }
}

/// The registry's renderer (`skm policy --gcp`): [`policy`]'s bindings and `gcloud` commands in one JSON
/// document, `{"bindings": [...], "gcloud": [...]}`.
pub const RENDERER: PolicyRenderer = PolicyRenderer {
    format: "gcp-iam",
    options: &[
        PolicyOption {
            name: "project",
            env: &["GOOGLE_CLOUD_PROJECT", "GCP_PROJECT_ID"],
            help: "the project the secrets live in (default `PROJECT_ID`, a placeholder)",
        },
        PolicyOption {
            name: "member",
            env: &[],
            help: "the IAM member granted access, e.g. `serviceAccount:app@p.iam.gserviceaccount.com`",
        },
    ],
    render,
};

/// Renders [`policy`] for the registry: one JSON document holding the bindings and the `gcloud` commands.
///
/// # Errors
/// [`Error::Config`] for a path that cannot name a secret, a project that is not a project id
/// (letters, digits, `-`, `.`, `:`), or a member holding a control character.
///
/// # Example
/// ```
/// use skm_runtime::backend::gcp::policy::render;
/// use skm_runtime::backend::registry::{PolicyBody, PolicyInput};
/// let paths = ["auth/jwt".to_string()];
/// let option = |name: &str| (name == "project").then(|| "my-project".to_string());
/// let doc = render(&PolicyInput { struct_name: "App", paths: &paths, option: &option, env: &|_| None })?;
/// let PolicyBody::Json(json) = doc.body else { unreachable!() };
/// assert_eq!(json["bindings"][0]["resource"], "projects/my-project/secrets/auth-jwt");
/// assert!(json["gcloud"][0].as_str().unwrap().starts_with("gcloud secrets add-iam-policy-binding auth-jwt"));
/// # Ok::<(), skm_runtime::Error>(())
/// ```
pub fn render(input: &PolicyInput<'_>) -> Result<PolicyDocument, Error> {
    input.checked_struct_name()?;
    let given = input.get("project", &["GOOGLE_CLOUD_PROJECT", "GCP_PROJECT_ID"]);
    let project = given.clone().unwrap_or_else(|| "PROJECT_ID".into());
    // The project goes unquoted into a shell command and into resource names.
    if !project
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':'))
    {
        return Err(Error::config(format!(
            "the project `{}` is not a GCP project id (letters, digits, `-`, `.`, `:`)",
            project.escape_debug()
        )));
    }
    let member = input.get("member", &[]);
    if member.as_deref().is_some_and(|m| m.chars().any(char::is_control)) {
        return Err(Error::config("the member holds a control character".into()));
    }
    let p = policy(&project, input.paths.iter().map(String::as_str), member.as_deref()).map_err(Error::config)?;
    let mut notes = vec![format!(
        "grants {ACCESSOR_ROLE} on each declared secret, nothing project-wide; `Rotating` fields need no more"
    )];
    if given.is_none() {
        notes.push("pass --project (or set GOOGLE_CLOUD_PROJECT) to replace the `PROJECT_ID` placeholder".into());
    }
    if member.is_none() {
        notes.push(format!(
            "pass --member to replace the `{PLACEHOLDER_MEMBER}` placeholder"
        ));
    }
    let mut json = p.json;
    json["gcloud"] = Value::from(p.gcloud);
    Ok(PolicyDocument {
        format: RENDERER.format,
        body: PolicyBody::Json(json),
        notes,
    })
}

/// The role that allows `secretmanager.versions.access` (reading payloads) and nothing else.
pub const ACCESSOR_ROLE: &str = "roles/secretmanager.secretAccessor";

/// The member used when none is given: replace it with the service's identity.
pub const PLACEHOLDER_MEMBER: &str = "serviceAccount:SERVICE_ACCOUNT_EMAIL";

/// The bindings for one service, rendered two ways.
#[derive(Debug, Clone, PartialEq)]
pub struct IamPolicy {
    /// One entry per secret: `{"resource", "declared_paths", "role", "members"}`, ready for review or for a
    /// tool that applies per-secret IAM policies.
    pub json: Value,
    /// One `gcloud secrets add-iam-policy-binding` command per secret.
    pub gcloud: Vec<String>,
}

/// The accessor bindings for `paths` (declared paths after prefixes and `{profile}`, or full resource names)
/// in `project`, for `member` (e.g. `serviceAccount:app@my-project.iam.gserviceaccount.com`; default
/// [`PLACEHOLDER_MEMBER`]).
///
/// Secrets are bound one by one, never with a project-wide grant. Paths that map to the same secret share
/// one binding. Loading with [`Rotating`](crate::Rotating) needs no more: the previous version is found by
/// accessing older versions, which the same role allows.
///
/// # Errors
/// A path that cannot name a GCP secret (the message says why).
///
/// # Example
/// ```
/// use skm_runtime::backend::gcp::policy;
/// let p = policy("my-project", ["auth/jwt", "database/connection"], Some("serviceAccount:app@my-project.iam.gserviceaccount.com")).unwrap();
/// assert_eq!(p.json["bindings"][0]["resource"], "projects/my-project/secrets/auth-jwt");
/// assert_eq!(
///     p.gcloud[0],
///     "gcloud secrets add-iam-policy-binding auth-jwt --project=my-project \
///      --member='serviceAccount:app@my-project.iam.gserviceaccount.com' --role=roles/secretmanager.secretAccessor"
/// );
/// ```
pub fn policy<'a>(
    project: &str,
    paths: impl IntoIterator<Item = &'a str>,
    member: Option<&str>,
) -> Result<IamPolicy, String> {
    let member = member.unwrap_or(PLACEHOLDER_MEMBER);
    // Sorted by resource name, so that the output is stable and diffs well.
    let mut by_resource: BTreeMap<String, (String, String, Vec<String>)> = BTreeMap::new();
    for path in paths {
        let name = resolve(project, path)?;
        let entry = by_resource
            .entry(name.resource.clone())
            .or_insert_with(|| (name.project().to_string(), name.id().to_string(), Vec::new()));
        if !entry.2.contains(&name.declared) {
            entry.2.push(name.declared.clone());
        }
    }
    let bindings: Vec<Value> = by_resource
        .iter()
        .map(|(resource, (_, _, declared))| {
            json!({
                "resource": resource,
                "declared_paths": declared,
                "role": ACCESSOR_ROLE,
                "members": [member],
            })
        })
        .collect();
    let gcloud = by_resource
        .iter()
        .map(|(resource, (project, id, _))| {
            let location = resource
                .split("/locations/")
                .nth(1)
                .and_then(|rest| rest.split('/').next())
                .map(|l| format!(" --location={l}"))
                .unwrap_or_default();
            format!(
                "gcloud secrets add-iam-policy-binding {id} --project={project}{location} --member={} --role={ACCESSOR_ROLE}",
                shell_quote(member)
            )
        })
        .collect();
    Ok(IamPolicy {
        json: json!({ "bindings": bindings }),
        gcloud,
    })
}

/// Single-quotes `s` for a POSIX shell.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_binding_per_secret_sorted_and_merged() {
        let p = policy(
            "p",
            [
                "database/connection",
                "auth/jwt",
                "database-connection",
                "projects/q/secrets/x",
            ],
            None,
        )
        .unwrap();
        let bindings = p.json["bindings"].as_array().unwrap();
        assert_eq!(bindings.len(), 3);
        assert_eq!(bindings[0]["resource"], "projects/p/secrets/auth-jwt");
        assert_eq!(
            bindings[1]["declared_paths"],
            json!(["database/connection", "database-connection"])
        );
        assert_eq!(bindings[2]["members"], json!([PLACEHOLDER_MEMBER]));
        assert_eq!(bindings[2]["role"], ACCESSOR_ROLE);
        assert!(p.gcloud[2].starts_with("gcloud secrets add-iam-policy-binding x --project=q "));
        assert!(policy("p", ["bad path"], None).is_err());
    }
}

//! The IAM bindings a service needs to load its declared secrets: `roles/secretmanager.secretAccessor` on
//! exactly those secrets, nothing project-wide.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::names::resolve;

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

//! Declared paths to Secret Manager resource names.
//!
//! Secret ids allow only `[A-Za-z0-9_-]` (1 to 255 characters), so a declared path maps each `/` to `-`:
//! `auth/jwt` → `auth-jwt`, `myapp/prod/db` → `myapp-prod-db` (prefixes and `{profile}` are already part of
//! the path when it gets here). A full resource name, `projects/P/secrets/ID` (or the regional
//! `projects/P/locations/L/secrets/ID`), is used as is, so a service can read another project's secret.

use std::collections::HashMap;
use std::fmt;

/// The longest secret id Secret Manager accepts.
const MAX_ID_LEN: usize = 255;

/// A declared path and the secret it names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SecretName {
    /// The path as declared (after prefixes and `{profile}`), e.g. `auth/jwt`.
    pub declared: String,
    /// The full resource name, e.g. `projects/my-project/secrets/auth-jwt`.
    pub resource: String,
}

impl SecretName {
    /// The secret id: the last segment of the resource name (`auth-jwt`).
    pub fn id(&self) -> &str {
        self.resource.rsplit('/').next().unwrap_or(&self.resource)
    }

    /// The project (id or number) the secret lives in.
    pub fn project(&self) -> &str {
        self.resource.split('/').nth(1).unwrap_or_default()
    }

    /// The resource name of one version: `…/versions/3` or `…/versions/latest`.
    pub fn version(&self, version: &str) -> String {
        format!("{}/versions/{version}", self.resource)
    }

    /// `GCP secret `auth-jwt` (declared path `auth/jwt`)`: how errors name a secret, so that a reader can
    /// find both the declaration and the secret in the console.
    pub fn describe(&self) -> String {
        if self.declared == self.resource {
            format!("GCP secret `{}`", self.resource)
        } else {
            format!("GCP secret `{}` (declared path `{}`)", self.id(), self.declared)
        }
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// The secret id a declared path maps to: slashes (leading and trailing ones dropped) become `-`.
///
/// # Errors
/// The path is empty, longer than 255 characters once mapped, or holds a character a secret id cannot
/// (the message names the character and its position; paths are not secret).
///
/// # Example
/// ```
/// use skm_runtime::backend::gcp::secret_id;
/// assert_eq!(secret_id("auth/jwt").unwrap(), "auth-jwt");
/// assert_eq!(secret_id("/myapp/prod/db/").unwrap(), "myapp-prod-db");
/// assert!(secret_id("auth/jwt.key").unwrap_err().contains("`.`"));
/// ```
pub fn secret_id(path: &str) -> Result<String, String> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return Err(format!("path `{path}` names no secret"));
    }
    let id = trimmed.replace('/', "-");
    if let Some((at, c)) = id
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(format!(
            "path `{path}` cannot name a GCP secret: `{c}` at byte {at} is not allowed (secret ids take \
             letters, digits, `-` and `_`; `/` becomes `-`)"
        ));
    }
    if id.len() > MAX_ID_LEN {
        return Err(format!(
            "path `{path}` maps to a GCP secret id of {} characters; the limit is {MAX_ID_LEN}",
            id.len()
        ));
    }
    Ok(id)
}

/// The resource name `path` names in `project`: a full resource name as is, any other path mapped with
/// [`secret_id`].
///
/// # Errors
/// As [`secret_id`]; a full resource name with the wrong shape (a `/versions/` suffix included: pin versions
/// with `version = N` instead).
///
/// # Example
/// ```
/// use skm_runtime::backend::gcp::resolve;
/// let name = resolve("my-project", "auth/jwt").unwrap();
/// assert_eq!(name.resource, "projects/my-project/secrets/auth-jwt");
/// assert_eq!(name.declared, "auth/jwt");
/// let other = resolve("my-project", "projects/shared/secrets/tls-key").unwrap();
/// assert_eq!(other.resource, "projects/shared/secrets/tls-key");
/// ```
pub fn resolve(project: &str, path: &str) -> Result<SecretName, String> {
    if let Some(rest) = path.strip_prefix("projects/") {
        let parts: Vec<&str> = rest.split('/').collect();
        let well_formed = match parts.as_slice() {
            [p, "secrets", id] | [p, "locations", _, "secrets", id] => {
                !p.is_empty() && secret_id(id).is_ok_and(|mapped| mapped == *id)
            }
            _ => false,
        };
        if !well_formed {
            return Err(format!(
                "`{path}` is not a Secret Manager resource name: write `projects/PROJECT/secrets/ID` \
                 (pin a version with `version = N`, not a `/versions/` suffix)"
            ));
        }
        return Ok(SecretName {
            declared: path.to_string(),
            resource: path.to_string(),
        });
    }
    let id = secret_id(path)?;
    Ok(SecretName {
        declared: path.to_string(),
        resource: format!("projects/{project}/secrets/{id}"),
    })
}

/// Resolves every distinct path; two paths that map to one secret are an error for both, naming both.
///
/// Returns one entry per input, in order.
pub(crate) fn resolve_all<'a>(
    project: &str,
    paths: impl IntoIterator<Item = &'a str>,
) -> Vec<Result<SecretName, String>> {
    let resolved: Vec<Result<SecretName, String>> = paths.into_iter().map(|p| resolve(project, p)).collect();
    let mut first_by_resource: HashMap<&str, &str> = HashMap::new();
    let mut clashes: HashMap<String, String> = HashMap::new();
    for name in resolved.iter().flatten() {
        match first_by_resource.get(name.resource.as_str()) {
            Some(first) if *first != name.declared => {
                let message = format!(
                    "declared paths `{first}` and `{}` both map to GCP secret `{}` (`/` becomes `-`): rename \
                     one of them",
                    name.declared, name.resource
                );
                clashes.insert(first.to_string(), message.clone());
                clashes.insert(name.declared.clone(), message);
            }
            Some(_) => {}
            None => {
                first_by_resource.insert(&name.resource, &name.declared);
            }
        }
    }
    resolved
        .into_iter()
        .map(|r| match r {
            Ok(name) => match clashes.get(&name.declared) {
                Some(message) => Err(message.clone()),
                None => Ok(name),
            },
            Err(e) => Err(e),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slashes_become_dashes_and_full_names_stay() {
        assert_eq!(secret_id("auth/jwt").unwrap(), "auth-jwt");
        assert_eq!(
            secret_id("myapp/prod/database/connection").unwrap(),
            "myapp-prod-database-connection"
        );
        assert_eq!(secret_id("already_fine-1").unwrap(), "already_fine-1");
        let n = resolve("p", "projects/other/locations/europe-west1/secrets/x").unwrap();
        assert_eq!(n.project(), "other");
        assert_eq!(n.id(), "x");
        assert_eq!(
            n.describe(),
            "GCP secret `projects/other/locations/europe-west1/secrets/x`"
        );
        assert_eq!(
            resolve("p", "a/b").unwrap().describe(),
            "GCP secret `a-b` (declared path `a/b`)"
        );
    }

    #[test]
    fn bad_paths_say_why() {
        assert!(secret_id("").unwrap_err().contains("names no secret"));
        assert!(secret_id("a b").unwrap_err().contains("` ` at byte 1"));
        assert!(secret_id(&"x".repeat(256)).unwrap_err().contains("limit is 255"));
        assert!(resolve("p", "projects/p/secrets/x/versions/3")
            .unwrap_err()
            .contains("version = N"));
        assert!(resolve("p", "projects//secrets/x").is_err());
    }

    #[test]
    fn collisions_name_both_paths() {
        let r = resolve_all("p", ["a/b", "a-b", "c", "a/b"]);
        let e = r[0].as_ref().unwrap_err();
        assert!(
            e.contains("`a/b`") && e.contains("`a-b`") && e.contains("projects/p/secrets/a-b"),
            "{e}"
        );
        assert_eq!(r[1].as_ref().unwrap_err(), e);
        assert_eq!(r[3].as_ref().unwrap_err(), e);
        assert!(r[2].is_ok());
    }
}

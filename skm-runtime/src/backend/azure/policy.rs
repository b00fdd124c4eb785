//! `skm policy --azure`: role assignments granting read access to exactly the declared secrets.

use serde_json::{json, Value};

use super::names::{check_names, secret_name};

/// The built-in role that may read secret values (data action
/// `Microsoft.KeyVault/vaults/secrets/getSecret/action`, plus `readMetadata` for `Rotating` fields).
pub const SECRETS_USER_ROLE: &str = "Key Vault Secrets User";
/// The built-in role definition id of [`SECRETS_USER_ROLE`], the same in every tenant.
pub const SECRETS_USER_ROLE_ID: &str = "4633458b-17de-408a-b874-0445c86b69e6";

/// Role assignments for one principal: JSON (for templates) and `az` commands (to run).
#[derive(Debug, Clone, PartialEq)]
pub struct RoleAssignments {
    /// `{"roleDefinitionName", "roleDefinitionId", "principalId", "assignments": [{"path", "secretName",
    /// "scope"}]}`; scopes use `$VAULT_ID`, the vault's resource id.
    pub json: Value,
    /// One `az role assignment create` per secret; the first line sets `VAULT_ID`.
    pub az_commands: Vec<String>,
}

/// Renders "Key Vault Secrets User" assignments scoped to each declared secret of `vault` (the vault's name,
/// or its URL) for `principal` (an object id, or a shell variable such as `$PRINCIPAL_ID`).
///
/// # Errors
/// Paths that cannot be Key Vault names, or that collide: each with its message.
///
/// # Example
/// ```
/// use skm_runtime::backend::azure::role_assignments;
/// let r = role_assignments("https://my-vault.vault.azure.net", "$PRINCIPAL_ID", &["auth/jwt", "db/url"]).unwrap();
/// assert_eq!(r.json["assignments"][0]["secretName"], "auth-jwt");
/// assert!(r.az_commands[1].contains("--scope \"$VAULT_ID/secrets/auth-jwt\""));
/// ```
pub fn role_assignments(
    vault: &str,
    principal: &str,
    paths: &[&str],
) -> Result<RoleAssignments, Vec<(String, String)>> {
    let errors = check_names(paths.iter().copied());
    if !errors.is_empty() {
        return Err(errors);
    }
    let vault_name = vault
        .trim()
        .trim_start_matches("https://")
        .split(['.', '/', ':'])
        .next()
        .unwrap_or(vault)
        .to_string();
    let mut names: Vec<(String, String)> = Vec::new();
    for path in paths {
        let name = secret_name(path).expect("checked above");
        if !names.iter().any(|(_, n)| n.eq_ignore_ascii_case(&name)) {
            names.push((path.to_string(), name));
        }
    }
    let assignments: Vec<Value> = names
        .iter()
        .map(|(path, name)| json!({ "path": path, "secretName": name, "scope": format!("$VAULT_ID/secrets/{name}") }))
        .collect();
    let mut az_commands = vec![format!(
        "VAULT_ID=\"$(az keyvault show --name {vault_name} --query id --output tsv)\""
    )];
    for (_, name) in &names {
        az_commands.push(format!(
            "az role assignment create --role \"{SECRETS_USER_ROLE}\" --assignee-object-id \"{principal}\" \
             --scope \"$VAULT_ID/secrets/{name}\""
        ));
    }
    Ok(RoleAssignments {
        json: json!({
            "vault": vault_name,
            "roleDefinitionName": SECRETS_USER_ROLE,
            "roleDefinitionId": SECRETS_USER_ROLE_ID,
            "principalId": principal,
            "assignments": assignments,
        }),
        az_commands,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_assignment_per_secret_and_errors_for_bad_paths() {
        let r = role_assignments("my-vault", "abc", &["a/b", "a/b", "c"]).unwrap();
        assert_eq!(r.json["assignments"].as_array().unwrap().len(), 2);
        assert_eq!(r.az_commands.len(), 3);
        assert!(r.az_commands[0].contains("--name my-vault"));
        assert_eq!(r.json["roleDefinitionName"], SECRETS_USER_ROLE);
        let e = role_assignments("v", "p", &["a_b", "x/y", "x-y"]).unwrap_err();
        assert_eq!(e.len(), 3, "{e:?}");
    }
}

//! `skm policy --azure`: role assignments granting read access to exactly the declared secrets.

use serde_json::{json, Value};

use super::names::{check_names, secret_name};
use crate::backend::registry::{
    yaml_quoted, ExternalSecretsOffer, PolicyBody, PolicyDocument, PolicyInput, PolicyOption, PolicyRenderer,
    ProviderBlock, VersionIdForm,
};
use crate::Error;

/// The registry's External Secrets part (`skm policy --external-secret --azure`): an `azurekv` store on
/// workload identity; version ids as they are.
pub const EXTERNAL_SECRETS: ExternalSecretsOffer = ExternalSecretsOffer {
    store: Some(azurekv_store),
    version_id: VersionIdForm::AsIs,
};

/// The `azurekv` provider block for the vault of `--keyvault` (a name or URL; or the environment's).
fn azurekv_store(input: &PolicyInput<'_>) -> ProviderBlock {
    let mut notes = Vec::new();
    let vault = input.get("keyvault", &["AZURE_KEYVAULT_URL"]).unwrap_or_else(|| {
        notes.push("pass --keyvault (or set AZURE_KEYVAULT_URL) to replace `VAULT_NAME`".into());
        "VAULT_NAME".into()
    });
    let url = if vault.contains("://") {
        vault
    } else {
        format!("https://{vault}.vault.azure.net")
    };
    notes.push(
        "the azurekv store uses workload identity (the controller's service account unless you add \
         `serviceAccountRef`)"
            .into(),
    );
    ProviderBlock {
        yaml: format!(
            "    azurekv:\n      vaultUrl: {}\n      authType: WorkloadIdentity\n",
            yaml_quoted(&url)
        ),
        notes,
    }
}

/// The registry's renderer (`skm policy --azure`): [`role_assignments`] in one JSON document, its `az`
/// commands under `"az"`.
pub const RENDERER: PolicyRenderer = PolicyRenderer {
    format: "azure-rbac",
    options: &[
        PolicyOption {
            // Not `vault`: `skm policy --vault` is the Vault backend's policy.
            name: "keyvault",
            env: &["AZURE_KEYVAULT_URL"],
            help: "the vault's name or URL (default `VAULT_NAME`, a placeholder)",
        },
        PolicyOption {
            name: "principal",
            env: &[],
            help: "the principal's object id (default the shell variable `$PRINCIPAL_ID`)",
        },
    ],
    render,
};

/// Renders [`role_assignments`] for the registry: the assignments JSON with the `az` commands under `"az"`.
///
/// # Errors
/// [`Error::Config`] for paths that cannot be Key Vault names or collide (all of them listed), a vault that
/// is not a vault name or URL, or a principal that is neither an object id nor a `$VARIABLE`.
///
/// # Example
/// ```
/// use skm_runtime::backend::azure::policy::render;
/// use skm_runtime::backend::registry::{PolicyBody, PolicyInput};
/// let paths = ["auth/jwt".to_string()];
/// let option = |name: &str| (name == "keyvault").then(|| "https://my-vault.vault.azure.net".to_string());
/// let doc = render(&PolicyInput { struct_name: "App", paths: &paths, option: &option, env: &|_| None })?;
/// let PolicyBody::Json(json) = doc.body else { unreachable!() };
/// assert_eq!(json["assignments"][0]["secretName"], "auth-jwt");
/// assert!(json["az"][1].as_str().unwrap().starts_with("az role assignment create"));
/// # Ok::<(), skm_runtime::Error>(())
/// ```
pub fn render(input: &PolicyInput<'_>) -> Result<PolicyDocument, Error> {
    input.checked_struct_name()?;
    let given = input.get("keyvault", &["AZURE_KEYVAULT_URL"]);
    let vault = given.clone().unwrap_or_else(|| "VAULT_NAME".into());
    // The vault's name and the principal go into shell commands: allow only what they can be.
    let name_part = vault
        .trim_start_matches("https://")
        .split(['.', '/', ':'])
        .next()
        .unwrap_or_default();
    let url_ok = vault
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '/' | ':' | '_'));
    if name_part.is_empty() || !url_ok || !name_part.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(Error::config(format!(
            "the vault `{}` is not a Key Vault name or URL (`my-vault`, `https://my-vault.vault.azure.net`)",
            vault.escape_debug()
        )));
    }
    let principal = input.get("principal", &[]);
    let shown = principal.clone().unwrap_or_else(|| "$PRINCIPAL_ID".into());
    let variable = shown.strip_prefix('$').is_some_and(|v| {
        v.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    });
    if !variable && (shown.is_empty() || !shown.chars().all(|c| c.is_ascii_hexdigit() || c == '-')) {
        return Err(Error::config(format!(
            "the principal `{}` is neither an object id (hex digits and `-`) nor a shell variable (`$PRINCIPAL_ID`)",
            shown.escape_debug()
        )));
    }
    let paths: Vec<&str> = input.paths.iter().map(String::as_str).collect();
    let r = role_assignments(&vault, &shown, &paths)
        .map_err(|errors| Error::config(errors.into_iter().map(|(_, e)| e).collect::<Vec<_>>().join("; ")))?;
    let mut notes = vec![format!(
        "assigns \"{SECRETS_USER_ROLE}\" scoped to each declared secret; the vault must use Azure RBAC (not access policies)"
    )];
    if given.is_none() {
        notes.push("pass --keyvault (or set AZURE_KEYVAULT_URL) to replace the `VAULT_NAME` placeholder".into());
    }
    if principal.is_none() {
        notes.push("pass --principal, or set PRINCIPAL_ID in the shell that runs the `az` commands".into());
    }
    let mut json = r.json;
    json["az"] = Value::from(r.az_commands);
    Ok(PolicyDocument {
        format: RENDERER.format,
        body: PolicyBody::Json(json),
        notes,
    })
}

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

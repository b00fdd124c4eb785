//! `policy`: least-privilege access for exactly the declared secrets, as an AWS IAM policy (JSON), a Vault
//! policy (HCL) or an External Secrets Operator `ExternalSecret` (YAML).

use std::collections::BTreeSet;

use serde_json::json;
use skm_runtime::{ResolvedField, VersionPin};

use crate::args::{PolicyArgs, StoreKind};
use crate::decl::Declarations;
use crate::safe::{display, unsafe_char};
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
    let (kind, document, notes) = if args.aws {
        let (doc, notes) = aws(&decls, args)?;
        ("aws-iam", Document::Json(doc), notes)
    } else if args.vault {
        let (doc, notes) = vault(&decls, args)?;
        ("vault-hcl", Document::Text(doc), notes)
    } else {
        let (doc, notes) = external_secret(&decls, args);
        ("external-secret-yaml", Document::Text(doc), notes)
    };
    let mut notes = notes;
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

enum Document {
    Json(serde_json::Value),
    Text(String),
}

fn declared_paths(decls: &Declarations) -> BTreeSet<String> {
    decls.fields.iter().filter_map(|f| f.path.clone()).collect()
}

/// An IAM policy: `GetSecretValue` on each declared secret, `BatchGetSecretValue` on `*`.
fn aws(decls: &Declarations, args: &PolicyArgs) -> Result<(serde_json::Value, Vec<String>), Fail> {
    let region = args
        .region
        .clone()
        .or_else(|| env_var("AWS_REGION").filter(|s| !s.is_empty()))
        .or_else(|| env_var("AWS_DEFAULT_REGION").filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "*".into());
    let account = args.account.clone().unwrap_or_else(|| "*".into());
    let mut resources = BTreeSet::new();
    for path in declared_paths(decls) {
        // `*` and `?` are wildcards in an IAM resource: a path holding one would grant more than one secret.
        if path.contains(['*', '?']) || path.chars().any(unsafe_char) {
            return Err(Fail::Usage(format!(
                "the declared path `{}` holds `*`, `?` or a control character, which would widen an IAM policy \
                 beyond the declared secret: rename the secret",
                display(&path)
            )));
        }
        if path.starts_with("arn:") {
            // A full ARN names one secret; a partial one lacks the suffix, so allow both forms.
            resources.insert(path.clone());
            resources.insert(format!("{path}-??????"));
        } else {
            // AWS appends `-` and six random characters to every secret's ARN; `?` matches exactly one, so
            // `name-??????` matches this secret and not `name-other`.
            resources.insert(format!(
                "arn:{}:secretsmanager:{region}:{account}:secret:{path}-??????",
                args.partition
            ));
        }
    }
    let mut statements = Vec::new();
    if !resources.is_empty() {
        statements.push(json!({
            "Sid": "SkmGetDeclaredSecrets",
            "Effect": "Allow",
            "Action": "secretsmanager:GetSecretValue",
            "Resource": resources.iter().collect::<Vec<_>>(),
        }));
        statements.push(json!({
            "Sid": "SkmBatchGetIsScopedByGetSecretValue",
            "Effect": "Allow",
            "Action": "secretsmanager:BatchGetSecretValue",
            "Resource": "*",
        }));
    }
    let doc = json!({ "Version": "2012-10-17", "Statement": statements });
    let mut notes = vec![
        "BatchGetSecretValue has no resource type, so it is granted on `*`; it returns only secrets the caller \
         may also GetSecretValue, so the first statement is what limits access"
            .to_string(),
        "secrets encrypted with a customer-managed KMS key also need kms:Decrypt on that key".to_string(),
    ];
    if region == "*" || account == "*" {
        notes.push("pass --region and --account to pin the ARNs to one region and account".into());
    }
    Ok((doc, notes))
}

/// Why `path` cannot go into a Vault policy as a literal path, if it cannot: `*` (a glob) and `+` (a
/// segment wildcard) would widen the policy, and braces, quotes or control characters are read differently
/// by Vault's HCL1 parser than by the HCL2 of other tools.
fn vault_path_problem(path: &str) -> Option<&'static str> {
    if path.contains(['*', '+']) {
        Some("holds `*` or `+`, which are wildcards in a Vault policy: it would grant more than the declared secret")
    } else if path.contains(['{', '}', '"', '\\']) || path.chars().any(unsafe_char) {
        Some("holds a brace, a quote, a backslash or a control character, which a Vault policy cannot hold literally")
    } else {
        None
    }
}

/// A Vault policy: `read` on exactly the declared paths (under `data/` for KV v2).
fn vault(decls: &Declarations, args: &PolicyArgs) -> Result<(String, Vec<String>), Fail> {
    let mount = args
        .mount
        .clone()
        .or_else(|| env_var("SKM_VAULT_MOUNT").filter(|s| !s.trim().is_empty()))
        .unwrap_or_else(|| "secret".into());
    let mount = mount.trim_matches('/').to_string();
    if let Some(why) = vault_path_problem(&mount) {
        return Err(Fail::Usage(format!("the mount `{}` {why}", display(&mount))));
    }
    let kv = match args.kv_version {
        Some(v) => v,
        None => match env_var("SKM_VAULT_KV_VERSION").map(|v| v.trim().trim_start_matches(['v', 'V']).to_string()) {
            Some(v) if v == "1" => 1,
            Some(v) if v == "2" || v.is_empty() => 2,
            Some(v) => {
                return Err(Fail::Usage(format!(
                    "SKM_VAULT_KV_VERSION=`{v}`: use 1 or 2, or pass --kv-version"
                )));
            }
            None => 2,
        },
    };
    let mut out = format!(
        "# Generated by `skm policy --vault` from `{}`: read on exactly the declared secrets.\n\
         # KV v{kv} mounted at `{mount}/`{}.\n",
        display(&decls.struct_name),
        if kv == 2 {
            "; reads (pinned versions too) go to `<mount>/data/<path>`"
        } else {
            ""
        }
    );
    for path in declared_paths(decls) {
        if let Some(why) = vault_path_problem(&path) {
            return Err(Fail::Usage(format!("the declared path `{}` {why}", display(&path))));
        }
        let full = if kv == 2 {
            format!("{mount}/data/{path}")
        } else {
            format!("{mount}/{path}")
        };
        out.push_str(&format!(
            "\npath {} {{\n  capabilities = [\"read\"]\n}}\n",
            hcl_string(&full)
        ));
    }
    let mut notes = vec![format!(
        "write it with `vault policy write {} policy.hcl` and attach it to the application's role",
        kebab(&decls.struct_name)
    )];
    if kv == 2 {
        // Kept out of the policy itself: only services that hot-reload need it.
        notes.push(format!(
            "hot reload (`Loader::watch`) checks versions without reading values: it also needs `read` on \
             `{mount}/metadata/<path>` for the same paths"
        ));
    }
    Ok((out, notes))
}

/// An External Secrets Operator `ExternalSecret` that syncs the declared secrets into a Kubernetes Secret whose
/// keys are the env var names, so that `envFrom` gives the application the same variables as `.env`.
fn external_secret(decls: &Declarations, args: &PolicyArgs) -> (String, Vec<String>) {
    let name = args.name.clone().unwrap_or_else(|| kebab(&decls.struct_name));
    let store_kind = match args.store_kind {
        StoreKind::SecretStore => "SecretStore",
        StoreKind::ClusterSecretStore => "ClusterSecretStore",
    };
    let mut notes = Vec::new();
    let mut out = format!(
        "# Generated by `skm policy --external-secret` from `{}`.\n\
         apiVersion: external-secrets.io/v1\n\
         kind: ExternalSecret\n\
         metadata:\n  name: {}\n",
        display(&decls.struct_name),
        yaml_string(&name)
    );
    if let Some(ns) = &args.namespace {
        out.push_str(&format!("  namespace: {}\n", yaml_string(ns)));
    }
    out.push_str(&format!(
        "spec:\n  refreshInterval: {}\n  secretStoreRef:\n    name: {}\n    kind: {}\n  target:\n    name: {}\n    \
         creationPolicy: Owner\n  data:\n",
        yaml_string(&args.refresh_interval),
        yaml_string(&args.store),
        store_kind,
        yaml_string(&name)
    ));
    let with_path: Vec<&ResolvedField> = decls.fields.iter().filter(|f| f.path.is_some()).collect();
    if with_path.is_empty() {
        out.push_str("    []\n");
    }
    for f in with_path {
        let secret_key = f.env.map_or_else(|| f.id.clone(), str::to_string);
        out.push_str(&format!(
            "    - secretKey: {}\n      remoteRef:\n",
            yaml_string(&secret_key)
        ));
        out.push_str(&format!(
            "        key: {}\n",
            yaml_string(f.path.as_deref().unwrap_or_default())
        ));
        if let Some(k) = f.key {
            out.push_str(&format!("        property: {}\n", yaml_string(k)));
        }
        match &f.spec.version {
            VersionPin::Current => {}
            VersionPin::Stage(s) => out.push_str(&format!("        version: {}\n", yaml_string(s))),
            // The AWS provider reads `uuid/<id>` as a VersionId.
            VersionPin::Id(id) => out.push_str(&format!("        version: {}\n", yaml_string(&format!("uuid/{id}")))),
            VersionPin::Number(n) => out.push_str(&format!("        version: {}\n", yaml_string(&n.to_string()))),
            other => notes.push(format!(
                "field `{}` is pinned to the {other}, which an ExternalSecret cannot express: it reads the current one",
                f.id
            )),
        }
    }
    (out, notes)
}

/// A double-quoted YAML scalar. JSON string syntax is valid YAML, and quoting every value keeps `yes`,
/// `1e3` or `null` strings from being read as other types.
fn yaml_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// A quoted HCL string. JSON's escapes (`\"`, `\\`, `\n`, `\uXXXX`) mean the same to HCL1 (Vault) and
/// HCL2; `${` would not (HCL1 keeps `$${` as is, HCL2 unescapes it), which is why [`vault_path_problem`]
/// refuses braces instead of escaping them.
fn hcl_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// `AppSecrets` → `app-secrets`.
fn kebab(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        } else {
            out.push('-');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_quoting() {
        assert_eq!(kebab("AppSecrets"), "app-secrets");
        assert_eq!(yaml_string("yes"), "\"yes\"");
        assert_eq!(hcl_string("secret/data/a"), "\"secret/data/a\"");
        assert!(vault_path_problem("app/+/db").is_some());
        assert!(vault_path_problem("app/*").is_some());
        assert!(vault_path_problem("app/${x}").is_some());
        assert!(vault_path_problem("app/db").is_none());
    }
}

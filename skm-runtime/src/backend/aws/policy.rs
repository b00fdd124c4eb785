//! The least-privilege IAM policy for declared secrets (`skm policy --aws`). Compiled in every build: it
//! needs no AWS client.

use std::collections::BTreeSet;

use serde_json::json;

use crate::backend::registry::{
    ExternalSecretsOffer, PolicyBody, PolicyDocument, PolicyInput, PolicyOption, PolicyRenderer, VersionIdForm,
};
use crate::Error;

/// The registry's External Secrets part: no SecretStore (its auth is the cluster's choice), and version ids
/// as the AWS provider reads a VersionId, `uuid/<id>` (a bare value is a staging label there).
pub const EXTERNAL_SECRETS: ExternalSecretsOffer = ExternalSecretsOffer {
    store: None,
    version_id: VersionIdForm::Uuid,
};

/// The registry's renderer for AWS IAM.
pub const RENDERER: PolicyRenderer = PolicyRenderer {
    format: "aws-iam",
    options: &[
        PolicyOption {
            name: "region",
            env: &["AWS_REGION", "AWS_DEFAULT_REGION"],
            help: "the region in the ARNs (default `*`)",
        },
        PolicyOption {
            name: "account",
            env: &[],
            help: "the account id in the ARNs (default `*`)",
        },
        PolicyOption {
            name: "partition",
            env: &[],
            help: "the ARN partition (default `aws`)",
        },
    ],
    render,
};

/// An IAM policy: `GetSecretValue` on each declared secret, `BatchGetSecretValue` on `*`.
///
/// # Errors
/// [`Error::Config`] for a path, region, account or partition holding an IAM wildcard (`*`, `?`) or a
/// character that cannot be in an ARN: it would grant more than the declared secret.
///
/// # Example
/// ```
/// use skm_runtime::backend::aws::policy::render;
/// use skm_runtime::backend::registry::{PolicyBody, PolicyInput};
/// let paths = ["db/conn".to_string()];
/// let doc = render(&PolicyInput { struct_name: "App", paths: &paths, option: &|_| None, env: &|_| None })?;
/// let PolicyBody::Json(json) = doc.body else { unreachable!() };
/// assert_eq!(json["Statement"][0]["Resource"][0], "arn:aws:secretsmanager:*:*:secret:db/conn-??????");
/// # Ok::<(), skm_runtime::Error>(())
/// ```
pub fn render(input: &PolicyInput<'_>) -> Result<PolicyDocument, Error> {
    input.checked_struct_name()?;
    let region = input
        .get("region", &["AWS_REGION", "AWS_DEFAULT_REGION"])
        .unwrap_or_else(|| "*".into());
    let account = input.get("account", &[]).unwrap_or_else(|| "*".into());
    let partition = input.get("partition", &[]).unwrap_or_else(|| "aws".into());
    for (what, v) in [("region", &region), ("account", &account), ("partition", &partition)] {
        let ok = v == "*" && what != "partition" || v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            return Err(Error::config(format!(
                "the {what} `{}` is not valid in an ARN (letters, digits, `-`)",
                v.escape_debug()
            )));
        }
    }
    let mut resources = BTreeSet::new();
    for path in input.paths.iter().collect::<BTreeSet<_>>() {
        // `*` and `?` are IAM wildcards: a declared path holding one would grant other secrets too.
        if path.is_empty()
            || path
                .chars()
                .any(|c| c == '*' || c == '?' || c.is_control() || c.is_whitespace())
        {
            return Err(Error::config(format!(
                "the declared path `{}` holds an IAM wildcard (`*`, `?`), a space or a control character: an IAM \
                 policy for it would reach other secrets",
                path.escape_debug()
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
                "arn:{partition}:secretsmanager:{region}:{account}:secret:{path}-??????"
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
    let mut notes = vec![
        "BatchGetSecretValue has no resource type, so it is granted on `*`; it returns only secrets the caller \
         may also GetSecretValue, so the first statement is what limits access"
            .to_string(),
        "secrets encrypted with a customer-managed KMS key also need kms:Decrypt on that key".to_string(),
    ];
    if region == "*" || account == "*" {
        notes.push("pass --region and --account to pin the ARNs to one region and account".into());
    }
    Ok(PolicyDocument {
        format: RENDERER.format,
        body: PolicyBody::Json(json!({ "Version": "2012-10-17", "Statement": statements })),
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(paths: &[&str], opts: &[(&str, &str)]) -> Result<PolicyDocument, Error> {
        let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
        let option = |n: &str| opts.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string());
        render(&PolicyInput {
            struct_name: "App",
            paths: &paths,
            option: &option,
            env: &|_| None,
        })
    }

    #[test]
    fn arns_and_wildcards() {
        let doc = run(
            &["db", "arn:aws:secretsmanager:eu-west-1:1:secret:x"],
            &[("region", "eu-west-1")],
        )
        .unwrap();
        let PolicyBody::Json(j) = doc.body else { panic!() };
        let res = j["Statement"][0]["Resource"].as_array().unwrap();
        assert!(
            res.iter()
                .any(|r| r == "arn:aws:secretsmanager:eu-west-1:*:secret:db-??????"),
            "{res:?}"
        );
        assert_eq!(res.len(), 3);
        for bad in ["db/*", "d?b", "a b", "x\ny"] {
            assert!(run(&[bad], &[]).is_err(), "{bad:?}");
        }
        assert!(run(&["db"], &[("account", "1:secret:*")]).is_err());
        assert!(run(&["db"], &[("partition", "*")]).is_err());
    }
}

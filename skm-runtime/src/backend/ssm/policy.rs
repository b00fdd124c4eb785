//! The least-privilege IAM policy for declared parameters (`skm policy --for ssm`).

use std::collections::BTreeSet;

use serde_json::json;

use super::name;
use crate::backend::registry::{PolicyBody, PolicyDocument, PolicyInput, PolicyOption, PolicyRenderer};
use crate::Error;

/// The registry's renderer for Parameter Store's IAM policy. `region`, `account` and `partition` are the
/// AWS Secrets Manager renderer's options (one flag serves both).
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
        PolicyOption {
            name: "kms-key",
            env: &[],
            help:
                "the ARN of the customer-managed KMS key the SecureStrings are encrypted with: adds kms:Decrypt on it",
        },
    ],
    render,
};

/// An IAM policy: `ssm:GetParameters` and `ssm:GetParameter` on exactly the declared parameters, and
/// `kms:Decrypt` on the key given as `kms-key`.
///
/// A path's version selector (`auth/jwt:3`) is dropped (IAM grants the parameter, every version); the
/// leading `/` rule applies, and the ARN of `/auth/jwt` is `...:parameter/auth/jwt`.
///
/// # Errors
/// [`Error::Config`] for a path that is not a Parameter Store name (an IAM wildcard `*` or `?` among
/// them: it would grant more than the declared parameter), or a region, account, partition or key holding
/// a character that cannot be in an ARN.
///
/// # Example
/// ```
/// use skm_runtime::backend::ssm::policy::render;
/// use skm_runtime::backend::registry::{PolicyBody, PolicyInput};
/// let paths = ["auth/jwt".to_string()];
/// let doc = render(&PolicyInput { struct_name: "App", paths: &paths, option: &|_| None, env: &|_| None })?;
/// let PolicyBody::Json(json) = doc.body else { unreachable!() };
/// assert_eq!(json["Statement"][0]["Resource"][0], "arn:aws:ssm:*:*:parameter/auth/jwt");
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
    let key = input.get("kms-key", &[]);
    if let Some(key) = &key {
        let ok = key.starts_with("arn:")
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '/' | '-' | '_'));
        if !ok {
            return Err(Error::config(format!(
                "the KMS key `{}` is not a key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID); IAM grants kms:Decrypt on \
                 keys by ARN, not by alias",
                key.escape_debug()
            )));
        }
    }
    let mut resources = BTreeSet::new();
    for path in input.paths.iter().collect::<BTreeSet<_>>() {
        // The name rule refuses `*`, `?` and spaces: a declared path cannot widen the grant.
        let wanted = name::wanted(path, &crate::backend::VersionPin::Current).map_err(|why| {
            Error::config(format!(
                "the declared path `{}` cannot be granted: {why}",
                path.escape_debug()
            ))
        })?;
        if wanted.base.starts_with("arn:") {
            resources.insert(wanted.base);
        } else {
            // The ARN holds the name without its leading `/`.
            resources.insert(format!(
                "arn:{partition}:ssm:{region}:{account}:parameter/{}",
                wanted.base.trim_start_matches('/')
            ));
        }
    }
    let mut statements = Vec::new();
    if !resources.is_empty() {
        statements.push(json!({
            "Sid": "SkmGetDeclaredParameters",
            "Effect": "Allow",
            "Action": ["ssm:GetParameters", "ssm:GetParameter"],
            "Resource": resources.iter().collect::<Vec<_>>(),
        }));
    }
    if let Some(key) = &key {
        statements.push(json!({
            "Sid": "SkmDecryptSecureStrings",
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": key,
        }));
    }
    let mut notes = Vec::new();
    if key.is_none() {
        notes.push(
            "SecureStrings encrypted with a customer-managed KMS key also need kms:Decrypt on it: pass --kms-key ARN \
             (the AWS-managed alias/aws/ssm needs nothing more)"
                .to_string(),
        );
    }
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

    fn run(paths: &[&str], opts: &[(&str, &str)]) -> Result<serde_json::Value, Error> {
        let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
        let option = |n: &str| opts.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string());
        let doc = render(&PolicyInput {
            struct_name: "App",
            paths: &paths,
            option: &option,
            env: &|_| None,
        })?;
        let PolicyBody::Json(j) = doc.body else { panic!() };
        Ok(j)
    }

    #[test]
    fn exactly_the_declared_parameters_and_the_key() {
        let key = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
        let j = run(
            &["auth/jwt", "/db/url:3", "auth/jwt"],
            &[("region", "eu-west-1"), ("account", "123456789012"), ("kms-key", key)],
        )
        .unwrap();
        assert_eq!(
            j["Statement"][0]["Resource"],
            json!([
                "arn:aws:ssm:eu-west-1:123456789012:parameter/auth/jwt",
                "arn:aws:ssm:eu-west-1:123456789012:parameter/db/url"
            ])
        );
        assert_eq!(
            j["Statement"][0]["Action"],
            json!(["ssm:GetParameters", "ssm:GetParameter"])
        );
        assert_eq!(
            j["Statement"][1],
            json!({"Sid": "SkmDecryptSecureStrings", "Effect": "Allow", "Action": "kms:Decrypt", "Resource": key})
        );
        assert_eq!(run(&["a"], &[]).unwrap()["Statement"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn wildcards_and_bad_arns_are_refused() {
        for bad in ["db/*", "d?b", "a b"] {
            assert!(run(&[bad], &[]).is_err(), "{bad:?}");
        }
        assert!(run(&["db"], &[("kms-key", "alias/aws/ssm")]).is_err());
        assert!(run(&["db"], &[("kms-key", "arn:aws:kms:*:*:key/*")]).is_err());
        assert!(run(&["db"], &[("account", "1:parameter/*")]).is_err());
    }
}

//! `.sops.yaml` creation rules: whom a new file is encrypted to when no recipients are given, as `sops
//! encrypt` decides it.
//!
//! The nearest `.sops.yaml` in the new file's directory or above it is read; its first `creation_rules` entry
//! whose `path_regex` matches the file's path relative to the config's directory (or that has none) applies.
//! skm applies its `age` recipients (a comma-separated string or a list); a rule that asks for anything else
//! (KMS, PGP, key groups, encryption rules) is refused, so that a file skm creates is never encrypted other
//! than as the rule says.

use std::path::{Path, PathBuf};

use serde_norway::Value;

use crate::capped::read_capped;

/// What the config says of a new file.
#[derive(Debug, PartialEq)]
pub(super) enum Rule {
    /// No `.sops.yaml` above the file.
    NoConfig,
    /// The recipients of the matching rule, and the config they come from.
    Age { recipients: String, config: PathBuf },
}

/// Rule keys that only choose the rule.
const SELECTORS: [&str; 2] = ["path_regex", "filename_regex"];

/// The rule of the nearest `.sops.yaml` for a new `file` (absolute).
///
/// # Errors
/// The config cannot be read or parsed, no rule matches, or the matching rule asks for what skm does not do;
/// the message names the config and the rule, never a value (a config holds only public keys).
pub(super) fn rule_for(file: &Path) -> Result<Rule, String> {
    let Some(config) = file
        .ancestors()
        .skip(1)
        .map(|d| d.join(".sops.yaml"))
        .find(|c| c.is_file())
    else {
        return Ok(Rule::NoConfig);
    };
    let shown = config.display();
    let text = match read_capped(&config) {
        Ok(Some(bytes)) => String::from_utf8(bytes.to_vec()).map_err(|_| format!("{shown} is not UTF-8"))?,
        Ok(None) => return Ok(Rule::NoConfig),
        Err(e) => return Err(format!("cannot read {shown}: {e}")),
    };
    let doc: Value = serde_norway::from_str(&text).map_err(|e| {
        let at = e
            .location()
            .map(|l| format!(" at line {}", l.line()))
            .unwrap_or_default();
        format!("{shown} is not valid YAML{at}")
    })?;
    let dir = config.parent().unwrap_or(Path::new("/"));
    // sops matches a rule against the file's path relative to the config's directory.
    let relative = file.strip_prefix(dir).unwrap_or(file).to_string_lossy().into_owned();
    // Without creation rules (only `destination_rules` or `stores`), sops acts as if there were no config.
    let Some(rules) = doc.get("creation_rules").and_then(Value::as_sequence) else {
        return Ok(Rule::NoConfig);
    };
    for (i, rule) in rules.iter().enumerate() {
        let Some(map) = rule.as_mapping() else {
            return Err(format!("{shown}: creation rule {} is not a mapping", i + 1));
        };
        let regex = SELECTORS.iter().find_map(|k| map.get(*k)).and_then(Value::as_str);
        if let Some(pattern) = regex {
            let re = regex::Regex::new(pattern).map_err(|_| {
                format!(
                    "{shown}: creation rule {} has a `path_regex` that does not compile",
                    i + 1
                )
            })?;
            if !re.is_match(&relative) {
                continue;
            }
        }
        let which = format!("{shown}, creation rule {} (the first that matches {relative})", i + 1);
        let others: Vec<&str> = map
            .keys()
            .filter_map(Value::as_str)
            .filter(|k| *k != "age" && !SELECTORS.contains(k))
            .collect();
        if !others.is_empty() {
            return Err(format!(
                "{which} sets {}: skm creates files only from a rule's `age` recipients; create the file with \
                 `sops` first, or give the recipients in SOPS_AGE_RECIPIENTS",
                others.join(", ")
            ));
        }
        let recipients = match map.get("age") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Sequence(list)) => list.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","),
            _ => return Err(format!("{which} has no `age` recipients")),
        };
        if recipients.trim().is_empty() {
            return Err(format!("{which} has no `age` recipients"));
        }
        return Ok(Rule::Age {
            recipients,
            config: config.clone(),
        });
    }
    Err(format!("no creation rule of {shown} matches {relative}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) {
        std::fs::write(dir.join(".sops.yaml"), text).unwrap();
    }

    #[test]
    fn the_first_matching_rule_of_the_nearest_config_applies() {
        let top = tempfile::tempdir().unwrap();
        let nested = top.path().join("secrets/prod");
        std::fs::create_dir_all(&nested).unwrap();
        let file = nested.join("app.yaml");
        assert_eq!(rule_for(&file).unwrap(), Rule::NoConfig);

        write(
            top.path(),
            "creation_rules:\n  - path_regex: prod/.*\\.yaml$\n    age: age1prod, age1ops\n  - age:\n      - age1dev\n",
        );
        let age = |file: &Path| match rule_for(file).unwrap() {
            Rule::Age { recipients, .. } => recipients,
            Rule::NoConfig => panic!("no config found"),
        };
        assert_eq!(age(&file), "age1prod, age1ops");
        assert_eq!(age(&top.path().join("secrets/dev.yaml")), "age1dev");

        // A nearer config wins, and a rule asking for more than age is refused, naming what it asks.
        write(&nested, "creation_rules:\n  - kms: arn:aws:kms:x\n    age: age1x\n");
        let e = rule_for(&file).unwrap_err();
        assert!(
            e.contains("creation rule 1") && e.contains("sets kms") && e.contains("SOPS_AGE_RECIPIENTS"),
            "{e}"
        );
        write(&nested, "creation_rules:\n  - path_regex: nothing\n    age: age1x\n");
        assert!(rule_for(&file).unwrap_err().contains("no creation rule"));
        write(&nested, "stores:\n  yaml:\n    indent: 2\n");
        assert_eq!(
            rule_for(&file).unwrap(),
            Rule::NoConfig,
            "no creation rules: as if no config"
        );
        write(&nested, "creation_rules: [\n");
        assert!(rule_for(&file).unwrap_err().contains("not valid YAML"));
    }
}

//! The backends' names and aliases, stated once for the whole of skm.
//!
//! `#[derive(Secrets)]` checks `#[secret(backend = "...")]` against this table at compile time (a proc macro
//! cannot see the runtime), and the runtime's backend registry takes each descriptor's names from it, so the
//! two cannot disagree. Adding a backend adds one [`Names`] here and one entry in [`ALL`].
//!
//! # Example
//! ```
//! assert_eq!(skm_names::canonical("OpenBao"), Some("vault"));
//! assert_eq!(skm_names::canonical("nope"), None);
//! assert!(skm_names::canonical_names().any(|n| n == "aws"));
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// A backend's canonical name and the other names it answers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Names {
    /// The canonical name: `SKM_BACKEND=<name>`, `--backend <name>`, a field's route.
    pub name: &'static str,
    /// Other accepted names (case-insensitive).
    pub aliases: &'static [&'static str],
}

/// AWS Secrets Manager.
pub const AWS: Names = Names {
    name: "aws",
    aliases: &["aws-secrets-manager", "secretsmanager"],
};

/// HashiCorp Vault / OpenBao KV.
pub const VAULT: Names = Names {
    name: "vault",
    aliases: &["openbao", "bao"],
};

/// Azure Key Vault.
pub const AZURE: Names = Names {
    name: "azure",
    aliases: &["azure-keyvault", "keyvault", "akv"],
};

/// Google Cloud Secret Manager.
pub const GCP: Names = Names {
    name: "gcp",
    aliases: &["google", "gcp-secret-manager"],
};

/// The local encrypted store.
pub const LOCAL: Names = Names {
    name: "local",
    aliases: &["local-store"],
};

/// AWS Systems Manager Parameter Store.
pub const SSM: Names = Names {
    name: "ssm",
    aliases: &["parameter-store", "aws-ssm"],
};

/// SOPS files (YAML, JSON, dotenv) encrypted to age recipients.
pub const SOPS: Names = Names {
    name: "sops",
    aliases: &["sops-age"],
};

/// The OS keyring: the macOS Keychain, the Windows Credential Manager, the Secret Service on Linux.
pub const KEYRING: Names = Names {
    name: "keyring",
    aliases: &["os-keyring", "keychain"],
};

/// Every backend, in the registry's (detection) order.
pub const ALL: [Names; 8] = [AWS, VAULT, AZURE, GCP, LOCAL, SSM, SOPS, KEYRING];

impl Names {
    /// Whether `name` is this backend's name or one of its aliases (case-insensitive, trimmed).
    ///
    /// # Example
    /// ```
    /// assert!(skm_names::VAULT.answers_to(" Bao "));
    /// assert!(!skm_names::VAULT.answers_to("aws"));
    /// ```
    pub fn answers_to(&self, name: &str) -> bool {
        let name = name.trim();
        self.name.eq_ignore_ascii_case(name) || self.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    }
}

/// The canonical name of the backend `name` names (its name or an alias, case-insensitive, trimmed); `None`
/// for an unknown name.
pub fn canonical(name: &str) -> Option<&'static str> {
    ALL.iter().find(|n| n.answers_to(name)).map(|n| n.name)
}

/// The canonical names, in the registry's order.
pub fn canonical_names() -> impl Iterator<Item = &'static str> {
    ALL.iter().map(|n| n.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_aliases_map_to_the_canonical_name() {
        assert_eq!(canonical("OpenBao"), Some("vault"));
        assert_eq!(canonical(" aws "), Some("aws"));
        assert_eq!(canonical("akv"), Some("azure"));
        assert_eq!(canonical("nope"), None);
    }

    #[test]
    fn no_name_or_alias_is_used_twice() {
        let every = ALL.iter().flat_map(|n| core::iter::once(&n.name).chain(n.aliases));
        for (i, a) in every.clone().enumerate() {
            for b in every.clone().skip(i + 1) {
                assert!(!a.eq_ignore_ascii_case(b), "`{a}` is used twice");
            }
        }
    }
}

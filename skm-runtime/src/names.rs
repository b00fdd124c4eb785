//! The backends' names and aliases, stated once: the [registry](crate::backend::registry)'s descriptors take
//! theirs from here, and the plan maps a declared `#[secret(backend = "...")]` to its canonical name here,
//! without importing the backends. A leaf: it imports nothing of this crate.

/// A backend's canonical name and the other names it answers to.
pub(crate) struct Names {
    /// The canonical name: `SKM_BACKEND=<name>`, `--backend <name>`, a field's route.
    pub(crate) name: &'static str,
    /// Other accepted names (case-insensitive).
    pub(crate) aliases: &'static [&'static str],
}

/// AWS Secrets Manager.
pub(crate) const AWS: Names = Names {
    name: "aws",
    aliases: &["aws-secrets-manager", "secretsmanager"],
};

/// HashiCorp Vault / OpenBao KV.
pub(crate) const VAULT: Names = Names {
    name: "vault",
    aliases: &["openbao", "bao"],
};

/// Azure Key Vault.
pub(crate) const AZURE: Names = Names {
    name: "azure",
    aliases: &["azure-keyvault", "keyvault", "akv"],
};

/// Google Cloud Secret Manager.
pub(crate) const GCP: Names = Names {
    name: "gcp",
    aliases: &["google", "gcp-secret-manager"],
};

/// The local encrypted store.
pub(crate) const LOCAL: Names = Names {
    name: "local",
    aliases: &["local-store"],
};

/// Every backend, in the registry's order.
pub(crate) const ALL: [Names; 5] = [AWS, VAULT, AZURE, GCP, LOCAL];

impl Names {
    /// Whether `name` is this backend's name or one of its aliases (case-insensitive, trimmed).
    pub(crate) fn answers_to(&self, name: &str) -> bool {
        let name = name.trim();
        self.name.eq_ignore_ascii_case(name) || self.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    }
}

/// The canonical name of the backend `name` names (its name or an alias, case-insensitive); `None` for an
/// unknown name.
pub(crate) fn canonical(name: &str) -> Option<&'static str> {
    ALL.iter().find(|n| n.answers_to(name)).map(|n| n.name)
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
}

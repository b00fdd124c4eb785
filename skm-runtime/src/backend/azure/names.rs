//! Declared paths → Key Vault secret names.

use std::collections::BTreeMap;

/// The Key Vault name for a declared path: `/` becomes `-` (`auth/jwt` → `auth-jwt`).
///
/// Key Vault names allow `[0-9A-Za-z-]`, 1 to 127 characters, and are case-insensitive.
///
/// # Errors
/// A path with any other character, or an empty or too long name: the message names the path, the
/// character and its position, and says what to write instead.
///
/// # Example
/// ```
/// use skm_runtime::backend::azure::secret_name;
/// assert_eq!(secret_name("auth/jwt").unwrap(), "auth-jwt");
/// assert!(secret_name("db/main_password").unwrap_err().contains("`_`"));
/// ```
pub fn secret_name(path: &str) -> Result<String, String> {
    if let Some((at, c)) = path
        .char_indices()
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '/'))
    {
        return Err(format!(
            "path `{path}` cannot be an Azure Key Vault secret name: `{c}` at byte {at} (Key Vault names allow \
             letters, digits and `-`; skm maps `/` to `-`): rename it, e.g. `{}`",
            path.chars()
                .map(|c| if c.is_ascii_alphanumeric() || c == '/' { c } else { '-' })
                .collect::<String>()
        ));
    }
    let name = path.replace('/', "-");
    if name.is_empty() || name.len() > 127 {
        return Err(format!(
            "path `{path}` cannot be an Azure Key Vault secret name: it maps to {} characters (1 to 127 allowed)",
            name.len()
        ));
    }
    Ok(name)
}

/// Checks that no two of `paths` map to one Key Vault name (names are case-insensitive, and `a/b` and `a-b`
/// both become `a-b`). Returns each failing path with an error naming both.
///
/// # Example
/// ```
/// use skm_runtime::backend::azure::check_names;
/// let errors = check_names(["auth/jwt", "auth-jwt", "db/url"]);
/// assert_eq!(errors.len(), 2);
/// assert!(errors[0].1.contains("`auth/jwt` and `auth-jwt`"));
/// ```
pub fn check_names<'a>(paths: impl IntoIterator<Item = &'a str>) -> Vec<(String, String)> {
    let mut by_name: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let mut errors = Vec::new();
    for path in paths {
        match secret_name(path) {
            Ok(name) => {
                let entry = by_name.entry(name.to_ascii_lowercase()).or_default();
                if !entry.contains(&path) {
                    entry.push(path);
                }
            }
            Err(e) => errors.push((path.to_string(), e)),
        }
    }
    for (name, paths) in by_name {
        if paths.len() > 1 {
            let list = paths.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(" and ");
            for path in &paths {
                errors.push((
                    path.to_string(),
                    format!("paths {list} map to the same Azure Key Vault secret name `{name}`: rename one"),
                ));
            }
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_slashes_and_refuses_other_characters() {
        assert_eq!(secret_name("a/b/c-1").unwrap(), "a-b-c-1");
        for bad in ["a_b", "a.b", "a b", "ä", "a:b"] {
            let e = secret_name(bad).unwrap_err();
            assert!(e.contains(&format!("`{bad}`")), "{e}");
        }
        assert!(secret_name("").is_err());
        assert!(secret_name(&"a".repeat(128)).is_err());
        assert!(secret_name(&"a".repeat(127)).is_ok());
    }

    #[test]
    fn collisions_name_both_paths_case_insensitively() {
        let errors = check_names(["App/Key", "app-key", "other"]);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors.iter().all(|(_, e)| e.contains("`App/Key` and `app-key`")));
        assert!(
            check_names(["a/b", "a/b", "c"]).is_empty(),
            "the same path twice is no collision"
        );
    }
}

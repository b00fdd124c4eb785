//! The matcher of `pattern = "..."` validators ([`Pattern::regex`](crate::spec::Pattern::regex)) and its
//! cache of compiled patterns. A leaf: the declarations point at it, it imports nothing of this crate.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use regex::Regex;

/// [`Pattern::regex`](crate::spec::Pattern::regex)'s matcher: whether `value` matches `pattern`, which is compiled once per process.
///
/// # Errors
/// The pattern does not compile (the `regex` crate's message, which quotes the pattern, never the value).
pub fn regex_matches(pattern: &str, value: &str) -> Result<bool, String> {
    compiled(pattern)
        .map(|re| re.is_match(value))
        .map_err(|e| e.to_string())
}

/// The compiled form of `pattern`, compiled once per process: the cache is bounded by the patterns a program
/// declares (or the manifest the `skm` tool reads).
fn compiled(pattern: &str) -> Result<Regex, regex::Error> {
    static CACHE: OnceLock<Mutex<HashMap<String, Regex>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(re) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(pattern) {
        // A `Regex` clone shares the compiled program; matching happens outside the lock.
        return Ok(re.clone());
    }
    let re = Regex::new(pattern)?;
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(pattern.to_owned(), re.clone());
    Ok(re)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_is_compiled_once() {
        assert_eq!(regex_matches("^[0-9]+$", "123"), Ok(true));
        assert_eq!(regex_matches("^[0-9]+$", "12a"), Ok(false));
        let cache = compiled("^[0-9]+$").unwrap();
        assert_eq!(cache.as_str(), "^[0-9]+$");
    }
}

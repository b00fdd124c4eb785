//! Applying declared [`Validators`] to a value's text: the checks and a cache of compiled patterns.
//!
//! Messages describe what is wrong (too short, a listed placeholder, no match) and never quote the value.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use regex::Regex;

use crate::spec::Validators;

impl Validators {
    /// Checks `value` against every declared validator.
    ///
    /// # Errors
    /// One message listing each failed check, e.g. `is shorter than the minimum of 32 characters`; it never
    /// contains the value, and reads as the predicate of a sentence about the value.
    pub fn check(&self, value: &str) -> Result<(), String> {
        let mut problems = Vec::new();
        if let Some(min) = self.min_len {
            if value.chars().count() < min {
                let unit = if min == 1 { "character" } else { "characters" };
                problems.push(format!("is shorter than the minimum of {min} {unit}"));
            }
        }
        let trimmed = value.trim();
        if self.not.iter().any(|p| p.trim().eq_ignore_ascii_case(trimmed)) {
            problems.push("is a placeholder listed in `not`".to_string());
        }
        if let Some(pattern) = self.pattern {
            let source = pattern.source;
            match (pattern.matches)(source, value) {
                Ok(true) => {}
                Ok(false) => problems.push(format!("does not match `pattern` {source}")),
                // The derive parses the pattern at compile time; only a limit (e.g. its compiled size) is left.
                Err(e) => problems.push(format!("cannot be checked: `pattern` {source} does not compile ({e})")),
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

/// [`Pattern::regex`](crate::spec::Pattern::regex)'s matcher: whether `value` matches `pattern`, which is compiled once per process.
///
/// # Errors
/// The pattern does not compile (the `regex` crate's message, which quotes the pattern, never the value).
pub fn regex_matches(pattern: &'static str, value: &str) -> Result<bool, String> {
    compiled(pattern)
        .map(|re| re.is_match(value))
        .map_err(|e| e.to_string())
}

/// The compiled form of `pattern`, compiled once per process: declarations are `'static`, so the cache is
/// bounded by the patterns a program declares.
fn compiled(pattern: &'static str) -> Result<Regex, regex::Error> {
    static CACHE: OnceLock<Mutex<HashMap<&'static str, Regex>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(re) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(pattern) {
        // A `Regex` clone shares the compiled program; matching happens outside the lock.
        return Ok(re.clone());
    }
    let re = Regex::new(pattern)?;
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(pattern, re.clone());
    Ok(re)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Pattern;

    const ALL: Validators = Validators {
        min_len: Some(6),
        not: &["changeme", " Dummy "],
        pattern: Some(Pattern::regex("^sk-")),
    };

    #[test]
    fn each_check_passes_and_fails_without_quoting_the_value() {
        assert_eq!(ALL.check("sk-long-enough"), Ok(()));
        assert_eq!(
            ALL.check("sk-ab").unwrap_err(),
            "is shorter than the minimum of 6 characters"
        );
        assert_eq!(ALL.check("no-prefix").unwrap_err(), "does not match `pattern` ^sk-");
        let both = ALL.check("DUMMY").unwrap_err();
        assert_eq!(
            both,
            "is shorter than the minimum of 6 characters; is a placeholder listed in `not`; does not match \
             `pattern` ^sk-"
        );
    }

    #[test]
    fn length_counts_characters_not_bytes() {
        let v = Validators {
            min_len: Some(3),
            ..Validators::NONE
        };
        assert!(v.check("éé").is_err());
        assert!(v.check("ééé").is_ok());
    }

    #[test]
    fn a_pattern_is_compiled_once() {
        let v = Validators {
            pattern: Some(Pattern::regex("^[0-9]+$")),
            ..Validators::NONE
        };
        assert!(v.check("123").is_ok());
        assert!(v.check("12a").is_err());
        let cache = compiled("^[0-9]+$").unwrap();
        assert_eq!(cache.as_str(), "^[0-9]+$");
    }
}

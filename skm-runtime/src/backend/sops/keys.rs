//! The age identities that open a SOPS file's data key, found where the sops tool looks for them
//! (getsops/sops `age/keysource.go`): `SOPS_AGE_KEY` (identities separated by whitespace),
//! `SOPS_AGE_KEY_FILE` (one per line), and `sops/age/keys.txt` in the user's config directory when it
//! exists; all of them together, as sops does. Lines that are empty or start with `#` are skipped.
//!
//! Only X25519 identities (`AGE-SECRET-KEY-1...`) are read: not `SOPS_AGE_KEY_CMD`, SSH keys or plugins.

use std::fmt;
use std::io::Read;
use std::path::PathBuf;
use std::str::FromStr;

use age::x25519::Identity;
use zeroize::Zeroizing;

use super::tree::AgeStanza;
use crate::capped::read_capped;

/// Where identities come from. Never shows a key.
#[derive(Clone)]
pub(super) struct KeySources {
    /// `SOPS_AGE_KEY` (or given in code), checked when the backend is built.
    given: Option<Zeroizing<String>>,
    /// `SOPS_AGE_KEY_FILE`: must exist when set.
    file: Option<PathBuf>,
    /// `<config dir>/sops/age/keys.txt`: read when it exists.
    default_file: Option<PathBuf>,
}

impl fmt::Debug for KeySources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl KeySources {
    /// The sources the environment names.
    ///
    /// # Errors
    /// `SOPS_AGE_KEY` is set but holds something other than age X25519 identities.
    pub(super) fn from_lookup(var: &dyn Fn(&str) -> Option<String>) -> Result<Self, String> {
        let set = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let given = set("SOPS_AGE_KEY").map(Zeroizing::new);
        if let Some(text) = &given {
            parse(text, "SOPS_AGE_KEY", true)?;
        }
        Ok(KeySources {
            given,
            file: set("SOPS_AGE_KEY_FILE").map(PathBuf::from),
            default_file: default_key_file(&set),
        })
    }

    /// Identities given in code, replacing `SOPS_AGE_KEY`.
    pub(super) fn give(&mut self, identities: Zeroizing<String>) -> Result<(), String> {
        parse(&identities, "the given age identities", true)?;
        self.given = Some(identities);
        Ok(())
    }

    /// An identity file, replacing `SOPS_AGE_KEY_FILE`.
    pub(super) fn set_file(&mut self, file: PathBuf) {
        self.file = Some(file);
    }

    /// The sources in words, for errors and `skm doctor`.
    pub(super) fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.given.is_some() {
            parts.push("SOPS_AGE_KEY".to_string());
        }
        if let Some(f) = &self.file {
            parts.push(format!("SOPS_AGE_KEY_FILE ({})", f.display()));
        }
        if let Some(f) = &self.default_file {
            parts.push(format!("{} (if it exists)", f.display()));
        }
        if parts.is_empty() {
            "no age identities (set SOPS_AGE_KEY_FILE or SOPS_AGE_KEY)".into()
        } else {
            parts.join(", ")
        }
    }

    /// Every identity the sources hold. Runs on a blocking thread (it reads files).
    ///
    /// # Errors
    /// No identity at all, a `SOPS_AGE_KEY_FILE` that cannot be read, or a line that is not an identity.
    pub(super) fn load(&self) -> Result<Vec<Identity>, String> {
        let mut out = Vec::new();
        if let Some(text) = &self.given {
            out.extend(parse(text, "SOPS_AGE_KEY", true)?);
        }
        if let Some(file) = &self.file {
            match read_capped(file) {
                Ok(Some(bytes)) => out.extend(parse_bytes(&bytes, &format!("SOPS_AGE_KEY_FILE {}", file.display()))?),
                Ok(None) => return Err(format!("SOPS_AGE_KEY_FILE {} does not exist", file.display())),
                Err(e) => return Err(format!("cannot read SOPS_AGE_KEY_FILE {}: {e}", file.display())),
            }
        }
        if let Some(file) = &self.default_file {
            match read_capped(file) {
                Ok(Some(bytes)) => out.extend(parse_bytes(&bytes, &file.display().to_string())?),
                Ok(None) => {}
                Err(e) => return Err(format!("cannot read the age key file {}: {e}", file.display())),
            }
        }
        if out.is_empty() {
            return Err(format!(
                "no age identity to decrypt with: set SOPS_AGE_KEY_FILE (an age key file) or SOPS_AGE_KEY (looked in: {})",
                self.describe()
            ));
        }
        Ok(out)
    }
}

/// sops's default key file: `os.UserConfigDir()/sops/age/keys.txt`, with `XDG_CONFIG_HOME` honoured on
/// macOS too (as sops does).
fn default_key_file(set: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let config = if cfg!(windows) {
        set("APPDATA").map(PathBuf::from)
    } else if cfg!(target_os = "macos") {
        set("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| set("HOME").map(|h| PathBuf::from(h).join("Library/Application Support")))
    } else {
        set("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| set("HOME").map(|h| PathBuf::from(h).join(".config")))
    }?;
    Some(config.join("sops").join("age").join("keys.txt"))
}

fn parse_bytes(bytes: &[u8], source: &str) -> Result<Vec<Identity>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| format!("{source} is not UTF-8 text"))?;
    parse(text, source, false)
}

/// The identities in `text`: one per line, or (`words`) any number per line separated by whitespace.
/// An error names the source and line, never the line's text.
fn parse(text: &str, source: &str, words: bool) -> Result<Vec<Identity>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let items: Vec<&str> = if words {
            line.split_whitespace().collect()
        } else {
            vec![line]
        };
        for item in items {
            let id = Identity::from_str(item).map_err(|_| {
                format!(
                    "line {} of {source} is not an age X25519 identity (AGE-SECRET-KEY-1...); skm reads no other kind",
                    n + 1
                )
            })?;
            out.push(id);
        }
    }
    Ok(out)
}

/// `recipients` (`age1...`, separated by commas or whitespace, as sops's `SOPS_AGE_RECIPIENTS`) parsed.
///
/// # Errors
/// One is not an age X25519 recipient (the message names it: recipients are public).
pub(super) fn parse_recipients(recipients: &str) -> Result<Vec<age::x25519::Recipient>, String> {
    recipients
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|r| !r.is_empty())
        .map(|r| {
            age::x25519::Recipient::from_str(r)
                .map_err(|_| format!("`{r}` is not an age X25519 recipient (age1...); skm encrypts to no other kind"))
        })
        .collect()
}

/// A new file's data key encrypted to each of `recipients`, one armored age file each, as sops writes
/// `sops.age`.
///
/// # Errors
/// The age library refused (no recipients).
pub(super) fn seal_data_key(data_key: &[u8], recipients: &[age::x25519::Recipient]) -> Result<Vec<AgeStanza>, String> {
    use std::io::Write;
    recipients
        .iter()
        .map(|r| {
            let encryptor = age::Encryptor::with_recipients(std::iter::once(r as &dyn age::Recipient))
                .map_err(|e| format!("cannot encrypt the data key: {e}"))?;
            let mut out = Vec::new();
            let armor = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
                .map_err(|e| format!("cannot encrypt the data key: {e}"))?;
            let mut w = encryptor
                .wrap_output(armor)
                .map_err(|e| format!("cannot encrypt the data key: {e}"))?;
            w.write_all(data_key)
                .and_then(|_| w.finish())
                .and_then(|armor| armor.finish())
                .map_err(|e| format!("cannot encrypt the data key: {e}"))?;
            Ok(AgeStanza {
                recipient: r.to_string(),
                enc: String::from_utf8(out).map_err(|_| "the armored data key is not text".to_string())?,
            })
        })
        .collect()
}

/// Why the data key could not be had.
pub(super) enum KeyError {
    /// None of the identities is a recipient of the file.
    NoMatch(String),
    /// An identity matched but the data key did not decrypt, or is not 32 bytes: the metadata was changed.
    Damaged(String),
}

/// The file's data key, from the first `sops.age` entry one of `identities` opens.
pub(super) fn data_key(stanzas: &[AgeStanza], identities: &[Identity]) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let mut damaged = None;
    for stanza in stanzas {
        let reader = age::armor::ArmoredReader::new(stanza.enc.as_bytes());
        let decryptor = match age::Decryptor::new(reader) {
            Ok(d) => d,
            Err(_) => {
                damaged.get_or_insert_with(|| stanza.recipient.clone());
                continue;
            }
        };
        match decryptor.decrypt(identities.iter().map(|i| i as &dyn age::Identity)) {
            Ok(mut plain) => {
                let mut key = Zeroizing::new(Vec::with_capacity(32));
                if plain.read_to_end(&mut key).is_ok() && key.len() == 32 {
                    return Ok(key);
                }
                damaged.get_or_insert_with(|| stanza.recipient.clone());
            }
            Err(age::DecryptError::NoMatchingKeys) => {}
            Err(_) => {
                damaged.get_or_insert_with(|| stanza.recipient.clone());
            }
        }
    }
    if let Some(recipient) = damaged {
        return Err(KeyError::Damaged(format!(
            "the data key encrypted to {recipient} does not decrypt (the file's `sops.age` metadata was changed)"
        )));
    }
    let recipients: Vec<&str> = stanzas.iter().map(|s| s.recipient.as_str()).collect();
    Err(KeyError::NoMatch(format!(
        "none of the age identities is a recipient of it (its recipients: {})",
        recipients.join(", ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use age::secrecy::ExposeSecret;

    #[test]
    fn identities_come_from_every_source_and_errors_show_no_key() {
        let id = Identity::generate();
        let secret = id.to_string().expose_secret().to_string();
        let text = format!("# created\n{secret}\n\n");
        assert_eq!(parse(&text, "x", false).unwrap().len(), 1);
        assert_eq!(parse(&format!("{secret} {secret}"), "x", true).unwrap().len(), 2);
        let err = parse(&format!("{secret}x"), "SOPS_AGE_KEY", true).err().unwrap();
        assert!(err.contains("line 1 of SOPS_AGE_KEY"), "{err}");
        assert!(!err.contains(&secret[16..]), "{err}");

        let sources = KeySources::from_lookup(&|n| (n == "HOME").then(|| "/nowhere".to_string())).unwrap();
        let err = sources.load().err().unwrap();
        assert!(err.contains("SOPS_AGE_KEY_FILE"), "{err}");
        assert!(
            err.contains("/nowhere/.config/sops/age/keys.txt") || cfg!(not(target_os = "linux")),
            "{err}"
        );
    }

    #[test]
    fn the_data_key_opens_with_a_recipient_identity_only() {
        let id = Identity::generate();
        let key = [5u8; 32];
        let enc = {
            let recipient = id.to_public();
            let encryptor =
                age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient)).unwrap();
            let mut out = Vec::new();
            let armor = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor).unwrap();
            let mut w = encryptor.wrap_output(armor).unwrap();
            std::io::Write::write_all(&mut w, &key).unwrap();
            w.finish().unwrap().finish().unwrap();
            String::from_utf8(out).unwrap()
        };
        let stanza = AgeStanza {
            recipient: id.to_public().to_string(),
            enc,
        };
        let got = data_key(std::slice::from_ref(&stanza), &[id]).ok().unwrap();
        assert_eq!(got.as_slice(), &key);
        match data_key(&[stanza], &[Identity::generate()]) {
            Err(KeyError::NoMatch(why)) => assert!(why.contains("age1"), "{why}"),
            _ => panic!("another identity opened the key"),
        }
    }
}

//! Decrypting a SOPS document and checking its MAC, as getsops/sops `aes/cipher.go` and `sops.go` define
//! them:
//! - a value is `ENC[AES256_GCM,data:<b64>,iv:<b64>,tag:<b64>,type:str|int|float|bool|bytes|time]`,
//!   AES-256-GCM with a 32-byte nonce under the file's data key, and its key path as additional data: the
//!   mapping keys from the top joined and ended by `:` (`database:url:`); a sequence adds nothing, so every
//!   item of `hosts` has `hosts:`. An empty string is stored as it is.
//! - the MAC is SHA-512 over the plaintext of every value in document order (`null`s skipped; with
//!   `mac_only_encrypted`, only the encrypted ones, after a fixed 32-byte prefix), as upper-case hex, stored
//!   encrypted as a `str` value whose additional data is `lastmodified` (RFC 3339).
//! - which values are encrypted follows the file's one rule: `unencrypted_suffix` (default `_unencrypted`),
//!   `encrypted_suffix`, `unencrypted_regex` or `encrypted_regex`, tested on each key of the path.

use aes_gcm::aead::consts::U32;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::aes::Aes256;
use aes_gcm::AesGcm;
use base64::Engine as _;
use sha2::{Digest, Sha512};
use zeroize::Zeroizing;

use super::tree::{Node, Rules};

/// sops's AES-GCM: AES-256 with 32-byte nonces.
type Cipher = AesGcm<Aes256, U32>;

/// The 32 bytes sops hashes first when the MAC covers only encrypted values (`MACOnlyEncryptedInitialization`).
const MAC_ONLY_ENCRYPTED_INIT: [u8; 32] = [
    0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b, 0x0b, 0x97, 0x5b,
    0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69,
];

/// Why a document did not decrypt. Never holds a value.
#[derive(Debug)]
pub(super) enum CipherError {
    /// A value or the MAC failed authentication, a value that should be encrypted is not, or the MAC does
    /// not match: the file was changed by someone without the data key.
    Integrity(String),
    /// The file uses what skm does not read (a comment-based rule, a bad regex).
    Unsupported(String),
    /// A value decrypted but cannot be a text value (bytes that are not UTF-8).
    Invalid(String),
}

/// The decrypted values, flattened: `database.url` for a nested key, `hosts.0` for a sequence item, each
/// value as text (`true`/`false` for booleans). Zeroized when dropped.
pub(super) type Flat = Vec<(String, Zeroizing<String>)>;

/// The compiled form of the file's [`Rules`].
enum Rule {
    UnencryptedSuffix(String),
    EncryptedSuffix(String),
    UnencryptedRegex(regex::Regex),
    EncryptedRegex(regex::Regex),
}

impl Rule {
    fn of(rules: &Rules) -> Result<Rule, CipherError> {
        if rules.comment_regex {
            return Err(CipherError::Unsupported(
                "it uses `unencrypted_comment_regex` or `encrypted_comment_regex`, which depend on comments that \
                 skm does not read: use a key-based rule (`encrypted_regex`, `unencrypted_suffix`, ...)"
                    .into(),
            ));
        }
        let regex = |r: &str, name: &str| {
            regex::Regex::new(r)
                .map_err(|_| CipherError::Unsupported(format!("its `{name}` is not a regex skm can read")))
        };
        let set = [
            rules.unencrypted_suffix.is_some(),
            rules.encrypted_suffix.is_some(),
            rules.unencrypted_regex.is_some(),
            rules.encrypted_regex.is_some(),
        ];
        if set.iter().filter(|s| **s).count() > 1 {
            return Err(CipherError::Unsupported(
                "its metadata sets more than one of the encryption rules, which sops refuses too".into(),
            ));
        }
        Ok(if let Some(s) = &rules.encrypted_suffix {
            Rule::EncryptedSuffix(s.clone())
        } else if let Some(r) = &rules.unencrypted_regex {
            Rule::UnencryptedRegex(regex(r, "unencrypted_regex")?)
        } else if let Some(r) = &rules.encrypted_regex {
            Rule::EncryptedRegex(regex(r, "encrypted_regex")?)
        } else {
            Rule::UnencryptedSuffix(
                rules
                    .unencrypted_suffix
                    .clone()
                    .unwrap_or_else(|| "_unencrypted".into()),
            )
        })
    }

    /// Whether sops encrypted the value at `path` (`shouldBeEncrypted`).
    fn encrypts(&self, path: &[&str]) -> bool {
        match self {
            Rule::UnencryptedSuffix(s) => !path.iter().any(|p| p.ends_with(s.as_str())),
            Rule::EncryptedSuffix(s) => path.iter().any(|p| p.ends_with(s.as_str())),
            Rule::UnencryptedRegex(r) => !path.iter().any(|p| r.is_match(p)),
            Rule::EncryptedRegex(r) => path.iter().any(|p| r.is_match(p)),
        }
    }
}

/// One walk over the document: decrypts, hashes and flattens.
struct Walk<'a> {
    cipher: Cipher,
    rule: Rule,
    mac_only_encrypted: bool,
    hash: Sha512,
    out: Flat,
    path: Vec<&'a str>,
    /// For a write: the encrypted values met, so that unchanged ones keep their ciphertext.
    stash: Option<Stash>,
}

/// The encrypted values of a file by key path and plaintext, as sops's cipher keeps them: a write that
/// does not change a value writes its old ciphertext again, so the file's diff shows only what changed.
#[derive(Default)]
pub(super) struct Stash(Vec<Stashed>);

struct Stashed {
    aad: String,
    plain: Zeroizing<Vec<u8>>,
    enc: String,
}

impl Stash {
    fn find(&self, aad: &str, plain: &[u8]) -> Option<&str> {
        self.0
            .iter()
            .find(|s| s.aad == aad && s.plain.as_slice() == plain)
            .map(|s| s.enc.as_str())
    }
}

/// A document's values decrypted, for a write; zeroized when dropped.
#[derive(Default)]
pub(super) struct PlainTree(pub(super) Vec<(String, Node)>);

impl Drop for PlainTree {
    fn drop(&mut self) {
        fn wipe(node: &mut Node) {
            match node {
                Node::Str(s) => zeroize::Zeroize::zeroize(s),
                Node::Map(entries) => entries.iter_mut().for_each(|(_, v)| wipe(v)),
                Node::List(items) => items.iter_mut().for_each(wipe),
                _ => {}
            }
        }
        self.0.iter_mut().for_each(|(_, v)| wipe(v));
    }
}

/// Decrypts `values` with `data_key`, checks the MAC (`mac`, encrypted with `lastmodified` as additional
/// data) and returns the values flattened.
///
/// # Errors
/// [`CipherError::Integrity`] when any value or the MAC fails to authenticate or the MAC differs.
pub(super) fn decrypt(
    values: &[(String, Node)],
    rules: &Rules,
    mac: &str,
    lastmodified: &str,
    data_key: &[u8],
) -> Result<Flat, CipherError> {
    run(values, rules, mac, lastmodified, data_key, false).map(|(flat, _)| flat)
}

/// As [`decrypt`], for a write: the values decrypted as a tree, and the stash of their ciphertexts.
pub(super) fn decrypt_for_edit(
    values: &[(String, Node)],
    rules: &Rules,
    mac: &str,
    lastmodified: &str,
    data_key: &[u8],
) -> Result<(PlainTree, Stash), CipherError> {
    run(values, rules, mac, lastmodified, data_key, true).map(|(_, edit)| edit.unwrap_or_default())
}

type Edit = (PlainTree, Stash);

fn run(
    values: &[(String, Node)],
    rules: &Rules,
    mac: &str,
    lastmodified: &str,
    data_key: &[u8],
    edit: bool,
) -> Result<(Flat, Option<Edit>), CipherError> {
    let cipher =
        Cipher::new_from_slice(data_key).map_err(|_| CipherError::Integrity("its data key is not 32 bytes".into()))?;
    let mut walk = Walk {
        cipher,
        rule: Rule::of(rules)?,
        mac_only_encrypted: rules.mac_only_encrypted,
        hash: Sha512::new(),
        out: Vec::new(),
        path: Vec::new(),
        stash: edit.then(Stash::default),
    };
    if walk.mac_only_encrypted {
        walk.hash.update(MAC_ONLY_ENCRYPTED_INIT);
    }
    let mut tree = PlainTree(Vec::new());
    for (key, value) in values {
        walk.path.push(key);
        let plain = walk.node(value, key.clone())?;
        walk.path.pop();
        if edit {
            tree.0.push((key.clone(), plain));
        }
    }
    let computed = hex_upper(&walk.hash.finalize_reset());
    let stored = match open(&walk.cipher, mac, &normalize_rfc3339(lastmodified)) {
        Ok((bytes, _)) => bytes,
        Err(_) if mac.is_empty() => return Err(CipherError::Integrity("it has no MAC".into())),
        Err(_) => {
            return Err(CipherError::Integrity(
                "its MAC does not decrypt (the MAC or `lastmodified` was changed)".into(),
            ))
        }
    };
    use subtle::ConstantTimeEq;
    if bool::from(stored.as_slice().ct_eq(computed.as_bytes())) {
        let edit = walk.stash.take().map(|stash| (tree, stash));
        Ok((walk.out, edit))
    } else {
        Err(CipherError::Integrity(
            "the MAC does not match its values (a value was changed, added, removed or reordered)".into(),
        ))
    }
}

/// Encrypts a plaintext tree as sops does, under `data_key` and the file's `rules`: each value with its key
/// path as additional data and a new random nonce, unless the stash holds it unchanged; then the MAC,
/// encrypted with `lastmodified`. Returns the encrypted values and the encrypted MAC.
///
/// # Errors
/// [`CipherError::Unsupported`] for rules skm does not apply; [`CipherError::Invalid`] when no randomness.
pub(super) fn encrypt(
    plain: &[(String, Node)],
    rules: &Rules,
    data_key: &[u8],
    stash: &Stash,
    lastmodified: &str,
) -> Result<(Vec<(String, Node)>, String), CipherError> {
    let cipher =
        Cipher::new_from_slice(data_key).map_err(|_| CipherError::Invalid("the data key is not 32 bytes".into()))?;
    let mut seal = Sealer {
        cipher,
        rule: Rule::of(rules)?,
        mac_only_encrypted: rules.mac_only_encrypted,
        hash: Sha512::new(),
        stash,
    };
    if seal.mac_only_encrypted {
        seal.hash.update(MAC_ONLY_ENCRYPTED_INIT);
    }
    let mut path = Vec::new();
    let mut out = Vec::with_capacity(plain.len());
    for (key, value) in plain {
        path.push(key.as_str());
        out.push((key.clone(), seal.node(value, &mut path)?));
        path.pop();
    }
    let mac = hex_upper(&seal.hash.finalize_reset());
    let mac = seal_value(&seal.cipher, mac.as_bytes(), lastmodified, "str", random_nonce()?);
    Ok((out, mac))
}

struct Sealer<'s> {
    cipher: Cipher,
    rule: Rule,
    mac_only_encrypted: bool,
    hash: Sha512,
    stash: &'s Stash,
}

impl Sealer<'_> {
    fn node<'a>(&mut self, node: &'a Node, path: &mut Vec<&'a str>) -> Result<Node, CipherError> {
        Ok(match node {
            Node::Map(entries) => {
                let mut out = Vec::with_capacity(entries.len());
                for (k, v) in entries {
                    path.push(k);
                    out.push((k.clone(), self.node(v, path)?));
                    path.pop();
                }
                Node::Map(out)
            }
            Node::List(items) => Node::List(items.iter().map(|i| self.node(i, path)).collect::<Result<_, _>>()?),
            Node::Null => Node::Null,
            scalar => {
                let encrypted = self.rule.encrypts(path);
                // What sops hashes and encrypts: `ToBytes` of the typed value.
                let (bytes, _) = plain_leaf(scalar);
                if !self.mac_only_encrypted || encrypted {
                    self.hash.update(bytes.as_slice());
                }
                if !encrypted {
                    scalar.clone()
                } else if matches!(scalar, Node::Str(s) if s.is_empty()) {
                    Node::Str(String::new())
                } else {
                    let aad = format!("{}:", path.join(":"));
                    match self.stash.find(&aad, &bytes) {
                        Some(enc) => Node::Str(enc.to_string()),
                        None => {
                            let kind = match scalar {
                                Node::Int(_) => "int",
                                Node::Float(_) => "float",
                                Node::Bool(_) => "bool",
                                _ => "str",
                            };
                            Node::Str(seal_value(&self.cipher, &bytes, &aad, kind, random_nonce()?))
                        }
                    }
                }
            }
        })
    }
}

fn random_nonce() -> Result<[u8; 32], CipherError> {
    let mut nonce = [0u8; 32];
    getrandom::fill(&mut nonce).map_err(|e| CipherError::Invalid(format!("cannot generate a nonce: {e}")))?;
    Ok(nonce)
}

/// One value in sops's format: AES-256-GCM of `plain` with `aad`, under a 32-byte `nonce`.
fn seal_value(cipher: &Cipher, plain: &[u8], aad: &str, kind: &str, nonce: [u8; 32]) -> String {
    let nonce = aes_gcm::Nonce::<U32>::from(nonce);
    // Encryption of a buffer in memory cannot fail; an empty string would be sops's way of saying nothing.
    let out = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plain,
                aad: aad.as_bytes(),
            },
        )
        .unwrap_or_default();
    let (data, tag) = out.split_at(out.len().saturating_sub(16));
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    format!(
        "ENC[AES256_GCM,data:{},iv:{},tag:{},type:{kind}]",
        b64(data),
        b64(nonce.as_slice()),
        b64(tag)
    )
}

impl<'a> Walk<'a> {
    fn node(&mut self, node: &'a Node, flat_key: String) -> Result<Node, CipherError> {
        let edit = self.stash.is_some();
        match node {
            Node::Map(entries) => {
                let mut out = Vec::new();
                for (key, value) in entries {
                    self.path.push(key);
                    let plain = self.node(value, format!("{flat_key}.{key}"))?;
                    self.path.pop();
                    if edit {
                        out.push((key.clone(), plain));
                    }
                }
                Ok(Node::Map(out))
            }
            // A sequence adds nothing to the key path (sops's `walkSlice`), only to the flattened key.
            Node::List(items) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    let plain = self.node(item, format!("{flat_key}.{i}"))?;
                    if edit {
                        out.push(plain);
                    }
                }
                Ok(Node::List(out))
            }
            Node::Null => Ok(Node::Null),
            scalar => self.leaf(scalar, flat_key),
        }
    }

    /// Decrypts (or reads) one value: hashes it, adds its text to the output, and, for a write, returns it
    /// typed and remembers its ciphertext.
    fn leaf(&mut self, node: &Node, flat_key: String) -> Result<Node, CipherError> {
        let encrypted = self.rule.encrypts(&self.path);
        let mut kind = String::new();
        let (mac_bytes, text) = if encrypted {
            let Node::Str(enc) = node else {
                return Err(self.integrity("is not encrypted, but the file's rules say it must be"));
            };
            if enc.is_empty() {
                // sops stores an empty string as it is.
                (Zeroizing::new(Vec::new()), Zeroizing::new(String::new()))
            } else {
                let aad = format!("{}:", self.path.join(":"));
                let (plain, k) = open(&self.cipher, enc, &aad).map_err(|why| self.integrity(why))?;
                kind = k;
                let typed = typed(plain, &kind).map_err(|why| match why {
                    Typed::Invalid(w) => CipherError::Invalid(format!("the value at `{}` {w}", self.key_path())),
                    Typed::Integrity(w) => self.integrity(w),
                })?;
                if let Some(stash) = &mut self.stash {
                    stash.0.push(Stashed {
                        aad,
                        plain: typed.0.clone(),
                        enc: enc.clone(),
                    });
                }
                typed
            }
        } else {
            plain_leaf(node)
        };
        if !self.mac_only_encrypted || encrypted {
            self.hash.update(mac_bytes.as_slice());
        }
        let plain = match (self.stash.is_some(), encrypted) {
            (false, _) => Node::Null,
            (true, false) => node.clone(),
            (true, true) => match kind.as_str() {
                "int" => text.parse().map_or_else(|_| Node::Str(text.to_string()), Node::Int),
                "float" => text.parse().map_or_else(|_| Node::Str(text.to_string()), Node::Float),
                "bool" => Node::Bool(text.as_str() == "true"),
                _ => Node::Str(text.to_string()),
            },
        };
        self.out.push((flat_key, text));
        Ok(plain)
    }

    fn key_path(&self) -> String {
        self.path.join(".")
    }

    fn integrity(&self, why: &str) -> CipherError {
        CipherError::Integrity(format!("the value at `{}` {why}", self.key_path()))
    }
}

/// Why a decrypted value cannot be read as its declared type.
enum Typed {
    Integrity(&'static str),
    Invalid(&'static str),
}

/// A decrypted value's MAC bytes (sops's `ToBytes` of the typed value) and its text.
fn typed(plain: Zeroizing<Vec<u8>>, kind: &str) -> Result<(Zeroizing<Vec<u8>>, Zeroizing<String>), Typed> {
    let text = |bytes: &[u8]| {
        std::str::from_utf8(bytes)
            .map(|s| Zeroizing::new(s.to_string()))
            .map_err(|_| Typed::Invalid("holds bytes that are not UTF-8 text"))
    };
    match kind {
        "str" | "float" | "time" | "bytes" => {
            let t = text(&plain)?;
            Ok((plain, t))
        }
        // Go's strconv.Atoi then Itoa: the MAC hashes the canonical decimal.
        "int" => {
            let t = text(&plain)?;
            let n: i64 = t
                .parse()
                .map_err(|_| Typed::Integrity("is typed int but is not an integer"))?;
            let canonical = Zeroizing::new(n.to_string());
            Ok((Zeroizing::new(canonical.as_bytes().to_vec()), canonical))
        }
        // Go's strconv.ParseBool; the MAC hashes `True`/`False` (sops's Python heritage).
        "bool" => {
            let b = match plain.as_slice() {
                b"1" | b"t" | b"T" | b"TRUE" | b"true" | b"True" => true,
                b"0" | b"f" | b"F" | b"FALSE" | b"false" | b"False" => false,
                _ => return Err(Typed::Integrity("is typed bool but is not a boolean")),
            };
            Ok(bool_leaf(b))
        }
        _ => Err(Typed::Integrity("has a type sops does not write")),
    }
}

fn bool_leaf(b: bool) -> (Zeroizing<Vec<u8>>, Zeroizing<String>) {
    let (mac, text) = if b { ("True", "true") } else { ("False", "false") };
    (
        Zeroizing::new(mac.as_bytes().to_vec()),
        Zeroizing::new(text.to_string()),
    )
}

/// A value sops left unencrypted: its MAC bytes (`ToBytes`) and its text.
fn plain_leaf(node: &Node) -> (Zeroizing<Vec<u8>>, Zeroizing<String>) {
    let text = match node {
        Node::Bool(b) => return bool_leaf(*b),
        Node::Str(s) => s.clone(),
        Node::Int(n) => n.to_string(),
        Node::Float(f) => go_float(*f),
        Node::Map(_) | Node::List(_) | Node::Null => String::new(),
    };
    (Zeroizing::new(text.as_bytes().to_vec()), Zeroizing::new(text))
}

/// Go's `strconv.FormatFloat(f, 'f', -1, 64)`: the shortest decimal that reads back, never an exponent;
/// Rust's `Display` for `f64` is the same except for infinities.
fn go_float(f: f64) -> String {
    if f.is_infinite() {
        if f > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        f.to_string()
    }
}

/// Decrypts one `ENC[...]` value with additional data `aad`: its plaintext and type.
fn open(cipher: &Cipher, value: &str, aad: &str) -> Result<(Zeroizing<Vec<u8>>, String), &'static str> {
    let body = value
        .strip_prefix("ENC[AES256_GCM,")
        .and_then(|v| v.strip_suffix(']'))
        .ok_or("is not in sops's encrypted format")?;
    let mut parts = body.split(',');
    let mut field = |name: &str| {
        parts
            .next()
            .and_then(|p| p.strip_prefix(name))
            .ok_or("is not in sops's encrypted format")
    };
    let (data, iv, tag, kind) = (field("data:")?, field("iv:")?, field("tag:")?, field("type:")?);
    let b64 = |s: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(|_| "is not in sops's encrypted format (bad base64)")
    };
    let (mut data, iv, tag) = (b64(data)?, b64(iv)?, b64(tag)?);
    if iv.len() != 32 || tag.len() != 16 {
        return Err("is not in sops's encrypted format (nonce or tag size)");
    }
    data.extend_from_slice(&tag);
    let nonce = aes_gcm::Nonce::<U32>::try_from(iv.as_slice()).map_err(|_| "has a bad nonce")?;
    let plain = cipher
        .decrypt(
            &nonce,
            Payload {
                msg: &data,
                aad: aad.as_bytes(),
            },
        )
        .map_err(|_| "fails authentication (it was changed, or moved to another key)")?;
    Ok((Zeroizing::new(plain), kind.to_string()))
}

/// `lastmodified` as Go's `time.Parse(RFC3339)` then `Format(RFC3339)` writes it: without fractional
/// seconds, and `Z` for a zero offset.
fn normalize_rfc3339(s: &str) -> String {
    let s = s.trim();
    let Some(t) = s.find(['T', 't']) else {
        return s.to_string();
    };
    let (date, time) = s.split_at(t + 1);
    let zone_at = time.find(['Z', 'z', '+', '-']).unwrap_or(time.len());
    let (clock, zone) = time.split_at(zone_at);
    let clock = clock.split('.').next().unwrap_or(clock);
    let zone = match zone {
        "z" | "Z" | "+00:00" | "-00:00" => "Z",
        z => z,
    };
    format!("{date}{clock}{zone}")
}

fn hex_upper(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02X}");
        s
    })
}

/// One value sealed under `key`, for the tests.
#[cfg(test)]
pub(super) fn seal(key: &[u8], plain: &[u8], aad: &str, kind: &str, nonce: [u8; 32]) -> String {
    seal_value(&Cipher::new_from_slice(key).unwrap(), plain, aad, kind, nonce)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7; 32];

    fn doc(values: Vec<(&str, Node)>) -> Vec<(String, Node)> {
        values.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    fn mac_of(parts: &[&[u8]], lastmodified: &str) -> String {
        let mut h = Sha512::new();
        for p in parts {
            h.update(p);
        }
        seal(&KEY, hex_upper(&h.finalize()).as_bytes(), lastmodified, "str", [9; 32])
    }

    #[test]
    fn values_decrypt_with_their_key_path_and_the_mac_verifies() {
        let values = doc(vec![
            (
                "db",
                Node::Map(vec![(
                    "url".into(),
                    Node::Str(seal(&KEY, b"postgres://x", "db:url:", "str", [1; 32])),
                )]),
            ),
            (
                "hosts",
                Node::List(vec![
                    Node::Str(seal(&KEY, b"a", "hosts:", "str", [2; 32])),
                    Node::Str(seal(&KEY, b"True", "hosts:", "bool", [3; 32])),
                ]),
            ),
            ("port_unencrypted", Node::Int(5432)),
            ("empty", Node::Str(String::new())),
            ("nothing", Node::Null),
        ]);
        let lm = "2026-12-05T11:00:00Z";
        let mac = mac_of(&[b"postgres://x", b"a", b"True", b"5432"], lm);
        let flat = decrypt(&values, &Rules::default(), &mac, lm, &KEY).unwrap();
        let got: Vec<(&str, &str)> = flat.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            [
                ("db.url", "postgres://x"),
                ("hosts.0", "a"),
                ("hosts.1", "true"),
                ("port_unencrypted", "5432"),
                ("empty", "")
            ]
        );
    }

    #[test]
    fn a_changed_value_or_mac_is_an_integrity_error_without_the_value() {
        let lm = "2026-12-05T11:00:00Z";
        let good = seal(&KEY, b"sentinel-value", "a:", "str", [1; 32]);
        let mac = mac_of(&[b"sentinel-value"], lm);
        assert!(decrypt(
            &doc(vec![("a", Node::Str(good.clone()))]),
            &Rules::default(),
            &mac,
            lm,
            &KEY
        )
        .is_ok());

        // Moved to another key: the additional data differs.
        let moved = doc(vec![("b", Node::Str(good.clone()))]);
        let err = decrypt(&moved, &Rules::default(), &mac, lm, &KEY).unwrap_err();
        assert!(
            matches!(&err, CipherError::Integrity(w) if w.contains("`b`")),
            "{err:?}"
        );

        // Replaced by plaintext.
        let plain = doc(vec![("a", Node::Str("other".into()))]);
        assert!(matches!(
            decrypt(&plain, &Rules::default(), &mac, lm, &KEY),
            Err(CipherError::Integrity(_))
        ));

        // Another MAC, or another lastmodified.
        let other_mac = mac_of(&[b"x"], lm);
        let one = doc(vec![("a", Node::Str(good))]);
        let err = decrypt(&one, &Rules::default(), &other_mac, lm, &KEY).unwrap_err();
        assert!(
            matches!(&err, CipherError::Integrity(w) if w.contains("MAC does not match")),
            "{err:?}"
        );
        let err = decrypt(&one, &Rules::default(), &mac, "2026-12-05T11:00:01Z", &KEY).unwrap_err();
        assert!(
            matches!(&err, CipherError::Integrity(w) if w.contains("MAC does not decrypt")),
            "{err:?}"
        );
        assert!(!format!("{err:?}").contains("sentinel"));
    }

    #[test]
    fn rules_choose_what_is_encrypted_and_mac_only_encrypted_skips_the_rest() {
        let lm = "2026-12-05T11:00:00Z";
        let rules = Rules {
            encrypted_regex: Some("^(data|secret)$".into()),
            mac_only_encrypted: true,
            ..Rules::default()
        };
        let values = doc(vec![
            ("name", Node::Str("plain".into())),
            (
                "data",
                Node::Map(vec![(
                    "k".into(),
                    Node::Str(seal(&KEY, b"v", "data:k:", "str", [4; 32])),
                )]),
            ),
        ]);
        let mac = mac_of(&[&MAC_ONLY_ENCRYPTED_INIT, b"v"], lm);
        let flat = decrypt(&values, &rules, &mac, lm, &KEY).unwrap();
        assert_eq!(flat.len(), 2);
        assert_eq!(flat[1].0, "data.k");
    }

    #[test]
    fn an_edit_keeps_unchanged_ciphertexts_and_a_new_mac_verifies() {
        let lm = "2026-12-05T11:00:00Z";
        let a = seal(&KEY, b"one", "a:", "str", [1; 32]);
        let values = doc(vec![
            ("a", Node::Str(a.clone())),
            ("n", Node::Str(seal(&KEY, b"7", "n:", "int", [2; 32]))),
            ("b_unencrypted", Node::Bool(true)),
        ]);
        let mac = mac_of(&[b"one", b"7", b"True"], lm);
        let (mut plain, stash) = decrypt_for_edit(&values, &Rules::default(), &mac, lm, &KEY).unwrap();
        assert_eq!(plain.0[1].1, Node::Int(7));
        plain.0[1].1 = Node::Int(8);
        plain.0.push(("new".into(), Node::Str("fresh".into())));
        let lm2 = "2026-12-05T12:00:00Z";
        let (sealed, mac2) = encrypt(&plain.0, &Rules::default(), &KEY, &stash, lm2).unwrap();
        assert_eq!(sealed[0].1, Node::Str(a), "an unchanged value keeps its ciphertext");
        assert!(matches!(&sealed[1].1, Node::Str(s) if s.ends_with("type:int]")));
        assert_eq!(sealed[2].1, Node::Bool(true));
        let flat = decrypt(&sealed, &Rules::default(), &mac2, lm2, &KEY).unwrap();
        let got: Vec<(&str, &str)> = flat.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            got,
            [("a", "one"), ("n", "8"), ("b_unencrypted", "true"), ("new", "fresh")]
        );
    }

    #[test]
    fn lastmodified_is_normalized_as_go_formats_it() {
        assert_eq!(normalize_rfc3339("2026-12-05T11:00:00Z"), "2026-12-05T11:00:00Z");
        assert_eq!(normalize_rfc3339("2026-12-05T11:00:00.123Z"), "2026-12-05T11:00:00Z");
        assert_eq!(normalize_rfc3339("2026-12-05T11:00:00+00:00"), "2026-12-05T11:00:00Z");
        assert_eq!(
            normalize_rfc3339("2026-12-05T11:00:00+02:00"),
            "2026-12-05T11:00:00+02:00"
        );
    }

    #[test]
    fn go_floats() {
        assert_eq!(go_float(1.5), "1.5");
        assert_eq!(go_float(1.0), "1");
        assert_eq!(go_float(1e21), "1000000000000000000000");
        assert_eq!(go_float(f64::INFINITY), "+Inf");
    }
}

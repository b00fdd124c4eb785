//! Writing a SOPS file as `sops edit` would: decrypt it (MAC checked), change the values, encrypt them again
//! under the same data key (so its recipients stay as they are), recompute the MAC with a new
//! `lastmodified`, and replace the file atomically. A value that did not change keeps its ciphertext, as
//! sops keeps it, so the file's diff shows only the keys that changed.
//!
//! A new file gets a new data key encrypted to the recipients of `SOPS_AGE_RECIPIENTS`. Writers in skm take
//! an exclusive lock on the directory for the read-merge-write, so concurrent key writes lose nothing.

use std::io::Write;
use std::path::Path;

use zeroize::Zeroizing;

use super::cipher::{self, CipherError, PlainTree, Stash};
use super::tree::{self, AgeStanza, Entries, Format, Node, RawMetadata, Rules};
use super::{config, keys};
use super::{Fail, Inner};
use crate::capped::read_capped;

/// The sops format version skm writes into a new file: the release its files were tested against.
const SOPS_VERSION: &str = "3.11.0";

/// What a write changes.
pub(super) enum Change {
    /// The file's values become exactly these flattened keys (a put of a whole value): keys of the file
    /// that are not among them are removed, the others keep their place and type.
    Replace(Vec<(String, Zeroizing<String>)>),
    /// One flattened key set, added at the end when new (a key write).
    Set(String, Zeroizing<String>),
}

impl Inner {
    /// Applies `change` to the file `path` names (creating `<path>.yaml`, or `path` when it has an
    /// extension, if none exists). Returns the new `lastmodified`, the file's version. Blocking.
    pub(super) fn write(&self, path: &str, change: Change, create_only: bool) -> Result<String, Fail> {
        let candidates = self.candidates(path)?;
        // skm's writers of one directory take turns (an exclusive lock on the directory itself, so no lock file
        // lands in the repository): a key write is a read-merge-write. `sops edit` takes no lock.
        #[cfg(unix)]
        let mut lock = {
            std::fs::create_dir_all(&self.dir)
                .and_then(|_| std::fs::File::open(&self.dir))
                .map(fd_lock::RwLock::new)
                .map_err(|e| Fail::Unavailable(format!("cannot lock the SOPS directory {}: {e}", self.dir.display())))?
        };
        #[cfg(unix)]
        let _guard = lock
            .write()
            .map_err(|e| Fail::Unavailable(format!("cannot lock the SOPS directory {}: {e}", self.dir.display())))?;
        let mut existing = None;
        for name in &candidates {
            let file = self.dir.join(name);
            match read_capped(&file) {
                Ok(Some(bytes)) => {
                    existing = Some((name.clone(), bytes));
                    break;
                }
                Ok(None) => {}
                Err(e) => return Err(Fail::file(&file, e)),
            }
        }
        let lastmodified = now_rfc3339();
        let (name, text) = match existing {
            Some((name, bytes)) => {
                let file = self.dir.join(&name);
                if create_only {
                    return Err(Fail::Exists(format!(
                        "SOPS file {} exists: nothing written (a create-only write never overwrites)",
                        file.display()
                    )));
                }
                let text = self.edit(&file, &name, &bytes, change, &lastmodified)?;
                (name, text)
            }
            None => {
                let name = candidates[0].clone();
                let text = self.create(&self.dir.join(&name), &name, change, &lastmodified)?;
                (name, text)
            }
        };
        replace(&self.dir.join(&name), text.as_bytes())?;
        Ok(lastmodified)
    }

    /// The new text of an existing file.
    fn edit(&self, file: &Path, name: &str, bytes: &[u8], change: Change, lastmodified: &str) -> Result<String, Fail> {
        let shown = file.display();
        let format = Format::of(name).unwrap_or(Format::Yaml);
        let text =
            std::str::from_utf8(bytes).map_err(|_| Fail::Invalid(format!("SOPS file {shown} is not UTF-8 text")))?;
        let doc = tree::parse(text, format).map_err(|why| Fail::Invalid(format!("SOPS file {shown}: {why}")))?;
        let identities = self.keys.load();
        let data_key = self.data_key(file, &doc.metadata, &identities)?;
        let meta = &doc.metadata;
        let (mut plain, stash) =
            cipher::decrypt_for_edit(&doc.values, &meta.rules, &meta.mac, &meta.lastmodified, &data_key)
                .map_err(|e| cipher_fail(file, e))?;
        apply(format, &mut plain, change).map_err(|why| Fail::Invalid(format!("SOPS file {shown}: {why}")))?;
        let (values, mac) = cipher::encrypt(&plain.0, &meta.rules, &data_key, &stash, lastmodified)
            .map_err(|e| cipher_fail(file, e))?;
        let mut raw = doc.raw;
        match &mut raw {
            RawMetadata::Tree(entries) => {
                set_entry(entries, "lastmodified", Node::Str(lastmodified.to_string()));
                set_entry(entries, "mac", Node::Str(mac));
            }
            RawMetadata::Dotenv(entries) => {
                set_line(entries, "lastmodified", lastmodified.to_string());
                set_line(entries, "mac", mac);
            }
        }
        emit(format, &values, &raw).map_err(|why| Fail::Invalid(format!("cannot write SOPS file {shown}: {why}")))
    }

    /// The text of a new file, encrypted to `SOPS_AGE_RECIPIENTS`, else to the recipients of the nearest
    /// `.sops.yaml`'s creation rule for it (as `sops encrypt` chooses them: `--age` first).
    fn create(&self, file: &Path, name: &str, change: Change, lastmodified: &str) -> Result<String, Fail> {
        let shown = file.display();
        let recipients = match &self.recipients {
            Some(given) => keys::parse_recipients(given).map_err(Fail::Invalid)?,
            None => match config::rule_for(file) {
                Ok(config::Rule::Age { recipients, config }) => keys::parse_recipients(&recipients)
                    .map_err(|why| Fail::Invalid(format!("{}: {why}", config.display())))?,
                Ok(config::Rule::NoConfig) => {
                    return Err(Fail::Invalid(format!(
                        "SOPS file {shown} does not exist, and skm needs SOPS_AGE_RECIPIENTS (age1..., \
                         comma-separated) or a `.sops.yaml` creation rule with `age` recipients to create it: set \
                         one, or create the file with `sops` first"
                    )))
                }
                Err(why) => return Err(Fail::Invalid(format!("cannot create SOPS file {shown}: {why}"))),
            },
        };
        let format = Format::of(name).unwrap_or(Format::Yaml);
        let mut data_key = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut data_key[..])
            .map_err(|e| Fail::Unavailable(format!("cannot generate a data key: {e}")))?;
        let stanzas = keys::seal_data_key(&data_key[..], &recipients).map_err(Fail::Invalid)?;
        let mut plain = PlainTree(Vec::new());
        apply(format, &mut plain, change).map_err(|why| Fail::Invalid(format!("SOPS file {shown}: {why}")))?;
        let (values, mac) = cipher::encrypt(
            &plain.0,
            &Rules::default(),
            &data_key[..],
            &Stash::default(),
            lastmodified,
        )
        .map_err(|e| cipher_fail(file, e))?;
        let raw = new_metadata(format, &stanzas, lastmodified, mac);
        emit(format, &values, &raw).map_err(|why| Fail::Invalid(format!("cannot write SOPS file {shown}: {why}")))
    }
}

/// The failure of the cipher on `file`, as [`Inner::open`] reports it.
pub(super) fn cipher_fail(file: &Path, e: CipherError) -> Fail {
    let shown = file.display();
    match e {
        CipherError::Integrity(why) => Fail::Decryption(format!("integrity check failed for SOPS file {shown}: {why}")),
        CipherError::Unsupported(why) => Fail::Unsupported(format!("SOPS file {shown}: {why}")),
        CipherError::Invalid(why) => Fail::Invalid(format!("SOPS file {shown}: {why}")),
    }
}

/// Applies `change` to the decrypted values.
fn apply(format: Format, plain: &mut PlainTree, change: Change) -> Result<(), String> {
    match change {
        Change::Set(key, value) => set(format, &mut plain.0, &key, value),
        Change::Replace(pairs) => {
            let keep: std::collections::HashSet<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
            retain(&mut plain.0, "", &keep);
            for (key, value) in pairs {
                set(format, &mut plain.0, &key, value)?;
            }
            Ok(())
        }
    }
}

/// Removes the values whose flattened key is not in `keep` (and the mappings and sequences left empty).
fn retain(entries: &mut Vec<(String, Node)>, prefix: &str, keep: &std::collections::HashSet<&str>) {
    fn node(n: &mut Node, key: &str, keep: &std::collections::HashSet<&str>) -> bool {
        match n {
            Node::Map(entries) => {
                let had = !entries.is_empty();
                retain(entries, &format!("{key}."), keep);
                !had || !entries.is_empty()
            }
            Node::List(items) => {
                let had = !items.is_empty();
                let mut i = 0;
                items.retain_mut(|item| {
                    let k = format!("{key}.{i}");
                    i += 1;
                    node(item, &k, keep)
                });
                !had || !items.is_empty()
            }
            _ => keep.contains(key),
        }
    }
    entries.retain_mut(|(k, v)| node(v, &format!("{prefix}{k}"), keep));
}

/// Sets the flattened `key` to `value`: an existing value keeps its place and, when `value` still reads
/// as one, its type (int, float, bool); a new key is added at the end, its dotted parts as nested mappings
/// (dotenv files are flat: the key as it is).
fn set(format: Format, entries: &mut Vec<(String, Node)>, key: &str, value: Zeroizing<String>) -> Result<(), String> {
    if key.is_empty() {
        return Err("an empty key cannot be written".into());
    }
    if format == Format::Dotenv {
        if key.contains(['=', '\n']) || key.starts_with('#') || key.starts_with("sops_") {
            return Err(format!(
                "`{key}` cannot be a dotenv key (no `=`, newline, leading `#` or `sops_`)"
            ));
        }
        match entries.iter_mut().find(|(k, _)| k == key) {
            Some((_, v)) => *v = Node::Str(value.to_string()),
            None => entries.push((key.to_string(), Node::Str(value.to_string()))),
        }
        return Ok(());
    }
    if let Some(leaf) = find_leaf(entries, key) {
        *leaf = typed_like(leaf, &value);
        return Ok(());
    }
    let parts: Vec<&str> = key.split('.').collect();
    if parts[0] == "sops" {
        return Err("the top-level key `sops` is the file's metadata".into());
    }
    let mut at = entries;
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            at.push((part.to_string(), Node::Str(value.to_string())));
            break;
        }
        let pos = match at.iter().position(|(k, _)| k == part) {
            Some(pos) => pos,
            None => {
                at.push((part.to_string(), Node::Map(Vec::new())));
                at.len() - 1
            }
        };
        at = match &mut at[pos].1 {
            Node::Map(inner) => inner,
            _ => {
                return Err(format!(
                    "cannot add `{key}`: `{}` holds a value, not keys",
                    parts[..=i].join(".")
                ))
            }
        };
    }
    Ok(())
}

/// The scalar (or null) at flattened `key`.
fn find_leaf<'a>(entries: &'a mut [(String, Node)], key: &str) -> Option<&'a mut Node> {
    fn inside<'a>(node: &'a mut Node, rest: &str) -> Option<&'a mut Node> {
        match node {
            Node::Map(entries) => find_leaf(entries, rest),
            Node::List(items) => {
                let (index, tail) = rest.split_once('.').map_or((rest, None), |(i, t)| (i, Some(t)));
                let item = items.get_mut(index.parse::<usize>().ok()?)?;
                match tail {
                    None if !matches!(item, Node::Map(_) | Node::List(_)) => Some(item),
                    None => None,
                    Some(t) => inside(item, t),
                }
            }
            _ => None,
        }
    }
    for (k, v) in entries.iter_mut() {
        if k == key && !matches!(v, Node::Map(_) | Node::List(_)) {
            return Some(v);
        }
        if let Some(rest) = key.strip_prefix(k.as_str()).and_then(|r| r.strip_prefix('.')) {
            if let Some(found) = inside(v, rest) {
                return Some(found);
            }
        }
    }
    None
}

fn typed_like(old: &Node, value: &str) -> Node {
    match old {
        Node::Int(_) => value.parse().map_or_else(|_| Node::Str(value.to_string()), Node::Int),
        Node::Float(_) => value.parse().map_or_else(|_| Node::Str(value.to_string()), Node::Float),
        Node::Bool(_) if value == "true" || value == "false" => Node::Bool(value == "true"),
        _ => Node::Str(value.to_string()),
    }
}

fn set_entry(entries: &mut Vec<(String, Node)>, key: &str, value: Node) {
    match entries.iter_mut().find(|(k, _)| k == key) {
        Some((_, v)) => *v = value,
        None => entries.push((key.to_string(), value)),
    }
}

fn set_line(entries: &mut Vec<(String, String)>, key: &str, value: String) {
    match entries.iter_mut().find(|(k, _)| k == key) {
        Some((_, v)) => *v = value,
        None => entries.push((key.to_string(), value)),
    }
}

/// A new file's metadata, laid out as sops lays it out.
fn new_metadata(format: Format, stanzas: &[AgeStanza], lastmodified: &str, mac: String) -> RawMetadata {
    match format {
        Format::Dotenv => {
            let mut lines = Vec::new();
            for (i, s) in stanzas.iter().enumerate() {
                lines.push((format!("age__list_{i}__map_enc"), s.enc.clone()));
                lines.push((format!("age__list_{i}__map_recipient"), s.recipient.clone()));
            }
            lines.push(("lastmodified".into(), lastmodified.to_string()));
            lines.push(("mac".into(), mac));
            lines.push(("unencrypted_suffix".into(), "_unencrypted".into()));
            lines.push(("version".into(), SOPS_VERSION.into()));
            RawMetadata::Dotenv(lines)
        }
        Format::Yaml | Format::Json => {
            let age = stanzas
                .iter()
                .map(|s| {
                    Node::Map(vec![
                        ("recipient".into(), Node::Str(s.recipient.clone())),
                        ("enc".into(), Node::Str(s.enc.clone())),
                    ])
                })
                .collect();
            RawMetadata::Tree(vec![
                ("age".into(), Node::List(age)),
                ("lastmodified".into(), Node::Str(lastmodified.to_string())),
                ("mac".into(), Node::Str(mac)),
                ("unencrypted_suffix".into(), Node::Str("_unencrypted".into())),
                ("version".into(), Node::Str(SOPS_VERSION.into())),
            ])
        }
    }
}

/// The file's text: its (encrypted) values, then the metadata.
fn emit(format: Format, values: &[(String, Node)], raw: &RawMetadata) -> Result<String, String> {
    match (format, raw) {
        (Format::Dotenv, RawMetadata::Dotenv(meta)) => {
            let mut out = String::new();
            for (k, v) in values {
                let Node::Str(v) = v else {
                    return Err(format!("the dotenv value `{k}` is not text"));
                };
                out.push_str(&format!("{k}={}\n", v.replace('\n', "\\n")));
            }
            for (k, v) in meta {
                out.push_str(&format!("sops_{k}={}\n", v.replace('\n', "\\n")));
            }
            Ok(out)
        }
        (Format::Yaml, RawMetadata::Tree(meta)) | (Format::Json, RawMetadata::Tree(meta)) => {
            let mut root: Vec<(String, Node)> = values.to_vec();
            root.push(("sops".into(), Node::Map(meta.clone())));
            if format == Format::Yaml {
                Ok(yaml::document(&root))
            } else {
                // Tabs, as sops indents JSON, so that an edit changes only the lines of its keys.
                let mut out = Vec::new();
                let mut ser = serde_json::Serializer::with_formatter(
                    &mut out,
                    serde_json::ser::PrettyFormatter::with_indent(b"\t"),
                );
                serde::Serialize::serialize(&Entries(&root), &mut ser).map_err(|e| e.to_string())?;
                String::from_utf8(out).map(|s| s + "\n").map_err(|e| e.to_string())
            }
        }
        _ => Err("its metadata does not match its format".into()),
    }
}

/// A YAML writer laid out as sops (yaml.v3, indent 4) lays files out, so that an edit of a file sops wrote
/// changes only the lines of the values that changed. Strings are plain where that cannot be read as anything
/// else, else double-quoted (JSON escapes are YAML's), and multi-line ones literal blocks.
mod yaml {
    use super::Node;

    /// The file's text: `entries` as the top-level mapping.
    pub(super) fn document(entries: &[(String, Node)]) -> String {
        let mut out = map_lines(entries, 4).join("\n");
        out.push('\n');
        out
    }

    /// A block mapping's lines from column 0; nested values `child` columns in (4, or 2 inside a sequence
    /// item, whose `- ` already moved its keys 2 in: yaml.v3 measures its indent from the dash).
    fn map_lines(entries: &[(String, Node)], child: usize) -> Vec<String> {
        let pad = " ".repeat(child);
        let mut out = Vec::new();
        for (k, v) in entries {
            let key = scalar_text(k);
            match v {
                Node::Map(inner) if !inner.is_empty() => {
                    out.push(format!("{key}:"));
                    out.extend(map_lines(inner, 4).into_iter().map(|l| format!("{pad}{l}")));
                }
                Node::List(items) if !items.is_empty() => {
                    out.push(format!("{key}:"));
                    out.extend(list_lines(items).into_iter().map(|l| format!("{pad}{l}")));
                }
                Node::Str(s) if block(s).is_some() => {
                    let (indicator, body) = block(s).unwrap_or_default();
                    out.push(format!("{key}: |{indicator}"));
                    out.extend(body.split('\n').map(|l| {
                        if l.is_empty() {
                            String::new()
                        } else {
                            format!("{pad}{l}")
                        }
                    }));
                }
                scalar => out.push(format!("{key}: {}", scalar_node(scalar))),
            }
        }
        out
    }

    /// A block sequence's lines from column 0.
    fn list_lines(items: &[Node]) -> Vec<String> {
        let mut out = Vec::new();
        for item in items {
            let lines = match item {
                Node::Map(entries) if !entries.is_empty() => map_lines(entries, 2),
                Node::List(inner) if !inner.is_empty() => list_lines(inner),
                Node::Str(s) if block(s).is_some() => {
                    let (indicator, body) = block(s).unwrap_or_default();
                    std::iter::once(format!("|{indicator}"))
                        .chain(
                            body.split('\n')
                                .map(|l| if l.is_empty() { String::new() } else { format!("  {l}") }),
                        )
                        .collect()
                }
                scalar => vec![scalar_node(scalar)],
            };
            for (i, line) in lines.into_iter().enumerate() {
                out.push(match (i, line.is_empty()) {
                    (0, _) => format!("- {line}"),
                    (_, true) => line,
                    _ => format!("  {line}"),
                });
            }
        }
        out
    }

    /// `(chomping indicator, text without its final newline)` when `s` can be a literal block.
    fn block(s: &str) -> Option<(&'static str, &str)> {
        let ok = s.contains('\n')
            && !s.starts_with([' ', '\n', '\t'])
            && !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t');
        if !ok {
            return None;
        }
        match s.strip_suffix('\n') {
            Some(rest) if !rest.ends_with('\n') => Some(("", rest)),
            Some(_) => None,
            None => Some(("-", s)),
        }
    }

    fn scalar_node(v: &Node) -> String {
        match v {
            Node::Str(s) => scalar_text(s),
            Node::Int(n) => n.to_string(),
            Node::Float(f) if f.is_nan() => ".nan".into(),
            Node::Float(f) if f.is_infinite() => if *f > 0.0 { ".inf" } else { "-.inf" }.into(),
            Node::Float(f) => format!("{f:?}"),
            Node::Bool(b) => b.to_string(),
            Node::Map(_) => "{}".into(),
            Node::List(_) => "[]".into(),
            Node::Null => "null".into(),
        }
    }

    /// A string as a plain scalar when YAML (1.1 or 1.2) reads it back as that same string, else quoted.
    pub(super) fn scalar_text(s: &str) -> String {
        const SPECIAL: [&str; 26] = [
            "y", "yes", "n", "no", "true", "false", "on", "off", "null", "~", "Y", "Yes", "YES", "N", "No", "NO",
            "True", "TRUE", "False", "FALSE", "On", "ON", "Off", "OFF", "Null", "NULL",
        ];
        // A leading digit is plain only when no resolver reads a number, date, time or base prefix in it
        // (`3.11.0` stays plain, as yaml.v3 writes sops's `version`).
        let numeric = |s: &str| {
            let bare = s.replace('_', "");
            bare.parse::<f64>().is_ok() || s.contains(['-', ':']) || ["0x", "0o", "0b"].iter().any(|p| s.starts_with(p))
        };
        let first_ok = s
            .chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() || c == '_' || c == '/' || (c.is_ascii_digit() && !numeric(s)));
        let plain = first_ok
            && !s.ends_with([' ', ':'])
            && !s.contains(": ")
            && !s.contains(" #")
            && !SPECIAL.contains(&s)
            && s.chars()
                .all(|c| c.is_alphanumeric() || c == ' ' || "_-./+=,:[]@()".contains(c));
        if plain {
            s.to_string()
        } else {
            serde_json::Value::String(s.to_string()).to_string()
        }
    }
}

/// Replaces `file` with `text` atomically (a temporary file in its directory, synced, then renamed over
/// it), keeping the old file's permissions.
fn replace(file: &Path, text: &[u8]) -> Result<(), Fail> {
    let io = |what: &str, e: std::io::Error| {
        let text = format!("cannot {what} SOPS file {}: {e}", file.display());
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            Fail::Forbidden(text)
        } else {
            Fail::Unavailable(text)
        }
    };
    let dir = file.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| io("create the directory of", e))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".skm-sops-")
        .tempfile_in(dir)
        .map_err(|e| io("write", e))?;
    tmp.write_all(text).map_err(|e| io("write", e))?;
    tmp.as_file().sync_all().map_err(|e| io("write", e))?;
    if let Ok(meta) = std::fs::metadata(file) {
        tmp.as_file()
            .set_permissions(meta.permissions())
            .map_err(|e| io("write", e))?;
    }
    tmp.persist(file).map_err(|e| io("replace", e.error))?;
    Ok(())
}

/// Now as RFC 3339 in UTC, seconds precision, as sops writes `lastmodified`.
fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    rfc3339(secs)
}

/// `secs` since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ` (Howard Hinnant's civil-from-days).
fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn z(s: &str) -> Zeroizing<String> {
        Zeroizing::new(s.to_string())
    }

    #[test]
    fn yaml_is_laid_out_as_sops_lays_it_out_and_reads_back() {
        let root = vec![
            (
                "a".to_string(),
                Node::Map(vec![("b".into(), Node::Str("x".into())), ("n".into(), Node::Int(5))]),
            ),
            (
                "l".into(),
                Node::List(vec![
                    Node::Str("one".into()),
                    Node::Map(vec![
                        ("k".into(), Node::Str("v".into())),
                        ("j".into(), Node::Str("w".into())),
                    ]),
                    Node::List(vec![Node::Int(1), Node::Int(2)]),
                ]),
            ),
            ("empty_map".into(), Node::Map(vec![])),
            ("multi".into(), Node::Str("line1\nline2\n".into())),
            ("nonl".into(), Node::Str("a\nb".into())),
            ("d".into(), Node::Str("2026-01-01".into())),
            ("v".into(), Node::Str("3.11.0".into())),
            ("num".into(), Node::Str("1_000".into())),
            ("q".into(), Node::Str("yes".into())),
            ("odd".into(), Node::Str("a: b #c".into())),
            (
                "enc".into(),
                Node::Str("ENC[AES256_GCM,data:Ab+/=,iv:x,tag:y,type:str]".into()),
            ),
            ("f".into(), Node::Float(1.0)),
            ("t".into(), Node::Bool(true)),
            ("nul".into(), Node::Null),
            (
                "sops".into(),
                Node::Map(vec![(
                    "age".into(),
                    Node::List(vec![Node::Map(vec![
                        ("recipient".into(), Node::Str("age1x".into())),
                        ("enc".into(), Node::Str("-----BEGIN-----\nQUJD\n-----END-----\n".into())),
                    ])]),
                )]),
            ),
        ];
        let text = yaml::document(&root);
        assert_eq!(
            text,
            "a:\n    b: x\n    \"n\": 5\nl:\n    - one\n    - k: v\n      j: w\n    - - 1\n      - 2\nempty_map: {}\n\
             multi: |\n    line1\n    line2\nnonl: |-\n    a\n    b\nd: \"2026-01-01\"\nv: 3.11.0\nnum: \"1_000\"\nq: \"yes\"\nodd: \"a: b #c\"\n\
             enc: ENC[AES256_GCM,data:Ab+/=,iv:x,tag:y,type:str]\nf: 1.0\nt: true\nnul: null\nsops:\n    age:\n\
             \x20       - recipient: age1x\n          enc: |\n            -----BEGIN-----\n            QUJD\n\
             \x20           -----END-----\n"
        );
        let doc = tree::parse(&text, Format::Yaml).unwrap();
        let mut back = doc.values;
        back.push(("sops".into(), root.last().unwrap().1.clone()));
        assert_eq!(back, root);
    }

    #[test]
    fn dates_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_469_722), "2026-12-05T11:22:02Z");
    }

    #[test]
    fn set_keeps_places_and_types_and_nests_new_keys() {
        let mut plain = PlainTree(vec![
            ("port".into(), Node::Int(1)),
            (
                "db".into(),
                Node::Map(vec![("hosts".into(), Node::List(vec![Node::Str("a".into())]))]),
            ),
        ]);
        apply(Format::Yaml, &mut plain, Change::Set("port".into(), z("2"))).unwrap();
        apply(Format::Yaml, &mut plain, Change::Set("db.hosts.0".into(), z("b"))).unwrap();
        apply(Format::Yaml, &mut plain, Change::Set("db.user.name".into(), z("u"))).unwrap();
        assert_eq!(plain.0[0].1, Node::Int(2));
        let Node::Map(db) = &plain.0[1].1 else { panic!() };
        assert_eq!(db[0].1, Node::List(vec![Node::Str("b".into())]));
        assert_eq!(db[1].1, Node::Map(vec![("name".into(), Node::Str("u".into()))]));
        assert!(apply(Format::Yaml, &mut plain, Change::Set("port.x".into(), z("1"))).is_err());
        assert!(apply(Format::Yaml, &mut plain, Change::Set("sops.x".into(), z("1"))).is_err());

        apply(
            Format::Yaml,
            &mut plain,
            Change::Replace(vec![("db.user.name".into(), z("v")), ("new".into(), z("n"))]),
        )
        .unwrap();
        assert_eq!(
            plain.0.len(),
            2,
            "port and db.hosts are gone, db.user stays: {:?}",
            plain.0
        );
        assert_eq!(plain.0[1].0, "new");
    }
}

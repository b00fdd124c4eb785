//! A SOPS file as sops reads it: the document's values in document order (the MAC depends on that order)
//! and the `sops` metadata, for the YAML, JSON and dotenv stores (getsops/sops `stores/`).
//!
//! Nothing here decrypts; values are still `ENC[...]` strings (or plain ones sops left unencrypted).

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// The file formats sops writes, chosen by the file's extension as sops chooses them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Format {
    /// `.yaml` / `.yml`.
    Yaml,
    /// `.json`.
    Json,
    /// `.env`: `KEY=value` lines, the metadata flattened into `sops_*` keys.
    Dotenv,
}

impl Format {
    /// The format of a file named `name`, or `None` when sops would not read it as one of these.
    pub(super) fn of(name: &str) -> Option<Format> {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".yaml") || lower.ends_with(".yml") {
            Some(Format::Yaml)
        } else if lower.ends_with(".json") {
            Some(Format::Json)
        } else if lower.ends_with(".env") {
            Some(Format::Dotenv)
        } else {
            None
        }
    }
}

/// A value of the document, with the scalar types sops distinguishes (they decide the bytes the MAC hashes
/// for values left unencrypted).
#[derive(Clone, PartialEq)]
pub(super) enum Node {
    /// A mapping, in document order.
    Map(Vec<(String, Node)>),
    /// A sequence.
    List(Vec<Node>),
    /// A string (every encrypted value is one).
    Str(String),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// `null`: sops skips it (neither encrypted nor in the MAC).
    Null,
}

// The document may hold values left unencrypted on purpose, but a Debug of it is never useful enough to
// risk one: only the shape is shown.
impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Map(entries) => write!(f, "Map({} entries)", entries.len()),
            Node::List(items) => write!(f, "List({} items)", items.len()),
            _ => f.write_str("Scalar"),
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

impl Serialize for Node {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Map(entries) => Entries(entries).serialize(s),
            Node::List(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Node::Str(v) => s.serialize_str(v),
            Node::Int(v) => s.serialize_i64(*v),
            Node::Float(v) => s.serialize_f64(*v),
            Node::Bool(v) => s.serialize_bool(*v),
            Node::Null => s.serialize_unit(),
        }
    }
}

/// A mapping's entries, serialized in their order (a file skm writes keeps its keys where they were).
pub(super) struct Entries<'a>(pub(super) &'a [(String, Node)]);

impl Serialize for Entries<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping, a sequence or a scalar")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }

    // sops (Go) keeps integers that fit an int64 and makes the others float64.
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(i64::try_from(v).map_or(Node::Float(v as f64), Node::Int))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Node::List(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries: Vec<(String, Node)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value::<Node>()?;
            if !seen.insert(key.clone()) {
                // Which value would win differs between parsers; sops's own YAML parser refuses it too.
                return Err(de::Error::custom(format_args!(
                    "the key `{key}` appears twice in one mapping"
                )));
            }
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }
}

/// One age recipient of the file: the data key, encrypted to it as an armored age file.
#[derive(Debug, Clone)]
pub(super) struct AgeStanza {
    /// The recipient (`age1...`), public.
    pub(super) recipient: String,
    /// The armored age file holding the data key (ciphertext).
    pub(super) enc: String,
}

/// Which values sops left unencrypted, from the metadata (at most one rule; none means the default suffix
/// `_unencrypted`).
#[derive(Debug, Clone, Default)]
pub(super) struct Rules {
    pub(super) unencrypted_suffix: Option<String>,
    pub(super) encrypted_suffix: Option<String>,
    pub(super) unencrypted_regex: Option<String>,
    pub(super) encrypted_regex: Option<String>,
    /// `unencrypted_comment_regex` / `encrypted_comment_regex`: depend on comments, which skm does not read.
    pub(super) comment_regex: bool,
    /// `mac_only_encrypted`: the MAC covers only the encrypted values.
    pub(super) mac_only_encrypted: bool,
}

/// The `sops` metadata skm uses.
#[derive(Debug, Clone, Default)]
pub(super) struct Metadata {
    pub(super) age: Vec<AgeStanza>,
    /// `lastmodified`, as written: the MAC's additional data once normalized.
    pub(super) lastmodified: String,
    /// The encrypted MAC (`ENC[...]`).
    pub(super) mac: String,
    pub(super) rules: Rules,
    /// Other key sources the file names (`kms`, `pgp`, ...), for the error when no age recipient is usable.
    pub(super) other_sources: Vec<String>,
    /// Several key groups (Shamir secret sharing of the data key), which skm does not combine.
    pub(super) key_groups: bool,
}

/// A parsed SOPS file: its values (without the metadata) and the metadata.
#[derive(Debug)]
pub(super) struct Document {
    pub(super) values: Vec<(String, Node)>,
    pub(super) metadata: Metadata,
    /// The metadata as written, for a write to keep what skm does not read (`version`, other key sources).
    pub(super) raw: RawMetadata,
}

/// The metadata as the file holds it.
#[derive(Debug, Clone)]
pub(super) enum RawMetadata {
    /// The `sops` mapping of a YAML or JSON file.
    Tree(Vec<(String, Node)>),
    /// The `sops_*` entries of a dotenv file, without the prefix, `\n` escapes restored.
    Dotenv(Vec<(String, String)>),
}

/// Parses `text` as a SOPS file of `format`. The error says what is wrong, never a value.
pub(super) fn parse(text: &str, format: Format) -> Result<Document, String> {
    match format {
        Format::Yaml => parse_tree(yaml(text)?),
        Format::Json => parse_tree(
            serde_json::from_str::<Node>(text).map_err(|e| format!("it is not valid JSON (line {})", e.line()))?,
        ),
        Format::Dotenv => parse_dotenv(text),
    }
}

fn yaml(text: &str) -> Result<Node, String> {
    let mut documents = serde_norway::Deserializer::from_str(text);
    let first = documents.next().ok_or("it is empty")?;
    let node = Node::deserialize(first).map_err(|e| match e.location() {
        Some(at) => format!("it is not valid YAML (line {})", at.line()),
        None => "it is not valid YAML".to_string(),
    })?;
    if documents.next().is_some() {
        return Err("it holds several YAML documents, which skm does not read: keep one document per file".into());
    }
    Ok(node)
}

/// A YAML or JSON document: a mapping whose `sops` entry is the metadata.
fn parse_tree(root: Node) -> Result<Document, String> {
    let Node::Map(entries) = root else {
        return Err("its top level is not a mapping".into());
    };
    let mut values = Vec::with_capacity(entries.len());
    let mut metadata = None;
    for (key, value) in entries {
        if key == "sops" {
            let Node::Map(meta) = value else {
                return Err("its `sops` entry is not a mapping".into());
            };
            metadata = Some((tree_metadata(meta.clone())?, meta));
        } else {
            values.push((key, value));
        }
    }
    let metadata = metadata.ok_or("it has no `sops` metadata: it is not a file encrypted by sops")?;
    Ok(Document {
        values,
        metadata: metadata.0,
        raw: RawMetadata::Tree(metadata.1),
    })
}

/// The metadata from the `sops` mapping of a YAML or JSON file.
fn tree_metadata(entries: Vec<(String, Node)>) -> Result<Metadata, String> {
    let mut m = Metadata::default();
    for (key, value) in entries {
        let text = |v: Node| match v {
            Node::Str(s) => Ok(s),
            _ => Err(format!("its metadata entry `sops.{key}` is not a string")),
        };
        match key.as_str() {
            "age" => {
                let Node::List(items) = value else {
                    return Err("its metadata entry `sops.age` is not a list".into());
                };
                for item in items {
                    let Node::Map(fields) = item else {
                        return Err("an entry of `sops.age` is not a mapping".into());
                    };
                    let mut stanza = AgeStanza {
                        recipient: String::new(),
                        enc: String::new(),
                    };
                    for (k, v) in fields {
                        match (k.as_str(), v) {
                            ("recipient", Node::Str(s)) => stanza.recipient = s,
                            ("enc", Node::Str(s)) => stanza.enc = s,
                            _ => {}
                        }
                    }
                    m.age.push(stanza);
                }
            }
            "lastmodified" => m.lastmodified = text(value)?,
            "mac" => m.mac = text(value)?,
            "mac_only_encrypted" => m.rules.mac_only_encrypted = matches!(value, Node::Bool(true)),
            "key_groups" => m.key_groups = !is_empty(&value),
            _ => set_rule_or_source(&mut m, &key, value)?,
        }
    }
    Ok(m)
}

fn is_empty(node: &Node) -> bool {
    match node {
        Node::List(items) => items.is_empty(),
        Node::Map(entries) => entries.is_empty(),
        Node::Null => true,
        Node::Str(s) => s.is_empty(),
        _ => false,
    }
}

/// The crypt rules and the names of other key sources, shared by the tree and dotenv metadata.
fn set_rule_or_source(m: &mut Metadata, key: &str, value: Node) -> Result<(), String> {
    let rule = |v: Node| match v {
        Node::Str(s) if !s.is_empty() => Ok(Some(s)),
        Node::Str(_) | Node::Null => Ok(None),
        _ => Err(format!("its metadata entry `sops.{key}` is not a string")),
    };
    match key {
        "unencrypted_suffix" => m.rules.unencrypted_suffix = rule(value)?,
        "encrypted_suffix" => m.rules.encrypted_suffix = rule(value)?,
        "unencrypted_regex" => m.rules.unencrypted_regex = rule(value)?,
        "encrypted_regex" => m.rules.encrypted_regex = rule(value)?,
        "unencrypted_comment_regex" | "encrypted_comment_regex" => {
            m.rules.comment_regex |= rule(value)?.is_some();
        }
        "kms" | "gcp_kms" | "azure_kv" | "hc_vault" | "pgp" | "hckms"
            if !is_empty(&value) && !m.other_sources.iter().any(|s| s == key) =>
        {
            m.other_sources.push(key.to_string());
        }
        _ => {}
    }
    Ok(())
}

/// A dotenv file as sops's dotenv store reads it: every non-empty line not starting with `#` is
/// `KEY=value` (split at the first `=`, nothing trimmed, `\n` escapes restored); `sops_*` keys are the
/// metadata, flattened (`sops_age__list_0__map_enc`).
fn parse_dotenv(text: &str) -> Result<Document, String> {
    let mut values = Vec::new();
    let mut meta: Vec<(String, String)> = Vec::new();
    for (n, line) in text.split('\n').enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {} is not KEY=value", n + 1));
        };
        let value = value.replace("\\n", "\n");
        match key.strip_prefix("sops_") {
            Some(meta_key) => meta.push((meta_key.to_string(), value)),
            None => values.push((key.to_string(), Node::Str(value))),
        }
    }
    if meta.is_empty() {
        return Err("it has no `sops_*` metadata: it is not a file encrypted by sops".into());
    }
    let raw = meta.clone();
    let mut m = Metadata::default();
    let mut age: Vec<(usize, AgeStanza)> = Vec::new();
    for (key, value) in meta {
        if let Some(rest) = key.strip_prefix("age__list_") {
            let Some((index, field)) = rest.split_once("__map_") else {
                continue;
            };
            let index: usize = index
                .parse()
                .map_err(|_| format!("its metadata key `sops_{key}` has no list index"))?;
            let at = match age.iter().position(|(i, _)| *i == index) {
                Some(at) => at,
                None => {
                    age.push((
                        index,
                        AgeStanza {
                            recipient: String::new(),
                            enc: String::new(),
                        },
                    ));
                    age.len() - 1
                }
            };
            match field {
                "recipient" => age[at].1.recipient = value,
                "enc" => age[at].1.enc = value,
                _ => {}
            }
            continue;
        }
        match key.as_str() {
            "lastmodified" => m.lastmodified = value,
            "mac" => m.mac = value,
            "mac_only_encrypted" => m.rules.mac_only_encrypted = value.eq_ignore_ascii_case("true"),
            k if k.starts_with("key_groups") => m.key_groups = true,
            k => {
                // Flattened lists of other key sources: `sops_kms__list_0__map_arn`.
                let name = k.split("__").next().unwrap_or(k);
                let node = if name == k {
                    Node::Str(value)
                } else {
                    Node::List(vec![Node::Null])
                };
                set_rule_or_source(&mut m, name, node)?;
            }
        }
    }
    age.sort_by_key(|(i, _)| *i);
    m.age = age.into_iter().map(|(_, s)| s).collect();
    Ok(Document {
        values,
        metadata: m,
        raw: RawMetadata::Dotenv(raw),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_keeps_document_order_and_splits_off_the_metadata() {
        let doc = parse(
            "zeta: ENC[x]\nalpha:\n  b: 1\n  a: true\nlist: [x, 2.5]\nsops:\n  age:\n    - recipient: age1r\n      enc: |\n        armored\n  lastmodified: \"2026-01-01T00:00:00Z\"\n  mac: ENC[m]\n  unencrypted_suffix: _unencrypted\n",
            Format::Yaml,
        )
        .unwrap();
        let keys: Vec<&str> = doc.values.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["zeta", "alpha", "list"]);
        let Node::Map(alpha) = &doc.values[1].1 else { panic!() };
        assert_eq!(alpha[0], ("b".to_string(), Node::Int(1)));
        assert_eq!(alpha[1], ("a".to_string(), Node::Bool(true)));
        assert_eq!(doc.metadata.age[0].recipient, "age1r");
        assert_eq!(doc.metadata.age[0].enc, "armored\n");
        assert_eq!(doc.metadata.mac, "ENC[m]");
        assert_eq!(doc.metadata.rules.unencrypted_suffix.as_deref(), Some("_unencrypted"));
    }

    #[test]
    fn json_keeps_document_order() {
        let doc = parse(
            r#"{"z": "ENC[a]", "a": {"y": 1, "b": 18446744073709551615}, "sops": {"mac": "ENC[m]", "lastmodified": "t", "kms": [{"arn": "x"}]}}"#,
            Format::Json,
        )
        .unwrap();
        assert_eq!(doc.values[0].0, "z");
        let Node::Map(a) = &doc.values[1].1 else { panic!() };
        assert_eq!(a[0].0, "y");
        assert!(matches!(a[1].1, Node::Float(_)));
        assert_eq!(doc.metadata.other_sources, ["kms"]);
    }

    #[test]
    fn dotenv_metadata_is_unflattened() {
        let doc = parse(
            "# comment\nDB=ENC[x]\nsops_age__list_0__map_enc=-----BEGIN-----\\nabc\\n\nsops_age__list_0__map_recipient=age1r\nsops_lastmodified=t\nsops_mac=ENC[m]\nsops_unencrypted_suffix=_unencrypted\nsops_version=3.11.0\n",
            Format::Dotenv,
        )
        .unwrap();
        assert_eq!(doc.values.len(), 1);
        assert_eq!(doc.metadata.age[0].enc, "-----BEGIN-----\nabc\n");
        assert_eq!(doc.metadata.age[0].recipient, "age1r");
        assert_eq!(doc.metadata.mac, "ENC[m]");
    }

    #[test]
    fn files_without_metadata_or_with_duplicates_are_refused() {
        assert!(parse("a: 1\n", Format::Yaml)
            .unwrap_err()
            .contains("not a file encrypted by sops"));
        assert!(parse("A=1\n", Format::Dotenv)
            .unwrap_err()
            .contains("not a file encrypted by sops"));
        assert!(parse("a: 1\na: 2\nsops: {}\n", Format::Yaml).is_err());
        assert!(parse("a: 1\n---\nb: 2\n", Format::Yaml)
            .unwrap_err()
            .contains("several"));
    }

    #[test]
    fn formats_follow_the_extension() {
        assert_eq!(Format::of("a.YAML"), Some(Format::Yaml));
        assert_eq!(Format::of("a.enc.yml"), Some(Format::Yaml));
        assert_eq!(Format::of(".env"), Some(Format::Dotenv));
        assert_eq!(Format::of("x.json"), Some(Format::Json));
        assert_eq!(Format::of("x.toml"), None);
    }
}

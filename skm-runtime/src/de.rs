//! Typed extraction: turns a raw source value (a string or bytes) into the field's type.
//!
//! Every source hands us text, so the deserializer parses on demand: `"5432"` becomes a `u16`, `"true"` a
//! `bool`, and a JSON object a struct. Its errors never contain the value: serde's default messages quote
//! it (`invalid type: string "hunter2"`), so this module overrides them to name only the kind of value.

use std::fmt;

use serde::de::{self, DeserializeOwned, Deserializer, IntoDeserializer, Unexpected, Visitor};

/// A value as a source holds it, or its absence.
#[derive(Clone, Copy)]
pub(crate) enum Raw<'a> {
    Absent,
    Text(&'a str),
    Binary(&'a [u8]),
}

/// A deserialization error. Messages skm writes are value-free by construction; a message from elsewhere
/// (a user type's `Deserialize` impl, a field name read from the input) is `untrusted` and only reaches an
/// error if [`extract`] can show it holds no part of the value.
#[derive(Debug)]
pub(crate) struct DeError {
    message: String,
    untrusted: bool,
}

impl DeError {
    fn new(message: impl Into<String>) -> Self {
        DeError {
            message: message.into(),
            untrusted: false,
        }
    }

    fn untrusted(message: impl Into<String>) -> Self {
        DeError {
            message: message.into(),
            untrusted: true,
        }
    }
}

/// What replaces a message that may quote the value.
pub(crate) const WITHHELD: &str =
    "the value was rejected by the type's `Deserialize` implementation (its message is withheld: it may quote the value)";

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

fn kind_of(u: &Unexpected<'_>) -> &'static str {
    match u {
        Unexpected::Bool(_) => "a boolean",
        Unexpected::Unsigned(_) | Unexpected::Signed(_) => "an integer",
        Unexpected::Float(_) => "a number",
        Unexpected::Char(_) => "a character",
        Unexpected::Str(_) => "a string",
        Unexpected::Bytes(_) => "bytes",
        Unexpected::Unit => "nothing",
        Unexpected::Option => "an optional value",
        Unexpected::NewtypeStruct => "a newtype",
        Unexpected::Seq => "a list",
        Unexpected::Map => "a map",
        Unexpected::Enum => "an enum",
        Unexpected::UnitVariant | Unexpected::NewtypeVariant | Unexpected::TupleVariant => "an enum variant",
        Unexpected::StructVariant => "an enum variant",
        Unexpected::Other(_) => "another kind of value",
    }
}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        // Custom messages come from user `Deserialize` impls and may quote input in any form.
        DeError::untrusted(msg.to_string())
    }

    fn invalid_type(unexp: Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError::new(format!("found {}, expected {exp}", kind_of(&unexp)))
    }

    fn invalid_value(unexp: Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError::new(format!("invalid {}, expected {exp}", kind_of(&unexp)))
    }

    fn invalid_length(len: usize, exp: &dyn de::Expected) -> Self {
        DeError::new(format!("invalid length {len}, expected {exp}"))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        // The field's name comes from the input.
        DeError::untrusted(format!("unknown field `{field}`, expected one of {expected:?}"))
    }

    fn missing_field(field: &'static str) -> Self {
        DeError::new(format!("missing field `{field}`"))
    }
}

/// Deserializes `raw` into `T` with value-free errors.
pub(crate) fn extract<T: DeserializeOwned>(raw: Raw<'_>) -> Result<T, String> {
    T::deserialize(RawDeserializer(raw)).map_err(|e| value_free(e, raw))
}

/// The message of `e`, unless it is untrusted and might hold part of the value: then [`WITHHELD`].
///
/// A binary value's untrusted messages are always withheld (bytes can be echoed in too many encodings);
/// a text value's are kept only if they share no run of [`ECHO_RUN`] characters, ignoring ASCII case, with
/// the value as written, `{:?}`-escaped, `escape_default`-escaped or JSON-escaped, and, for a value shorter
/// than that, do not contain its trimmed form.
fn value_free(e: DeError, raw: Raw<'_>) -> String {
    if !e.untrusted {
        return e.message;
    }
    match raw {
        Raw::Text(value) if !echoes(&e.message, value) => e.message,
        Raw::Absent => e.message,
        _ => WITHHELD.to_string(),
    }
}

/// The shortest run of a value's characters that counts as an echo.
pub(crate) const ECHO_RUN: usize = 3;

/// Whether `message` may contain part of `value` (see [`value_free`]).
fn echoes(message: &str, value: &str) -> bool {
    let message = message.to_ascii_lowercase();
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return false;
    }
    let forms = [
        value.to_string(),
        value.escape_debug().to_string(),
        value.escape_default().to_string(),
        serde_json::Value::String(value.to_string()).to_string(),
    ];
    forms.iter().any(|form| {
        let chars: Vec<char> = form.to_ascii_lowercase().chars().collect();
        if chars.len() < ECHO_RUN {
            return message.contains(&trimmed.to_ascii_lowercase());
        }
        chars
            .windows(ECHO_RUN)
            .any(|w| !w.iter().all(|c| c.is_whitespace()) && message.contains(&w.iter().collect::<String>()))
    })
}

struct RawDeserializer<'a>(Raw<'a>);

impl RawDeserializer<'_> {
    fn text(&self) -> Result<&str, DeError> {
        match self.0 {
            Raw::Text(s) => Ok(s),
            Raw::Binary(b) => std::str::from_utf8(b).map_err(|_| DeError::new("the value is not valid UTF-8 text")),
            Raw::Absent => Err(DeError::new("no value")),
        }
    }

    fn parse<N: std::str::FromStr>(&self, what: &str) -> Result<N, DeError>
    where
        N::Err: fmt::Display,
    {
        self.text()?
            .trim()
            .parse()
            .map_err(|e: N::Err| DeError::new(format!("not a valid {what}: {e}")))
    }

    /// Parses the text as JSON for structured types, with the error's JSON path but not its input.
    fn json<'de, V: Visitor<'de>>(
        self,
        visitor: V,
        f: impl FnOnce(V, JsonValue) -> Result<V::Value, DeError>,
    ) -> Result<V::Value, DeError> {
        let text = self.text()?;
        let value: JsonValue = serde_json::from_str(text).map_err(|e| {
            DeError::new(format!(
                "expected JSON ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        f(visitor, value)
    }
}

type JsonValue = serde_json::Value;

/// Runs `de` on a parsed JSON value, reporting where in the document it failed but not what was there.
fn from_json<'de, V: Visitor<'de>>(
    visitor: V,
    value: JsonValue,
    call: impl FnOnce(JsonValue, V) -> Result<V::Value, serde_json::Error>,
) -> Result<V::Value, DeError> {
    call(value, visitor).map_err(|e| {
        let message = sanitize_json_error(&e.to_string());
        // Field names: a user type's message can start like anything, so check these like custom ones.
        if ["missing field", "unknown field", "duplicate field"]
            .iter()
            .any(|p| message.starts_with(p))
        {
            DeError::untrusted(message)
        } else {
            DeError::new(message)
        }
    })
}

/// serde_json's data errors quote values (`invalid type: string "x"`); keep only the safe forms.
fn sanitize_json_error(msg: &str) -> String {
    if msg.starts_with("missing field") || msg.starts_with("unknown field") || msg.starts_with("duplicate field") {
        return msg.to_string();
    }
    if let Some(rest) = msg.strip_prefix("invalid type: ") {
        if let Some((_, expected)) = rest.rsplit_once(", expected ") {
            return format!("a value has the wrong type, expected {expected}");
        }
    }
    if let Some(rest) = msg.strip_prefix("invalid value: ") {
        if let Some((_, expected)) = rest.rsplit_once(", expected ") {
            return format!("a value is invalid, expected {expected}");
        }
    }
    "the JSON does not match the declared type".to_string()
}

macro_rules! parse_number {
    ($($method:ident => $visit:ident : $ty:ty),* $(,)?) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
            visitor.$visit(self.parse::<$ty>(stringify!($ty))?)
        }
    )*};
}

impl<'de> Deserializer<'de> for RawDeserializer<'_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Raw::Binary(b) => visitor.visit_byte_buf(b.to_vec()),
            _ => visitor.visit_string(self.text()?.to_owned()),
        }
    }

    parse_number! {
        deserialize_i8 => visit_i8: i8, deserialize_i16 => visit_i16: i16, deserialize_i32 => visit_i32: i32,
        deserialize_i64 => visit_i64: i64, deserialize_i128 => visit_i128: i128,
        deserialize_u8 => visit_u8: u8, deserialize_u16 => visit_u16: u16, deserialize_u32 => visit_u32: u32,
        deserialize_u64 => visit_u64: u64, deserialize_u128 => visit_u128: u128,
        deserialize_f32 => visit_f32: f32, deserialize_f64 => visit_f64: f64,
        deserialize_char => visit_char: char,
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.text()?.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => visitor.visit_bool(true),
            "false" | "0" | "no" | "off" => visitor.visit_bool(false),
            _ => Err(DeError::new(
                "not a valid bool: expected true/false, 1/0, yes/no or on/off",
            )),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_string(self.text()?.to_owned())
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Raw::Binary(b) => visitor.visit_byte_buf(b.to_vec()),
            _ => visitor.visit_byte_buf(self.text()?.as_bytes().to_vec()),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            Raw::Absent => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self.0 {
            // `Vec<u8>` asks for a sequence: binary secrets (AWS `SecretBinary`) are their bytes, not JSON.
            Raw::Binary(b) => visitor.visit_seq(de::value::SeqDeserializer::<_, DeError>::new(b.iter().copied())),
            _ => self.json(visitor, |v, j| from_json(v, j, |j, v| j.deserialize_seq(v))),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, DeError> {
        self.json(visitor, |v, j| from_json(v, j, |j, v| j.deserialize_tuple(len, v)))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.json(visitor, |v, j| {
            from_json(v, j, |j, v| j.deserialize_tuple_struct(name, len, v))
        })
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.json(visitor, |v, j| from_json(v, j, |j, v| j.deserialize_map(v)))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.json(visitor, |v, j| {
            from_json(v, j, |j, v| j.deserialize_struct(name, fields, v))
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        // A bare word selects a unit variant: `LOG_LEVEL=debug`.
        visitor
            .visit_enum(self.text()?.to_owned().into_deserializer())
            .map_err(|e: de::value::Error| DeError::new(sanitize_json_error(&e.to_string())))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::{ExposeSecret, SecretBox, SecretString};

    #[derive(serde::Deserialize, Clone, zeroize::Zeroize, Debug, PartialEq)]
    struct Db {
        user: String,
        port: u16,
    }

    #[test]
    fn converts_text_to_declared_types() {
        let port: SecretBox<u16> = extract(Raw::Text("5432")).unwrap();
        assert_eq!(*port.expose_secret(), 5432);
        let s: SecretString = extract(Raw::Text("5432")).unwrap();
        assert_eq!(s.expose_secret(), "5432");
        let b: bool = extract(Raw::Text("yes")).unwrap();
        assert!(b);
        let db: SecretBox<Db> = extract(Raw::Text(r#"{"user":"app","port":5432}"#)).unwrap();
        assert_eq!(db.expose_secret().port, 5432);
        let none: Option<SecretString> = extract(Raw::Absent).unwrap();
        assert!(none.is_none());
        let bytes: SecretBox<Vec<u8>> = extract(Raw::Binary(&[0, 159, 146, 150])).unwrap();
        assert_eq!(bytes.expose_secret(), &vec![0, 159, 146, 150]);
    }

    #[test]
    fn errors_never_contain_the_value() {
        let sentinel = "SENTINEL-9f8e7d";
        let e = extract::<u16>(Raw::Text(sentinel)).unwrap_err();
        assert!(!e.contains(sentinel), "{e}");
        let json = format!(r#"{{"user":"app","port":"{sentinel}"}}"#);
        let e = extract::<SecretBox<Db>>(Raw::Text(&json)).unwrap_err();
        assert!(!e.contains(sentinel), "{e}");
        assert!(e.contains("expected u16"), "{e}");
        let e = extract::<SecretBox<Db>>(Raw::Text(sentinel)).unwrap_err();
        assert!(!e.contains(sentinel), "{e}");
        let e = extract::<SecretString>(Raw::Absent).unwrap_err();
        assert_eq!(e, "no value");
    }

    /// A user type whose error message echoes its input in the way `how` says.
    struct Echo<const HOW: u8>;

    impl<'de, const HOW: u8> serde::Deserialize<'de> for Echo<HOW> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let bytes: Vec<u8> = serde_bytes_like(d)?;
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let echo = match HOW {
                0 => format!("bad token `{}`", text.trim()),
                1 => format!("bad token {text:?}"),
                2 => format!("bad token starting {}...", &text.trim()[..6]),
                3 => format!("bad token {}", text.to_uppercase()),
                4 => format!("bad bytes {bytes:?}"),
                _ => "the token must start with `tok_`".to_string(),
            };
            Err(de::Error::custom(echo))
        }
    }

    fn serde_bytes_like<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes")
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
                Ok(v.as_bytes().to_vec())
            }
        }
        d.deserialize_byte_buf(V)
    }

    #[test]
    fn custom_messages_never_echo_any_part_of_the_value() {
        // Issue 17 #5: only an exact copy used to be removed.
        let sentinel = "  SENTINEL\"quoted\"-9f8e7d\n";
        let text_echoes = [
            extract::<Echo<0>>(Raw::Text(sentinel)).err().unwrap(), // trimmed
            extract::<Echo<1>>(Raw::Text(sentinel)).err().unwrap(), // `{:?}`-escaped
            extract::<Echo<2>>(Raw::Text(sentinel)).err().unwrap(), // partial
            extract::<Echo<3>>(Raw::Text(sentinel)).err().unwrap(), // case changed
        ];
        for e in &text_echoes {
            assert_eq!(e, WITHHELD);
        }
        // Any custom message about a binary value is withheld.
        let bytes = [0xde, 0xad, b'S', b'E', b'N', 0xbe, 0xef];
        assert_eq!(extract::<Echo<4>>(Raw::Binary(&bytes)).err().unwrap(), WITHHELD);
        assert_eq!(extract::<Echo<9>>(Raw::Binary(&bytes)).err().unwrap(), WITHHELD);
        // A message that provably shares nothing with the value is kept: it tells the user what to fix.
        let kept = extract::<Echo<9>>(Raw::Text("xyzzy-0042")).err().unwrap();
        assert_eq!(kept, "the token must start with `tok_`");
    }
}

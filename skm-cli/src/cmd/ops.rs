//! Everyday operations on one secret: get, put, list, delete, versions, rollback, rotate.

use secrecy::ExposeSecret;
use serde_json::json;
use skm_runtime::backend::{DeleteMode, PutRequest, SecretValue, VersionInfo, VersionPin};

use super::util::{as_object, fetch_one, format_time, key_text, parse_version, with_key, write_key, KeyWrite};
use crate::args::Charset;
use crate::output::{confirm, read_value, Tone, MASK};
use crate::safe::display;
use crate::{exit, Ctx, Fail};

pub(crate) async fn get(
    ctx: &mut Ctx<'_, '_>,
    path: &str,
    key: Option<&str>,
    version: Option<&str>,
    reveal: bool,
) -> Result<u8, Fail> {
    let backend = ctx.backend().await?;
    let pin = version.map_or(VersionPin::Current, parse_version);
    let payload = fetch_one(backend.as_ref(), path, pin.clone())
        .await?
        .ok_or_else(|| Fail::Failed(format!("`{path}` not found in {} ({pin})", backend.name())))?;
    let object = as_object(&payload.value);
    let keys: Vec<String> = object.as_ref().map(|o| o.keys().cloned().collect()).unwrap_or_default();

    // What to show, if revealed: the key's value, the whole text, or the bytes.
    enum Shown {
        Text(String),
        Bytes(Vec<u8>),
    }
    let shown = match (key, &payload.value) {
        (Some(k), _) => {
            let object = object
                .as_ref()
                .ok_or_else(|| Fail::Failed(format!("`{path}` does not hold a JSON object, so it has no key `{k}`")))?;
            let text = key_text(object, k).ok_or_else(|| {
                let shown: Vec<String> = keys.iter().map(|k| display(k).into_owned()).collect();
                Fail::Failed(format!("`{path}` has no key `{k}` (its keys: {})", shown.join(", ")))
            })?;
            Shown::Text(text)
        }
        (None, SecretValue::Text(t)) => Shown::Text(t.expose_secret().to_string()),
        (None, SecretValue::Binary(b)) => Shown::Bytes(b.expose_secret().clone()),
    };
    let kind = match (&payload.value, &object) {
        (SecretValue::Binary(b), _) => format!("binary ({} bytes)", b.expose_secret().len()),
        (_, Some(_)) => "JSON object".to_string(),
        _ => "text".to_string(),
    };

    if ctx.ui.json {
        let value = match (&shown, reveal) {
            (_, false) => json!(MASK),
            (Shown::Text(t), true) => json!(t),
            (Shown::Bytes(b), true) => json!(super::util::base64(b)),
        };
        let mut doc = json!({
            "path": path,
            "version": payload.version,
            "kind": if matches!(payload.value, SecretValue::Binary(_)) { "binary" } else if object.is_some() { "json" } else { "text" },
            "keys": keys,
            "value": value,
            "revealed": reveal,
        });
        if let Some(k) = key {
            doc["key"] = json!(k);
        }
        if matches!(shown, Shown::Bytes(_)) && reveal {
            doc["encoding"] = json!("base64");
        }
        ctx.ui.json(&doc);
        return Ok(exit::OK);
    }
    if reveal {
        // Only the value, so that `skm get PATH --reveal` can feed another program.
        match shown {
            Shown::Text(t) => ctx.ui.line(t),
            Shown::Bytes(b) => {
                let _ = ctx.ui.io.stdout.write_all(&b);
            }
        }
        return Ok(exit::OK);
    }
    let mut rows = vec![
        vec![("path".into(), Tone::Dim), (path.to_string(), Tone::Plain)],
        vec![
            ("version".into(), Tone::Dim),
            (payload.version.clone().unwrap_or_else(|| "-".into()), Tone::Plain),
        ],
        vec![("kind".into(), Tone::Dim), (kind, Tone::Plain)],
    ];
    if !keys.is_empty() {
        rows.push(vec![("keys".into(), Tone::Dim), (keys.join(", "), Tone::Plain)]);
    }
    if let Some(k) = key {
        rows.push(vec![("key".into(), Tone::Dim), (k.to_string(), Tone::Plain)]);
    }
    rows.push(vec![
        ("value".into(), Tone::Dim),
        (format!("{MASK}  (--reveal to show)"), Tone::Dim),
    ]);
    for row in rows {
        // `paint` escapes the cell: keys and versions come from the backend.
        let line = format!("{:8} {}", row[0].0, ctx.ui.paint(&row[1].0, row[1].1));
        ctx.ui.line(line);
    }
    Ok(exit::OK)
}

/// `put`'s flags besides the path and key.
pub(crate) struct PutOptions {
    pub tags: Vec<(String, String)>,
    pub description: Option<String>,
    pub create_only: bool,
    /// Keep the trailing newline of a value read from stdin.
    pub keep_newline: bool,
}

pub(crate) async fn put(ctx: &mut Ctx<'_, '_>, path: &str, key: Option<&str>, options: PutOptions) -> Result<u8, Fail> {
    let PutOptions {
        tags,
        description,
        create_only,
        keep_newline,
    } = options;
    default_store(ctx)?;
    let backend = ctx.backend().await?;
    let what = match key {
        Some(k) => format!("value for `{path}` key `{k}`"),
        None => format!("value for `{path}`"),
    };
    let value = read_value(ctx.ui.io, &what, keep_newline).map_err(Fail::Failed)?;
    if value.is_empty() {
        // Most often a redirect from the wrong file, or a prompt answered by Enter: never store it silently.
        return Err(Fail::Usage(format!("the {what} is empty: nothing written")));
    }
    // With --create-only the write fails if anything appeared since the read, so nothing can be lost.
    if let (Some(k), false) = (key, create_only) {
        let write = write_key(backend.as_ref(), path, k, value).await?;
        report_key_write(ctx, &backend.name(), &write);
        report_write(ctx, path, &write.version, "wrote");
        return Ok(exit::OK);
    }
    let value = match key {
        Some(k) => with_key(backend.as_ref(), path, k, value).await?,
        None => SecretValue::text(value),
    };
    let request = PutRequest {
        path: path.to_string(),
        value,
        tags,
        description,
        create_only,
        expected_version: None,
    };
    let version = backend.put(request).await?;
    report_write(ctx, path, &version, "wrote");
    Ok(exit::OK)
}

/// The first `put` in a project with no backend configured at all (no `--backend`, no `SKM_BACKEND`, no
/// backend's signal, no store yet) writes to the backend the registry names for it
/// ([`default_for_put`](skm_runtime::backend::registry::Descriptor::default_for_put): the local store), as
/// `--backend <name>` would, and says so in one line; `--backend none` or `SKM_BACKEND=none` still means none.
fn default_store(ctx: &mut Ctx<'_, '_>) -> Result<(), Fail> {
    if ctx.backend.is_some() || ctx.backend_flag.is_some() {
        return Ok(());
    }
    let choice = ctx.choice()?;
    let explicit_none = choice.reason == "SKM_BACKEND=none";
    let default = skm_runtime::backend::registry::all()
        .iter()
        .find(|d| d.default_for_put && d.compiled);
    let Some(default) = default.filter(|_| choice.backend.is_none() && !explicit_none) else {
        return Ok(());
    };
    let at = default
        .store_path
        .map(|store_path| format!(" at {}", store_path(&|name| crate::select::env_var(name)).display()))
        .unwrap_or_default();
    ctx.ui.note(format!(
        "skm put: no backend is configured, so this writes to the {} store{at} (choose another with --backend or \
         SKM_BACKEND)",
        default.name
    ));
    ctx.backend_flag = Some(default.name.into());
    Ok(())
}

/// Says plainly (once per run) when a key write was a read-merge-write that a concurrent writer could have
/// undone: the backend has no check-and-set.
fn report_key_write(ctx: &mut Ctx<'_, '_>, backend: &str, write: &KeyWrite) {
    if !write.atomic {
        ctx.ui.warn(super::util::non_atomic_warning(backend));
    }
}

fn report_write(ctx: &mut Ctx<'_, '_>, path: &str, version: &str, verb: &str) {
    if ctx.ui.json {
        ctx.ui.json(&json!({ "path": path, "version": version }));
    } else {
        let v = ctx.ui.paint(version, Tone::Good);
        ctx.ui.line(format!("{verb} `{}`: version {v}", display(path)));
    }
}

/// `rotate`'s report: the version written and the generated value's entropy (never the value).
fn report_rotation(ctx: &mut Ctx<'_, '_>, path: &str, version: &str, length: u16, charset: Charset) {
    let bits = entropy_bits(length, charset).floor();
    if ctx.ui.json {
        ctx.ui
            .json(&json!({ "path": path, "version": version, "entropy_bits": bits as u64 }));
    } else {
        let v = ctx.ui.paint(version, Tone::Good);
        ctx.ui.line(format!(
            "rotated `{}`: version {v} ({length} {} characters, {bits} bits of entropy)",
            display(path),
            charset_name(charset)
        ));
    }
}

pub(crate) async fn list(ctx: &mut Ctx<'_, '_>, prefix: &str) -> Result<u8, Fail> {
    let backend = ctx.backend().await?;
    let entries = backend.list(prefix).await?;
    if ctx.ui.json {
        let items: Vec<_> = entries
            .iter()
            .map(|e| json!({ "path": e.path, "updated": e.updated.map(format_time) }))
            .collect();
        ctx.ui.json(&json!(items));
        return Ok(exit::OK);
    }
    if entries.is_empty() {
        ctx.ui
            .note(format!("no secrets under `{prefix}` in {}", backend.name()));
        return Ok(exit::OK);
    }
    let rows: Vec<_> = entries
        .iter()
        .map(|e| {
            vec![
                (e.path.clone(), Tone::Plain),
                (e.updated.map(format_time).unwrap_or_else(|| "-".into()), Tone::Dim),
            ]
        })
        .collect();
    ctx.ui.table(&["path", "updated"], &rows);
    Ok(exit::OK)
}

pub(crate) async fn delete(
    ctx: &mut Ctx<'_, '_>,
    path: &str,
    force: bool,
    recovery_days: Option<u32>,
    yes: bool,
) -> Result<u8, Fail> {
    let backend = ctx.backend().await?;
    let mode = match (force, recovery_days) {
        (true, _) => DeleteMode::Force,
        (false, Some(days)) => DeleteMode::RecoveryDays(days),
        (false, None) => DeleteMode::Default,
    };
    let how = match mode {
        DeleteMode::Force => "for good, without recovery".to_string(),
        DeleteMode::RecoveryDays(d) => format!("recoverable for {d} days"),
        DeleteMode::Default => "with the backend's default recovery".to_string(),
    };
    // Ask only when a person is there to answer; scripts pass --yes or run without a terminal.
    if !yes && ctx.ui.io.stdin_tty && ctx.ui.io.stdout_tty {
        let question = format!("delete `{path}` from {} {how}?", backend.name());
        if !confirm(ctx.ui.io, &question) {
            ctx.ui.note("nothing deleted");
            return Ok(exit::FAILED);
        }
    }
    backend.delete(path, mode).await?;
    if ctx.ui.json {
        ctx.ui.json(&json!({ "path": path, "deleted": true, "mode": how }));
    } else {
        ctx.ui.line(format!("deleted `{}` {how}", display(path)));
    }
    Ok(exit::OK)
}

pub(crate) async fn versions(ctx: &mut Ctx<'_, '_>, path: &str) -> Result<u8, Fail> {
    let backend = ctx.backend().await?;
    let versions = backend.versions(path).await?;
    if ctx.ui.json {
        let items: Vec<_> = versions
            .iter()
            .map(|v| json!({ "id": v.id, "stages": v.stages, "created": v.created.map(format_time) }))
            .collect();
        ctx.ui.json(&json!(items));
        return Ok(exit::OK);
    }
    let rows: Vec<_> = versions
        .iter()
        .map(|v| {
            let tone = if v.stages.iter().any(|s| s == "current" || s == "AWSCURRENT") {
                Tone::Good
            } else {
                Tone::Plain
            };
            vec![
                (v.id.clone(), tone),
                (v.stages.join(","), Tone::Plain),
                (v.created.map(format_time).unwrap_or_else(|| "-".into()), Tone::Dim),
            ]
        })
        .collect();
    ctx.ui.table(&["version", "stages", "created"], &rows);
    Ok(exit::OK)
}

/// Writes version `to` of `path` as a new version. Uniform across backends, and auditable: the history
/// keeps both the bad version and the restore (as Vault's `kv rollback` does).
pub(crate) async fn rollback(ctx: &mut Ctx<'_, '_>, path: &str, to: &str) -> Result<u8, Fail> {
    let backend = ctx.backend().await?;
    let versions = backend.versions(path).await?;
    let is_current = |v: &VersionInfo| v.stages.iter().any(|s| s == "current" || s == "AWSCURRENT");
    let target = versions
        .iter()
        .find(|v| v.id == to)
        .or_else(|| {
            versions
                .iter()
                .find(|v| v.stages.iter().any(|s| s.eq_ignore_ascii_case(to)))
        })
        .or_else(|| {
            // `previous` on a backend without such a label: the version listed after the current one.
            let current = versions.iter().position(is_current)?;
            versions
                .get(current + 1)
                .filter(|_| to.eq_ignore_ascii_case("previous"))
        })
        .ok_or_else(|| {
            let ids: Vec<&str> = versions.iter().map(|v| v.id.as_str()).collect();
            Fail::Failed(format!(
                "`{path}` has no version `{to}`; its versions: {}",
                if ids.is_empty() {
                    "none".to_string()
                } else {
                    ids.join(", ")
                }
            ))
        })?;
    let pin = match target.id.parse::<u64>() {
        Ok(n) => VersionPin::Number(n),
        Err(_) => VersionPin::id(target.id.clone()),
    };
    let old = fetch_one(backend.as_ref(), path, pin).await?.ok_or_else(|| {
        Fail::Failed(format!(
            "version `{}` of `{path}` is listed but cannot be read (destroyed or expired?)",
            target.id
        ))
    })?;
    let version = backend.put(PutRequest::new(path, old.value)).await?;
    if ctx.ui.json {
        ctx.ui
            .json(&json!({ "path": path, "restored": target.id, "version": version }));
    } else {
        let v = ctx.ui.paint(&version, Tone::Good);
        ctx.ui.line(format!(
            "rolled `{}` back to version {}: new version {v}",
            display(path),
            display(&target.id)
        ));
    }
    Ok(exit::OK)
}

pub(crate) async fn rotate(
    ctx: &mut Ctx<'_, '_>,
    path: &str,
    key: Option<&str>,
    length: u16,
    charset: Charset,
    force: bool,
) -> Result<u8, Fail> {
    let backend = ctx.backend().await?;
    if key.is_none() && !force {
        // One random string over a JSON object would silently drop every key the application reads.
        if let Some(object) = fetch_one(backend.as_ref(), path, VersionPin::Current)
            .await?
            .and_then(|p| as_object(&p.value))
        {
            let keys: Vec<String> = object.keys().map(|k| display(k).into_owned()).collect();
            return Err(Fail::Failed(format!(
                "`{}` holds a JSON object (keys: {}): rotate one key with --key NAME, or pass --force to replace \
                 the whole object with one random string",
                display(path),
                keys.join(", ")
            )));
        }
    }
    let generated = generate(usize::from(length), charset)?;
    let version = match key {
        Some(k) => {
            let write = write_key(backend.as_ref(), path, k, generated).await?;
            report_key_write(ctx, &backend.name(), &write);
            write.version
        }
        None => backend.put(PutRequest::new(path, SecretValue::text(generated))).await?,
    };
    report_rotation(ctx, path, &version, length, charset);
    Ok(exit::OK)
}

/// The least entropy, in bits, of a value `rotate --generate` writes without `--allow-weak`: out of reach of
/// offline guessing, as a 128-bit key is.
pub(crate) const MIN_ENTROPY_BITS: f64 = 128.0;

/// The characters `charset` draws from.
fn alphabet(charset: Charset) -> &'static [u8] {
    const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    const HEX: &[u8] = b"0123456789abcdef";
    const URLSAFE: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    const ASCII: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&()*+,-./:;<=>?@[]^_{|}~";
    match charset {
        Charset::Alnum => ALNUM,
        Charset::Hex => HEX,
        Charset::Urlsafe => URLSAFE,
        Charset::Ascii => ASCII,
    }
}

/// The `--charset` value naming `charset`.
fn charset_name(charset: Charset) -> &'static str {
    match charset {
        Charset::Alnum => "alnum",
        Charset::Hex => "hex",
        Charset::Urlsafe => "urlsafe",
        Charset::Ascii => "ascii",
    }
}

/// The entropy of `length` characters drawn uniformly from `charset`: `length × log2(alphabet size)`.
pub(crate) fn entropy_bits(length: u16, charset: Charset) -> f64 {
    f64::from(length) * (alphabet(charset).len() as f64).log2()
}

/// Why `rotate --generate length --charset charset` is refused without `--allow-weak`, with the length that
/// would pass.
pub(crate) fn too_weak(length: u16, charset: Charset) -> Fail {
    let per_char = (alphabet(charset).len() as f64).log2();
    let needed = (MIN_ENTROPY_BITS / per_char).ceil();
    Fail::Usage(format!(
        "--generate {length} --charset {name} is {bits} bits of entropy, below the {min} bits a generated secret \
         needs: use --generate {needed} or more, or pass --allow-weak for a system that cannot take a longer value; \
         nothing was written",
        name = charset_name(charset),
        bits = entropy_bits(length, charset).floor(),
        min = MIN_ENTROPY_BITS,
    ))
}

/// A uniformly random string from the operating system's CSPRNG (rejection sampling, so no modulo bias).
pub(crate) fn generate(length: usize, charset: Charset) -> Result<String, Fail> {
    let alphabet = alphabet(charset);
    let limit = 256 - 256 % alphabet.len();
    let mut out = String::with_capacity(length);
    let mut buf = [0u8; 64];
    while out.len() < length {
        getrandom::fill(&mut buf).map_err(|e| Fail::Failed(format!("the system random source failed: {e}")))?;
        for &b in &buf {
            if usize::from(b) < limit && out.len() < length {
                out.push(alphabet[usize::from(b) % alphabet.len()] as char);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_values_have_the_length_and_alphabet() {
        let v = generate(64, Charset::Hex).unwrap();
        assert_eq!(v.len(), 64);
        assert!(v.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(v, generate(64, Charset::Hex).unwrap());
        let v = generate(100, Charset::Alnum).unwrap();
        assert!(v.chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn entropy_is_length_times_the_bits_per_character() {
        assert_eq!(entropy_bits(8, Charset::Hex), 32.0);
        assert_eq!(entropy_bits(32, Charset::Hex), 128.0);
        assert_eq!(entropy_bits(22, Charset::Urlsafe), 132.0);
        assert!(entropy_bits(21, Charset::Alnum) < MIN_ENTROPY_BITS);
        assert!(entropy_bits(22, Charset::Alnum) >= MIN_ENTROPY_BITS);
        assert!(entropy_bits(20, Charset::Ascii) >= MIN_ENTROPY_BITS);
        assert!(entropy_bits(19, Charset::Ascii) < MIN_ENTROPY_BITS);
    }
}

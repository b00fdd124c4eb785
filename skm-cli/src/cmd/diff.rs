//! `diff`: compares the declared secrets between two profiles or two backends, in memory, and never prints a
//! value, a hash or a length.
//!
//! Each side is read by this process through the runtime's [`Loader`] with the backend layer only (no process
//! environment, `.env`, secret files or declared defaults), so what is compared is the stores. Every fetch of a
//! side is made once ([`Snapshot`]): the untyped read that gives the values and the typed load that tells
//! whether each value parses as its field's type see the same answers.
//!
//! States, per field with a `path` (an env-only field is in no store, and is listed as not compared):
//! `missing_in_a`, `missing_in_b`, `missing_in_both`, `type_mismatch` (the value on one side parses as the
//! field's type and the other's does not), `equal` / `different` (both present and both parse, or both fail:
//! compared byte for byte in constant time), `present_in_both` (both present, but whether a side parses could
//! not be decided, so the values were not compared), and `unreadable` (a side's read failed: access denied, the
//! backend out, a `key` on a value that is not a JSON object).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use clap::Args;
use serde_json::json;
use skm_runtime::backend::registry::{self, Descriptor};
use skm_runtime::backend::{AdminBackend, AdminErrorKind, Backend, FetchError, FetchRequest, FetchResult};
use skm_runtime::{Error, FieldProblem, Layer, Loader, RawField, ResolvedField, SecretSpec, Validators};
use subtle::ConstantTimeEq;

use crate::decl::{location, routed_backends, DeclSource, Declarations, Manifest, TypedLoad};
use crate::output::Tone;
use crate::safe::display_lines;
use crate::{describe_admin, exit, select, Ctx, Fail};

/// `skm diff --profile A --profile B` or `skm diff --from BACKEND --to BACKEND [--profile P [--profile Q]]`.
///
/// The profiles are the global `--profile`, given twice: without --from/--to exactly two, both read from the
/// backend (--backend, else detection); with --from/--to none (SKM_PROFILE), one (both sides read it) or two
/// (A's and B's). The standalone tool reads one manifest per profile: `--manifest 'skm.{profile}.toml'`.
#[derive(Debug, Args)]
pub(crate) struct DiffArgs {
    /// Side A's backend (a registry name or alias, as `--backend`), built from the environment.
    #[arg(long, value_name = "BACKEND", value_parser = backend_names(), ignore_case = true, requires = "to")]
    pub from: Option<String>,
    /// Side B's backend, built from the environment.
    #[arg(long, value_name = "BACKEND", value_parser = backend_names(), ignore_case = true, requires = "from")]
    pub to: Option<String>,
    /// This field (its id or its env name) must be equal on both sides: exit 1 if it is not (repeatable).
    #[arg(long = "expect-equal", value_name = "FIELD")]
    pub expect_equal: Vec<String>,
    /// Also list the paths under the declared paths' common prefix that no field declares (orphans), on
    /// each side whose backend can list.
    #[arg(long)]
    pub undeclared: bool,
}

/// The help's last words on `skm diff`.
pub(crate) const AFTER_HELP: &str = "Only the stores are compared: each side is read from its backend alone, \
without environment variables, .env files, secret files or declared defaults. No value, hash or length is \
ever printed. Exit codes: 0 no required field missing and every --expect-equal field equal; 1 a required \
field (neither optional nor defaulted) missing or unreadable on a side, or an --expect-equal field not equal; \
2 a usage or configuration error.";

fn backend_names() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(registry::names())
}

/// One side of the comparison.
struct Side {
    /// `A` or `B`.
    tag: &'static str,
    /// What the side is, for people: `profile staging on local store ...`, `aws`.
    label: String,
    profile: Option<String>,
    decls: Declarations,
    /// The backend serving the fields without a route (every field, with --from/--to).
    backend: Arc<dyn AdminBackend>,
    /// Routed backends by registry name; with --from/--to, `backend` under every route.
    routed: Vec<(&'static str, Arc<dyn AdminBackend>)>,
    /// With --from/--to: every field reads `backend`, whatever its route.
    all_on_backend: bool,
}

/// What one side holds for one field.
enum Read {
    Present {
        raw: RawField,
        /// Whether the value parses as the field's type; `None`: could not be decided (and why).
        parses: Result<bool, String>,
    },
    Absent,
    Failed(String),
}

impl Read {
    fn json(&self) -> serde_json::Value {
        match self {
            Read::Present { parses, .. } => json!({
                "present": true,
                "parses": parses.as_ref().ok(),
                "parse_undecided": parses.as_ref().err(),
                "error": null,
            }),
            Read::Absent => json!({ "present": false, "parses": null, "parse_undecided": null, "error": null }),
            Read::Failed(e) => json!({ "present": null, "parses": null, "parse_undecided": null, "error": e }),
        }
    }
}

/// The outcome for one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Equal,
    Different,
    TypeMismatch,
    MissingInA,
    MissingInB,
    MissingInBoth,
    PresentInBoth,
    Unreadable,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Equal => "equal",
            State::Different => "different",
            State::TypeMismatch => "type_mismatch",
            State::MissingInA => "missing_in_a",
            State::MissingInB => "missing_in_b",
            State::MissingInBoth => "missing_in_both",
            State::PresentInBoth => "present_in_both",
            State::Unreadable => "unreadable",
        }
    }

    fn words(self) -> &'static str {
        match self {
            State::Equal => "equal",
            State::Different => "different",
            State::TypeMismatch => "type mismatch",
            State::MissingInA => "missing in A",
            State::MissingInB => "missing in B",
            State::MissingInBoth => "missing in both",
            State::PresentInBoth => "present in both",
            State::Unreadable => "unreadable",
        }
    }

    fn missing(self) -> bool {
        matches!(self, State::MissingInA | State::MissingInB | State::MissingInBoth)
    }
}

struct Row {
    id: String,
    env: Option<String>,
    type_name: String,
    location_a: String,
    location_b: String,
    required: bool,
    expect_equal: bool,
    state: State,
    /// Why, in words (never a value): which side does not parse, why a side is unreadable.
    detail: Option<String>,
    a: serde_json::Value,
    b: serde_json::Value,
    /// Why this row fails the command, if it does.
    failure: Option<String>,
}

pub(crate) async fn run(ctx: &mut Ctx<'_, '_>, args: DiffArgs) -> Result<u8, Fail> {
    let mut sides = sides(ctx, &args).await?;
    let b_side = sides.pop().expect("two sides");
    let a_side = sides.pop().expect("two sides");
    let struct_name = a_side.decls.struct_name.clone();

    // --expect-equal names declared fields (by id or env), checked before anything is read.
    let mut expect: BTreeSet<String> = BTreeSet::new();
    for name in &args.expect_equal {
        let found = a_side
            .decls
            .fields
            .iter()
            .find(|f| f.id == *name || f.env.as_deref() == Some(name.as_str()));
        match found {
            Some(f) if f.path.is_some() => {
                expect.insert(f.id.clone());
            }
            Some(f) => {
                return Err(Fail::Usage(format!(
                    "--expect-equal {name}: field `{}` is env-only (no `path`): it is in no store to compare",
                    f.id
                )))
            }
            None => {
                let names: Vec<&str> = a_side
                    .decls
                    .fields
                    .iter()
                    .filter(|f| f.path.is_some())
                    .map(|f| f.id.as_str())
                    .collect();
                return Err(Fail::Usage(format!(
                    "--expect-equal {name}: no declared field has this id or env name (fields in a store: {})",
                    names.join(", ")
                )));
            }
        }
    }

    ctx.ui.note(format!(
        "comparing {} declared secrets: A = {}, B = {} ({})...",
        a_side.decls.fields.iter().filter(|f| f.path.is_some()).count(),
        a_side.label,
        b_side.label,
        ctx.deadline_words()
    ));
    let mut warnings = Vec::new();
    let same_paths = a_side
        .decls
        .fields
        .iter()
        .map(|f| &f.path)
        .eq(b_side.decls.fields.iter().map(|f| &f.path));
    if same_paths && a_side.backend.name() == b_side.backend.name() && a_side.all_on_backend == b_side.all_on_backend {
        warnings.push(
            "both sides read the same paths from the same backend: every field compares with itself (the struct's \
             prefix may not use `{profile}`)"
                .to_string(),
        );
    }

    let reads_a = read_side(ctx, &a_side).await?;
    let reads_b = read_side(ctx, &b_side).await?;

    let mut rows = Vec::new();
    let mut not_compared = Vec::new();
    for (fa, fb) in a_side.decls.fields.iter().zip(&b_side.decls.fields) {
        if fa.path.is_none() {
            not_compared.push(json!({
                "field": fa.id,
                "env": fa.env,
                "why": "env-only: declared without `path`, so it is in no store",
            }));
            continue;
        }
        let ra = reads_a.get(&fa.id).unwrap_or(&Read::Absent);
        let rb = reads_b.get(&fb.id).unwrap_or(&Read::Absent);
        let (state, detail) = compare(ra, rb, &fa.spec.type_name);
        let required = !fa.spec.optional && !a_side.decls.has_default(fa);
        let expect_equal = expect.contains(&fa.id);
        let failure = match state {
            State::Unreadable => Some(format!(
                "`{}` could not be read: {}",
                fa.id,
                detail.clone().unwrap_or_default()
            )),
            s if s.missing() && required => Some(format!("`{}` is required and {}", fa.id, s.words())),
            State::MissingInBoth => None,
            s if expect_equal && s != State::Equal => Some(format!(
                "`{}` must be equal on both sides (--expect-equal) and is {}",
                fa.id,
                s.words()
            )),
            _ => None,
        };
        rows.push(Row {
            id: fa.id.clone(),
            env: fa.env.as_deref().map(str::to_string),
            type_name: fa.spec.type_name.to_string(),
            location_a: location(fa),
            location_b: location(fb),
            required,
            expect_equal,
            state,
            detail,
            a: ra.json(),
            b: rb.json(),
            failure,
        });
    }
    // The values are dropped (and zeroized) here, before anything is printed.
    drop(reads_a);
    drop(reads_b);

    let undeclared = if args.undeclared {
        Some([undeclared(ctx, &a_side).await, undeclared(ctx, &b_side).await])
    } else {
        None
    };

    let failed = rows.iter().filter(|r| r.failure.is_some()).count();
    // By state, in the JSON's names and in words.
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut counted: BTreeMap<&'static str, usize> = BTreeMap::new();
    for r in &rows {
        *counts.entry(r.state.as_str()).or_default() += 1;
        *counted.entry(r.state.words()).or_default() += 1;
    }

    if ctx.ui.json {
        let side_json = |s: &Side| {
            json!({
                "label": s.label,
                "profile": s.profile,
                "backend": s.backend.name(),
                "routed_backends": s.routed.iter().filter(|_| !s.all_on_backend).map(|(n, b)| json!({ "route": n, "backend": b.name() })).collect::<Vec<_>>(),
            })
        };
        let fields: Vec<_> = rows
            .iter()
            .map(|r| {
                json!({
                    "field": r.id,
                    "env": r.env,
                    "type": r.type_name,
                    "path_a": r.location_a,
                    "path_b": r.location_b,
                    "required": r.required,
                    "expect_equal": r.expect_equal,
                    "state": r.state.as_str(),
                    "detail": r.detail,
                    "a": r.a,
                    "b": r.b,
                    "ok": r.failure.is_none(),
                    "failure": r.failure,
                })
            })
            .collect();
        let undeclared_json = undeclared
            .as_ref()
            .map(|[a, b]| json!({ "a": a.json(), "b": b.json() }));
        ctx.ui.json(&json!({
            "ok": failed == 0,
            "struct": struct_name,
            "a": side_json(&a_side),
            "b": side_json(&b_side),
            "layers": ["backend"],
            "compared": rows.len(),
            "failed": failed,
            "counts": counts,
            "fields": fields,
            "not_compared": not_compared,
            "undeclared": undeclared_json,
            "warnings": warnings,
        }));
    } else {
        ctx.ui.line(display_lines(&format!(
            "{struct_name}: A = {}, B = {}",
            a_side.label, b_side.label
        )));
        let table: Vec<_> = rows
            .iter()
            .map(|r| {
                let tone = match (r.state, r.failure.is_some()) {
                    (_, true) => Tone::Bad,
                    (State::Equal, _) => Tone::Good,
                    (State::MissingInBoth, _) => Tone::Dim,
                    _ => Tone::Warn,
                };
                let path = if r.location_a == r.location_b {
                    r.location_a.clone()
                } else {
                    format!("{} | {}", r.location_a, r.location_b)
                };
                let state = match &r.detail {
                    Some(d) if r.state != State::Unreadable => format!("{} ({d})", r.state.words()),
                    _ => r.state.words().to_string(),
                };
                let need = match (r.required, r.expect_equal) {
                    (_, true) => "expect equal",
                    (true, false) => "required",
                    (false, false) => "optional",
                };
                vec![
                    (r.id.clone(), Tone::Plain),
                    (path, Tone::Plain),
                    (state, tone),
                    (need.to_string(), Tone::Dim),
                ]
            })
            .collect();
        ctx.ui.table(&["field", "path (A | B)", "state", "need"], &table);
        for w in &warnings {
            ctx.ui.warn(w);
        }
        for r in &rows {
            if let Some(f) = &r.failure {
                let label = ctx.ui.paint("✗", Tone::Bad);
                ctx.ui.line(format!("{label} {}", display_lines(f)));
            }
        }
        for n in &not_compared {
            ctx.ui.note(format!(
                "not compared: `{}` is env-only (declared without `path`, so it is in no store)",
                n["field"].as_str().unwrap_or_default()
            ));
        }
        if let Some(sides) = &undeclared {
            for u in sides {
                u.print(ctx);
            }
        }
        let summary: Vec<String> = counted.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let line = format!(
            "{} compared: {}{}",
            rows.len(),
            if summary.is_empty() {
                "nothing".to_string()
            } else {
                summary.join(", ")
            },
            if failed == 0 {
                String::new()
            } else {
                format!("; {failed} failing")
            }
        );
        let tone = if failed == 0 { Tone::Good } else { Tone::Bad };
        let painted = ctx.ui.paint(&line, tone);
        ctx.ui.line(painted);
        ctx.ui.note(
            "only the stores were compared (no env, .env, secret files or defaults); no value, hash or length is shown",
        );
    }
    Ok(if failed == 0 { exit::OK } else { exit::FAILED })
}

/// The state of a field from what each side holds.
fn compare(a: &Read, b: &Read, type_name: &str) -> (State, Option<String>) {
    match (a, b) {
        (Read::Failed(e), _) => (State::Unreadable, Some(format!("on A: {e}"))),
        (_, Read::Failed(e)) => (State::Unreadable, Some(format!("on B: {e}"))),
        (Read::Absent, Read::Absent) => (State::MissingInBoth, None),
        (Read::Absent, Read::Present { .. }) => (State::MissingInA, None),
        (Read::Present { .. }, Read::Absent) => (State::MissingInB, None),
        (Read::Present { raw: va, parses: pa }, Read::Present { raw: vb, parses: pb }) => match (pa, pb) {
            (Ok(x), Ok(y)) if x != y => {
                let bad = if *x { "B" } else { "A" };
                (
                    State::TypeMismatch,
                    Some(format!("{bad} does not parse as {type_name}")),
                )
            }
            (Ok(_), Ok(_)) => {
                let same: bool = va.expose_bytes().ct_eq(vb.expose_bytes()).into();
                (if same { State::Equal } else { State::Different }, None)
            }
            (Err(why), _) => (State::PresentInBoth, Some(format!("not compared: on A, {why}"))),
            (_, Err(why)) => (State::PresentInBoth, Some(format!("not compared: on B, {why}"))),
        },
    }
}

/// Both sides, with their declarations and backends, from the arguments.
async fn sides(ctx: &mut Ctx<'_, '_>, args: &DiffArgs) -> Result<Vec<Side>, Fail> {
    let profiles = ctx.profiles.clone();
    for p in &profiles {
        crate::check_profile(p).map_err(Fail::Usage)?;
    }
    match (&args.from, &args.to) {
        (None, None) => {
            let [a, b] = profiles.as_slice() else {
                return Err(Fail::Usage(format!(
                    "`diff` compares two profiles (--profile A --profile B, exactly two; {} given) or two \
                     backends (--from BACKEND --to BACKEND)",
                    profiles.len()
                )));
            };
            if a == b {
                return Err(Fail::Usage(format!(
                    "--profile {a} given twice: name two different profiles, or compare two backends with \
                     --from/--to"
                )));
            }
            let backend = ctx.within("setting the backend up", ctx.backend()).await??;
            let choice = ctx.choice()?;
            let mut out = Vec::new();
            for (tag, profile) in [("A", a), ("B", b)] {
                let decls = side_declarations(ctx, Some(profile))?;
                let routed = ctx
                    .within(
                        "setting the routed backends up",
                        routed_backends(&decls.fields, &choice),
                    )
                    .await?;
                let mut built = Vec::new();
                for r in routed {
                    match r.backend {
                        Ok(b) => built.push((r.descriptor.name, b)),
                        // Its fields fail as unreadable, with the load's own message; said once.
                        Err(_) if tag == "B" => {}
                        Err(why) => ctx.ui.warn(format!(
                            "backend `{}` (for {}): {why}",
                            r.descriptor.name,
                            r.fields.join(", ")
                        )),
                    }
                }
                out.push(Side {
                    tag,
                    label: format!("profile {profile} on {}", backend.name()),
                    profile: decls.profile.clone(),
                    decls,
                    backend: backend.clone(),
                    routed: built,
                    all_on_backend: false,
                });
            }
            Ok(out)
        }
        (Some(from), Some(to)) => {
            if ctx.backend_flag.is_some() {
                return Err(Fail::Usage(
                    "--backend picks the backend of a profile diff; with --from/--to each side names its own".into(),
                ));
            }
            let fallback = ctx.profile()?;
            let (pa, pb) = match profiles.as_slice() {
                [] => (fallback.clone(), fallback),
                [p] => (Some(p.clone()), Some(p.clone())),
                [a, b] => (Some(a.clone()), Some(b.clone())),
                more => {
                    return Err(Fail::Usage(format!(
                        "with --from/--to give at most two --profile ({} given)",
                        more.len()
                    )))
                }
            };
            let ka = kind(from, "--from")?;
            let kb = kind(to, "--to")?;
            if ka.name == kb.name && pa == pb {
                return Err(Fail::Usage(format!(
                    "--from {} and --to {} are the same backend, with the same profile: skm builds each from the \
                     environment, so this would compare a store with itself",
                    ka.name, kb.name
                )));
            }
            let mut out = Vec::new();
            for (tag, k, profile, flag) in [("A", ka, pa, "--from"), ("B", kb, pb, "--to")] {
                let decls = side_declarations(ctx, profile.as_deref())?;
                let backend = ctx
                    .within(&format!("setting the `{}` backend up", k.name), select::build(Some(k)))
                    .await??
                    .ok_or_else(|| Fail::Usage(format!("{flag} {}: cannot build that backend", k.name)))?;
                let mut routes: Vec<&'static str> = decls.fields.iter().filter_map(|f| f.route()).collect();
                routes.sort_unstable();
                routes.dedup();
                let label = match (&decls.profile, profiles.len()) {
                    (Some(p), 1 | 2) => format!("{} ({}), profile {p}", k.name, backend.name()),
                    _ => format!("{} ({})", k.name, backend.name()),
                };
                out.push(Side {
                    tag,
                    label,
                    profile: decls.profile.clone(),
                    decls,
                    routed: routes.into_iter().map(|r| (r, backend.clone())).collect(),
                    backend,
                    all_on_backend: true,
                });
            }
            Ok(out)
        }
        // clap's `requires` keeps these apart.
        _ => Err(Fail::Usage("--from and --to go together".into())),
    }
}

fn kind(name: &str, flag: &str) -> Result<&'static Descriptor, Fail> {
    select::parse_kind(name)?.ok_or_else(|| {
        Fail::Usage(format!(
            "{flag} none: name a backend to compare ({})",
            registry::names().join(", ")
        ))
    })
}

/// The declarations for `profile`: the embedded struct's resolved with it, or the manifest written for it
/// (`--manifest` with `{profile}` in its name reads one file per profile).
fn side_declarations(ctx: &Ctx<'_, '_>, profile: Option<&str>) -> Result<Declarations, Fail> {
    match (&ctx.source, &ctx.manifest) {
        (DeclSource::Embedded { name, .. }, Some(_)) => Err(Fail::Usage(format!(
            "this binary has the declarations of `{name}` built in; --manifest (or SKM_MANIFEST) is for the \
             standalone `skm`"
        ))),
        (DeclSource::Embedded { name, resolve, typed }, None) => {
            let fields = resolve(profile).map_err(Fail::from)?;
            Ok(Declarations {
                struct_name: name.to_string(),
                profile: profile.map(str::to_string),
                fields,
                typed: Some(*typed),
                unsupplied_defaults: Vec::new(),
            })
        }
        (DeclSource::Manifest, None) => Err(Fail::Usage(
            "`diff` needs the declarations: pass --manifest FILE (written by `skm manifest`; one per profile for \
             a profile diff: --manifest 'skm.{profile}.toml'), or run the command through the application's \
             `secrets` binary"
                .into(),
        )),
        (DeclSource::Manifest, Some(path)) => {
            let text = path.to_string_lossy();
            let templated = text.contains("{profile}");
            let path = match (templated, profile) {
                (true, Some(p)) => std::path::PathBuf::from(text.replace("{profile}", p)),
                (true, None) => {
                    return Err(Fail::Usage(format!(
                        "--manifest {text} names a file per profile, and no profile is given: pass --profile"
                    )))
                }
                (false, _) => path.clone(),
            };
            let manifest = Manifest::read(&path).map_err(Fail::Usage)?;
            if let (Some(wanted), Some(has)) = (profile, &manifest.profile) {
                if wanted != has {
                    return Err(Fail::Usage(format!(
                        "the manifest {} was written for profile `{has}`, not `{wanted}`: a manifest holds the \
                         paths of one profile; export one per profile (`skm manifest --profile {wanted} -o \
                         skm.{wanted}.toml`) and pass --manifest 'skm.{{profile}}.toml'",
                        path.display()
                    )));
                }
            }
            let mut decls = manifest.into_declarations();
            if decls.profile.is_none() {
                decls.profile = profile.map(str::to_string);
            }
            Ok(decls)
        }
    }
}

/// Reads every field with a path on `side`: the values (backend layer only) and whether each parses.
async fn read_side(ctx: &Ctx<'_, '_>, side: &Side) -> Result<BTreeMap<String, Read>, Fail> {
    let snapshot = |b: &Arc<dyn AdminBackend>| -> Arc<dyn Backend> { Arc::new(Snapshot::new(b.clone())) };
    let mut loader = ctx
        .loader()
        .precedence([Layer::Backend])
        .no_dotenv()
        .no_secrets_dir()
        .env_vars(Vec::<(String, String)>::new())
        // An outage is an error, never a silent `missing`.
        .strict(true)
        .backend_arc(snapshot(&side.backend));
    for (route, b) in &side.routed {
        loader = loader.with_backend_arc(route, snapshot(b));
    }
    if let Some(p) = &side.profile {
        loader = loader.profile(p.clone());
    }
    // Every field optional, without default or validators: a missing one is `absent`, not a failed load, and
    // a value that fails a validator is still compared.
    let mut pending: Vec<ResolvedField> = side
        .decls
        .fields
        .iter()
        .filter(|f| f.path.is_some())
        .map(comparable)
        .collect();
    let mut out: BTreeMap<String, Read> = BTreeMap::new();
    let what = format!("reading side {}", side.tag);
    // Failed fields are set aside and the rest read again (from the snapshot: no second fetch).
    for _ in 0..=pending.len() {
        match ctx
            .within_backstop(&what, loader.load_raw(side.decls.struct_name.clone(), &pending))
            .await?
        {
            Ok(raw) => {
                for f in raw.fields {
                    out.insert(
                        f.field.clone(),
                        Read::Present {
                            raw: f,
                            parses: Err("not checked".into()),
                        },
                    );
                }
                for f in &pending {
                    out.entry(f.id.clone()).or_insert(Read::Absent);
                }
                break;
            }
            Err(Error::Load(e)) if !e.fields.is_empty() => {
                for f in e.fields {
                    pending.retain(|p| p.id != f.field);
                    out.insert(f.field.clone(), Read::Failed(f.to_string()));
                }
            }
            Err(other) => return Err(Fail::from(other)),
        }
    }
    // Whether each value parses as its field's type: the embedded struct's typed load on the same snapshot,
    // else (a manifest) the type's name, for the types whose parsing the tool knows.
    let typed: BTreeMap<String, Result<bool, String>> = match side.decls.typed {
        Some(typed) => typed_check(ctx, &loader, typed, &what).await?,
        None => BTreeMap::new(),
    };
    for f in &side.decls.fields {
        if let Some(Read::Present { raw, parses }) = out.get_mut(&f.id) {
            *parses = match side.decls.typed {
                Some(_) => typed.get(&f.id).cloned().unwrap_or(Ok(true)),
                None => parses_as(&f.spec.type_name, raw.expose_bytes()).ok_or_else(|| {
                    format!(
                        "the standalone tool cannot tell whether a value parses as `{}` (run the diff through the \
                         application's `secrets` binary)",
                        f.spec.type_name
                    )
                }),
            };
        }
    }
    Ok(out)
}

/// The typed load's verdict per field: `Ok(false)` for a value of the wrong type, `Err` where the load failed
/// the field for another reason before typing it (a validator, a failed read); fields it does not name parse.
async fn typed_check(
    ctx: &Ctx<'_, '_>,
    loader: &Loader,
    typed: TypedLoad,
    what: &str,
) -> Result<BTreeMap<String, Result<bool, String>>, Fail> {
    let mut out = BTreeMap::new();
    match ctx.within_backstop(what, typed(loader)).await? {
        Ok(_) => {}
        Err(Error::Load(e)) => {
            for f in e.fields {
                let verdict = match &f.reason {
                    FieldProblem::WrongType { .. } => Ok(false),
                    // A missing field is reported as missing by the untyped read.
                    FieldProblem::Missing => continue,
                    FieldProblem::Validation(_) => Err("a validator failed before the type was checked".to_string()),
                    _ => Err("the typed load failed the field before checking its type".to_string()),
                };
                out.insert(f.field.clone(), verdict);
            }
        }
        Err(other) => return Err(Fail::from(other)),
    }
    Ok(out)
}

/// `f` as an optional field without default or validators, reading the current version of its path.
fn comparable(f: &ResolvedField) -> ResolvedField {
    let spec = SecretSpec {
        default: None,
        optional: true,
        validate: Validators::NONE,
        rotating: false,
        ..SecretSpec::clone(&f.spec)
    };
    ResolvedField {
        id: f.id.clone(),
        path: f.path.clone(),
        key: f.key.clone(),
        env: f.env.clone(),
        spec: spec.into(),
    }
}

/// Whether `value` parses as the type named `type_name`, as the runtime parses it (numbers and `bool`
/// trimmed; `bool` as true/false, 1/0, yes/no, on/off); `None` for a type whose parsing the name does not tell
/// (a user's type, a structure read as JSON).
pub(crate) fn parses_as(type_name: &str, value: &[u8]) -> Option<bool> {
    let mut t = type_name.trim();
    // Wrappers that do not change the parsing: `Option<T>`, `SecretBox<T>`, `Secret<T>`, `Box<T>`.
    loop {
        let last = t.rsplit("::").next().unwrap_or(t);
        let inner = ["Option<", "SecretBox<", "Secret<", "Box<"]
            .iter()
            .find_map(|w| last.strip_prefix(w).and_then(|r| r.strip_suffix('>')));
        match inner {
            Some(i) => t = i.trim(),
            None => {
                t = last;
                break;
            }
        }
    }
    let text = || std::str::from_utf8(value).ok().map(str::trim);
    let number = |ok: fn(&str) -> bool| Some(text().is_some_and(ok));
    match t {
        "SecretString" | "String" | "str" => Some(std::str::from_utf8(value).is_ok()),
        "Vec<u8>" | "SecretVec<u8>" | "[u8]" => Some(true),
        "bool" => Some(text().is_some_and(|s| {
            matches!(
                s.to_ascii_lowercase().as_str(),
                "true" | "1" | "yes" | "on" | "false" | "0" | "no" | "off"
            )
        })),
        "u8" => number(|s| s.parse::<u8>().is_ok()),
        "u16" => number(|s| s.parse::<u16>().is_ok()),
        "u32" => number(|s| s.parse::<u32>().is_ok()),
        "u64" => number(|s| s.parse::<u64>().is_ok()),
        "u128" => number(|s| s.parse::<u128>().is_ok()),
        "usize" => number(|s| s.parse::<usize>().is_ok()),
        "i8" => number(|s| s.parse::<i8>().is_ok()),
        "i16" => number(|s| s.parse::<i16>().is_ok()),
        "i32" => number(|s| s.parse::<i32>().is_ok()),
        "i64" => number(|s| s.parse::<i64>().is_ok()),
        "i128" => number(|s| s.parse::<i128>().is_ok()),
        "isize" => number(|s| s.parse::<isize>().is_ok()),
        "f32" => number(|s| s.parse::<f32>().is_ok()),
        "f64" => number(|s| s.parse::<f64>().is_ok()),
        "char" => number(|s| s.parse::<char>().is_ok()),
        _ => None,
    }
}

/// What `--undeclared` found on one side.
struct Undeclared {
    tag: &'static str,
    backend: String,
    prefix: Option<String>,
    result: Result<Vec<String>, String>,
}

impl Undeclared {
    fn json(&self) -> serde_json::Value {
        json!({
            "backend": self.backend,
            "prefix": self.prefix,
            "paths": self.result.as_ref().ok(),
            "error": self.result.as_ref().err(),
        })
    }

    fn print(&self, ctx: &mut Ctx<'_, '_>) {
        match (&self.result, &self.prefix) {
            (Err(e), _) => ctx.ui.warn(format!("undeclared on {}: {e}", self.tag)),
            (Ok(paths), Some(prefix)) if paths.is_empty() => {
                ctx.ui.line(display_lines(&format!(
                    "undeclared on {} ({}, under {prefix}): none",
                    self.tag, self.backend
                )));
            }
            (Ok(paths), prefix) => {
                ctx.ui.line(display_lines(&format!(
                    "undeclared on {} ({}, under {}):",
                    self.tag,
                    self.backend,
                    prefix.as_deref().unwrap_or("")
                )));
                for p in paths {
                    ctx.ui.line(format!("  {}", display_lines(p)));
                }
            }
        }
    }
}

/// The paths on `side`'s backend under its declared paths' common prefix that no field declares.
async fn undeclared(ctx: &Ctx<'_, '_>, side: &Side) -> Undeclared {
    let served: Vec<&str> = side
        .decls
        .fields
        .iter()
        .filter(|f| side.all_on_backend || f.route().is_none())
        .filter_map(|f| f.path.as_deref())
        .collect();
    let declared: BTreeSet<&str> = side.decls.fields.iter().filter_map(|f| f.path.as_deref()).collect();
    let prefix = common_prefix(&served);
    let mut out = Undeclared {
        tag: side.tag,
        backend: side.backend.name(),
        prefix: prefix.clone(),
        result: Ok(Vec::new()),
    };
    let Some(prefix) = prefix else {
        out.result = Err(if served.is_empty() {
            "no declared path is read from this backend".into()
        } else {
            "the declared paths share no prefix, so no set of paths belongs to the struct alone".into()
        });
        return out;
    };
    let listed = ctx
        .within(&format!("listing {prefix} on {}", side.tag), side.backend.list(&prefix))
        .await;
    out.result = match listed {
        Ok(Ok(entries)) => Ok(entries
            .into_iter()
            .map(|e| e.path)
            .filter(|p| p.starts_with(&prefix) && !declared.contains(p.as_str()))
            .collect()),
        Ok(Err(e)) if e.kind == AdminErrorKind::Unsupported => {
            Err(format!("{} cannot list its secrets", side.backend.name()))
        }
        Ok(Err(e)) => Err(describe_admin(&e)),
        Err(Fail::Usage(m) | Fail::Failed(m)) => Err(m),
    };
    out
}

/// The leading path segments every path's directory shares, with a trailing `/`: `app/prod/` for
/// `app/prod/db` and `app/prod/auth/jwt`; `None` when they share none.
fn common_prefix(paths: &[&str]) -> Option<String> {
    let mut dirs = paths.iter().map(|p| {
        let mut segments: Vec<&str> = p.split('/').collect();
        segments.pop();
        segments
    });
    let mut common = dirs.next()?;
    for d in dirs {
        let n = common.iter().zip(&d).take_while(|(x, y)| x == y).count();
        common.truncate(n);
    }
    (!common.is_empty()).then(|| format!("{}/", common.join("/")))
}

/// A backend seen through a memo: each request is fetched once, and every later load of the side is answered
/// from the same answers, so that the values and their type check agree.
struct Snapshot {
    inner: Arc<dyn AdminBackend>,
    memo: Mutex<HashMap<FetchRequest, FetchResult>>,
}

impl Snapshot {
    fn new(inner: Arc<dyn AdminBackend>) -> Self {
        Snapshot {
            inner,
            memo: Mutex::new(HashMap::new()),
        }
    }
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("backend", &self.inner.name())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Backend for Snapshot {
    fn name(&self) -> String {
        self.inner.name()
    }

    async fn fetch(&self, requests: &[FetchRequest]) -> Vec<FetchResult> {
        let missing: Vec<FetchRequest> = {
            let memo = self.memo.lock().unwrap_or_else(|p| p.into_inner());
            let mut m: Vec<FetchRequest> = requests.iter().filter(|r| !memo.contains_key(r)).cloned().collect();
            m.sort();
            m.dedup();
            m
        };
        if !missing.is_empty() {
            let answers = self.inner.fetch(&missing).await;
            let mut memo = self.memo.lock().unwrap_or_else(|p| p.into_inner());
            for (r, a) in missing.into_iter().zip(answers) {
                memo.insert(r, a);
            }
        }
        let memo = self.memo.lock().unwrap_or_else(|p| p.into_inner());
        requests
            .iter()
            .map(|r| {
                memo.get(r).cloned().unwrap_or_else(|| {
                    Err(FetchError::unavailable(
                        "the backend returned no answer for this request",
                    ))
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_parse_by_name() {
        assert_eq!(parses_as("u16", b" 8080 "), Some(true));
        assert_eq!(parses_as("Option<u16>", b"eighty"), Some(false));
        assert_eq!(parses_as("SecretBox<u16>", b"70000"), Some(false));
        assert_eq!(parses_as("bool", b"Yes"), Some(true));
        assert_eq!(parses_as("bool", b"maybe"), Some(false));
        assert_eq!(parses_as("SecretString", b"anything"), Some(true));
        assert_eq!(parses_as("::secrecy::SecretString", &[0xff, 0xfe]), Some(false));
        assert_eq!(parses_as("Option<SecretBox<Vec<u8>>>", &[0xff]), Some(true));
        assert_eq!(parses_as("url::Url", b"https://example.com"), None);
        assert_eq!(parses_as("SecretBox<HashMap<String,u16>>", b"{}"), None);
    }

    #[test]
    fn the_common_prefix_is_whole_segments() {
        assert_eq!(
            common_prefix(&["app/prod/db", "app/prod/auth/jwt"]).as_deref(),
            Some("app/prod/")
        );
        assert_eq!(common_prefix(&["app/prod/db"]).as_deref(), Some("app/prod/"));
        assert_eq!(
            common_prefix(&["app/prod/db", "app/production/x"]).as_deref(),
            Some("app/")
        );
        assert_eq!(common_prefix(&["db", "app/x"]), None);
        assert_eq!(common_prefix(&[]), None);
    }
}

//! The AWS SSM Parameter Store backend against a real moto server, seeded and cross-checked by boto3.
//!
//! Every test starts its own moto (`skm_testing::Moto`), so tests share no state; a missing moto fails the
//! test (`Moto::start` panics), never skips it. Tests that need AWS variables run this binary again as a
//! child process with exactly those variables (`ssm::child_process_entry`).
#![cfg(feature = "ssm")]

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use skm::backend::ssm::{SsmBackend, SsmBackendBuilder};
use skm::backend::{
    AdminBackend, AdminErrorKind, Backend, DeleteMode, FailureKind, FetchRequest, PutRequest, SecretValue,
};
use skm::{ExposeSecret, FieldProblem, Loader, SecretBox, SecretString, Secrets, VersionPin};
use skm_testing::{Action, Moto, Proxy};

use crate::support::no_instance_metadata;

const SENTINEL: &str = "SENTINEL-ssm-8d41-do-not-leak";

async fn moto() -> Moto {
    no_instance_metadata();
    Moto::start().await
}

fn builder(endpoint: &str) -> SsmBackendBuilder {
    SsmBackend::builder()
        .region("us-east-1")
        .endpoint_url(endpoint)
        .static_credentials("test", "test")
}

async fn backend(endpoint: &str) -> SsmBackend {
    builder(endpoint).build().await.expect("backend")
}

fn loader(backend: &SsmBackend) -> Loader {
    Loader::new()
        .backend(backend.clone())
        .no_dotenv()
        .env_vars(Vec::<(String, String)>::new())
}

async fn put(backend: &SsmBackend, path: &str, value: &str) -> String {
    backend
        .put(PutRequest::new(path, SecretValue::text(value)))
        .await
        .expect("put")
}

fn text(result: &skm::backend::FetchResult) -> String {
    match &result.as_ref().unwrap_or_else(|e| panic!("not found: {e}")).value {
        SecretValue::Text(s) => s.expose_secret().to_string(),
        SecretValue::Binary(_) => panic!("expected text"),
    }
}

/// Runs `script` with the venv's python (boto3) against `moto`, and returns its stdout.
pub(crate) async fn boto3(moto: &Moto, script: &'static str) -> String {
    let python = skm_testing::venv_bin("python");
    let mut command = Command::new(&python);
    command
        .args(["-c", script])
        .env("MOTO", moto.endpoint())
        .env("AWS_EC2_METADATA_DISABLED", "true");
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    assert!(
        out.status.success(),
        "boto3 failed (is boto3 installed in .venv?):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[derive(Secrets)]
struct FromBoto {
    #[secret(path = "boto/db", key = "password")]
    password: SecretString,
    #[secret(path = "boto/db", key = "port")]
    port: SecretBox<u16>,
    #[secret(path = "boto/token")]
    token: SecretString,
    #[secret(path = "boto/token:1")]
    first_token: SecretString,
    #[secret(path = "boto/token", version = 2)]
    second_token: SecretString,
    #[secret(path = "boto/token", version_stage = "blue")]
    blue_token: SecretString,
    #[secret(path = "boto/plain")]
    plain: SecretString,
}

#[tokio::test]
async fn reads_what_boto3_writes_and_boto3_reads_what_skm_writes() {
    let moto = moto().await;
    const SEED: &str = r#"
import json, os, boto3
ssm = boto3.client("ssm", endpoint_url=os.environ["MOTO"], region_name="us-east-1",
                   aws_access_key_id="test", aws_secret_access_key="test")
ssm.put_parameter(Name="/boto/db", Type="SecureString", Value=json.dumps({"password": "hunter2", "port": 6543}))
ssm.put_parameter(Name="/boto/token", Type="SecureString", Value="token-1")
ssm.put_parameter(Name="/boto/token", Type="SecureString", Value="token-2", Overwrite=True)
ssm.put_parameter(Name="/boto/token", Type="SecureString", Value="token-3", Overwrite=True)
ssm.label_parameter_version(Name="/boto/token", ParameterVersion=2, Labels=["blue"])
ssm.put_parameter(Name="/boto/plain", Type="String", Value="plain text")
print("written")
"#;
    assert!(boto3(&moto, SEED).await.contains("written"));

    let b = backend(&moto.endpoint()).await;
    let loaded = loader(&b)
        .load_report::<FromBoto>()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let s = loaded.value;
    assert_eq!(s.password.expose_secret(), "hunter2");
    assert_eq!(*s.port.expose_secret(), 6543);
    assert_eq!(s.token.expose_secret(), "token-3");
    assert_eq!(s.first_token.expose_secret(), "token-1");
    assert_eq!(s.second_token.expose_secret(), "token-2");
    assert_eq!(s.blue_token.expose_secret(), "token-2");
    assert_eq!(s.plain.expose_secret(), "plain text");
    let provenance = loaded.provenance.get("password").unwrap().to_string();
    assert!(
        provenance.starts_with("AWS SSM Parameter Store (us-east-1)") && provenance.contains("boto/db"),
        "{provenance}"
    );

    // The other way: what skm writes, boto3 reads as a decrypted SecureString.
    put(&b, "skm/written", r#"{"user":"app","password":"from-skm"}"#).await;
    const READ: &str = r#"
import json, os, boto3
ssm = boto3.client("ssm", endpoint_url=os.environ["MOTO"], region_name="us-east-1",
                   aws_access_key_id="test", aws_secret_access_key="test")
p = ssm.get_parameter(Name="/skm/written", WithDecryption=True)["Parameter"]
print(p["Type"], json.loads(p["Value"])["password"], p["Version"])
"#;
    assert_eq!(boto3(&moto, READ).await.trim(), "SecureString from-skm 1");
}

// Only whether it loads matters.
#[allow(dead_code)]
#[derive(Secrets)]
struct Missing {
    #[secret(path = "app/present")]
    present: SecretString,
    #[secret(path = "app/absent-parameter")]
    absent: SecretString,
}

#[tokio::test]
async fn a_missing_parameter_is_reported_by_name_and_the_rest_of_its_batch_loads() {
    let moto = moto().await;
    let b = backend(&moto.endpoint()).await;
    put(&b, "app/present", SENTINEL).await;

    let r = b
        .fetch(&[
            FetchRequest::current("app/present"),
            FetchRequest::current("app/absent-parameter"),
            FetchRequest::current("app/bad name"),
        ])
        .await;
    assert_eq!(text(&r[0]), SENTINEL);
    let e = r[1].as_ref().expect_err("missing");
    assert_eq!(e.kind, FailureKind::NotFound, "{e}");
    assert!(e.detail.contains("/app/absent-parameter"), "{e}");
    // A name AWS would refuse fails alone, before the request (it would fail the whole batch there).
    assert_eq!(r[2].as_ref().err().map(|e| e.kind), Some(FailureKind::Invalid));

    let e = loader(&b).load::<Missing>().await.err().expect("a missing parameter");
    let load = e.as_load().unwrap();
    assert_eq!(load.fields.len(), 1, "{e}");
    assert_eq!(load.fields[0].reason, FieldProblem::Missing, "{e}");
    let shown = format!("{e} {e:?}");
    assert!(shown.contains("app/absent-parameter"), "{shown}");
    assert!(!shown.contains(SENTINEL), "value leaked: {shown}");
}

#[tokio::test]
async fn versions_labels_and_previous() {
    let moto = moto().await;
    let b = backend(&moto.endpoint()).await;
    assert_eq!(put(&b, "ver/key", "one").await, "1");
    assert_eq!(put(&b, "ver/key", "two").await, "2");
    assert_eq!(put(&b, "ver/key", "three").await, "3");
    let pin = |path: &str, version: VersionPin| FetchRequest {
        path: path.into(),
        version,
    };
    let r = b
        .fetch(&[
            pin("ver/key", VersionPin::Current),
            pin("ver/key", VersionPin::Number(1)),
            pin("ver/key:2", VersionPin::Current),
            pin("/ver/key", VersionPin::Previous),
            pin("ver/key", VersionPin::id("1")),
            pin("ver/key", VersionPin::Number(9)),
            pin("ver/key", VersionPin::id("not-a-number")),
            pin("ver/key:2", VersionPin::Number(1)),
        ])
        .await;
    assert_eq!(text(&r[0]), "three");
    assert_eq!(r[0].as_ref().unwrap().version.as_deref(), Some("3"));
    assert_eq!(text(&r[1]), "one");
    assert_eq!(r[1].as_ref().unwrap().version.as_deref(), Some("1"));
    assert_eq!(text(&r[2]), "two");
    assert_eq!(text(&r[3]), "two");
    assert_eq!(text(&r[4]), "one");
    assert_eq!(r[5].as_ref().err().map(|e| e.kind), Some(FailureKind::NotFound));
    assert_eq!(r[6].as_ref().err().map(|e| e.kind), Some(FailureKind::Invalid));
    assert_eq!(r[7].as_ref().err().map(|e| e.kind), Some(FailureKind::Invalid));

    // Labels are Parameter Store's own `name:label` selector.
    b.client()
        .label_parameter_version()
        .name("/ver/key")
        .parameter_version(1)
        .labels("green")
        .send()
        .await
        .expect("label");
    let r = b.fetch(&[pin("ver/key", VersionPin::stage("green"))]).await;
    assert_eq!(text(&r[0]), "one");
    let versions = b.versions("ver/key").await.expect("versions");
    let ids: Vec<&str> = versions.iter().map(|v| v.id.as_str()).collect();
    assert_eq!(ids, ["3", "2", "1"]);
    assert!(versions[0].stages.contains(&"current".to_string()));
    assert!(versions[2].stages.contains(&"green".to_string()), "{versions:?}");
}

macro_rules! many {
    ($($field:ident = $path:literal),* $(,)?) => {
        #[derive(Secrets)]
        struct Many {
            $(#[secret(path = $path)] $field: SecretString,)*
        }

        fn many_values(m: &Many) -> Vec<(&'static str, String)> {
            vec![$(($path, m.$field.expose_secret().to_string())),*]
        }
    };
}

many! {
    p00 = "many/p00", p01 = "many/p01", p02 = "many/p02", p03 = "many/p03", p04 = "many/p04",
    p05 = "many/p05", p06 = "many/p06", p07 = "many/p07", p08 = "many/p08", p09 = "many/p09",
    p10 = "many/p10", p11 = "many/p11", p12 = "many/p12", p13 = "many/p13", p14 = "many/p14",
    p15 = "many/p15", p16 = "many/p16", p17 = "many/p17", p18 = "many/p18", p19 = "many/p19",
    p20 = "many/p20", p21 = "many/p21", p22 = "many/p22", p23 = "many/p23", p24 = "many/p24",
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_five_parameters_cost_three_get_parameters_calls() {
    let moto = moto().await;
    let proxy = Proxy::start(&moto.endpoint()).await;
    let b = backend(&proxy.url()).await;
    for i in 0..25 {
        put(&b, &format!("many/p{i:02}"), &format!("value-{i:02}")).await;
    }
    proxy.clear();

    let started = Instant::now();
    let m = loader(&b).load::<Many>().await.unwrap_or_else(|e| panic!("{e}"));
    let elapsed = started.elapsed();
    for (path, value) in many_values(&m) {
        assert_eq!(value, format!("value-{}", &path[6..]), "{path}");
    }

    let requests = proxy.requests();
    let mut sizes: Vec<usize> = requests
        .iter()
        .map(|r| r.json().unwrap()["Names"].as_array().map_or(0, Vec::len))
        .collect();
    println!(
        "25 parameters in one load: {} requests {:?}, Names sizes {sizes:?}, at most {} in flight, {:.1} ms",
        requests.len(),
        proxy.counts(),
        proxy.max_in_flight(),
        elapsed.as_secs_f64() * 1000.0
    );
    assert_eq!(proxy.count_of("AmazonSSM.GetParameters"), 3, "{:?}", proxy.counts());
    assert_eq!(requests.len(), 3, "nothing but the batches: {:?}", proxy.counts());
    sizes.sort_unstable();
    assert_eq!(sizes, [5, 10, 10], "batches of at most 10");
    for r in &requests {
        assert_eq!(r.json().unwrap()["WithDecryption"], true);
    }
}

#[tokio::test]
async fn a_throttled_batch_is_tried_again_within_the_patience() {
    let moto = moto().await;
    let proxy = Proxy::start(&moto.endpoint()).await;
    let b = builder(&proxy.url())
        .max_attempts(1)
        .backoff(Duration::from_millis(5), Duration::from_millis(20))
        .throttle_patience(Duration::from_secs(5))
        .build()
        .await
        .unwrap();
    put(&b, "slow/a", "a").await;
    proxy.clear();
    // The first two GetParameters are throttled, as AWS answers over quota; the third goes through.
    let throttled = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = throttled.clone();
    proxy.set_rule(move |r| {
        if r.operation() == "AmazonSSM.GetParameters" && seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < 2 {
            Action::aws_error(400, "ThrottlingException", "Rate exceeded")
        } else {
            Action::Forward
        }
    });
    let r = b.fetch(&[FetchRequest::current("slow/a")]).await;
    assert_eq!(text(&r[0]), "a");
    assert_eq!(proxy.count_of("AmazonSSM.GetParameters"), 3, "{:?}", proxy.counts());

    // Without patience, throttling after the SDK's retries is *throttled*.
    let impatient = builder(&proxy.url())
        .max_attempts(2)
        .backoff(Duration::from_millis(5), Duration::from_millis(20))
        .throttle_patience(Duration::ZERO)
        .build()
        .await
        .unwrap();
    proxy.set_rule(|_| Action::aws_error(400, "ThrottlingException", "Rate exceeded"));
    let r = impatient.fetch(&[FetchRequest::current("slow/a")]).await;
    assert_eq!(r[0].as_ref().err().map(|e| e.kind), Some(FailureKind::Throttled));
}

#[tokio::test]
async fn admin_put_list_delete() {
    let moto = moto().await;
    let b = backend(&moto.endpoint()).await;
    let mut first = PutRequest::new("adm/db", SecretValue::map([("user", "app")]));
    first.tags = vec![("team".into(), "payments".into())];
    first.description = Some("the app's database".into());
    first.create_only = true;
    assert_eq!(b.put(first).await.expect("create"), "1");
    let tags = b
        .client()
        .list_tags_for_resource()
        .resource_type(skm::backend::ssm::aws_sdk_ssm::types::ResourceTypeForTagging::Parameter)
        .resource_id("/adm/db")
        .send()
        .await
        .expect("tags");
    let tag = &tags.tag_list()[0];
    assert_eq!((tag.key(), tag.value()), ("team", "payments"));
    let p = b
        .client()
        .get_parameter()
        .name("/adm/db")
        .send()
        .await
        .expect("get")
        .parameter
        .unwrap();
    assert_eq!(p.r#type().map(|t| t.as_str()), Some("SecureString"));

    // Create-only never overwrites; a plain put adds a version.
    let mut again = PutRequest::new("adm/db", SecretValue::text("clobber"));
    again.create_only = true;
    assert_eq!(b.put(again).await.unwrap_err().kind, AdminErrorKind::AlreadyExists);
    assert_eq!(
        text(&b.fetch(&[FetchRequest::current("adm/db")]).await[0]),
        r#"{"user":"app"}"#
    );
    assert_eq!(put(&b, "adm/db", r#"{"user":"app2"}"#).await, "2");
    put(&b, "adm/deep/er/x", "x").await;
    put(&b, "admx", "not under adm/").await;
    // Binary values and check-and-set are refused, never written differently.
    let e = b
        .put(PutRequest::new("adm/bin", SecretValue::binary(vec![0, 1])))
        .await
        .unwrap_err();
    assert_eq!(e.kind, FailureKind::Unsupported, "{e}");
    // AWS's reserved prefixes are refused before a request.
    let e = b
        .put(PutRequest::new("ssm/x", SecretValue::text("x")))
        .await
        .unwrap_err();
    assert_eq!(e.kind, FailureKind::Invalid, "{e}");

    let listed: Vec<String> = b.list("adm/").await.unwrap().into_iter().map(|e| e.path).collect();
    assert_eq!(listed, ["adm/db", "adm/deep/er/x"]);
    let all: Vec<String> = b.list("").await.unwrap().into_iter().map(|e| e.path).collect();
    assert_eq!(all, ["adm/db", "adm/deep/er/x", "admx"]);
    let slashed: Vec<String> = b.list("/adm").await.unwrap().into_iter().map(|e| e.path).collect();
    assert_eq!(slashed, ["/adm/db", "/adm/deep/er/x", "/admx"]);

    let e = b.delete("adm/db", DeleteMode::RecoveryDays(7)).await.unwrap_err();
    assert_eq!(e.kind, FailureKind::Unsupported, "{e}");
    b.delete("adm/db", DeleteMode::Default).await.expect("delete");
    let r = b.fetch(&[FetchRequest::current("adm/db")]).await;
    assert_eq!(r[0].as_ref().err().map(|e| e.kind), Some(FailureKind::NotFound));
    let e = b.delete("adm/db", DeleteMode::Default).await.unwrap_err();
    assert_eq!(e.kind, AdminErrorKind::NotFound, "{e}");
    b.delete("adm/db", DeleteMode::Force)
        .await
        .expect("forcing a deleted one is done");
    let listed: Vec<String> = b.list("adm/").await.unwrap().into_iter().map(|e| e.path).collect();
    assert_eq!(listed, ["adm/deep/er/x"]);
}

#[tokio::test]
async fn conformance() {
    use skm::backend::ssm::aws_sdk_ssm::config::retry::RetryConfig;
    use skm_testing::{Quotas, Rate};
    let moto = moto().await;
    // Forbidden: moto does not enforce IAM, so a proxy answers as AWS does for a denied call.
    let denied = Proxy::start(&moto.endpoint()).await;
    denied.set_rule(|_| {
        Action::aws_error(
            400,
            "AccessDeniedException",
            "User: arn:aws:iam::123456789012:user/app is not authorized to perform: ssm:GetParameters",
        )
    });
    let throttling = Proxy::start(&moto.endpoint()).await;
    let empty = Rate {
        per_second: 0.001,
        burst: 0.0,
    };
    throttling.set_quotas(
        Quotas::aws(1.0)
            .with("GetParameters", empty)
            .with("GetParameter", empty),
    );
    let closed = format!("http://127.0.0.1:{}", skm_testing::free_port());
    let quick = |endpoint: &str| {
        builder(endpoint)
            .max_attempts(2)
            .throttle_patience(Duration::from_millis(200))
            .retry_config(RetryConfig::standard().with_initial_backoff(Duration::from_millis(5)))
    };
    let report = skm_runtime::conformance::Suite::new(Arc::new(backend(&moto.endpoint()).await), "skmconformance")
        .forbidden(Arc::new(quick(&denied.url()).build().await.unwrap()))
        .unavailable(Arc::new(quick(&closed).build().await.unwrap()))
        .throttled(Arc::new(quick(&throttling.url()).build().await.unwrap()))
        .run()
        .await;
    // Parameter Store holds text, has no conditional write, and no read of versions without values.
    assert_eq!(
        report.unsupported_names(),
        ["binary_all_256_bytes", "current_versions", "check_and_set"],
        "{report:?}"
    );
    assert_eq!(report.not_exercised, Vec::<&str>::new());
    assert!(
        throttling.quota_counts().values().any(|c| c.throttled > 0),
        "the proxy throttled"
    );
}

// Only whether it loads matters.
#[allow(dead_code)]
#[derive(Secrets)]
struct Leaky {
    #[secret(path = "leak/json", key = "absent")]
    absent_key: SecretString,
}

#[tokio::test]
async fn a_sentinel_value_never_reaches_debug_display_or_errors() {
    let moto = moto().await;
    let b = backend(&moto.endpoint()).await;
    put(&b, "leak/check", SENTINEL).await;
    put(&b, "leak/json", &format!(r#"{{"present":"{SENTINEL}"}}"#)).await;
    let r = b.fetch(&[FetchRequest::current("leak/check")]).await;
    assert_eq!(text(&r[0]), SENTINEL);
    let e = loader(&b).load::<Leaky>().await.err().expect("the key is absent");
    let shown = format!("{r:?} {b:?} {:?} {e} {e:?}", builder(&moto.endpoint()));
    assert!(!shown.contains(SENTINEL), "{shown}");
    assert!(!shown.contains("\"test\""), "credentials shown: {shown}");
    // The value crossed the wire only decrypted for the read; a put's error names the path, never the value.
    let mut again = PutRequest::new("leak/check", SecretValue::text(SENTINEL));
    again.create_only = true;
    let e = b.put(again).await.unwrap_err();
    assert!(!format!("{e} {e:?}").contains(SENTINEL), "{e:?}");
}

// ---- Child processes: the process environment is the input, so each case gets a fresh process. ----

/// The README's card example, unchanged.
#[derive(Secrets)]
struct AppSecrets {
    #[secret(path = "auth/jwt", key = "secret", env = "JWT_SECRET_KEY")]
    jwt_secret: SecretString,
}

const CARD_VALUE: &str = "card-jwt-from-parameter-store";

/// Runs only when `SKM_SSM_CHILD` is set, as a child process started by the tests below.
#[tokio::test]
async fn child_process_entry() {
    let Ok(mode) = std::env::var("SKM_SSM_CHILD") else {
        return;
    };
    match mode.as_str() {
        "card" => {
            async fn run() -> Result<AppSecrets, skm::Error> {
                let cfg = AppSecrets::load().await?;
                Ok(cfg)
            }
            let cfg = run().await.unwrap_or_else(|e| panic!("card example failed: {e}"));
            assert_eq!(cfg.jwt_secret.expose_secret(), CARD_VALUE);
        }
        // Without SKM_BACKEND, AWS's variables select Secrets Manager, where the parameter is not.
        "card-without-skm-backend" => {
            let e = AppSecrets::load().await.err().expect("Secrets Manager has no auth/jwt");
            assert!(e.to_string().contains("AWS Secrets Manager"), "{e}");
        }
        other => panic!("unknown SKM_SSM_CHILD mode {other}"),
    }
    println!("CHILD-OK {mode}");
}

async fn run_child(mode: &str, env: &[(&str, String)]) {
    let dir = std::env::temp_dir().join(format!("skm-ssm-child-{}-{mode}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["ssm::child_process_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env_clear()
        // No `.env` file and no AWS profile files can be found from here.
        .current_dir(&dir)
        .env("HOME", &dir)
        .env("SKM_SSM_CHILD", mode)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(&format!("CHILD-OK {mode}")),
        "child `{mode}` failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn card_example_loads_from_parameter_store_with_skm_backend_ssm() {
    let moto = moto().await;
    const SEED: &str = r#"
import json, os, boto3
ssm = boto3.client("ssm", endpoint_url=os.environ["MOTO"], region_name="us-east-1",
                   aws_access_key_id="test", aws_secret_access_key="test")
ssm.put_parameter(Name="/auth/jwt", Type="SecureString", Value=json.dumps({"secret": "card-jwt-from-parameter-store"}))
print("written")
"#;
    assert!(boto3(&moto, SEED).await.contains("written"));
    let aws = |backend: Option<&str>| {
        let mut env = vec![
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_ENDPOINT_URL", moto.endpoint()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ];
        if let Some(name) = backend {
            env.push(("SKM_BACKEND", name.to_string()));
        }
        env
    };
    run_child("card", &aws(Some("ssm"))).await;
    // An alias, and the service-specific endpoint variable winning over a dead general one.
    let mut specific = aws(Some("parameter-store"));
    specific.retain(|(k, _)| *k != "AWS_ENDPOINT_URL");
    specific.push((
        "AWS_ENDPOINT_URL",
        format!("http://127.0.0.1:{}", skm_testing::free_port()),
    ));
    specific.push(("AWS_ENDPOINT_URL_SSM", moto.endpoint()));
    run_child("card", &specific).await;
    if cfg!(feature = "aws") {
        run_child("card-without-skm-backend", &aws(None)).await;
    }
}

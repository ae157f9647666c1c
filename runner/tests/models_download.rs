//! Downloads against a hub on 127.0.0.1 that injects faults: redirects, tokens, 429 with
//! Retry-After, dropped and stalled connections, a slow link, wrong content, 401/404, 5xx with a
//! fallback endpoint, a full disk — and `bitnet models` end to end. Nothing leaves loopback.

#[path = "models/hub.rs"]
mod hub;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use bitnet_conformance::models::{load_models, RealModel};
use bitnet_runner::models::{part_path, DownloadError, Hub, HubConfig, RetryPolicy};
use hub::{Fault, Hub as TestHub};

const REPO: &str = "bitnet-conformance/tiny-bitnet";
const FILE: &str = "tiny-bitnet-i2_s.gguf";
const SHA: &str = "378d3fc5343c3cc03a5d6d94f91b5fc24fe060a81e646837088375734cc80761";

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn models_file() -> PathBuf {
    manifest().join("tests/models/models.yaml")
}

fn model() -> RealModel {
    let declared = load_models(&models_file());
    assert!(declared.errors.is_empty(), "{:?}", declared.errors);
    declared.model("tiny-bitnet").expect("declared").clone()
}

fn bytes() -> Vec<u8> {
    fs::read(manifest().join("../fixtures/models").join(FILE)).unwrap()
}

/// A hub serving the committed model.
fn serving() -> TestHub {
    let hub = TestHub::start();
    hub.serve(REPO, "main", FILE, bytes());
    hub
}

/// A client of `endpoints` with waits short enough for tests.
fn client(endpoints: Vec<String>) -> Hub {
    Hub::new(HubConfig {
        endpoints,
        token: None,
        retry: RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_secs(2),
        },
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_millis(300),
        proxy_from_env: false,
    })
}

fn dest(dir: &Path) -> PathBuf {
    dir.join("tiny-bitnet").join(FILE)
}

fn blob_requests(hub: &TestHub) -> Vec<Option<String>> {
    hub.seen()
        .into_iter()
        .filter(|seen| seen.path.starts_with("/blobs/"))
        .map(|seen| seen.range)
        .collect()
}

fn assert_cached(path: &Path) {
    assert_eq!(
        fs::read(path).unwrap(),
        bytes(),
        "the cached file is not the model"
    );
    assert!(!part_path(path).exists(), "a partial file was left behind");
}

fn assert_nothing_cached(path: &Path) {
    assert!(!path.exists(), "a model was left in the cache");
    assert!(
        !part_path(path).exists(),
        "a partial file was left in the cache"
    );
}

#[test]
fn downloads_through_the_redirect_with_the_token() {
    let hub = serving();
    let cache = tempfile::tempdir().unwrap();
    let config = HubConfig {
        token: Some("secret".into()),
        ..HubConfig {
            endpoints: vec![hub.endpoint()],
            proxy_from_env: false,
            ..HubConfig::default()
        }
    };
    let downloaded = Hub::new(config)
        .download(&model(), &dest(cache.path()))
        .unwrap();
    assert_eq!(downloaded.sha256.as_hex(), SHA);
    assert_eq!(downloaded.bytes, bytes().len() as u64);
    assert_cached(&downloaded.path);
    let seen = hub.seen();
    assert_eq!(seen[0].path, format!("/{REPO}/resolve/main/{FILE}"));
    assert_eq!(seen[0].authorization.as_deref(), Some("Bearer secret"));
    assert!(seen[1].path.starts_with("/blobs/"), "{seen:?}");
    assert_eq!(seen[1].range, None);
}

#[test]
fn too_many_requests_waits_as_long_as_retry_after_says() {
    let hub = serving();
    hub.fault(Fault::TooMany { retry_after: 1 });
    let cache = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let downloaded = client(vec![hub.endpoint()])
        .download(&model(), &dest(cache.path()))
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "retried after {:?}, before Retry-After",
        started.elapsed()
    );
    assert_cached(&downloaded.path);
    assert_eq!(hub.seen().len(), 3, "{:?}", hub.seen());
}

/// Downloads through `fault`, which breaks the first transfer after `offset` bytes, and checks
/// that the second request resumed from there and the cached file is whole.
fn resumes_after(fault: Fault, offset: usize) {
    let hub = serving();
    hub.fault(fault);
    let cache = tempfile::tempdir().unwrap();
    let downloaded = client(vec![hub.endpoint()])
        .download(&model(), &dest(cache.path()))
        .unwrap();
    assert_cached(&downloaded.path);
    assert_eq!(
        blob_requests(&hub),
        [None, Some(format!("bytes={offset}-"))]
    );
}

#[test]
fn a_dropped_connection_resumes_from_the_partial_file() {
    resumes_after(Fault::DropAfter(100_000), 100_000);
}

#[test]
fn a_partial_file_of_an_earlier_run_is_resumed() {
    let hub = serving();
    let cache = tempfile::tempdir().unwrap();
    let path = dest(cache.path());
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(part_path(&path), &bytes()[..200_000]).unwrap();
    client(vec![hub.endpoint()])
        .download(&model(), &path)
        .unwrap();
    assert_cached(&path);
    assert_eq!(blob_requests(&hub), [Some("bytes=200000-".to_string())]);
}

#[test]
fn a_stalled_connection_times_out_and_resumes() {
    let stall = Fault::Stall {
        after: 50_000,
        pause: Duration::from_secs(2),
    };
    resumes_after(stall, 50_000);
}

#[test]
fn a_slow_link_is_followed_to_the_end() {
    let hub = serving();
    hub.fault(Fault::Slow {
        chunk: 64 * 1024,
        pause: Duration::from_millis(20),
    });
    let cache = tempfile::tempdir().unwrap();
    let downloaded = client(vec![hub.endpoint()])
        .download(&model(), &dest(cache.path()))
        .unwrap();
    assert_cached(&downloaded.path);
    assert_eq!(blob_requests(&hub), [None]);
}

#[test]
fn wrong_content_is_deleted_with_a_clear_error() {
    let hub = serving();
    let mut wrong = bytes();
    wrong[1000] ^= 0xff;
    hub.fault(Fault::Content(wrong));
    let cache = tempfile::tempdir().unwrap();
    let path = dest(cache.path());
    let error = client(vec![hub.endpoint()])
        .download(&model(), &path)
        .unwrap_err();
    assert!(matches!(error, DownloadError::Mismatch { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains(&format!("declares sha256 {SHA}")),
        "{message}"
    );
    assert!(message.contains("tests/models/models.yaml:4"), "{message}");
    assert_nothing_cached(&path);
}

#[test]
fn not_found_and_unauthorized_are_not_retried_and_say_what_to_do() {
    let hub = serving();
    hub.fault(Fault::Status(404));
    let cache = tempfile::tempdir().unwrap();
    let path = dest(cache.path());
    let error = client(vec![hub.endpoint()])
        .download(&model(), &path)
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains(&format!(
            "404 Not Found: no `{FILE}` in `{REPO}` at revision `main`"
        )),
        "{message}"
    );
    hub.fault(Fault::Status(401));
    let message = client(vec![hub.endpoint()])
        .download(&model(), &path)
        .unwrap_err()
        .to_string();
    assert!(message.contains("401 Unauthorized"), "{message}");
    assert!(message.contains("set HF_TOKEN"), "{message}");
    assert_eq!(hub.seen().len(), 2, "retried: {:?}", hub.seen());
    assert_nothing_cached(&path);
}

#[test]
fn server_errors_are_retried_then_the_next_endpoint_is_tried() {
    let broken = serving();
    for _ in 0..3 {
        broken.fault(Fault::Status(503));
    }
    let cache = tempfile::tempdir().unwrap();
    let path = dest(cache.path());
    let error = client(vec![broken.endpoint()])
        .download(&model(), &path)
        .unwrap_err();
    let message = error.to_string();
    assert!(message.contains("server error 503"), "{message}");
    assert!(message.contains("gave up after 3 requests"), "{message}");
    assert_nothing_cached(&path);

    let fallback = serving();
    broken.fault(Fault::Status(404));
    let downloaded = client(vec![broken.endpoint(), fallback.endpoint()])
        .download(&model(), &path)
        .unwrap();
    assert_cached(&downloaded.path);
}

#[cfg(target_os = "linux")]
#[test]
fn a_full_disk_is_reported_and_nothing_is_renamed_into_place() {
    let hub = serving();
    let cache = tempfile::tempdir().unwrap();
    let path = dest(cache.path());
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink("/dev/full", part_path(&path)).unwrap();
    let error = client(vec![hub.endpoint()])
        .download(&model(), &path)
        .unwrap_err();
    assert!(matches!(error, DownloadError::DiskFull { .. }), "{error}");
    assert!(error.to_string().contains("disk full"), "{error}");
    assert!(!path.exists(), "a model was renamed into place");
}

fn bitnet(args: &[&str], cache: &Path, endpoint: &str) -> (bool, String) {
    let models_file = models_file();
    let output = Command::new(env!("CARGO_BIN_EXE_bitnet"))
        .arg("models")
        .args(args)
        .arg("--models-file")
        .arg(&models_file)
        .arg("--cache")
        .arg(cache)
        .env("HF_ENDPOINT", endpoint)
        .env_remove("HF_TOKEN")
        .env_remove("BITNET_MODELS")
        .env_remove("BITNET_HF_FALLBACKS")
        .env("NO_PROXY", "127.0.0.1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn bitnet_models_downloads_lists_and_verifies() {
    let hub = serving();
    let cache = tempfile::tempdir().unwrap();
    let endpoint = hub.endpoint();
    let (ok, text) = bitnet(&["download", "tiny-bitnet"], cache.path(), &endpoint);
    assert!(ok, "{text}");
    assert!(text.contains(&format!("sha256 {SHA}")), "{text}");
    assert_cached(&dest(cache.path()));
    let record = fs::read_to_string(cache.path().join("verified.json")).unwrap();
    assert!(record.contains(SHA), "{record}");

    let (ok, text) = bitnet(&["download", "tiny-bitnet"], cache.path(), &endpoint);
    assert!(ok && text.contains("already in the cache"), "{text}");
    assert_eq!(hub.seen().len(), 2, "downloaded twice: {:?}", hub.seen());

    let (ok, text) = bitnet(&["list"], cache.path(), &endpoint);
    assert!(ok && text.contains("verified: "), "{text}");
    let (ok, text) = bitnet(&["verify", "tiny-bitnet"], cache.path(), &endpoint);
    assert!(ok && text.starts_with("ok"), "{text}");

    fs::write(dest(cache.path()), b"corrupted").unwrap();
    let (ok, text) = bitnet(&["verify"], cache.path(), &endpoint);
    assert!(!ok && text.contains("MISMATCH"), "{text}");

    let (ok, text) = bitnet(&["download", "no-such-model"], cache.path(), &endpoint);
    assert!(
        !ok && text.contains("no model `no-such-model` is declared"),
        "{text}"
    );
}

//! Downloading a declared model from a Hugging Face-style hub into the cache.
//!
//! The file is fetched from `{endpoint}/{repo}/resolve/{revision}/{file}` into `<name>.part`
//! beside its place in the cache, resuming with an HTTP `Range` request from whatever a previous
//! attempt left there. Only when the whole file is present and its size and sha256 match the
//! entry is it renamed into place, so the cache never holds a partial or wrong model under the
//! model's name. 429 (honouring `Retry-After`), 5xx and dropped connections are retried with
//! exponential backoff and jitter; 401, 403 and 404 are answered at once with what to do.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use bitnet_conformance::case::Sha256;
use bitnet_conformance::models::RealModel;
use ureq::config::RedirectAuthHeaders;
use ureq::Agent;

use super::digests::sha256_file;
use super::progress::bytes_bar;

/// The public hub, used when neither `--endpoint` nor `HF_ENDPOINT` names another.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// The variable naming the hub (a mirror, say) instead of the public one.
pub const ENDPOINT_VAR: &str = "HF_ENDPOINT";
/// The variable listing endpoints to fall back on, separated by commas.
pub const FALLBACKS_VAR: &str = "BITNET_HF_FALLBACKS";
/// The variable holding an access token, sent as `Authorization: Bearer <token>`.
pub const TOKEN_VAR: &str = "HF_TOKEN";

/// How failed requests are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Requests per endpoint that may fail in a row without receiving a byte.
    pub attempts: u32,
    /// The first backoff; it doubles with every failure in a row.
    pub base_delay: Duration,
    /// The longest wait, for backoff and `Retry-After` alike.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry number `failures` (from 1): `base · 2^(failures−1)`, capped at
    /// `max_delay`, then scaled by a random factor in [½, 1) so that clients spread out.
    pub fn backoff(&self, failures: u32) -> Duration {
        let doubled = self
            .base_delay
            .saturating_mul(1u32 << failures.saturating_sub(1).min(20));
        doubled
            .min(self.max_delay)
            .mul_f64(0.5 + fastrand::f64() / 2.0)
    }
}

/// Where and how to download.
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Endpoints tried in order; the next is tried when one fails.
    pub endpoints: Vec<String>,
    /// Access token, sent as a Bearer header (kept on redirects to the same host only).
    pub token: Option<String>,
    /// Retries of each endpoint.
    pub retry: RetryPolicy,
    /// Limit on establishing a connection.
    pub connect_timeout: Duration,
    /// Limit on each read from the connection: a stalled transfer is retried after it.
    pub read_timeout: Duration,
    /// Whether `HTTPS_PROXY` and friends are honoured.
    pub proxy_from_env: bool,
}

impl HubConfig {
    /// `endpoints` when given, else `HF_ENDPOINT` or the public hub; then the fallbacks of
    /// `BITNET_HF_FALLBACKS`; the token from `HF_TOKEN`.
    pub fn from_env(endpoints: Vec<String>) -> HubConfig {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let mut all = endpoints;
        if all.is_empty() {
            all.push(var(ENDPOINT_VAR).unwrap_or_else(|| DEFAULT_ENDPOINT.to_string()));
        }
        if let Some(fallbacks) = var(FALLBACKS_VAR) {
            all.extend(
                fallbacks
                    .split(',')
                    .map(str::trim)
                    .filter(|e| !e.is_empty())
                    .map(String::from),
            );
        }
        HubConfig {
            endpoints: all,
            token: var(TOKEN_VAR),
            ..HubConfig::default()
        }
    }
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            endpoints: vec![DEFAULT_ENDPOINT.to_string()],
            token: None,
            retry: RetryPolicy::default(),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            proxy_from_env: true,
        }
    }
}

/// Why a download failed. Nothing is left under the model's name in the cache.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The endpoint wants credentials.
    #[error("{url}: 401 Unauthorized: {hint}")]
    Unauthorized {
        /// The requested URL.
        url: String,
        /// What to do about it.
        hint: String,
    },
    /// The credentials do not open the file.
    #[error(
        "{url}: 403 Forbidden: the token's account may not read this repository; accept the \
         model's terms on the hub with that account, or use a token with read access"
    )]
    Forbidden {
        /// The requested URL.
        url: String,
    },
    /// No such repository, revision or file.
    #[error(
        "{url}: 404 Not Found: no `{file}` in `{repo}` at revision `{revision}` there; check the \
         entry at {location}"
    )]
    NotFound {
        /// The requested URL.
        url: String,
        /// The repository.
        repo: String,
        /// The revision.
        revision: String,
        /// The file.
        file: String,
        /// The entry in the models file.
        location: String,
    },
    /// The endpoint kept failing.
    #[error("{url}: {last} (gave up after {requests} requests)")]
    GaveUp {
        /// The requested URL.
        url: String,
        /// The last failure.
        last: String,
        /// Requests made.
        requests: u32,
    },
    /// The endpoint answered something a download cannot use.
    #[error("{url}: {message}")]
    Unexpected {
        /// The requested URL.
        url: String,
        /// What came back.
        message: String,
    },
    /// The disk filled up; the partial file is kept so that a later run resumes.
    #[error(
        "disk full writing {path} ({written} bytes kept): free some space and run the download \
         again to resume"
    )]
    DiskFull {
        /// The partial file.
        path: PathBuf,
        /// Bytes in it.
        written: u64,
    },
    /// The cache could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// The downloaded bytes are not the declared file; they were deleted.
    #[error(
        "{url} served a file with {actual}, the entry at {location} declares {expected}; the \
         download was deleted"
    )]
    Mismatch {
        /// Where it came from.
        url: String,
        /// The entry in the models file.
        location: String,
        /// What the entry declares (size or sha256).
        expected: String,
        /// What arrived.
        actual: String,
    },
    /// Every endpoint failed.
    #[error("every endpoint failed:\n  {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n  "))]
    AllEndpoints(Vec<DownloadError>),
}

impl DownloadError {
    /// Whether another endpoint may do better (it is the endpoint, not the file or the disk).
    fn endpoint_specific(&self) -> bool {
        matches!(
            self,
            DownloadError::Unauthorized { .. }
                | DownloadError::Forbidden { .. }
                | DownloadError::NotFound { .. }
                | DownloadError::GaveUp { .. }
                | DownloadError::Unexpected { .. }
        )
    }
}

/// A model file now in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// Its place in the cache.
    pub path: PathBuf,
    /// Its sha256.
    pub sha256: Sha256,
    /// Its length.
    pub bytes: u64,
}

/// Downloads from the endpoints of a [`HubConfig`].
pub struct Hub {
    config: HubConfig,
    agent: Agent,
}

/// One request's end, when it did not finish the file.
enum Attempt {
    /// Try again after `wait` (the backoff when `None`); `progressed` when bytes arrived.
    Retry {
        why: String,
        wait: Option<Duration>,
        progressed: bool,
    },
    /// Stop trying this endpoint (or, for errors that are not the endpoint's, stop).
    Stop(DownloadError),
}

/// Requests to one endpoint for one file, however well they go.
const MAX_REQUESTS: u32 = 1000;

impl Hub {
    /// A client for `config`.
    pub fn new(config: HubConfig) -> Hub {
        let mut builder = Agent::config_builder()
            .http_status_as_error(false)
            .redirect_auth_headers(RedirectAuthHeaders::SameHost)
            .timeout_connect(Some(config.connect_timeout))
            .timeout_per_read(Some(config.read_timeout))
            .user_agent(concat!("bitnet-conformance/", env!("CARGO_PKG_VERSION")));
        if !config.proxy_from_env {
            builder = builder.proxy(None);
        }
        Hub {
            agent: builder.build().into(),
            config,
        }
    }

    /// The endpoints tried, in order.
    pub fn endpoints(&self) -> &[String] {
        &self.config.endpoints
    }

    /// Downloads `model` to `dest` through `dest` + `.part`, trying each endpoint in turn.
    pub fn download(&self, model: &RealModel, dest: &Path) -> Result<Downloaded, DownloadError> {
        let dir = dest.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(|source| DownloadError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        let part = part_path(dest);
        let mut failures = Vec::new();
        for endpoint in &self.config.endpoints {
            let url = model.url(endpoint);
            match self.fetch(model, &url, &part) {
                Ok(()) => return finish(model, &url, &part, dest),
                Err(error) if error.endpoint_specific() => failures.push(error),
                Err(error) => return Err(error),
            }
        }
        Err(match failures.len() {
            1 => failures.remove(0),
            _ => DownloadError::AllEndpoints(failures),
        })
    }

    /// Requests `url` until `part` holds the whole file, resuming after every break.
    fn fetch(&self, model: &RealModel, url: &str, part: &Path) -> Result<(), DownloadError> {
        let retry = self.config.retry;
        let (mut requests, mut failures_in_a_row) = (0u32, 0u32);
        loop {
            requests += 1;
            let (why, wait, progressed) = match self.request(model, url, part) {
                Ok(()) => return Ok(()),
                Err(Attempt::Stop(error)) => return Err(error),
                Err(Attempt::Retry {
                    why,
                    wait,
                    progressed,
                }) => (why, wait, progressed),
            };
            failures_in_a_row = if progressed { 1 } else { failures_in_a_row + 1 };
            if (!progressed && failures_in_a_row >= retry.attempts) || requests >= MAX_REQUESTS {
                return Err(DownloadError::GaveUp {
                    url: url.to_string(),
                    last: why,
                    requests,
                });
            }
            let wait = wait.map_or_else(
                || retry.backoff(failures_in_a_row),
                |asked| asked.min(retry.max_delay),
            );
            eprintln!(
                "{}: {why}; retrying in {:.1}s",
                model.id,
                wait.as_secs_f64()
            );
            thread::sleep(wait);
        }
    }

    /// One request: resumes from the end of `part` and appends what arrives.
    fn request(&self, model: &RealModel, url: &str, part: &Path) -> Result<(), Attempt> {
        let have = fs::metadata(part).map_or(0, |m| m.len());
        if let Some(size) = model.size {
            if have == size {
                return Ok(());
            }
            if have > size {
                remove(part).map_err(Attempt::Stop)?;
                return self.request(model, url, part);
            }
        }
        let mut request = self.agent.get(url);
        if have > 0 {
            request = request.header("Range", format!("bytes={have}-"));
        }
        if let Some(token) = &self.config.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let response = request.call().map_err(|e| Attempt::Retry {
            why: format!("request failed: {e}"),
            wait: None,
            progressed: false,
        })?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let start = match status {
            200 => 0,
            206 => match header("content-range").as_deref().and_then(range_start) {
                Some(start) if start == have => have,
                _ => {
                    remove(part).map_err(Attempt::Stop)?;
                    return Err(Attempt::Retry {
                        why: format!(
                            "206 with Content-Range {:?} for a request from byte {have}",
                            header("content-range")
                        ),
                        wait: Some(Duration::ZERO),
                        progressed: false,
                    });
                }
            },
            416 => {
                remove(part).map_err(Attempt::Stop)?;
                return Err(Attempt::Retry {
                    why: format!("416: the server holds no byte past {have}; starting over"),
                    wait: Some(Duration::ZERO),
                    progressed: false,
                });
            }
            401 => {
                let hint = if self.config.token.is_some() {
                    format!("the token in {TOKEN_VAR} was refused; check that it is valid")
                } else {
                    format!("the repository needs an access token: set {TOKEN_VAR}")
                };
                return Err(Attempt::Stop(DownloadError::Unauthorized {
                    url: url.to_string(),
                    hint,
                }));
            }
            403 => {
                return Err(Attempt::Stop(DownloadError::Forbidden {
                    url: url.to_string(),
                }))
            }
            404 => {
                return Err(Attempt::Stop(DownloadError::NotFound {
                    url: url.to_string(),
                    repo: model.repo.clone(),
                    revision: model.revision.clone(),
                    file: model.file.clone(),
                    location: model.location.to_string(),
                }))
            }
            429 => {
                return Err(Attempt::Retry {
                    why: "429 Too Many Requests".to_string(),
                    wait: header("retry-after").as_deref().and_then(retry_after),
                    progressed: false,
                })
            }
            500..=599 => {
                return Err(Attempt::Retry {
                    why: format!("server error {status}"),
                    wait: header("retry-after").as_deref().and_then(retry_after),
                    progressed: false,
                })
            }
            _ => {
                return Err(Attempt::Stop(DownloadError::Unexpected {
                    url: url.to_string(),
                    message: format!("unexpected HTTP status {status}"),
                }))
            }
        };
        let length: Option<u64> = header("content-length").and_then(|v| v.parse().ok());
        let total = match (
            header("content-range").as_deref().and_then(range_total),
            length,
        ) {
            (Some(total), _) => Some(total),
            (None, Some(length)) => Some(start + length),
            (None, None) => model.size,
        };
        let mut body = response.into_body().into_reader();
        let received = append(&mut body, part, start, total, &model.id)?;
        let now = start + received;
        match total {
            Some(total) if now < total => Err(Attempt::Retry {
                why: format!("the connection closed after {now} of {total} bytes"),
                wait: None,
                progressed: received > 0,
            }),
            _ => Ok(()),
        }
    }
}

/// Writes `body` into `part` from byte `start` (truncating there), returning the bytes added.
/// A read failure (a dropped or stalled connection) keeps what arrived and asks for a retry;
/// a write failure stops.
fn append(
    body: &mut impl Read,
    part: &Path,
    start: u64,
    total: Option<u64>,
    label: &str,
) -> Result<u64, Attempt> {
    let write_error = |source: io::Error, written: u64| {
        Attempt::Stop(if is_disk_full(&source) {
            DownloadError::DiskFull {
                path: part.to_path_buf(),
                written,
            }
        } else {
            DownloadError::Write {
                path: part.to_path_buf(),
                source,
            }
        })
    };
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .open(part)
        .map_err(|e| write_error(e, start))?;
    let length = file.metadata().map_err(|e| write_error(e, start))?.len();
    if length != start {
        file.set_len(start).map_err(|e| write_error(e, start))?;
    }
    file.seek(SeekFrom::Start(start))
        .map_err(|e| write_error(e, start))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let bar = bytes_bar(total, label.to_string());
    bar.set_position(start);
    let mut buf = vec![0u8; 1 << 16];
    let mut received = 0u64;
    let outcome = loop {
        match body.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                if let Err(e) = out.write_all(&buf[..n]) {
                    break Err(write_error(e, start + received));
                }
                received += n as u64;
                bar.inc(n as u64);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                break Err(Attempt::Retry {
                    why: format!("the transfer broke after {} bytes: {e}", start + received),
                    wait: None,
                    progressed: received > 0,
                })
            }
        }
    };
    bar.finish_and_clear();
    let flushed = out
        .into_inner()
        .map_err(|e| e.into_error())
        .and_then(|file| file.sync_all());
    if let Err(e) = flushed {
        return Err(write_error(e, start + received));
    }
    outcome.map(|()| received)
}

/// Checks the complete `part` against the entry and renames it to `dest`.
fn finish(
    model: &RealModel,
    url: &str,
    part: &Path,
    dest: &Path,
) -> Result<Downloaded, DownloadError> {
    let write_error = |source| DownloadError::Write {
        path: part.to_path_buf(),
        source,
    };
    let mismatch = |expected: String, actual: String| {
        let _ = fs::remove_file(part);
        DownloadError::Mismatch {
            url: url.to_string(),
            location: model.location.to_string(),
            expected,
            actual,
        }
    };
    let bytes = fs::metadata(part).map_err(write_error)?.len();
    if let Some(size) = model.size.filter(|&size| size != bytes) {
        return Err(mismatch(format!("{size} bytes"), format!("{bytes} bytes")));
    }
    let sha256 = sha256_file(part).map_err(write_error)?;
    if let Some(expected) = model.sha256.as_ref().filter(|&pinned| pinned != &sha256) {
        return Err(mismatch(
            format!("sha256 {expected}"),
            format!("sha256 {sha256}"),
        ));
    }
    fs::rename(part, dest).map_err(|source| DownloadError::Write {
        path: dest.to_path_buf(),
        source,
    })?;
    if let Some(dir) = dest.parent() {
        if let Ok(dir) = File::open(dir) {
            let _ = dir.sync_all();
        }
    }
    Ok(Downloaded {
        path: dest.to_path_buf(),
        sha256,
        bytes,
    })
}

/// Where the partial download of `dest` is kept.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

fn remove(part: &Path) -> Result<(), DownloadError> {
    match fs::remove_file(part) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(DownloadError::Write {
            path: part.to_path_buf(),
            source,
        }),
    }
}

fn is_disk_full(e: &io::Error) -> bool {
    const ENOSPC: i32 = 28;
    e.kind() == io::ErrorKind::StorageFull || e.raw_os_error() == Some(ENOSPC)
}

/// The first byte of `Content-Range: bytes START-END/TOTAL`.
fn range_start(value: &str) -> Option<u64> {
    let range = value.trim().strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}

/// The total of `Content-Range: bytes START-END/TOTAL` (`*` when unknown).
fn range_total(value: &str) -> Option<u64> {
    value.rsplit('/').next()?.trim().parse().ok()
}

/// `Retry-After` given in seconds (the form hubs send; a date falls back to the backoff).
fn retry_after(value: &str) -> Option<Duration> {
    value.trim().parse().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let policy = RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(500),
        };
        for (failures, full) in [(1, 100), (2, 200), (3, 400), (4, 500), (30, 500)] {
            let wait = policy.backoff(failures).as_millis();
            assert!((full / 2..full).contains(&wait), "{failures}: {wait} ms");
        }
    }

    #[test]
    fn header_values_parse() {
        assert_eq!(range_start("bytes 100-199/200"), Some(100));
        assert_eq!(range_total("bytes 100-199/200"), Some(200));
        assert_eq!(range_total("bytes 100-199/*"), None);
        assert_eq!(range_start("items 1-2/3"), None);
        assert_eq!(retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(
            part_path(Path::new("/c/m/model.gguf")),
            Path::new("/c/m/model.gguf.part")
        );
    }

    #[test]
    fn endpoints_come_from_flags_or_the_environment() {
        let config = HubConfig::from_env(vec!["http://127.0.0.1:1".into()]);
        assert_eq!(config.endpoints[0], "http://127.0.0.1:1");
        assert!(DownloadError::Forbidden { url: "u".into() }.endpoint_specific());
        assert!(!DownloadError::DiskFull {
            path: "p".into(),
            written: 1
        }
        .endpoint_specific());
    }
}

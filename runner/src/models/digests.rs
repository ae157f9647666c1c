//! Streamed sha256 of model files, remembered in `<cache>/verified.json` by path, size and
//! modification time so that a multi-gigabyte file is hashed once, not on every run.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use bitnet_conformance::case::Sha256;
use serde::{Deserialize, Serialize};

use super::progress::bytes_bar;

/// The name of the digest file in the cache directory.
pub const DIGESTS_FILE: &str = "verified.json";

/// The digests already computed, keyed by canonical path.
#[derive(Debug, Default)]
pub struct DigestCache {
    file: Option<PathBuf>,
    known: Known,
    changed: bool,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Known {
    version: u32,
    files: BTreeMap<PathBuf, Stamp>,
}

impl Default for Known {
    fn default() -> Self {
        Known {
            version: VERSION,
            files: BTreeMap::new(),
        }
    }
}

/// What a digest was computed for: the file's size and modification time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stamp {
    size: u64,
    modified_ns: u128,
    sha256: String,
}

const VERSION: u32 = 1;

impl DigestCache {
    /// The digests recorded in `dir` (none when `dir` is `None` or holds no readable record;
    /// an unreadable record is reported on stderr and started afresh).
    pub fn open(dir: Option<&Path>) -> DigestCache {
        let Some(dir) = dir else {
            return DigestCache::default();
        };
        let file = dir.join(DIGESTS_FILE);
        let known = match fs::read_to_string(&file) {
            Ok(text) => match serde_json::from_str::<Known>(&text) {
                Ok(known) if known.version == VERSION => known,
                Ok(_) | Err(_) => {
                    eprintln!(
                        "warning: {} is not a digest record of this version; starting afresh",
                        file.display()
                    );
                    Known::default()
                }
            },
            Err(_) => Known::default(),
        };
        DigestCache {
            file: Some(file),
            known,
            changed: false,
        }
    }

    /// The sha256 of the file at `path`: the recorded one when size and modification time
    /// are unchanged, otherwise streamed from the file (with a progress bar) and recorded.
    pub fn digest(&mut self, path: &Path) -> io::Result<Sha256> {
        let (key, size, modified_ns) = stamp_of(path)?;
        if let Some(stamp) = self.known.files.get(&key) {
            if stamp.size == size && stamp.modified_ns == modified_ns {
                if let Ok(digest) = stamp.sha256.parse() {
                    return Ok(digest);
                }
            }
        }
        let digest = sha256_file(path)?;
        self.record_stamp(key, size, modified_ns, &digest);
        Ok(digest)
    }

    /// Records that the file at `path`, as it is now, has `digest` (after a download that
    /// hashed it already).
    pub fn record(&mut self, path: &Path, digest: &Sha256) -> io::Result<()> {
        let (key, size, modified_ns) = stamp_of(path)?;
        self.record_stamp(key, size, modified_ns, digest);
        Ok(())
    }

    fn record_stamp(&mut self, key: PathBuf, size: u64, modified_ns: u128, digest: &Sha256) {
        self.changed = true;
        self.known.files.insert(
            key,
            Stamp {
                size,
                modified_ns,
                sha256: digest.as_hex().to_string(),
            },
        );
    }

    /// Writes the record back when something was added (to a temporary file renamed over
    /// it), dropping files that no longer exist. Without a cache directory, or with nothing
    /// new, nothing is written.
    pub fn save(&mut self) -> io::Result<()> {
        let Some(file) = self.file.as_ref().filter(|_| self.changed) else {
            return Ok(());
        };
        self.known.files.retain(|path, _| path.is_file());
        let dir = file.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir)?;
        let text = serde_json::to_string_pretty(&self.known).map_err(io::Error::other)?;
        let temporary = dir.join(format!(".{DIGESTS_FILE}.{}.tmp", std::process::id()));
        let mut out = File::create(&temporary)?;
        out.write_all(text.as_bytes())?;
        out.sync_all()?;
        fs::rename(&temporary, file)?;
        self.changed = false;
        Ok(())
    }
}

fn stamp_of(path: &Path) -> io::Result<(PathBuf, u64, u128)> {
    let key = fs::canonicalize(path)?;
    let meta = fs::metadata(&key)?;
    let modified_ns = meta
        .modified()?
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    Ok((key, meta.len(), modified_ns))
}

/// The sha256 of a file, streamed, with a progress bar on a terminal.
pub fn sha256_file(path: &Path) -> io::Result<Sha256> {
    let file = File::open(path)?;
    let total = file.metadata()?.len();
    let name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let bar = bytes_bar(Some(total), format!("sha256 {name}"));
    let digest = Sha256::of_reader(bar.wrap_read(BufReader::with_capacity(1 << 20, file)));
    bar.finish_and_clear();
    digest
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABC: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn digests_are_remembered_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.gguf");
        fs::write(&file, "abc").unwrap();
        let mut cache = DigestCache::open(Some(dir.path()));
        assert_eq!(cache.digest(&file).unwrap().as_hex(), ABC);
        cache.save().unwrap();

        let record = fs::read_to_string(dir.path().join(DIGESTS_FILE)).unwrap();
        assert!(record.contains(ABC), "{record}");
        assert!(
            record.contains(&format!("\"version\": {VERSION}")),
            "{record}"
        );
        let mut reopened = DigestCache::open(Some(dir.path()));
        let key = fs::canonicalize(&file).unwrap();
        assert_eq!(reopened.known.files[&key].sha256, ABC);

        // A record is trusted while size and time match (the planted digest comes back), and
        // re-hashed once the time differs.
        let stamp = reopened.known.files.get_mut(&key).unwrap();
        stamp.sha256 = "0".repeat(64);
        assert_eq!(reopened.digest(&file).unwrap().as_hex(), "0".repeat(64));
        stamp_mismatch(&mut reopened, &key);
        assert_eq!(reopened.digest(&file).unwrap().as_hex(), ABC);
    }

    fn stamp_mismatch(cache: &mut DigestCache, key: &Path) {
        cache.known.files.get_mut(key).unwrap().modified_ns += 1;
    }

    #[test]
    fn a_corrupt_record_starts_afresh() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(DIGESTS_FILE), "{not json").unwrap();
        let mut cache = DigestCache::open(Some(dir.path()));
        assert!(cache.known.files.is_empty());
        let file = dir.path().join("x");
        fs::write(&file, "abc").unwrap();
        cache.digest(&file).unwrap();
        cache.save().unwrap();
        assert!(DigestCache::open(Some(dir.path())).known.files.len() == 1);
        assert!(DigestCache::open(None).save().is_ok());

        let untouched = tempfile::tempdir().unwrap();
        let missing = untouched.path().join("never-created");
        DigestCache::open(Some(&missing)).save().unwrap();
        assert!(
            !missing.exists(),
            "a cache folder was created with nothing to record"
        );
    }
}

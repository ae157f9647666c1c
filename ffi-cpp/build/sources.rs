//! Finding the reference sources: an explicit checkout, or the pinned crates.io package.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Environment variable naming a microsoft/BitNet checkout (with its llama.cpp submodule).
pub const CHECKOUT_ENV: &str = "BITNET_CPP_DIR";

const PINNED_PACKAGE: &str = "bitnet-cpp-sys";
const PINNED_VERSION: &str = "0.0.5";

/// Files of the late-2024 fork layout, relative to the llama.cpp submodule.
const LLAMA_FILES: &[&str] = &[
    "ggml/include/ggml.h",
    "ggml/src/ggml.c",
    "ggml/src/ggml-alloc.c",
    "ggml/src/ggml-backend.cpp",
    "ggml/src/ggml-quants.c",
    "ggml/src/ggml-quants.h",
    "ggml/src/ggml-aarch64.c",
    "ggml/src/llamafile/sgemm.cpp",
    "include/llama.h",
    "src/llama.cpp",
    "src/llama-vocab.cpp",
    "src/unicode.cpp",
];

/// Files of BitNet itself, relative to its root.
const BITNET_FILES: &[&str] = &["src/ggml-bitnet-mad.cpp", "include/ggml-bitnet.h"];

const LLAMA_SUBMODULE: &str = "3rdparty/llama.cpp";

/// Where the reference sources are and what they are.
pub struct ReferenceSources {
    /// Root of the microsoft/BitNet tree.
    pub bitnet_root: PathBuf,
    /// How the sources were found, for people reading reports.
    pub description: String,
    /// Version or commits identifying the sources.
    pub version: String,
    /// Whether the tree may change under us (a user's checkout) and must be watched.
    pub watch: bool,
}

impl ReferenceSources {
    pub fn llama_root(&self) -> PathBuf {
        self.bitnet_root.join(LLAMA_SUBMODULE)
    }

    pub fn include_dirs(&self) -> Vec<PathBuf> {
        let llama = self.llama_root();
        vec![
            llama.join("ggml/include"),
            llama.join("ggml/src"),
            llama.join("include"),
            llama.join("src"),
            self.bitnet_root.join("include"),
        ]
    }

    pub fn c_files(&self) -> Vec<PathBuf> {
        let ggml = self.llama_root().join("ggml/src");
        ["ggml.c", "ggml-alloc.c", "ggml-quants.c", "ggml-aarch64.c"]
            .iter()
            .map(|f| ggml.join(f))
            .collect()
    }

    /// The C++ translation units: ggml's, every one of the fork's `src/`, and BitNet's MAD kernels.
    pub fn cpp_files(&self) -> Result<Vec<PathBuf>, String> {
        let llama = self.llama_root();
        let mut files = vec![
            llama.join("ggml/src/ggml-backend.cpp"),
            llama.join("ggml/src/llamafile/sgemm.cpp"),
        ];
        let src = llama.join("src");
        let mut fork = fs::read_dir(&src)
            .map_err(|e| format!("cannot list {}: {e}", src.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "cpp"))
            .collect::<Vec<_>>();
        fork.sort();
        files.extend(fork);
        files.push(self.bitnet_root.join("src/ggml-bitnet-mad.cpp"));
        Ok(files)
    }

    /// The `general.architecture` names the fork's model loader knows, read from its
    /// `LLM_ARCH_NAMES` table (in `src/llama.cpp`, or `src/llama-arch.cpp` in later trees).
    pub fn architectures(&self) -> Result<Vec<String>, String> {
        let src = self.llama_root().join("src");
        for file in ["llama-arch.cpp", "llama.cpp"] {
            let path = src.join(file);
            let Ok(text) = fs::read_to_string(&path) else {
                continue;
            };
            if let Some(names) = arch_names(&text) {
                return Ok(names);
            }
        }
        Err(format!(
            "no LLM_ARCH_NAMES table in {}: cannot tell which architectures the reference runs",
            src.display()
        ))
    }

    /// Every file that can influence the library: translation units and the headers beside them.
    pub fn inputs(&self) -> Result<Vec<PathBuf>, String> {
        let mut files = self.c_files();
        files.extend(self.cpp_files()?);
        let mut header_dirs = self.include_dirs();
        header_dirs.push(self.llama_root().join("ggml/src/llamafile"));
        for dir in header_dirs {
            let headers = fs::read_dir(&dir)
                .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|path| {
                    path.extension()
                        .is_some_and(|ext| ext == "h" || ext == "hpp")
                });
            files.extend(headers);
        }
        files.sort();
        files.dedup();
        Ok(files)
    }
}

/// The names in the `LLM_ARCH_NAMES = { { LLM_ARCH_X, "name" }, ... };` table of `text`,
/// without the placeholder for unknown architectures.
fn arch_names(text: &str) -> Option<Vec<String>> {
    let start = text.find("LLM_ARCH_NAMES")?;
    let body = &text[start..];
    let body = &body[body.find('{')? + 1..body.find("};")?];
    let names = body
        .lines()
        .filter_map(|line| {
            let entry = line.trim().strip_prefix('{')?.trim_start();
            if !entry.starts_with("LLM_ARCH_") || entry.starts_with("LLM_ARCH_UNKNOWN") {
                return None;
            }
            let quoted = &entry[entry.find('"')? + 1..];
            Some(quoted[..quoted.find('"')?].to_string())
        })
        .collect::<Vec<_>>();
    (!names.is_empty()).then_some(names)
}

/// Finds the sources: `BITNET_CPP_DIR` if set, otherwise the pinned package.
pub fn locate(out_dir: &Path) -> Result<ReferenceSources, String> {
    match env::var_os(CHECKOUT_ENV) {
        Some(dir) => from_checkout(PathBuf::from(dir)),
        None => pinned_package(out_dir),
    }
}

fn from_checkout(root: PathBuf) -> Result<ReferenceSources, String> {
    let root = root
        .canonicalize()
        .map_err(|e| format!("{CHECKOUT_ENV}={} is not usable: {e}", root.display()))?;
    check_layout(&root)
        .map_err(|problems| format!("{CHECKOUT_ENV}={}: {problems}", root.display()))?;
    let bitnet = git_commit(&root).unwrap_or_else(|| "unknown commit".into());
    let llama = git_commit(&root.join(LLAMA_SUBMODULE)).unwrap_or_else(|| "unknown commit".into());
    Ok(ReferenceSources {
        description: format!("{CHECKOUT_ENV}={}", root.display()),
        version: format!("microsoft/BitNet {bitnet}; llama.cpp fork {llama}"),
        bitnet_root: root,
        watch: true,
    })
}

fn pinned_package(out_dir: &Path) -> Result<ReferenceSources, String> {
    let package_dir = match find_in_registry() {
        Some(dir) => dir,
        None => {
            fetch_pinned(out_dir)?;
            find_in_registry().ok_or_else(|| {
                format!(
                    "cargo fetch succeeded but {PINNED_PACKAGE}-{PINNED_VERSION} is not under {}; \
                     set {CHECKOUT_ENV} to a microsoft/BitNet checkout instead",
                    registry_src().display()
                )
            })?
        }
    };
    let root = package_dir.join("bitnet");
    check_layout(&root).map_err(|problems| format!("{}: {problems}", root.display()))?;
    let packaged_from = packaged_commit(&package_dir)
        .map(|sha| format!(" (packaged from bitnet-cpp-rs {sha})"))
        .unwrap_or_default();
    Ok(ReferenceSources {
        description: format!(
            "crates.io {PINNED_PACKAGE} {PINNED_VERSION} at {}",
            package_dir.display()
        ),
        version: format!("{PINNED_PACKAGE} {PINNED_VERSION}{packaged_from}"),
        bitnet_root: root,
        watch: false,
    })
}

/// Lists what keeps `root` from being a late-2024 BitNet tree, if anything.
fn check_layout(root: &Path) -> Result<(), String> {
    let llama = root.join(LLAMA_SUBMODULE);
    let mut problems = Vec::new();
    let missing = BITNET_FILES
        .iter()
        .map(|f| root.join(f))
        .chain(LLAMA_FILES.iter().map(|f| llama.join(f)))
        .filter(|path| !path.is_file())
        .map(|path| path.display().to_string())
        .collect::<Vec<_>>();
    if !missing.is_empty() {
        problems.push(format!(
            "missing {} (is the llama.cpp submodule checked out?)",
            missing.join(", ")
        ));
    }
    if llama.join("ggml/src/ggml-cpu").is_dir() {
        problems.push(
            "the llama.cpp fork uses the 2025 split ggml-cpu layout and the newer llama C API, \
             which this build does not support (unset the variable to use the pinned sources)"
                .into(),
        );
    }
    let header = fs::read_to_string(llama.join("ggml/include/ggml.h")).unwrap_or_default();
    if !header.is_empty() && !header.contains("GGML_TYPE_I2_S") {
        problems.push("ggml.h has no GGML_TYPE_I2_S: this is not BitNet's llama.cpp fork".into());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

fn cargo_home() -> PathBuf {
    env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .unwrap_or_else(|| PathBuf::from(".cargo"))
}

fn registry_src() -> PathBuf {
    cargo_home().join("registry").join("src")
}

fn find_in_registry() -> Option<PathBuf> {
    let mut registries = fs::read_dir(registry_src())
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .collect::<Vec<_>>();
    registries.sort();
    registries
        .into_iter()
        .map(|registry| registry.join(format!("{PINNED_PACKAGE}-{PINNED_VERSION}")))
        .find(|dir| dir.join(".cargo-ok").is_file() && dir.join("bitnet").is_dir())
}

/// Downloads the pinned package with the running cargo, through a throwaway manifest.
fn fetch_pinned(out_dir: &Path) -> Result<(), String> {
    let dir = out_dir.join("pinned-sources");
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let manifest = dir.join("Cargo.toml");
    let contents = format!(
        "[package]\nname = \"bnref-pinned-sources\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\
         publish = false\n\n[lib]\npath = \"lib.rs\"\n\n[dependencies]\n\
         {PINNED_PACKAGE} = \"={PINNED_VERSION}\"\n\n[workspace]\n"
    );
    fs::write(&manifest, contents)
        .map_err(|e| format!("cannot write {}: {e}", manifest.display()))?;
    fs::write(dir.join("lib.rs"), "").map_err(|e| format!("cannot write lib.rs: {e}"))?;
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .arg("fetch")
        .arg("--manifest-path")
        .arg(&manifest)
        .output()
        .map_err(|e| format!("cannot run cargo fetch: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "cargo fetch of {PINNED_PACKAGE} ={PINNED_VERSION} failed; allow network access or set \
             {CHECKOUT_ENV} to a microsoft/BitNet checkout with submodules.\n{}",
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

fn git_commit(dir: &Path) -> Option<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    let commit = String::from_utf8(output.stdout).ok()?.trim().to_string();
    (output.status.success() && !commit.is_empty()).then_some(commit)
}

/// The packaging commit cargo records in `.cargo_vcs_info.json`.
fn packaged_commit(package_dir: &Path) -> Option<String> {
    let info = fs::read_to_string(package_dir.join(".cargo_vcs_info.json")).ok()?;
    let after_key = &info[info.find("\"sha1\"")? + "\"sha1\"".len()..];
    let start = after_key.find('"')? + 1;
    let len = after_key[start..].find('"')?;
    Some(after_key[start..start + len].to_string())
}

/// FNV-1a over the names and contents of `files`: identifies the exact sources compiled.
pub fn fingerprint(files: &[PathBuf]) -> Result<String, String> {
    let mut hash = FNV_OFFSET;
    for file in files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let contents =
            fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        hash = fnv1a(hash, name.bytes().chain([0u8]).chain(contents));
    }
    Ok(format!("fnv1a64:{hash:016x}"))
}

/// Starting value of [`fnv1a`].
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// Folds `bytes` into the 64-bit FNV-1a hash `hash`.
pub fn fnv1a(hash: u64, bytes: impl IntoIterator<Item = u8>) -> u64 {
    const PRIME: u64 = 0x0100_0000_01b3;
    bytes
        .into_iter()
        .fold(hash, |h, byte| (h ^ u64::from(byte)).wrapping_mul(PRIME))
}

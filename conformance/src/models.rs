//! Real models: published model files declared in `fixtures/models.yaml`, each with the cases
//! ("lanes") to run on it.
//!
//! A models file is a YAML list of entries. Each entry names a file in a Hugging Face-style
//! repository (`repo`, `revision`, `file`), pins it by `sha256` and `size` when those are known,
//! says what it is (`architecture`, `format`) and lists its lanes under `cases`, keyed by kind.
//! A lane is written like a case of that kind without `id` and `model`: the id is
//! `real.<model-id>` and the model is the entry's file, wherever the runner finds it. So the
//! trial of the logits lane of `bitnet-2b-4t` is `logits/real.bitnet-2b-4t::engine-cpu~cpp`.
//!
//! An entry without `sha256` is *unpinned*: a file at the entry's path is accepted unchecked,
//! which the runner says loudly every time. An entry with `convert` names a repository that
//! publishes only a checkpoint; `convert` says how to make the GGUF file, which is then not
//! downloaded but looked for. Unknown keys are errors that name the file and line.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::case::{
    check_id, AlignmentParams, Case, CaseKind, CaseParams, Entry, FileRef, Location, LogitsParams,
    Origin, PerplexityParams, QuantFormat, Sha256, TokenMatchParams,
};
use crate::discovery::DiscoveryError;
use crate::yaml::{split_error, Outline};

/// The models file's name in the fixtures root.
pub const MODELS_FILE: &str = "models.yaml";

/// The prefix of the case ids of real-model lanes.
pub const CASE_PREFIX: &str = "real.";

/// A model architecture, as `general.architecture` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Architecture {
    /// 1bitLLM's bitnet_b1_58 graph (SiLU-gated FFN, sub-norms).
    #[serde(rename = "bitnet")]
    Bitnet,
    /// BitNet-b1.58-2B-4T's graph (ReLU² FFN, GQA); also written `bitnet-25` in files.
    #[serde(rename = "bitnet-b1.58")]
    BitnetB158,
    /// The plain llama graph with ternary weights (Llama3-8B-1.58, Falcon3-1.58bit).
    #[serde(rename = "llama")]
    Llama,
}

impl Architecture {
    /// The name, as written in `models.yaml` and in backends' architecture lists.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Bitnet => "bitnet",
            Architecture::BitnetB158 => "bitnet-b1.58",
            Architecture::Llama => "llama",
        }
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One declared model file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RealModel {
    /// Unique among the entries; letters, digits, `-`, `_` and `.`.
    pub id: String,
    /// Free text shown by `bitnet models list`.
    pub description: Option<String>,
    /// The repository, `owner/name`.
    pub repo: String,
    /// The branch, tag or commit the file is fetched at (`main` unless given).
    pub revision: String,
    /// The file's path inside the repository.
    pub file: String,
    /// The file's digest; `None` means unpinned.
    pub sha256: Option<Sha256>,
    /// The file's size in bytes, when known.
    pub size: Option<u64>,
    /// The graph the file holds.
    pub architecture: Architecture,
    /// The packed format of its ternary weights.
    pub format: QuantFormat,
    /// How to make the file when the repository publishes only a checkpoint to convert
    /// (such a model is not downloaded); `None` when the repository holds the file itself.
    pub convert: Option<String>,
    /// Where the entry was written.
    pub location: Location,
}

impl RealModel {
    /// Whether the file is pinned by a digest.
    pub fn is_pinned(&self) -> bool {
        self.sha256.is_some()
    }

    /// The id shared by the cases of this model's lanes: `real.<id>`.
    pub fn case_id(&self) -> String {
        format!("{CASE_PREFIX}{}", self.id)
    }

    /// The last component of `file`, the name the file is looked for by.
    pub fn file_name(&self) -> &str {
        self.file.rsplit('/').next().unwrap_or(&self.file)
    }

    /// The download URL at `endpoint`: `{endpoint}/{repo}/resolve/{revision}/{file}`.
    pub fn url(&self, endpoint: &str) -> String {
        format!(
            "{}/{}/resolve/{}/{}",
            endpoint.trim_end_matches('/'),
            self.repo,
            self.revision,
            self.file
        )
    }
}

/// What a models file declares: the models, their lanes as cases, and what went wrong.
#[derive(Debug, Default)]
pub struct Declared {
    /// The models, in file order, ids unique.
    pub models: Vec<RealModel>,
    /// One case per lane, in file order; each has [`Origin::RealModel`].
    pub cases: Vec<Case>,
    /// Problems, each with file and line.
    pub errors: Vec<DiscoveryError>,
}

impl Declared {
    /// The model with this id.
    pub fn model(&self, id: &str) -> Option<&RealModel> {
        self.models.iter().find(|model| model.id == id)
    }
}

/// Reads and parses the models file at `path`; a file that does not exist declares nothing.
pub fn load_models(path: &Path) -> Declared {
    match fs::read_to_string(path) {
        Ok(text) => parse_models(path, &text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Declared::default(),
        Err(source) => Declared {
            errors: vec![DiscoveryError::Read {
                path: path.to_path_buf(),
                source,
            }],
            ..Declared::default()
        },
    }
}

/// Parses a models file; `path` goes into every location and message. A malformed file
/// yields one error and nothing else; an invalid entry drops that entry only.
pub fn parse_models(path: &Path, text: &str) -> Declared {
    let mut declared = Declared::default();
    let parse_error = |(line, column): (usize, usize), message: String| DiscoveryError::Parse {
        path: path.to_path_buf(),
        line,
        column,
        message,
    };
    let entries: Option<Vec<RawModel>> = match serde_yaml::from_str(text) {
        Ok(entries) => entries,
        Err(err) => {
            let (position, message) = split_error(&err);
            declared
                .errors
                .push(parse_error(position.unwrap_or((1, 1)), message));
            return declared;
        }
    };
    let outline = match Outline::parse(text) {
        Ok(outline) => outline,
        Err(message) => {
            declared.errors.push(parse_error((1, 1), message));
            return declared;
        }
    };
    let mut seen: HashMap<String, Location> = HashMap::new();
    for (index, raw) in entries.unwrap_or_default().into_iter().enumerate() {
        let item = outline.items().get(index);
        let location = Location {
            path: path.to_path_buf(),
            line: item.map_or(1, |item| item.line),
        };
        let lane_line = |kind: CaseKind| {
            item.and_then(|item| item.get("cases"))
                .and_then(|cases| cases.get(kind.name()))
                .map_or(location.line, |lane| lane.line)
        };
        match raw.assemble(location.clone(), lane_line) {
            Ok((model, cases)) => {
                if let Some(first) = seen.get(&model.id) {
                    declared.errors.push(DiscoveryError::Invalid {
                        location,
                        message: format!("model id `{}` is already used at {first}", model.id),
                    });
                    continue;
                }
                seen.insert(model.id.clone(), location);
                declared.models.push(model);
                declared.cases.extend(cases);
            }
            Err(error) => declared.errors.push(error),
        }
    }
    declared
}

fn main_branch() -> String {
    "main".to_string()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    id: String,
    description: Option<String>,
    repo: String,
    #[serde(default = "main_branch")]
    revision: String,
    file: String,
    sha256: Option<Sha256>,
    size: Option<u64>,
    architecture: Architecture,
    format: QuantFormat,
    convert: Option<String>,
    #[serde(default)]
    cases: RawLanes,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLanes {
    alignment: Option<Lane<AlignmentParams>>,
    logits: Option<Lane<LogitsParams>>,
    perplexity: Option<Lane<PerplexityParams>>,
    token_match: Option<Lane<TokenMatchParams>>,
}

impl RawModel {
    fn assemble(
        self,
        location: Location,
        lane_line: impl Fn(CaseKind) -> usize,
    ) -> Result<(RealModel, Vec<Case>), DiscoveryError> {
        let invalid = |message: String| DiscoveryError::Invalid {
            location: location.clone(),
            message,
        };
        if check_id(&self.id).is_err() {
            return Err(invalid(format!(
                "model id `{}` must be non-empty and use only letters, digits, `-`, `_` and `.`",
                self.id
            )));
        }
        check_repo(&self.repo).map_err(&invalid)?;
        check_file(&self.file).map_err(&invalid)?;
        if self.revision.is_empty() || self.revision.contains(char::is_whitespace) {
            return Err(invalid(format!(
                "revision `{}` must be a branch, tag or commit without spaces",
                self.revision
            )));
        }
        if self
            .convert
            .as_deref()
            .is_some_and(|how| how.trim().is_empty())
        {
            return Err(invalid("convert must say how to make the file".into()));
        }
        if self.size == Some(0) {
            return Err(invalid(
                "size must be the file's length in bytes, not 0".into(),
            ));
        }
        let model = RealModel {
            id: self.id,
            description: self.description,
            repo: self.repo,
            revision: self.revision,
            file: self.file,
            sha256: self.sha256,
            size: self.size,
            architecture: self.architecture,
            format: self.format,
            convert: self.convert,
            location: location.clone(),
        };
        let lanes = self.cases;
        let mut cases = Vec::new();
        let mut add =
            |kind: CaseKind, entry: Entry<CaseParams>| -> Result<(), DiscoveryError> {
                let lane_location = Location {
                    path: location.path.clone(),
                    line: lane_line(kind),
                };
                let mut header = entry.header;
                header.id = model.case_id();
                let mut case = Case::assemble(header, entry.params, lane_location.clone())
                    .map_err(|message| DiscoveryError::Invalid {
                        location: lane_location,
                        message,
                    })?;
                if let Some(file) = case.model_mut() {
                    *file = model_file(&model);
                }
                case.origin = Origin::RealModel {
                    model: model.id.clone(),
                };
                cases.push(case);
                Ok(())
            };
        if let Some(lane) = lanes.alignment {
            add(CaseKind::Alignment, lane.wrap(CaseParams::Alignment))?;
        }
        if let Some(lane) = lanes.logits {
            add(CaseKind::Logits, lane.wrap(CaseParams::Logits))?;
        }
        if let Some(lane) = lanes.perplexity {
            add(CaseKind::Perplexity, lane.wrap(CaseParams::Perplexity))?;
        }
        if let Some(lane) = lanes.token_match {
            add(CaseKind::TokenMatch, lane.wrap(CaseParams::TokenMatch))?;
        }
        Ok((model, cases))
    }
}

/// The reference a lane's case holds until the runner finds the file: its name and digest.
fn model_file(model: &RealModel) -> FileRef {
    FileRef {
        path: PathBuf::from(model.file_name()),
        sha256: model.sha256.clone(),
        root: None,
    }
}

fn check_repo(repo: &str) -> Result<(), String> {
    let part_ok = |part: &str| {
        !part.is_empty()
            && part != "."
            && part != ".."
            && part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    match repo.split_once('/') {
        Some((owner, name)) if part_ok(owner) && part_ok(name) => Ok(()),
        _ => Err(format!(
            "repo `{repo}` must be `owner/name` (letters, digits, `-`, `_`, `.`)"
        )),
    }
}

fn check_file(file: &str) -> Result<(), String> {
    let bad_part = file
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..");
    if bad_part || file.contains('\\') {
        return Err(format!(
            "file `{file}` must be a relative path inside the repository, parts separated by `/`"
        ));
    }
    if !file.ends_with(".gguf") {
        return Err(format!(
            "file `{file}` is not a GGUF file: the harness runs `.gguf` models only"
        ));
    }
    Ok(())
}

/// A lane: a case of kind `P` written without `id` and `model`.
struct Lane<P>(Entry<P>);

impl<P> Lane<P> {
    fn wrap(self, into: fn(P) -> CaseParams) -> Entry<CaseParams> {
        Entry {
            header: self.0.header,
            params: into(self.0.params),
        }
    }
}

/// Keys a lane supplies itself before the written ones; the values are placeholders that
/// [`RawModel::assemble`] replaces.
const SUPPLIED: [(&str, &str); 2] = [("id", "real"), ("model", "")];

impl<'de, P: Deserialize<'de>> Deserialize<'de> for Lane<P> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(LaneVisitor(PhantomData))
    }
}

struct LaneVisitor<P>(PhantomData<P>);

impl<'de, P: Deserialize<'de>> Visitor<'de> for LaneVisitor<P> {
    type Value = Lane<P>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a lane: the kind's fields and `backends`, without `id` and `model`")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Lane<P>, A::Error> {
        let supplied = Supplied {
            map,
            next: 0,
            value: None,
        };
        Entry::deserialize(MapAccessDeserializer::new(supplied)).map(Lane)
    }
}

/// A map access that yields [`SUPPLIED`] first, then the written keys, refusing any written
/// key that the lane supplies.
struct Supplied<A> {
    map: A,
    next: usize,
    value: Option<&'static str>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Supplied<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        if let Some(&(key, value)) = SUPPLIED.get(self.next) {
            self.next += 1;
            self.value = Some(value);
            return seed.deserialize(key.into_deserializer()).map(Some);
        }
        self.map.next_key_seed(Refuse(seed))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        match self.value.take() {
            Some(value) => seed.deserialize(value.into_deserializer()),
            None => self.map.next_value_seed(seed),
        }
    }
}

/// Reads a written key, refusing those the lane supplies while the YAML deserializer still
/// knows the key's position.
struct Refuse<K>(K);

impl<'de, K: DeserializeSeed<'de>> DeserializeSeed<'de> for Refuse<K> {
    type Value = K::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de, K: DeserializeSeed<'de>> Visitor<'de> for Refuse<K> {
    type Value = K::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Self::Value, E> {
        if SUPPLIED.iter().any(|(key, _)| *key == name) {
            return Err(E::custom(format!(
                "a model's lane has no `{name}`: its id is `real.<model id>` and its model is \
                 the entry's file"
            )));
        }
        self.0.deserialize(name.into_deserializer())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::{Capability, FileRoot, TextSource};

    const DIGEST: &str = "378d3fc5343c3cc03a5d6d94f91b5fc24fe060a81e646837088375734cc80761";

    fn models_text() -> String {
        format!(
            "\
# two models
- id: tiny
  repo: owner/tiny-model
  file: sub/tiny.gguf
  sha256: {DIGEST}
  size: 1234
  architecture: bitnet
  format: I2_S
  cases:
    logits:
      backends: [engine-cpu~cpp]
      prompts: [\"Hello\"]
    perplexity:
      needs: [data]
      backends: [engine-cpu~cpp]
      text: {{file: {{path: corpora/wiki.txt, root: data}}}}
      ctx: 64
      chunks: 2
- id: big
  repo: owner/big
  revision: abc123
  file: big.gguf
  architecture: bitnet-b1.58
  format: I2_S
"
        )
    }

    fn parse(text: &str) -> Declared {
        parse_models(Path::new("models.yaml"), text)
    }

    #[test]
    fn entries_become_models_and_lanes_become_cases() {
        let declared = parse(&models_text());
        assert!(declared.errors.is_empty(), "{:?}", declared.errors);
        assert_eq!(declared.models.len(), 2);
        let tiny = declared.model("tiny").unwrap();
        assert_eq!(tiny.location.line, 2);
        assert_eq!(tiny.file_name(), "tiny.gguf");
        assert_eq!(tiny.revision, "main");
        assert!(tiny.is_pinned());
        assert_eq!(
            tiny.url("http://127.0.0.1:9/"),
            "http://127.0.0.1:9/owner/tiny-model/resolve/main/sub/tiny.gguf"
        );
        let big = declared.model("big").unwrap();
        assert!(!big.is_pinned());
        assert_eq!(big.architecture, Architecture::BitnetB158);

        let kinds: Vec<_> = declared.cases.iter().map(|c| c.kind()).collect();
        assert_eq!(kinds, [CaseKind::Logits, CaseKind::Perplexity]);
        let logits = &declared.cases[0];
        assert_eq!(logits.id, "real.tiny");
        assert_eq!(logits.location.line, 11);
        let model = logits.model().unwrap();
        assert_eq!(model.path, PathBuf::from("tiny.gguf"));
        assert_eq!(model.sha256.as_ref().unwrap().as_hex(), DIGEST);
        assert_eq!(
            logits.origin,
            Origin::RealModel {
                model: "tiny".into(),
            }
        );
        let perplexity = &declared.cases[1];
        assert!(perplexity.needs.contains(&Capability::Data));
        let CaseParams::Perplexity(params) = &perplexity.params else {
            panic!("not a perplexity case");
        };
        let TextSource::File(text) = &params.text else {
            panic!("not a text file");
        };
        assert_eq!(text.root, Some(FileRoot::Data));
    }

    #[test]
    fn unknown_keys_are_reported_at_their_line() {
        let text = models_text().replace("  size: 1234\n", "  size: 1234\n  sha: x\n");
        let declared = parse(&text);
        let message = declared.errors[0].to_string();
        assert!(message.starts_with("models.yaml:7:"), "{message}");
        assert!(message.contains("unknown field `sha`"), "{message}");
        assert!(declared.models.is_empty());

        let text = models_text().replace("      prompts:", "      prompt: [x]\n      prompts:");
        let message = parse(&text).errors[0].to_string();
        assert!(message.starts_with("models.yaml:12:"), "{message}");
        assert!(message.contains("unknown field `prompt`"), "{message}");

        let text = models_text().replace("    logits:", "    quantization: {}\n    logits:");
        let message = parse(&text).errors[0].to_string();
        assert!(message.starts_with("models.yaml:10:"), "{message}");
        assert!(
            message.contains("unknown field `quantization`"),
            "{message}"
        );
    }

    #[test]
    fn lanes_take_id_and_model_from_the_entry() {
        let text = models_text().replace(
            "      prompts: [\"Hello\"]\n",
            "      prompts: [\"Hello\"]\n      model: other.gguf\n",
        );
        let message = parse(&text).errors[0].to_string();
        assert!(message.starts_with("models.yaml:13:"), "{message}");
        assert!(message.contains("has no `model`"), "{message}");
        let text = models_text().replace("    logits:\n", "    logits:\n      id: mine\n");
        let message = parse(&text).errors[0].to_string();
        assert!(message.contains("has no `id`"), "{message}");
    }

    #[test]
    fn invalid_entries_name_their_line() {
        let cases = [
            (
                "repo: owner/tiny-model",
                "repo: tiny-model",
                "must be `owner/name`",
            ),
            ("file: sub/tiny.gguf", "file: ../tiny.gguf", "relative path"),
            (
                "file: sub/tiny.gguf",
                "file: tiny.safetensors",
                "not a GGUF file",
            ),
            ("size: 1234", "size: 0", "not 0"),
            ("id: tiny", "id: a b", "model id `a b`"),
            (
                "architecture: bitnet\n",
                "architecture: gpt2\n",
                "unknown variant `gpt2`",
            ),
        ];
        for (from, to, expected) in cases {
            let declared = parse(&models_text().replacen(from, to, 1));
            let message = declared.errors[0].to_string();
            assert!(message.starts_with("models.yaml:"), "{message}");
            assert!(message.contains(expected), "{to}: {message}");
        }
        let text = models_text().replace("prompts: [\"Hello\"]", "prompts: []");
        let message = parse(&text).errors[0].to_string();
        assert!(message.starts_with("models.yaml:11:"), "{message}");
        assert!(message.contains("`prompts` is empty"), "{message}");
    }

    #[test]
    fn duplicate_model_ids_keep_the_first() {
        let text = models_text().replace("- id: big", "- id: tiny");
        let declared = parse(&text);
        assert_eq!(declared.models.len(), 1);
        let message = declared.errors[0].to_string();
        assert!(
            message.contains("already used at models.yaml:2"),
            "{message}"
        );
    }

    #[test]
    fn a_missing_file_declares_nothing() {
        let declared = load_models(Path::new("/nonexistent/models.yaml"));
        assert!(declared.models.is_empty() && declared.errors.is_empty());
        assert!(parse("").models.is_empty());
    }
}

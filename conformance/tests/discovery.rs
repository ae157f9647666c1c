//! Case files: one example of each kind, schema strictness, and the fixture tree walk.

use std::fs;
use std::path::{Path, PathBuf};

use bitnet_conformance::case::{
    held_out_tail, BackendId, Capability, CaseKind, CaseParams, FileRoot, Input, QuantFormat,
    TextSource,
};
use bitnet_conformance::discovery::{discover, parse_case_file, DiscoveryError};

const ALIGNMENT: &str = "\
- id: tiny-i2s-table
  description: tensor table of the tiny I2_S model
  backends: [engine-cpu~cpp]
  needs: [reference]
  model: {path: tiny-i2s.gguf, sha256: 0000000000000000000000000000000000000000000000000000000000000000}
";

const QUANTIZATION: &str = "\
# Seeded weights through every packed format.
- id: i2s-gaussian
  backends: [engine-cpu~cpp, engine-scalar~engine-simd]
  format: I2_S
  shape: {rows: 64, cols: 256}
  input: {gaussian: {seed: 7, std: 0.02}}
  activations: {seed: 11, count: 4}

- id: tq2-real-tensor
  needs: [data]
  backends: [engine-cpu~cpp]
  format: TQ2_0
  shape: {rows: 32, cols: 2560}
  input:
    tensor: {model: bitnet-2b.gguf, name: blk.0.ffn_up.weight}
";

const LOGITS: &str = "\
- id: tiny-prompts
  backends: [engine-cpu~cpp, engine-cuda~engine-cpu]
  needs: [reference]
  model: tiny-i2s.gguf
  prompts: [\"The capital of France is\", \"1 2 3 4\"]
  add_bos: true
";

const PERPLEXITY: &str = "\
- id: wiki-two-chunks
  needs: [data, slow]
  backends: [engine-cpu~cpp]
  model: bitnet-2b.gguf
  text: {file: wikitext-2-raw/wiki.test.raw}
  ctx: 512
  chunks: 2
- id: random-tokens
  backends: [engine-scalar~engine-simd]
  model: tiny-i2s.gguf
  text: {tokens: {seed: 3, count: 256}}
  ctx: 64
";

const TOKEN_MATCH: &str = "\
- id: bpe-vectors
  backends: [engine-cpu~expected, engine-cpu~cpp]
  model: vocab-llama-bpe.gguf
  tokenize: {vectors: tokenizer/ggml-vocab-llama-bpe.gguf}
- id: greedy-16
  backends: [engine-cpu~cpp]
  model: tiny-i2s.gguf
  generate: {prompts: [\"Once upon a time\"], tokens: 16}
";

fn parse(
    kind: CaseKind,
    text: &str,
) -> Result<Vec<bitnet_conformance::case::Case>, DiscoveryError> {
    parse_case_file(kind, Path::new("fixtures/k/file.yaml"), text)
}

fn parse_error(kind: CaseKind, text: &str) -> (usize, String) {
    match parse(kind, text).unwrap_err() {
        DiscoveryError::Parse { line, message, .. } => (line, message),
        DiscoveryError::Invalid { location, message } => (location.line, message),
        other => panic!("unexpected error: {other}"),
    }
}

#[test]
fn one_example_of_each_kind_parses() {
    let alignment = parse(CaseKind::Alignment, ALIGNMENT).unwrap();
    assert_eq!(alignment[0].kind(), CaseKind::Alignment);
    assert!(alignment[0].model().unwrap().sha256.is_some());

    let quantization = parse(CaseKind::Quantization, QUANTIZATION).unwrap();
    assert_eq!(quantization.len(), 2);
    assert_eq!(quantization[0].location.line, 2);
    assert_eq!(quantization[1].location.line, 9);
    assert_eq!(quantization[0].format(), Some(QuantFormat::I2S));
    assert_eq!(quantization[0].backends[1].reference, BackendId::EngineSimd);
    match &quantization[1].params {
        CaseParams::Quantization(p) => assert!(matches!(p.input, Input::Tensor { .. })),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        quantization[1].model().unwrap().path,
        PathBuf::from("bitnet-2b.gguf")
    );

    let logits = parse(CaseKind::Logits, LOGITS).unwrap();
    assert_eq!(logits[0].location.to_string(), "fixtures/k/file.yaml:1");

    let perplexity = parse(CaseKind::Perplexity, PERPLEXITY).unwrap();
    assert!(perplexity[0].needs.contains(&Capability::Slow));
    match &perplexity[1].params {
        CaseParams::Perplexity(p) => {
            assert_eq!(
                p.text,
                TextSource::Tokens {
                    seed: 3,
                    count: 256
                }
            );
            assert_eq!(p.chunks, None);
        }
        other => panic!("{other:?}"),
    }

    let token_match = parse(CaseKind::TokenMatch, TOKEN_MATCH).unwrap();
    assert_eq!(token_match[1].location.line, 5);
}

#[test]
fn unknown_key_is_an_error_with_its_line() {
    let text = LOGITS.replace("  add_bos: true", "  add_bos: true\n  temperature: 0");
    let (line, message) = parse_error(CaseKind::Logits, &text);
    assert_eq!(line, 7);
    assert!(message.contains("unknown field `temperature`"), "{message}");
    // Nested mappings are just as strict.
    let text = QUANTIZATION.replace("count: 4", "count: 4, scale: 2");
    let (line, message) = parse_error(CaseKind::Quantization, &text);
    assert_eq!(line, 7);
    assert!(message.contains("unknown field `scale`"), "{message}");
}

#[test]
fn closed_enums_reject_unknown_names() {
    let (line, message) = parse_error(
        CaseKind::Logits,
        &LOGITS.replace("[reference]", "[reference, gpu]"),
    );
    assert_eq!(line, 3);
    assert!(message.contains("unknown variant `gpu`"), "{message}");
    let (_, message) = parse_error(CaseKind::Quantization, &QUANTIZATION.replace("I2_S", "I2S"));
    assert!(message.contains("unknown variant `I2S`"), "{message}");
    let (_, message) = parse_error(
        CaseKind::Logits,
        &LOGITS.replace("engine-cpu~cpp", "engine-cpu>cpp"),
    );
    assert!(message.contains("write `candidate~reference`"), "{message}");
    let (_, message) = parse_error(
        CaseKind::Quantization,
        &QUANTIZATION.replace("gaussian: {seed: 7, std: 0.02}", "cauchy: {seed: 7}"),
    );
    assert!(message.contains("unknown variant `cauchy`"), "{message}");
}

#[test]
fn cross_field_rules_report_the_case_line() {
    let text = TOKEN_MATCH.replace(
        "  generate: {prompts: [\"Once upon a time\"], tokens: 16}",
        "  generate: {prompts: [a], tokens: 16}\n  tokenize: {texts: [a]}",
    );
    let (line, message) = parse_error(CaseKind::TokenMatch, &text);
    assert_eq!(line, 5);
    assert!(
        message.contains("exactly one of `tokenize` and `generate`"),
        "{message}"
    );

    let text = TOKEN_MATCH.replace(
        "backends: [engine-cpu~cpp]\n  model: tiny",
        "backends: [engine-cpu~expected]\n  model: tiny",
    );
    let (_, message) = parse_error(CaseKind::TokenMatch, &text);
    assert!(
        message.contains("`expected` backend needs expected values"),
        "{message}"
    );

    let text = TOKEN_MATCH.replace(
        "  model: vocab-llama-bpe.gguf\n",
        "  model: vocab-llama-bpe.gguf\n  reference_model: twin.gguf\n",
    );
    let (line, message) = parse_error(CaseKind::TokenMatch, &text);
    assert_eq!(line, 1);
    assert!(
        message.contains("`reference_model` applies to `generate` only"),
        "{message}"
    );

    let (_, message) = parse_error(
        CaseKind::Logits,
        &LOGITS.replace("tiny-prompts", "tiny prompts"),
    );
    assert!(message.contains("case id `tiny prompts`"), "{message}");

    let (_, message) = parse_error(
        CaseKind::Quantization,
        &QUANTIZATION.replace("rows: 64", "rows: 0"),
    );
    assert!(message.contains("holds no element"), "{message}");

    let lut = |format: &str, tiling: &str| {
        let text = QUANTIZATION.replace("format: I2_S", &format!("format: {format}{tiling}"));
        parse(CaseKind::Quantization, &text)
            .map(drop)
            .map_err(|_| parse_error(CaseKind::Quantization, &text).1)
    };
    let message = lut("TL1", "").unwrap_err();
    assert!(
        message.contains("TL1 needs `tiling: {bm, bk, bmm}`"),
        "{message}"
    );
    let message = lut("TL1", "\n  tiling: {bm: 64, bk: 32}").unwrap_err();
    assert!(
        message.contains("`tiling.bmm` 32 or 64, not none"),
        "{message}"
    );
    let message = lut("TL2", "\n  tiling: {bm: 64, bk: 96, bmm: 64}").unwrap_err();
    assert!(message.contains("32 only"), "{message}");
    let message = lut("I2_S", "\n  tiling: {bm: 64, bk: 96}").unwrap_err();
    assert!(
        message.contains("applies to TL1 and TL2, not I2_S"),
        "{message}"
    );
    assert!(lut("TL1", "\n  tiling: {bm: 64, bk: 32, bmm: 64}").is_ok());
    assert!(lut("TL2", "\n  tiling: {bm: 64, bk: 96, bmm: 32}").is_ok());
}

#[test]
fn empty_files_are_errors() {
    for text in ["", "# nothing yet\n", "[]\n"] {
        assert!(
            matches!(
                parse(CaseKind::Logits, text),
                Err(DiscoveryError::Empty { .. })
            ),
            "{text:?}"
        );
    }
}

/// A fixtures tree in the system temp directory, removed on drop.
struct Tree(PathBuf);

impl Tree {
    fn new(name: &str) -> Tree {
        let root = std::env::temp_dir().join(format!("conformance-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(&root).unwrap();
        Tree(root)
    }

    fn write(&self, relative: &str, text: &str) -> &Tree {
        let path = self.0.join(relative);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
        self
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn discovery_is_sorted_and_keeps_going_past_broken_files() {
    let tree = Tree::new("walk");
    tree.write("logits/b.yaml", LOGITS)
        .write("quantization/a.yaml", QUANTIZATION)
        .write(
            "perplexity/broken.yaml",
            "- id: x\n  backends: [engine-cpu~cpp]\n  ctx: [\n",
        )
        .write("token_match/nested/t.yml", TOKEN_MATCH)
        .write("models/README.md", "not a case")
        .write("alignment/.hidden.yaml", "not read");
    let found = discover(&tree.0);
    let ids: Vec<_> = found.cases.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "tiny-prompts",
            "i2s-gaussian",
            "tq2-real-tensor",
            "bpe-vectors",
            "greedy-16"
        ]
    );
    assert_eq!(found.errors.len(), 1, "{:?}", found.errors);
    assert_eq!(
        found.errors[0].path(),
        tree.0.join("perplexity/broken.yaml")
    );
    assert!(found.cases[3]
        .location
        .path
        .ends_with("token_match/nested/t.yml"));
}

#[test]
fn duplicate_ids_name_both_places() {
    let tree = Tree::new("dupes");
    tree.write("logits/a.yaml", LOGITS)
        .write("logits/b.yaml", &format!("# again\n{LOGITS}"));
    let found = discover(&tree.0);
    assert_eq!(found.cases.len(), 1);
    let message = found.errors[0].to_string();
    let a = tree.0.join("logits/a.yaml");
    let b = tree.0.join("logits/b.yaml");
    assert_eq!(
        message,
        format!(
            "case id `tiny-prompts` is used twice: {}:1 and {}:2",
            a.display(),
            b.display()
        )
    );
}

#[test]
fn misplaced_files_and_unknown_kinds_are_errors() {
    let tree = Tree::new("misplaced");
    tree.write("logits/a.yaml", LOGITS)
        .write("stray.yaml", LOGITS)
        .write("logit/b.yaml", LOGITS);
    let found = discover(&tree.0);
    assert_eq!(found.cases.len(), 1);
    let messages: Vec<String> = found.errors.iter().map(ToString::to_string).collect();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(
        messages[0].contains("`logit` is not a kind"),
        "{}",
        messages[0]
    );
    assert!(
        messages[1].contains("belong in a folder named after their kind"),
        "{}",
        messages[1]
    );
}

#[test]
fn zero_cases_is_an_error() {
    let tree = Tree::new("zero");
    tree.write("models/README.md", "nothing here");
    let found = discover(&tree.0);
    assert!(found.cases.is_empty());
    assert!(matches!(
        found.errors.as_slice(),
        [DiscoveryError::NoCases { .. }]
    ));
    let found = discover(&tree.0.join("missing"));
    assert!(matches!(
        found.errors.as_slice(),
        [DiscoveryError::Read { .. }]
    ));
}

#[test]
fn files_may_name_their_root_and_data_files_need_data() {
    let text = "\
- id: held-out
  needs: [data]
  backends: [engine-cpu~cpp]
  model: {path: models/trained.gguf, root: fixtures}
  text: {file: {path: corpora/tinyshakespeare.txt, root: data}}
  held_out: 0.1
  ctx: 128
";
    let cases = parse(CaseKind::Perplexity, text).unwrap();
    let case = &cases[0];
    assert_eq!(case.default_root(), FileRoot::Data);
    let roots: Vec<_> = case
        .files()
        .iter()
        .map(|f| f.root_or(case.default_root()))
        .collect();
    assert_eq!(roots, [FileRoot::Fixtures, FileRoot::Data]);

    let (line, message) = parse_error(CaseKind::Perplexity, &text.replace("  needs: [data]\n", ""));
    assert_eq!(line, 1);
    assert!(
        message.contains("must declare `needs: [data]`"),
        "{message}"
    );

    let (_, message) = parse_error(CaseKind::Perplexity, &text.replace("0.1", "1.5"));
    assert!(
        message.contains("held_out 1.5 must lie strictly between 0 and 1"),
        "{message}"
    );
    let (_, message) = parse_error(
        CaseKind::Perplexity,
        &text.replace("root: data}", "root: cache}"),
    );
    assert!(message.contains("unknown variant `cache`"), "{message}");
}

#[test]
fn held_out_tail_starts_on_a_line() {
    let text = "one\ntwo\nthree\nfour\n";
    assert_eq!(held_out_tail(text, 0.5), "four\n");
    assert_eq!(held_out_tail(text, 0.6), "three\nfour\n");
    assert_eq!(held_out_tail(text, 1.0), text);
    assert_eq!(held_out_tail("no newline at all", 0.5), "");
}

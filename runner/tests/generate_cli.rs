//! `bitnet generate` and `bitnet perplexity` on the committed tiny model: seeded repeats, stop
//! strings, chat prompts, rejected flags, the run summary and per-token NLL output.

use std::path::PathBuf;
use std::process::Command;

const PROMPT: &str = "Once upon a time";

fn model() -> String {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/models/tiny-bitnet-i2_s.gguf");
    path.to_str().unwrap().to_string()
}

struct Run {
    ok: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn bitnet(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_bitnet"))
        .args(args)
        .output()
        .unwrap();
    Run {
        ok: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `bitnet generate` on the tiny model with sampling flags and `extra`.
fn sample(seed: &str, extra: &[&str]) -> Run {
    let m = model();
    let mut args = vec![
        "generate",
        "-m",
        &m,
        "-p",
        PROMPT,
        "-n",
        "40",
        "--temp",
        "0.9",
        "--top-k",
        "50",
        "--top-p",
        "0.95",
        "--min-p",
        "0.01",
        "--repeat-penalty",
        "1.1",
        "--repeat-last-n",
        "16",
        "--seed",
        seed,
    ];
    args.extend_from_slice(extra);
    bitnet(&args)
}

/// The generated text: stdout after the echoed prompt, without the final newline.
fn generated(run: &Run) -> &str {
    assert!(run.ok, "{}", run.stderr);
    run.stdout
        .strip_prefix(PROMPT)
        .and_then(|s| s.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("unexpected stdout {:?}", run.stdout))
}

#[test]
fn a_seed_repeats_the_output_and_another_seed_changes_it() {
    let a = sample("1234", &[]);
    let b = sample("1234", &[]);
    let c = sample("1235", &[]);
    assert_eq!(generated(&a), generated(&b));
    assert_ne!(generated(&a), generated(&c));
    assert!(a.stderr.contains("seed 1234"), "{}", a.stderr);
}

#[test]
fn greedy_generation_is_the_default_deterministic_and_the_same_on_any_kernels() {
    let m = model();
    let args = ["generate", "-m", &m, "-p", PROMPT, "-n", "12"];
    let a = bitnet(&args);
    assert_eq!(generated(&a), generated(&bitnet(&args)));
    assert!(a.stderr.contains("sampling: greedy"), "{}", a.stderr);
    // The scalar kernels give the same logits, so the same tokens.
    let scalar = bitnet(&[&args[..], &["--isa", "scalar"]].concat());
    assert_eq!(generated(&a), generated(&scalar), "{}", scalar.stderr);
}

#[test]
fn stop_truncates_the_output_before_the_stop_string() {
    let free = sample("77", &[]);
    let text = generated(&free);
    let chars: Vec<char> = text.chars().collect();
    let start = (5..chars.len() - 2)
        .find(|&i| chars[i..i + 2].iter().all(|c| c.is_ascii_alphanumeric()))
        .expect("two ASCII alphanumerics in a row in the seeded output");
    let stop: String = chars[start..start + 2].iter().collect();
    let cut = &text[..text.find(&stop).unwrap()];

    let stopped = sample("77", &["--stop", "no such text", "--stop", &stop]);
    assert_eq!(generated(&stopped), cut);
    assert!(
        stopped
            .stderr
            .contains(&format!("stopped: stop string {stop:?}")),
        "{}",
        stopped.stderr
    );
}

#[test]
fn the_run_summary_goes_to_stderr() {
    let run = sample("5", &["--device", "cpu", "-t", "2"]);
    assert!(run.ok, "{}", run.stderr);
    for needle in [
        "stopped: ",
        "device          = cpu, chosen by `cpu`",
        "load time",
        "tokenize time",
        "prompt eval",
        "tokens per second",
        "first token",
        "KV cache",
        "weights",
    ] {
        assert!(run.stderr.contains(needle), "{needle}: {}", run.stderr);
    }
    if cfg!(target_os = "linux") {
        assert!(run.stderr.contains("peak RSS        ="), "{}", run.stderr);
        assert!(!run.stderr.contains("peak RSS        =        n/a"));
    }
    assert!(!run.stdout.contains("tokens per second"));
}

#[test]
fn chat_applies_the_named_template() {
    let m = model();
    let run = bitnet(&[
        "generate",
        "-m",
        &m,
        "-p",
        "Hi",
        "-n",
        "4",
        "--chat",
        "--chat-template",
        "bitnet",
        "--system",
        "Be brief.",
    ]);
    assert!(run.ok, "{}", run.stderr);
    // The template is not echoed, but its tokens are the prompt's.
    assert!(!run.stdout.contains("Assistant"), "{}", run.stdout);
    let rendered = "System: Be brief.<|eot_id|>User: Hi<|eot_id|>Assistant: ";
    let tokens = bitnet(&["tokenize", "-m", &m, "-p", rendered, "--parse-special"]);
    assert!(tokens.ok, "{}", tokens.stderr);
    let n = tokens.stdout.lines().count();
    assert!(n > 50, "{}", tokens.stdout);
    assert!(
        run.stderr.contains(&format!("/ {n:5} tokens")),
        "{n}: {}",
        run.stderr
    );
}

#[test]
fn bad_flags_exit_non_zero_and_say_what_is_wrong() {
    let m = model();
    let base = ["generate", "-m", m.as_str(), "-p", "Hi"];
    let cases: [(&[&str], &str); 13] = [
        (
            &["--temp", "-1"],
            "temperature must be a finite number ≥ 0, got -1",
        ),
        (&["--temp", "abc"], "invalid value 'abc' for '--temp"),
        (&["--top-p", "1.5"], "top-p must be in (0, 1], got 1.5"),
        (&["--top-p", "0"], "top-p must be in (0, 1], got 0"),
        (&["--min-p", "2"], "min-p must be in [0, 1], got 2"),
        (
            &["--repeat-penalty", "0"],
            "repeat penalty must be a finite number > 0",
        ),
        (&["--top-k", "-3"], "invalid value '-3' for '--top-k"),
        (
            &["--device", "tpu"],
            "unknown device `tpu` (expected auto, cpu, gpu or hybrid)",
        ),
        (&["--device", "gpu"], "built without CUDA support"),
        (&["--isa", "avx1024"], "unknown instruction set `avx1024`"),
        (&["--stop", ""], "--stop needs a non-empty string"),
        (&["--chat"], "has no `tokenizer.chat_template`"),
        (
            &["--chat", "--chat-template", "chatml"],
            "unknown chat template `chatml`",
        ),
    ];
    for (extra, message) in cases {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let run = bitnet(&args);
        assert!(!run.ok, "{extra:?} succeeded");
        assert!(run.code.is_some_and(|c| c != 0));
        assert!(run.stderr.contains(message), "{extra:?}: {}", run.stderr);
        assert!(run.stdout.is_empty(), "{extra:?}: {}", run.stdout);
    }
    let run = bitnet(&[&base[..], &["--system", "x"]].concat());
    assert!(!run.ok);
    assert!(run.stderr.contains("--chat"), "{}", run.stderr);
}

#[test]
fn perplexity_writes_one_nll_per_scored_token() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("text.txt");
    // Byte-level text: about one token per character.
    let body = "the quick brown fox jumps over the lazy dog. ".repeat(4);
    std::fs::write(&text, &body).unwrap();
    let nll = dir.path().join("nll.txt");
    let m = model();
    let run = bitnet(&[
        "perplexity",
        "-m",
        &m,
        "-f",
        text.to_str().unwrap(),
        "--ctx",
        "16",
        "--chunks",
        "3",
        "--nll-out",
        nll.to_str().unwrap(),
    ]);
    assert!(run.ok, "{}", run.stderr);
    // Each 16-token chunk scores positions 8..=14.
    let values: Vec<f64> = std::fs::read_to_string(&nll)
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(values.len(), 3 * 7);
    assert!(values.iter().all(|v| v.is_finite() && *v > 0.0));
    let ppl = (values.iter().sum::<f64>() / values.len() as f64).exp();
    let printed: f64 = run
        .stdout
        .strip_prefix("PPL = ")
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .parse()
        .unwrap();
    assert!((ppl - printed).abs() < 1e-3, "{ppl} vs {}", run.stdout);
    assert!(
        run.stdout.contains("over 21 scored tokens"),
        "{}",
        run.stdout
    );
    // Stderr is not a terminal here: no progress bar.
    assert!(run.stderr.is_empty(), "{}", run.stderr);
}

//! `bitnet bench` on the committed tiny models: the JSON report of a side-by-side run and of an
//! engine-only run, and the errors of bad requests. No timing is asserted.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn model(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/models")
        .join(name);
    path.to_str().unwrap().to_string()
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn bench(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_bitnet"))
        .arg("bench")
        .args(["--probe-ms", "50"])
        .args(args)
        .output()
        .unwrap();
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn report(run: &Run) -> Value {
    assert!(run.ok, "bench failed: {}", run.stderr);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

fn positive(v: &Value, what: &str) -> f64 {
    let x = v
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"));
    assert!(x.is_finite() && x > 0.0, "{what} = {x}");
    x
}

fn check_side(side: &Value, decode: bool, what: &str) {
    let rate = &side["tokens_per_second"];
    let median = positive(&rate["median"], &format!("{what} median"));
    assert!(positive(&rate["min"], what) <= median && median <= positive(&rate["max"], what));
    assert_eq!(
        rate["samples"].as_array().unwrap().len(),
        1,
        "{what}: one rep"
    );
    if cfg!(target_os = "linux") {
        positive(&side["peak_rss_bytes"], &format!("{what} peak RSS"));
    }
    let bw = &side["decode_bandwidth"];
    if decode {
        positive(&bw["bytes_per_second"], &format!("{what} bandwidth"));
        let sustained = positive(
            &bw["fraction_of_probe"],
            &format!("{what} bandwidth fraction"),
        );
        let of_peak = positive(&bw["fraction_of_peak"], &format!("{what} fraction of peak"));
        assert!(
            of_peak <= sustained,
            "{what}: the peak is the higher bandwidth"
        );
    } else {
        assert!(bw.is_null(), "{what}: prefill has no decode bandwidth");
    }
}

#[test]
fn side_by_side_report_has_both_engines_ratios_rss_and_bandwidth() {
    let run = bench(&[
        "--model",
        &model("tiny-bitnet-i2_s.gguf"),
        "-p",
        "16",
        "-n",
        "8",
        "-t",
        "1",
        "-r",
        "1",
        "--json",
    ]);
    let r = report(&run);
    let results = r["results"].as_array().unwrap();
    let tests: Vec<&str> = results
        .iter()
        .map(|t| t["test"].as_str().unwrap())
        .collect();
    assert_eq!(tests, ["pp16", "tg8"]);
    for t in results {
        let name = t["test"].as_str().unwrap();
        assert_eq!(t["threads"], 1);
        let decode = name.starts_with("tg");
        check_side(&t["engine"], decode, &format!("{name} engine"));
        check_side(&t["reference"], decode, &format!("{name} reference"));
        let ratio = positive(&t["ratio"], &format!("{name} ratio"));
        let medians = |side: &str| t[side]["tokens_per_second"]["median"].as_f64().unwrap();
        assert!((ratio - medians("engine") / medians("reference")).abs() < 1e-9 * ratio);
    }
    let probe = &r["machine"]["memory_read_bandwidth"][0];
    assert_eq!(probe["threads"], 1);
    let sustained = positive(&probe["bytes_per_second"], "probed bandwidth");
    assert!(positive(&probe["peak_bytes_per_second"], "probed peak") >= sustained);
    assert!(
        probe["method"]
            .as_str()
            .is_some_and(|m| m.contains("loads")),
        "the probe names how it read: {}",
        probe["method"]
    );
    let methods = probe["by_method"]
        .as_array()
        .expect("each method's bandwidth");
    assert_eq!(methods.len(), 3, "{methods:?}");
    assert!(methods
        .iter()
        .any(|m| m["method"] == probe["method"]
            && m["bytes_per_second"] == probe["bytes_per_second"]));
    let traffic = &r["model"]["decode_traffic"];
    positive(&traffic["block_weights"], "block bytes");
    positive(&traffic["head"], "head bytes");
    assert_eq!(r["model"]["architecture"], "bitnet");
    assert!(r["reference"]["version"]
        .as_str()
        .is_some_and(|v| !v.is_empty()));
    assert!(r["reference"]["architectures"].as_array().is_some());
    if cfg!(target_os = "linux") {
        assert!(r["machine"]["cpu"]["flags"]
            .as_array()
            .is_some_and(|f| !f.is_empty()));
    }
    assert_eq!(r["reps"], 1);
}

#[test]
fn engine_only_runs_an_architecture_the_reference_lacks() {
    let tiny = model("tiny-bitnet-b1.58-i2_s.gguf");
    let args = [
        "--model", &tiny, "-p", "8", "-n", "4", "-t", "1,2", "-r", "2",
    ];
    let refused = bench(&args);
    assert!(!refused.ok);
    assert!(
        refused.stderr.contains("bitnet-b1.58") && refused.stderr.contains("--engine-only"),
        "{}",
        refused.stderr
    );

    let run = bench(&[&args[..], &["--engine-only", "--json"]].concat());
    let r = report(&run);
    assert!(r["reference"].is_null());
    let results = r["results"].as_array().unwrap();
    let threads: Vec<u64> = results
        .iter()
        .map(|t| t["threads"].as_u64().unwrap())
        .collect();
    assert_eq!(threads, [1, 1, 2, 2]);
    for t in results {
        assert!(t["reference"].is_null() && t["ratio"].is_null());
        let rate = &t["engine"]["tokens_per_second"];
        assert_eq!(rate["samples"].as_array().unwrap().len(), 2);
        positive(&rate["median"], "engine median");
    }
    assert_eq!(
        r["machine"]["memory_read_bandwidth"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn steps_split_the_engine_decode_by_op() {
    let run = bench(&[
        "--model",
        &model("tiny-bitnet-b1.58-i2_s.gguf"),
        "-p",
        "4",
        "-n",
        "3",
        "-t",
        "1",
        "-r",
        "2",
        "--engine-only",
        "--steps",
        "--json",
    ]);
    let r = report(&run);
    let results = r["results"].as_array().unwrap();
    assert!(results[0]["engine"]["decode_steps"].is_null(), "prefill");
    let steps = results[1]["engine"]["decode_steps"].as_array().unwrap();
    let ops: Vec<&str> = steps.iter().map(|s| s["op"].as_str().unwrap()).collect();
    for op in [
        "attn_norm",
        "Qcur",
        "kqv_out",
        "ffn_down",
        "l_out",
        "result_output",
        "argmax",
    ] {
        assert!(ops.contains(&op), "{op} missing from {ops:?}");
    }
    // The weights the steps read are the model's, once per token.
    let read: f64 = steps
        .iter()
        .map(|s| s["weight_bytes"].as_f64().unwrap())
        .sum();
    let traffic = &r["model"]["decode_traffic"];
    let per_token = traffic["block_weights"].as_f64().unwrap() + traffic["head"].as_f64().unwrap();
    assert!(
        (read - per_token).abs() <= 1e-9 * per_token,
        "{read} vs {per_token}"
    );
    let reads = |op: &str| steps.iter().find(|s| s["op"] == op).unwrap()["weight_bytes"].as_f64();
    assert!(reads("Qcur").unwrap() > 0.0 && reads("result_output").unwrap() > 0.0);
    assert_eq!(reads("attn_norm"), Some(0.0));
    // Seconds per token: together about a token's time (the tracing adds a little).
    let total: f64 = steps.iter().map(|s| s["seconds"].as_f64().unwrap()).sum();
    let rate = results[1]["engine"]["tokens_per_second"]["median"]
        .as_f64()
        .unwrap();
    assert!(
        total > 0.0 && total <= 2.0 / rate,
        "{total} s per token at {rate} t/s"
    );
}

#[test]
fn the_table_names_every_test_and_the_engine_kernels() {
    let run = bench(&[
        "--model",
        &model("tiny-bitnet-i2_s.gguf"),
        "-p",
        "4",
        "-n",
        "2",
        "-t",
        "1",
        "-r",
        "1",
        "--isa",
        "scalar",
    ]);
    assert!(run.ok, "{}", run.stderr);
    for text in [
        "scalar kernels",
        "| test",
        "engine/ref",
        "| pp4",
        "| tg2",
        "memory read bandwidth",
    ] {
        assert!(
            run.stdout.contains(text),
            "{text:?} missing from\n{}",
            run.stdout
        );
    }
}

#[test]
fn bad_requests_fail_with_a_clear_error() {
    let tiny = model("tiny-bitnet-i2_s.gguf");
    let cases: [(&[&str], &str); 10] = [
        (&["-p", "8"], "--model"),
        (&["--model", &tiny, "-t", "0"], "must be at least 1"),
        (&["--model", &tiny, "-r", "0"], "must be at least 1"),
        (&["--model", &tiny, "-p", "x"], "invalid value"),
        (&["--model", &tiny, "--frobnicate"], "--frobnicate"),
        (
            &["--model", &tiny, "--isa", "avx1024"],
            "unknown instruction set `avx1024`",
        ),
        (
            &["--model", &tiny, "--shape", "700m"],
            "cannot be used with",
        ),
        (&["--model", &tiny, "-p", "0", "-n", "0"], "nothing to run"),
        (
            &["--model", &tiny, "-p", "500", "-n", "0"],
            "pp500 needs 500 context positions",
        ),
        (&["--model", "no/such/model.gguf"], "no/such/model.gguf"),
    ];
    for (args, expected) in cases {
        let run = bench(args);
        assert!(!run.ok, "{args:?} succeeded");
        assert!(
            run.stderr.contains(expected),
            "{args:?}: {expected:?} missing from {}",
            run.stderr
        );
    }
}

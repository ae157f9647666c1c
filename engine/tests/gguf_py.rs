//! Files from our writer load in gguf-py, the reference Python reader (`pip install gguf`).
//! gguf-py knows upstream type ids only, so this file uses F32/F16/TQ1_0/TQ2_0 tensors.

use std::process::Command;

use bitnet_engine::gguf::{Array, GgmlType, GgufWriter, Value, ValueType};

const READER: &str = r#"
import json, sys
try:
    import gguf
except ImportError:
    sys.exit("gguf-py is not installed: run `pip install gguf`")
r = gguf.GGUFReader(sys.argv[1])
out = {"fields": {}, "tensors": []}
for name, f in r.fields.items():
    if name.startswith("GGUF."):
        continue
    out["fields"][name] = f.contents()
for t in r.tensors:
    out["tensors"].append({
        "name": t.name, "type": int(t.tensor_type), "shape": [int(d) for d in t.shape],
        "offset": int(t.data_offset), "n_bytes": int(t.n_bytes),
        "first": int(t.data.reshape(-1).view("uint8")[0]),
    })
print(json.dumps(out))
"#;

#[test]
fn gguf_py_reads_what_we_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("py.gguf");
    let mut w = GgufWriter::new();
    w.set("general.architecture", Value::String("bitnet".into()))
        .unwrap();
    w.set("test.u8", Value::U8(200)).unwrap();
    w.set("test.i64", Value::I64(-5_000_000_000)).unwrap();
    w.set("test.f64", Value::F64(0.25)).unwrap();
    w.set("test.bool", Value::Bool(true)).unwrap();
    let strings = ["a", "ĠThe", "<|eot_id|>"].map(|s| Value::String(s.into()));
    w.set(
        "test.strings",
        Value::Array(Array {
            elem: ValueType::String,
            items: strings.to_vec(),
        }),
    )
    .unwrap();
    w.add_tensor("f32", GgmlType::F32, &[3, 2], vec![1; 24])
        .unwrap();
    w.add_tensor("f16", GgmlType::F16, &[8], vec![2; 16])
        .unwrap();
    w.add_tensor("tq1", GgmlType::TQ1_0, &[256, 2], vec![3; 108])
        .unwrap();
    w.add_tensor("tq2", GgmlType::TQ2_0, &[512], vec![4; 132])
        .unwrap();
    w.write_file(&path).unwrap();

    let out = Command::new("python3")
        .args(["-c", READER, path.to_str().unwrap()])
        .output()
        .expect("python3 must be installed to run the gguf-py check");
    assert!(
        out.status.success(),
        "gguf-py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let f = &v["fields"];
    assert_eq!(f["general.architecture"], "bitnet");
    assert_eq!(f["test.u8"], 200);
    assert_eq!(f["test.i64"], -5_000_000_000i64);
    assert_eq!(f["test.f64"], 0.25);
    assert_eq!(f["test.bool"], true);
    assert_eq!(f["test.strings"][1], "ĠThe");
    let t = v["tensors"].as_array().unwrap();
    let expect = [
        ("f32", 0, 24, 1),
        ("f16", 1, 16, 2),
        ("tq1", 34, 108, 3),
        ("tq2", 35, 132, 4),
    ];
    assert_eq!(t.len(), expect.len());
    for (got, (name, ty, n_bytes, first)) in t.iter().zip(expect) {
        assert_eq!(got["name"], name);
        assert_eq!(got["type"], ty);
        assert_eq!(got["n_bytes"], n_bytes);
        assert_eq!(got["first"], first);
    }
    assert_eq!(t[0]["shape"], serde_json::json!([3, 2]));
}

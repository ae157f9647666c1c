//! Arbitrary bytes through the GGUF parser and validator; valid files must round-trip the writer.
#![no_main]

use bitnet_engine::gguf::{GgufWriter, Layout, ModelHparams, TokenizerMeta};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(layout) = Layout::parse(data) else {
        return;
    };
    let issues = layout.validate();
    let _ = ModelHparams::from_metadata(&layout.metadata);
    let _ = TokenizerMeta::from_metadata(&layout.metadata);
    if !issues.is_empty() {
        return;
    }
    let mut w = GgufWriter::new();
    for (k, v) in layout.metadata.iter() {
        w.set(k, v.clone()).expect("parsed metadata is writable");
    }
    for t in &layout.tensors {
        let start = t.file_offset as usize;
        let bytes = data[start..start + t.n_bytes as usize].to_vec();
        w.add_tensor(&t.name, t.ty, &t.dims, bytes)
            .expect("validated tensor is writable");
    }
    let written = w.to_bytes();
    let again = Layout::parse(&written).expect("written file parses");
    assert!(again.validate().is_empty(), "written file validates");
    assert_eq!(again.metadata.len(), layout.metadata.len());
    assert_eq!(again.tensors.len(), layout.tensors.len());
    for (a, b) in again.tensors.iter().zip(&layout.tensors) {
        assert_eq!((&a.name, a.ty, &a.dims), (&b.name, b.ty, &b.dims));
        let (sa, sb) = (a.file_offset as usize, b.file_offset as usize);
        let n = a.n_bytes as usize;
        assert_eq!(&written[sa..sa + n], &data[sb..sb + n]);
    }
});

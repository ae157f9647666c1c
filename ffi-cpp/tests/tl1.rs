//! TL1 weights packed by the reference converter's own code: the tensor ggml loads, holding
//! every pair's index and the scale where the reference's kernels read them.

mod common;

use bitnet_ffi_cpp::{tl1_reference_pack, RefError};
use common::Rng;

/// Counts of each pair index `3a + b + 4` over row-major weights.
fn index_counts(weights: &[f32]) -> [usize; 9] {
    let code = |w: f32| i32::from(w > 0.0) - i32::from(w < 0.0);
    let mut counts = [0; 9];
    for pair in weights.chunks_exact(2) {
        counts[(3 * code(pair[0]) + code(pair[1]) + 4) as usize] += 1;
    }
    counts
}

#[test]
fn packed_tensors_hold_every_pair_and_the_scale() {
    let mut rng = Rng::new(0x71);
    for (m, k, tiling) in [(64, 32, (64, 32, 32)), (128, 64, (128, 16, 64))] {
        let weights: Vec<f32> = (0..m * k).map(|_| f32::from(rng.trit()) * 0.5).collect();
        let packed = tl1_reference_pack(&weights, m, k, tiling)
            .unwrap_or_else(|e| panic!("packing {m}x{k}: {e}"));
        assert_eq!(packed.len(), m * k / 4 + 32);
        let (codes, tail) = packed.split_at(m * k / 4);
        assert_eq!(tail[..4], 0.5f32.to_le_bytes());
        assert!(tail[4..].iter().all(|&b| b == 0));
        let mut counts = [0; 9];
        for nibble in codes.iter().flat_map(|b| [b >> 4, b & 0x0f]) {
            assert!(nibble <= 8, "index {nibble}");
            counts[usize::from(nibble)] += 1;
        }
        assert_eq!(counts, index_counts(&weights), "{m}x{k}");
    }
}

#[test]
fn tl1_reference_pack_rejects_bad_input() {
    let err = tl1_reference_pack(&[0.0; 10], 64, 32, (64, 32, 32)).unwrap_err();
    assert_eq!(
        err,
        RefError::LengthMismatch {
            call: "tl1_reference_pack",
            what: "weights",
            expected: 64 * 32,
            actual: 10,
        }
    );
    let err = tl1_reference_pack(&[0.0; 96 * 36], 96, 36, (64, 36, 48)).unwrap_err();
    let RefError::InvalidArgument { message, .. } = &err else {
        panic!("{err}");
    };
    for rule in [
        "bmm is 32 or 64",
        "M is a multiple of BM",
        "BM is a multiple of bmm",
    ] {
        assert!(message.contains(rule), "{message}");
    }
}

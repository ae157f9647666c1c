//! I2_S products over runs of consecutive rows, each ISA's row dot looped inside one function
//! compiled for that ISA, so a run of rows costs one indirect call.

/// Checks that `codes` holds `rows` I2_S rows for the activations `acts`, which are all one
/// multiple of 128 long.
///
/// # Panics
/// Otherwise, with the same message from every ISA.
pub(crate) fn check_rows(codes: &[u8], acts: &[&[i8]], rows: usize) {
    let len = acts.first().map_or(0, |act| act.len());
    assert!(
        len.is_multiple_of(128)
            && acts.iter().all(|act| act.len() == len)
            && codes.len() == rows * len / 4,
        "i2_s rows/activation length mismatch"
    );
}

/// The row width in code bytes and the four tokens' 128-activation blocks of a four-token run;
/// `None`, with `out` zeroed, for empty rows.
#[cfg(target_arch = "x86_64")]
pub(crate) fn token_blocks<'a>(
    acts: [&'a [i8]; 4],
    out: &mut [[i32; 4]],
) -> Option<(usize, [&'a [[i8; 128]]; 4])> {
    let width = acts[0].len() / 4;
    if width == 0 {
        out.fill([0; 4]);
        return None;
    }
    Some((width, acts.map(|act| act.as_chunks::<128>().0)))
}

/// Defines `$name(codes, act, out)` (an [`I2sRows`](super::table::I2sRows) kernel) over the row
/// dot `$dot`, looped in `$inner`, compiled with `$features`. Only the dot tables of the ISA that
/// has those features may hold `$name`.
macro_rules! i2s_rows_kernel {
    ($name:ident, $inner:ident, $dot:path, $features:literal) => {
        fn $name(codes: &[u8], act: &[i8], out: &mut [i32]) {
            $crate::kernels::rows::check_rows(codes, &[act], out.len());
            // SAFETY: only dot tables of this ISA hold this function, and they are handed out
            // only on CPUs with the features `$inner` is compiled for.
            unsafe { $inner(codes, act, out) }
        }

        #[target_feature(enable = $features)]
        fn $inner(codes: &[u8], act: &[i8], out: &mut [i32]) {
            match act.len() / 4 {
                0 => out.fill(0),
                width => {
                    for (o, row) in out.iter_mut().zip(codes.chunks_exact(width)) {
                        *o = $dot(row, act);
                    }
                }
            }
        }
    };
}

pub(crate) use i2s_rows_kernel;

/// Defines `$name(codes, acts, out)` (an [`I2sRowsX4`](super::table::I2sRowsX4) kernel) that
/// takes a run's rows two at a time through `$pair_dot(rows, blocks) -> [[i32; 4]; 2]`, looped in
/// `$inner`, compiled with `$features`: each block's activations are loaded once for both rows
/// and each block's codes once for all four tokens. Only the dot tables of the ISA that has those
/// features may hold `$name`.
#[cfg(target_arch = "x86_64")]
macro_rules! i2s_rows_x4_in_pairs {
    ($name:ident, $inner:ident, $pair_dot:path, $features:literal) => {
        fn $name(codes: &[u8], acts: [&[i8]; 4], out: &mut [[i32; 4]]) {
            $crate::kernels::rows::check_rows(codes, &acts, out.len());
            // SAFETY: only dot tables of this ISA hold this function, and they are handed out
            // only on CPUs with the features `$inner` is compiled for.
            unsafe { $inner(codes, acts, out) }
        }

        #[target_feature(enable = $features)]
        fn $inner(codes: &[u8], acts: [&[i8]; 4], out: &mut [[i32; 4]]) {
            let Some((width, blocks)) = $crate::kernels::rows::token_blocks(acts, out) else {
                return;
            };
            let mut pairs = out.chunks_exact_mut(2);
            for (rows, o) in codes.chunks_exact(2 * width).zip(&mut pairs) {
                let (first, second) = rows.split_at(width);
                let [a, b] = $pair_dot([first, second], blocks);
                o[0] = a;
                o[1] = b;
            }
            // An odd run's last row goes as a pair with itself, the second result unused.
            if let [last] = pairs.into_remainder() {
                let row = &codes[codes.len() - width..];
                let [a, _] = $pair_dot([row, row], blocks);
                *last = a;
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
pub(crate) use i2s_rows_x4_in_pairs;

//! The per-token lookup tables of bitnet.cpp's TL1 and TL2 kernels: 16 i16 entries, stored as
//! their 16 low bytes then their 16 high bytes, the order the kernels shuffle with.

/// One lookup table: low bytes of the 16 i16 entries, then their high bytes.
pub type LutTable = [u8; 32];

/// An entry of a table as the kernels read it (the index's low four bits).
#[inline]
pub fn lut_entry(table: &LutTable, index: u8) -> i16 {
    let i = usize::from(index & 0x0f);
    i16::from_le_bytes([table[i], table[16 + i]])
}

/// A table from its 16 entries: low bytes, then high bytes.
#[inline(always)]
pub(crate) fn lut_table(entries: [i16; 16]) -> LutTable {
    let mut out = [0u8; 32];
    for (index, entry) in entries.iter().enumerate() {
        let [lo, hi] = entry.to_le_bytes();
        out[index] = lo;
        out[16 + index] = hi;
    }
    out
}

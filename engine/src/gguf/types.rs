//! The ggml tensor type table, including the bitnet.cpp family and the id-39 clash.

use std::fmt;

use serde::Serialize;

/// A ggml tensor element type, as stored in a GGUF tensor info.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum GgmlType {
    F32,
    F16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
    IQ2_XXS,
    IQ2_XS,
    IQ3_XXS,
    IQ1_S,
    IQ4_NL,
    IQ3_S,
    IQ2_S,
    IQ4_XS,
    I8,
    I16,
    I32,
    I64,
    F64,
    IQ1_M,
    BF16,
    Q4_0_4_4,
    Q4_0_4_8,
    Q4_0_8_8,
    TQ1_0,
    TQ2_0,
    /// bitnet.cpp: 2-bit ternary, 128-weight blocks, one f32 scale per tensor (id 36).
    I2_S,
    /// bitnet.cpp: int8 activations of the I2_S matmul (id 37).
    I8_S,
    /// bitnet.cpp: ARM lookup-table format (id 38).
    TL1,
    /// bitnet.cpp: x86 lookup-table format (id 39 in bitnet.cpp files).
    TL2,
    /// Upstream ggml: MX FP4 (id 39 in upstream files).
    MXFP4,
}

/// Which meaning of the ids ≥ 36 a file uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TypeTable {
    /// bitnet.cpp's fork: 36 = I2_S, 37 = I8_S, 38 = TL1, 39 = TL2.
    Bitnet,
    /// Upstream ggml: 36–38 unused, 39 = MXFP4.
    Upstream,
}

impl fmt::Display for TypeTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TypeTable::Bitnet => "bitnet.cpp",
            TypeTable::Upstream => "upstream ggml",
        })
    }
}

/// The table chosen for a file and the evidence that chose it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TypeTableChoice {
    pub table: TypeTable,
    pub reason: String,
}

/// `general.file_type` values that only bitnet.cpp's fork defines (TL1 = 38 is shared with
/// upstream's MXFP4_MOE, so it is not evidence on its own).
const BITNET_FILE_TYPES: [u32; 2] = [39, 40];

impl TypeTableChoice {
    /// Decides the table from the architecture, `general.file_type` and the raw type ids present.
    pub fn decide(arch: Option<&str>, file_type: Option<u32>, type_ids: &[u32]) -> Self {
        let bitnet = |reason: String| Self {
            table: TypeTable::Bitnet,
            reason,
        };
        if let Some(a) = arch.filter(|a| a.starts_with("bitnet")) {
            return bitnet(format!("architecture `{a}` is a bitnet.cpp architecture"));
        }
        if let Some(id) = type_ids.iter().find(|id| (36..=38).contains(*id)) {
            return bitnet(format!(
                "tensor type id {id} exists only in bitnet.cpp's table"
            ));
        }
        if let Some(ft) = file_type.filter(|ft| BITNET_FILE_TYPES.contains(ft)) {
            return bitnet(format!(
                "general.file_type {ft} is a bitnet.cpp file type (39 = TL2, 40 = I2_S)"
            ));
        }
        Self {
            table: TypeTable::Upstream,
            reason: "no bitnet.cpp architecture, file type or type id 36–38 present".into(),
        }
    }
}

/// How the byte size of a tensor follows from its shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeRule {
    /// `block_bytes` bytes per `block_len` elements along ne0.
    Blocks { block_len: u64, block_bytes: u64 },
    /// I2_S and TL1: n/4 bytes of codes plus a 32-byte scale tail.
    QuarterPlusScale,
    /// TL2: the reference's three-weight/two-weight split, padded to 32, plus a 32-byte tail.
    Tl2,
}

impl GgmlType {
    /// Maps a raw type id through the chosen table; `None` for ids the table does not define.
    pub fn from_id(id: u32, table: TypeTable) -> Option<Self> {
        use GgmlType::*;
        Some(match id {
            0 => F32,
            1 => F16,
            2 => Q4_0,
            3 => Q4_1,
            6 => Q5_0,
            7 => Q5_1,
            8 => Q8_0,
            9 => Q8_1,
            10 => Q2_K,
            11 => Q3_K,
            12 => Q4_K,
            13 => Q5_K,
            14 => Q6_K,
            15 => Q8_K,
            16 => IQ2_XXS,
            17 => IQ2_XS,
            18 => IQ3_XXS,
            19 => IQ1_S,
            20 => IQ4_NL,
            21 => IQ3_S,
            22 => IQ2_S,
            23 => IQ4_XS,
            24 => I8,
            25 => I16,
            26 => I32,
            27 => I64,
            28 => F64,
            29 => IQ1_M,
            30 => BF16,
            31 => Q4_0_4_4,
            32 => Q4_0_4_8,
            33 => Q4_0_8_8,
            34 => TQ1_0,
            35 => TQ2_0,
            36 if table == TypeTable::Bitnet => I2_S,
            37 if table == TypeTable::Bitnet => I8_S,
            38 if table == TypeTable::Bitnet => TL1,
            39 if table == TypeTable::Bitnet => TL2,
            39 => MXFP4,
            _ => return None,
        })
    }

    /// The raw id of this type in its own table.
    pub fn id(self) -> u32 {
        use GgmlType::*;
        match self {
            F32 => 0,
            F16 => 1,
            Q4_0 => 2,
            Q4_1 => 3,
            Q5_0 => 6,
            Q5_1 => 7,
            Q8_0 => 8,
            Q8_1 => 9,
            Q2_K => 10,
            Q3_K => 11,
            Q4_K => 12,
            Q5_K => 13,
            Q6_K => 14,
            Q8_K => 15,
            IQ2_XXS => 16,
            IQ2_XS => 17,
            IQ3_XXS => 18,
            IQ1_S => 19,
            IQ4_NL => 20,
            IQ3_S => 21,
            IQ2_S => 22,
            IQ4_XS => 23,
            I8 => 24,
            I16 => 25,
            I32 => 26,
            I64 => 27,
            F64 => 28,
            IQ1_M => 29,
            BF16 => 30,
            Q4_0_4_4 => 31,
            Q4_0_4_8 => 32,
            Q4_0_8_8 => 33,
            TQ1_0 => 34,
            TQ2_0 => 35,
            I2_S => 36,
            I8_S => 37,
            TL1 => 38,
            TL2 | MXFP4 => 39,
        }
    }

    /// The table this type belongs to when its id is ambiguous, else `None`.
    pub fn required_table(self) -> Option<TypeTable> {
        match self {
            GgmlType::I2_S | GgmlType::I8_S | GgmlType::TL1 | GgmlType::TL2 => {
                Some(TypeTable::Bitnet)
            }
            GgmlType::MXFP4 => Some(TypeTable::Upstream),
            _ => None,
        }
    }

    /// The ggml name of the type (lower case, as `ggml_type_name` prints it).
    pub fn name(self) -> &'static str {
        use GgmlType::*;
        match self {
            F32 => "f32",
            F16 => "f16",
            Q4_0 => "q4_0",
            Q4_1 => "q4_1",
            Q5_0 => "q5_0",
            Q5_1 => "q5_1",
            Q8_0 => "q8_0",
            Q8_1 => "q8_1",
            Q2_K => "q2_K",
            Q3_K => "q3_K",
            Q4_K => "q4_K",
            Q5_K => "q5_K",
            Q6_K => "q6_K",
            Q8_K => "q8_K",
            IQ2_XXS => "iq2_xxs",
            IQ2_XS => "iq2_xs",
            IQ3_XXS => "iq3_xxs",
            IQ1_S => "iq1_s",
            IQ4_NL => "iq4_nl",
            IQ3_S => "iq3_s",
            IQ2_S => "iq2_s",
            IQ4_XS => "iq4_xs",
            I8 => "i8",
            I16 => "i16",
            I32 => "i32",
            I64 => "i64",
            F64 => "f64",
            IQ1_M => "iq1_m",
            BF16 => "bf16",
            Q4_0_4_4 => "q4_0_4x4",
            Q4_0_4_8 => "q4_0_4x8",
            Q4_0_8_8 => "q4_0_8x8",
            TQ1_0 => "tq1_0",
            TQ2_0 => "tq2_0",
            I2_S => "i2_s",
            I8_S => "i8_s",
            TL1 => "tl1",
            TL2 => "tl2",
            MXFP4 => "mxfp4",
        }
    }

    /// How the tensor byte size follows from the shape.
    pub fn size_rule(self) -> SizeRule {
        use GgmlType::*;
        let blocks = |block_len, block_bytes| SizeRule::Blocks {
            block_len,
            block_bytes,
        };
        match self {
            F32 | I32 => blocks(1, 4),
            F16 | BF16 | I16 => blocks(1, 2),
            I8 | I8_S => blocks(1, 1),
            I64 | F64 => blocks(1, 8),
            Q4_0 | IQ4_NL | Q4_0_4_4 | Q4_0_4_8 | Q4_0_8_8 => blocks(32, 18),
            Q4_1 => blocks(32, 20),
            Q5_0 => blocks(32, 22),
            Q5_1 => blocks(32, 24),
            Q8_0 => blocks(32, 34),
            Q8_1 => blocks(32, 36),
            MXFP4 => blocks(32, 17),
            Q2_K => blocks(256, 84),
            Q3_K | IQ3_S => blocks(256, 110),
            Q4_K => blocks(256, 144),
            Q5_K => blocks(256, 176),
            Q6_K => blocks(256, 210),
            Q8_K => blocks(256, 292),
            IQ2_XXS | TQ2_0 => blocks(256, 66),
            IQ2_XS => blocks(256, 74),
            IQ3_XXS => blocks(256, 98),
            IQ1_S => blocks(256, 50),
            IQ2_S => blocks(256, 82),
            IQ4_XS => blocks(256, 136),
            IQ1_M => blocks(256, 56),
            TQ1_0 => blocks(256, 54),
            I2_S | TL1 => SizeRule::QuarterPlusScale,
            TL2 => SizeRule::Tl2,
        }
    }

    /// Elements per block along ne0 (1 for the per-tensor-scaled bitnet.cpp formats).
    pub fn block_len(self) -> u64 {
        match self.size_rule() {
            SizeRule::Blocks { block_len, .. } => block_len,
            SizeRule::QuarterPlusScale | SizeRule::Tl2 => 1,
        }
    }

    /// The tensor's data size in bytes for shape `dims` (ne0 first), as the reference computes it.
    pub fn tensor_bytes(self, dims: &[u64]) -> Result<u64, SizeError> {
        let ne0 = dims.first().copied().unwrap_or(1);
        let n = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .ok_or(SizeError::Overflow)?;
        match self.size_rule() {
            SizeRule::Blocks {
                block_len,
                block_bytes,
            } => {
                if ne0 % block_len != 0 {
                    return Err(SizeError::NotBlockMultiple { ne0, block_len });
                }
                (n / block_len)
                    .checked_mul(block_bytes)
                    .ok_or(SizeError::Overflow)
            }
            SizeRule::QuarterPlusScale => (n / 4).checked_add(32).ok_or(SizeError::Overflow),
            SizeRule::Tl2 => tl2_bytes(ne0, n / ne0.max(1)),
        }
    }
}

/// TL2 size: `(ne0 − 256)·ne1/3·5/8 + 256·ne1/2·4/8`, padded to 32, plus 32.
fn tl2_bytes(ne0: u64, ne1: u64) -> Result<u64, SizeError> {
    if ne0 < 256 {
        return Err(SizeError::Tl2TooNarrow { ne0 });
    }
    let three = (ne0 - 256).checked_mul(ne1).ok_or(SizeError::Overflow)? / 3 * 5 / 8;
    let two = 256u64.checked_mul(ne1).ok_or(SizeError::Overflow)? / 2 * 4 / 8;
    let body = three.checked_add(two).ok_or(SizeError::Overflow)?;
    body.div_ceil(32)
        .checked_mul(32)
        .and_then(|b| b.checked_add(32))
        .ok_or(SizeError::Overflow)
}

/// Why a byte size could not be computed for a type and shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("element count overflows 64 bits")]
    Overflow,
    #[error("ne0 = {ne0} is not a multiple of the block length {block_len}")]
    NotBlockMultiple { ne0: u64, block_len: u64 },
    #[error("TL2 needs ne0 ≥ 256, got {ne0}")]
    Tl2TooNarrow { ne0: u64 },
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn i2s_size_is_quarter_plus_scale_tail() {
        assert_eq!(
            GgmlType::I2_S.tensor_bytes(&[2560, 6912]).unwrap(),
            2560 * 6912 / 4 + 32
        );
    }

    #[test]
    fn tl2_size_matches_reference_formula() {
        let (ne0, ne1) = (2560u64, 2560u64);
        let mut expect = (ne0 - 256) * ne1 / 3 * 5 / 8 + 256 * ne1 / 2 * 4 / 8;
        if expect % 32 != 0 {
            expect += 32 - expect % 32;
        }
        assert_eq!(
            GgmlType::TL2.tensor_bytes(&[ne0, ne1]).unwrap(),
            expect + 32
        );
        assert_eq!(
            GgmlType::TL2.tensor_bytes(&[128, 4]),
            Err(SizeError::Tl2TooNarrow { ne0: 128 })
        );
    }

    #[test]
    fn block_types_need_whole_blocks() {
        assert_eq!(GgmlType::TQ2_0.tensor_bytes(&[512, 3]).unwrap(), 2 * 3 * 66);
        assert_eq!(GgmlType::TQ1_0.tensor_bytes(&[256, 1]).unwrap(), 54);
        assert_eq!(
            GgmlType::Q8_0.tensor_bytes(&[33]),
            Err(SizeError::NotBlockMultiple {
                ne0: 33,
                block_len: 32
            })
        );
        assert_eq!(
            GgmlType::F32.tensor_bytes(&[u64::MAX, 2]),
            Err(SizeError::Overflow)
        );
    }

    #[test]
    fn id_39_depends_on_table() {
        assert_eq!(
            GgmlType::from_id(39, TypeTable::Bitnet),
            Some(GgmlType::TL2)
        );
        assert_eq!(
            GgmlType::from_id(39, TypeTable::Upstream),
            Some(GgmlType::MXFP4)
        );
        assert_eq!(GgmlType::from_id(36, TypeTable::Upstream), None);
        assert_eq!(GgmlType::from_id(4, TypeTable::Bitnet), None);
        for id in (0..40).filter(|id| ![4, 5].contains(id)) {
            let t = GgmlType::from_id(id, TypeTable::Bitnet).unwrap();
            assert_eq!(t.id(), id);
        }
    }

    #[test]
    fn table_choice_names_its_evidence() {
        let c = TypeTableChoice::decide(Some("bitnet-b1.58"), None, &[]);
        assert_eq!(c.table, TypeTable::Bitnet);
        assert!(c.reason.contains("bitnet-b1.58"));
        let c = TypeTableChoice::decide(Some("llama"), Some(39), &[39]);
        assert_eq!(c.table, TypeTable::Bitnet);
        assert!(c.reason.contains("file_type 39"));
        let c = TypeTableChoice::decide(Some("llama"), None, &[0, 36]);
        assert_eq!(c.table, TypeTable::Bitnet);
        let c = TypeTableChoice::decide(Some("gpt-oss"), Some(38), &[39]);
        assert_eq!(c.table, TypeTable::Upstream);
    }
}

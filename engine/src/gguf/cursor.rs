//! A bounds-checked little-endian reader over the file bytes: no read can run past the end.

use super::error::GgufError;

pub(super) struct Cursor<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(data: &'a [u8]) -> Self {
        Self { data, pos: 0 }
    }

    pub(super) fn pos(&self) -> u64 {
        self.pos as u64
    }

    pub(super) fn remaining(&self) -> u64 {
        (self.data.len() - self.pos) as u64
    }

    pub(super) fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8], GgufError> {
        if n > self.remaining() {
            return Err(GgufError::Truncated {
                what: what.to_string(),
                offset: self.pos(),
                needed: n,
                file_len: self.data.len() as u64,
            });
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.data[start..self.pos])
    }

    pub(super) fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], GgufError> {
        let bytes = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub(super) fn u8(&mut self, what: &str) -> Result<u8, GgufError> {
        Ok(self.array::<1>(what)?[0])
    }
    pub(super) fn u16(&mut self, what: &str) -> Result<u16, GgufError> {
        self.array(what).map(u16::from_le_bytes)
    }
    pub(super) fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        self.array(what).map(u32::from_le_bytes)
    }
    pub(super) fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        self.array(what).map(u64::from_le_bytes)
    }
    pub(super) fn i8(&mut self, what: &str) -> Result<i8, GgufError> {
        self.array(what).map(i8::from_le_bytes)
    }
    pub(super) fn i16(&mut self, what: &str) -> Result<i16, GgufError> {
        self.array(what).map(i16::from_le_bytes)
    }
    pub(super) fn i32(&mut self, what: &str) -> Result<i32, GgufError> {
        self.array(what).map(i32::from_le_bytes)
    }
    pub(super) fn i64(&mut self, what: &str) -> Result<i64, GgufError> {
        self.array(what).map(i64::from_le_bytes)
    }
    pub(super) fn f32(&mut self, what: &str) -> Result<f32, GgufError> {
        self.array(what).map(f32::from_le_bytes)
    }
    pub(super) fn f64(&mut self, what: &str) -> Result<f64, GgufError> {
        self.array(what).map(f64::from_le_bytes)
    }

    /// A u64 element count, checked against what the rest of the file could hold.
    pub(super) fn count(&mut self, min_elem_len: u64, what: &str) -> Result<u64, GgufError> {
        let offset = self.pos();
        let count = self.u64(what)?;
        let remaining = self.remaining();
        if count.saturating_mul(min_elem_len) > remaining {
            return Err(GgufError::CountTooLarge {
                what: what.to_string(),
                offset,
                count,
                remaining,
            });
        }
        Ok(count)
    }

    /// A u64-length-prefixed UTF-8 string.
    pub(super) fn string(&mut self, what: &str) -> Result<String, GgufError> {
        let len = self.count(1, &format!("length of {what}"))?;
        let offset = self.pos();
        let bytes = self.take(len, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| GgufError::InvalidUtf8 {
            what: what.to_string(),
            offset,
        })
    }
}

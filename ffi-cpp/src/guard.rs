//! Output buffers handed to C. In debug and test builds each carries sentinel elements after
//! its end that are checked once the call returns, so an out-of-bounds write becomes an error.

use crate::bindings as sys;
use crate::error::{check, RefError};

const GUARD_LEN: usize = if cfg!(debug_assertions) { 16 } else { 0 };

/// Element types that can fill the guard area with a recognisable bit pattern.
pub(crate) trait Sentinel: Copy {
    const SENTINEL: Self;
    const ZERO: Self;
    fn is_sentinel(self) -> bool;
}

macro_rules! sentinel_int {
    ($($ty:ty),*) => {$(
        impl Sentinel for $ty {
            const SENTINEL: Self = <$ty>::from_ne_bytes([0xA5; std::mem::size_of::<$ty>()]);
            const ZERO: Self = 0;
            fn is_sentinel(self) -> bool {
                self == Self::SENTINEL
            }
        }
    )*};
}

sentinel_int!(u8, i8, i32);

impl Sentinel for f32 {
    const SENTINEL: Self = f32::from_bits(0xA5A5_A5A5);
    const ZERO: Self = 0.0;
    fn is_sentinel(self) -> bool {
        self.to_bits() == Self::SENTINEL.to_bits()
    }
}

impl Sentinel for f64 {
    const SENTINEL: Self = f64::from_bits(0xA5A5_A5A5_A5A5_A5A5);
    const ZERO: Self = 0.0;
    fn is_sentinel(self) -> bool {
        self.to_bits() == Self::SENTINEL.to_bits()
    }
}

/// A zeroed buffer of `len` elements that C may write, followed by the guard area.
pub(crate) struct GuardedBuf<T: Sentinel> {
    buf: Vec<T>,
    len: usize,
}

impl<T: Sentinel> GuardedBuf<T> {
    pub(crate) fn new(len: usize) -> Self {
        let mut buf = Vec::with_capacity(len + GUARD_LEN);
        buf.resize(len, T::ZERO);
        buf.resize(len + GUARD_LEN, T::SENTINEL);
        Self { buf, len }
    }

    /// Elements C may write.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn as_mut_ptr(&mut self) -> *mut T {
        self.buf.as_mut_ptr()
    }

    /// Checks the guard area after C call `call` and keeps the first `used` elements.
    pub(crate) fn finish(mut self, call: &'static str, used: usize) -> Result<Vec<T>, RefError> {
        if self.buf[self.len..].iter().any(|v| !v.is_sentinel()) {
            return Err(RefError::BufferOverrun {
                call,
                len: self.len,
            });
        }
        if used > self.len {
            return Err(RefError::Internal {
                call,
                message: format!("reported {used} elements written into {}", self.len),
            });
        }
        self.buf.truncate(used);
        Ok(self.buf)
    }
}

/// Calls a shim function that reports the size it needs when the buffer is too small,
/// retrying with the size it asked for.
pub(crate) fn sized_call<T, F>(
    call: &'static str,
    guess: usize,
    mut f: F,
) -> Result<Vec<T>, RefError>
where
    T: Sentinel,
    F: FnMut(*mut T, usize, &mut usize) -> sys::bnref_status,
{
    let mut capacity = guess.max(1);
    loop {
        let mut buf = GuardedBuf::<T>::new(capacity);
        let mut needed = 0usize;
        match check(call, f(buf.as_mut_ptr(), buf.len(), &mut needed)) {
            Ok(()) => return buf.finish(call, needed),
            Err(RefError::BufferTooSmall { .. }) if needed > capacity => {
                buf.finish(call, 0)?;
                capacity = needed;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(all(test, debug_assertions))]
mod tests {
    use super::*;

    #[test]
    fn writes_into_the_guard_area_are_reported() {
        let mut buf = GuardedBuf::<f32>::new(4);
        // SAFETY: in debug builds the allocation holds 4 + GUARD_LEN elements, so index 4 is
        // inside it; this plays the part of a C function overrunning its buffer.
        unsafe { buf.as_mut_ptr().add(4).write(1.0) };
        assert_eq!(
            buf.finish("test", 4),
            Err(RefError::BufferOverrun {
                call: "test",
                len: 4
            })
        );
    }

    #[test]
    fn untouched_guards_pass_and_the_used_prefix_is_kept() {
        let mut buf = GuardedBuf::<i32>::new(3);
        // SAFETY: index 1 is inside the buffer's 3 writable elements.
        unsafe { buf.as_mut_ptr().add(1).write(7) };
        assert_eq!(buf.finish("test", 2), Ok(vec![0, 7]));
    }
}

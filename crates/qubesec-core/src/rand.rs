//! Secure randomness from the operating system.

use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// Fills `buf` with bytes from the operating system's CSPRNG.
///
/// # Errors
/// [`Error::Randomness`] if the OS generator is unavailable.
pub fn fill(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(|_| Error::Randomness)
}

/// Returns `n` random bytes in a buffer that is zeroized on drop.
///
/// # Errors
/// [`Error::Randomness`] if the OS generator is unavailable.
pub fn bytes(n: usize) -> Result<Zeroizing<Vec<u8>>> {
    let mut out = Zeroizing::new(vec![0u8; n]);
    fill(&mut out)?;
    Ok(out)
}

/// Returns a random fixed-size array, zeroized on drop.
pub(crate) fn array<const N: usize>() -> Result<Zeroizing<[u8; N]>> {
    let mut out = Zeroizing::new([0u8; N]);
    fill(out.as_mut_slice())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn two_draws_differ() {
        let a = super::bytes(32).unwrap();
        let b = super::bytes(32).unwrap();
        assert_ne!(*a, *b);
        assert_eq!(a.len(), 32);
    }
}

//! Random numbers from the operating system, through the getrandom that TLS (ring) builds
//! anyway: queue ids no caller can guess, temporary file names and hop ids that do not collide,
//! and the retry jitter.

use crate::RpcError;
use crate::api::ResultCode;

fn bytes<const N: usize>() -> Result<[u8; N], getrandom::Error> {
    let mut buf = [0; N];
    getrandom::getrandom(&mut buf)?;
    Ok(buf)
}

/// A queue id: an error when the system has no randomness to give (ids must not be guessed).
pub(crate) fn queue_id() -> Result<u32, RpcError> {
    bytes().map(u32::from_ne_bytes).map_err(|e| {
        RpcError::new(ResultCode::ErrorStateUnreachable, format!("No random queue id from the system: {e}"))
    })
}

/// A number that only needs not to collide (names, jitter): the clock's nanoseconds, mixed with
/// the process id, should the system refuse.
pub(crate) fn u64() -> u64 {
    bytes().map(u64::from_ne_bytes).unwrap_or_else(|_| {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        (nanos.as_nanos() as u64) ^ (u64::from(std::process::id()) << 32)
    })
}

/// Uniform in `[0, 1)`.
pub(crate) fn fraction() -> f64 {
    // The top 53 bits: every value an f64 in [0, 1) can hold at that spacing.
    (u64() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    #[test]
    fn fractions_stay_in_range_and_ids_differ() {
        assert!((0..1000).map(|_| super::fraction()).all(|f| (0.0..1.0).contains(&f)));
        let ids: std::collections::HashSet<u32> = (0..100).map(|_| super::queue_id().unwrap()).collect();
        assert!(ids.len() > 95);
    }
}

//! API versions: the [`ApiVersion`] trait and the check run on every call.

use crate::RpcError;
use crate::api::ResultCode;

/// The range of API versions a service speaks, derived from a version enum.
///
/// Derive it with `#[derive(ApiVersion)]`: value 0 ("unknown") is skipped, the lowest other
/// value is [`SUPPORTED`](Self::SUPPORTED) (oldest client accepted), the highest is
/// [`CURRENT`](Self::CURRENT).
///
/// ```
/// use grpc_helper::ApiVersion;
///
/// #[derive(ApiVersion)]
/// enum MyApiVersion { Unknown = 0, Supported = 1, Middle = 2, Current = 3 }
///
/// assert_eq!(MyApiVersion::SUPPORTED, 1);
/// assert_eq!(MyApiVersion::CURRENT, 3);
/// ```
pub trait ApiVersion: 'static {
    /// Every discriminant of the enum, in declaration order.
    const VALUES: &'static [i64];
    /// Oldest client API version that is still served.
    const SUPPORTED: u32;
    /// The API version this code implements (sent by clients built against it).
    const CURRENT: u32;
}

/// Lowest non-zero value; a compile-time error when there is none.
pub const fn supported_version(values: &[i64]) -> u32 {
    let mut best = 0i64;
    let mut i = 0;
    while i < values.len() {
        let v = values[i];
        if v > 0 && (best == 0 || v < best) {
            best = v;
        }
        i += 1;
    }
    assert!(
        best > 0 && best <= u32::MAX as i64,
        "an ApiVersion enum needs a variant with a positive value, e.g. `V1 = 1`"
    );
    best as u32
}

/// Highest non-zero value; a compile-time error when there is none.
pub const fn current_version(values: &[i64]) -> u32 {
    let mut best = 0i64;
    let mut i = 0;
    while i < values.len() {
        if values[i] > best {
            best = values[i];
        }
        i += 1;
    }
    assert!(
        best > 0 && best <= u32::MAX as i64,
        "an ApiVersion enum needs a variant with a positive value, e.g. `V1 = 1`"
    );
    best as u32
}

/// Checks the caller's `api_version` metadata against a service's range.
///
/// Absent or empty → accepted (no check), as in the original.
pub(crate) fn check(raw: Option<&[u8]>, supported: u32, current: u32) -> Result<(), RpcError> {
    let raw = match raw {
        None | Some(b"") => return Ok(()),
        Some(raw) => raw,
    };
    let client = std::str::from_utf8(raw).ok().and_then(|s| s.parse::<u32>().ok()).ok_or_else(|| {
        RpcError::new(
            ResultCode::ErrorParamInvalid,
            format!(
                "Invalid api_version metadata {:?}: expected a decimal unsigned integer (this service speaks {supported} to {current})",
                String::from_utf8_lossy(raw)
            ),
        )
    })?;
    if client > current {
        Err(RpcError::new(
            ResultCode::ErrorApiServerTooOld,
            format!("Server current API version ({current}) is too old for client API version ({client})"),
        ))
    } else if client < supported {
        Err(RpcError::new(
            ResultCode::ErrorApiClientTooOld,
            format!("Client API version ({client}) is too old for server supported API version ({supported})"),
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_skips_zero_and_allows_aliases() {
        assert_eq!(supported_version(&[0, 1, 1]), 1);
        assert_eq!(current_version(&[0, 1, 1]), 1);
        assert_eq!(supported_version(&[0, 3, 2, 5]), 2);
        assert_eq!(current_version(&[0, 3, 2, 5]), 5);
    }

    #[test]
    fn check_follows_the_original() {
        assert!(check(None, 1, 2).is_ok());
        assert!(check(Some(b""), 1, 2).is_ok());
        assert!(check(Some(b"2"), 1, 2).is_ok());
        assert_eq!(check(Some(b"3"), 1, 2).unwrap_err().code(), ResultCode::ErrorApiServerTooOld as i32);
        assert_eq!(check(Some(b"0"), 1, 2).unwrap_err().code(), ResultCode::ErrorApiClientTooOld as i32);
        let garbage = check(Some(b"abc"), 1, 2).unwrap_err();
        assert_eq!(garbage.code(), ResultCode::ErrorParamInvalid as i32);
        assert!(garbage.message().contains("\"abc\""), "{}", garbage.message());
        assert_eq!(check(Some(b"-1"), 1, 2).unwrap_err().code(), ResultCode::ErrorParamInvalid as i32);
    }
}

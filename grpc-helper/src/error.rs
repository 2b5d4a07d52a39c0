//! [`RpcError`]: a [`ResultCode`] (or a custom code ≥ 100) with a message, and its mappings to
//! the in-band `Result` message and to gRPC statuses.

use std::fmt;

use tonic::metadata::MetadataValue;
use tonic::{Code, Status};

use crate::api::{self, ResultCode};
use crate::wire::RESULT_CODE;

/// An error with a result code, raised by manager methods and returned by clients.
///
/// On the server, a manager returning `Err(RpcError)` answers `Reply { r: Result { code, msg,
/// stack } }` with gRPC status OK (what Python clients read); a reply type without `r` gets a
/// gRPC status instead, with the code in the `result-code` trailer. On the client, both forms
/// come back as the same `RpcError`; transport failures carry [`ResultCode::ErrorRpc`].
///
/// ```
/// use grpc_helper::{RpcError, ResultCode};
///
/// let e = RpcError::new(ResultCode::ErrorParamInvalid, "port must be > 0");
/// assert_eq!(e.code(), ResultCode::ErrorParamInvalid as i32);
/// assert_eq!(e.result_code(), Some(ResultCode::ErrorParamInvalid));
/// assert_eq!(e.message(), "port must be > 0");
///
/// let custom = RpcError::custom(101, "quota reached");
/// assert_eq!(custom.result_code(), None);
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RpcError {
    code: i32,
    message: String,
    stack: String,
}

impl RpcError {
    /// An error with one of the standard codes.
    ///
    /// ```
    /// use grpc_helper::{ResultCode, RpcError};
    ///
    /// let e = RpcError::new(ResultCode::ErrorItemUnknown, format!("No job named {}", "nightly"));
    /// assert_eq!(e.to_string(), "No job named nightly (ERROR_ITEM_UNKNOWN)");
    /// ```
    pub fn new(code: ResultCode, message: impl Into<String>) -> Self {
        Self::custom(code as i32, message)
    }

    /// An error with any code, e.g. a service-specific one ≥ [`ResultCode::ErrorCustom`].
    ///
    /// ```
    /// use grpc_helper::{ResultCode, RpcError};
    ///
    /// const QUOTA_REACHED: i32 = ResultCode::ErrorCustom as i32 + 1;
    /// let e = RpcError::custom(QUOTA_REACHED, "quota reached");
    /// assert_eq!(e.to_string(), "quota reached (code 101)");
    /// ```
    pub fn custom(code: i32, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), stack: String::new() }
    }

    /// Attaches a stack or detail text, sent in the `stack` field of the in-band result.
    ///
    /// ```
    /// use grpc_helper::{ResultCode, RpcError};
    ///
    /// let e = RpcError::new(ResultCode::ErrorModelSyntax, "bad model").with_stack("line 3: missing ']'");
    /// assert_eq!(e.to_result().stack, "line 3: missing ']'");
    /// ```
    pub fn with_stack(mut self, stack: impl Into<String>) -> Self {
        self.stack = stack.into();
        self
    }

    /// The numeric code (a [`ResultCode`] value, or a custom code).
    ///
    /// ```
    /// use grpc_helper::{ResultCode, RpcError};
    ///
    /// assert_eq!(RpcError::new(ResultCode::ErrorParamMissing, "no name").code(), ResultCode::ErrorParamMissing as i32);
    /// assert_eq!(RpcError::custom(120, "later").code(), 120);
    /// ```
    pub fn code(&self) -> i32 {
        self.code
    }

    /// The code as a [`ResultCode`], when it is one of the standard values.
    ///
    /// ```
    /// use grpc_helper::{ResultCode, RpcError};
    ///
    /// fn is_retryable(e: &RpcError) -> bool {
    ///     matches!(e.result_code(), Some(ResultCode::ErrorItemBusy | ResultCode::ErrorRequestTimeout))
    /// }
    /// assert!(is_retryable(&RpcError::new(ResultCode::ErrorItemBusy, "locked")));
    /// assert!(!is_retryable(&RpcError::custom(150, "service-specific")));
    /// ```
    pub fn result_code(&self) -> Option<ResultCode> {
        ResultCode::try_from(self.code).ok()
    }

    /// Whether this is an outcome a service answers in normal operation, about the request,
    /// rather than a failure of the server: the caller's API version (11, 12), a stream ended
    /// by shutdown (15), missing, invalid or unsupported parameters (20–22), unknown, conflicting,
    /// busy or multiple items (30–33), an unsupported request (52), and every custom code (≥ 100).
    /// The server logs these at DEBUG and the others (failed requests, timeouts, invalid models,
    /// unexpected states...) at WARN.
    ///
    /// ```
    /// use grpc_helper::{ResultCode, RpcError};
    ///
    /// assert!(RpcError::new(ResultCode::ErrorItemUnknown, "no such key").is_expected());
    /// assert!(RpcError::custom(150, "out of stock").is_expected());
    /// assert!(!RpcError::new(ResultCode::ErrorRequestFailed, "disk full").is_expected());
    /// ```
    pub fn is_expected(&self) -> bool {
        use ResultCode as C;
        self.code >= 100
            || matches!(
                self.result_code(),
                Some(
                    C::ErrorApiClientTooOld
                        | C::ErrorApiServerTooOld
                        | C::ErrorStreamShutdown
                        | C::ErrorParamMissing
                        | C::ErrorParamInvalid
                        | C::ErrorParamUnsupported
                        | C::ErrorItemUnknown
                        | C::ErrorItemConflict
                        | C::ErrorItemBusy
                        | C::ErrorItemMultiple
                        | C::ErrorRequestUnsupported
                )
            )
    }

    /// The message, as the server wrote it.
    ///
    /// ```
    /// use grpc_helper::{ResultCode, RpcError};
    ///
    /// let e = RpcError::new(ResultCode::ErrorParamInvalid, "port must be > 0");
    /// assert_eq!(e.message(), "port must be > 0"); // without the code, unlike `to_string()`
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The stack or detail text (often empty).
    ///
    /// ```
    /// use grpc_helper::{ResultCode, RpcError};
    ///
    /// assert_eq!(RpcError::new(ResultCode::Error, "failed").stack(), "");
    /// assert_eq!(RpcError::new(ResultCode::Error, "failed").with_stack("at step 2").stack(), "at step 2");
    /// ```
    pub fn stack(&self) -> &str {
        &self.stack
    }

    /// The in-band form of this error.
    ///
    /// ```
    /// use grpc_helper::{ResultCode, RpcError};
    ///
    /// let result = RpcError::new(ResultCode::ErrorItemConflict, "already running").to_result();
    /// assert_eq!(result.code, ResultCode::ErrorItemConflict as i32);
    /// assert_eq!(result.msg, "already running");
    /// ```
    pub fn to_result(&self) -> api::Result {
        api::Result { code: self.code, msg: self.message.clone(), stack: self.stack.clone() }
    }

    /// The error carried by an in-band result, if its code says error (`OK < code < ERROR_CUSTOM`).
    ///
    /// Codes ≥ 100 are service-specific outcomes, returned as replies and never raised.
    ///
    /// ```
    /// use grpc_helper::api::Result as InBand;
    /// use grpc_helper::{ResultCode, RpcError};
    ///
    /// let failed = InBand { code: ResultCode::ErrorItemUnknown as i32, msg: "no such job".into(), stack: String::new() };
    /// assert_eq!(RpcError::from_result(&failed).unwrap().message(), "no such job");
    /// assert!(RpcError::from_result(&InBand::default()).is_none()); // OK
    /// ```
    pub fn from_result(result: &api::Result) -> Option<Self> {
        let raises = result.code > ResultCode::Ok as i32 && result.code < ResultCode::ErrorCustom as i32;
        raises.then(|| Self { code: result.code, message: result.msg.clone(), stack: result.stack.clone() })
    }

    /// A gRPC status for this error: a mapped code, the message, and the result code in the
    /// `result-code` trailer so that clients recover it.
    ///
    /// ```
    /// use grpc_helper::{ResultCode, RpcError};
    ///
    /// let status = RpcError::new(ResultCode::ErrorItemUnknown, "no such job").to_status();
    /// assert_eq!(status.code(), tonic::Code::NotFound);
    /// let back = RpcError::from(status); // what a client reads
    /// assert_eq!(back.result_code(), Some(ResultCode::ErrorItemUnknown));
    /// ```
    pub fn to_status(&self) -> Status {
        let mut status = Status::new(grpc_code(self.code), self.message.clone());
        status.metadata_mut().insert(RESULT_CODE, MetadataValue::from(self.code));
        status
    }

    /// A transport-level failure (the original's `ERROR_RPC`).
    pub(crate) fn rpc(message: impl Into<String>) -> Self {
        Self::new(ResultCode::ErrorRpc, message)
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.result_code() {
            Some(code) => write!(f, "{} ({})", self.message, code.as_str_name()),
            None => write!(f, "{} (code {})", self.message, self.code),
        }
    }
}

impl fmt::Debug for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RpcError");
        match self.result_code() {
            Some(code) => d.field("code", &code),
            None => d.field("code", &self.code),
        };
        d.field("message", &self.message);
        if !self.stack.is_empty() {
            d.field("stack", &self.stack);
        }
        d.finish()
    }
}

impl std::error::Error for RpcError {}

impl From<Status> for RpcError {
    /// A status from a grpc-helper server carries its result code; any other status is a
    /// transport or protocol failure and becomes [`ResultCode::ErrorRpc`].
    fn from(status: Status) -> Self {
        let code = status.metadata().get(RESULT_CODE).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<i32>().ok());
        match code {
            Some(code) => Self::custom(code, status.message()),
            None => Self::rpc(format!("RPC error: {:?}: {}", status.code(), status.message())),
        }
    }
}

impl From<RpcError> for Status {
    fn from(error: RpcError) -> Self {
        error.to_status()
    }
}

/// The gRPC status code that best describes a result code (for replies without `r`).
///
/// UNAVAILABLE is never used: clients retry it, and these errors are final answers.
pub(crate) fn grpc_code(code: i32) -> Code {
    use ResultCode as R;
    let Ok(code) = R::try_from(code) else { return Code::Unknown };
    match code {
        R::Ok => Code::Ok,
        R::Args | R::ErrorParamMissing | R::ErrorParamInvalid | R::ErrorModelInvalid | R::ErrorModelSyntax => {
            Code::InvalidArgument
        }
        R::ErrorParamUnsupported | R::ErrorRequestUnsupported => Code::Unimplemented,
        R::ErrorItemUnknown => Code::NotFound,
        R::ErrorItemConflict => Code::AlreadyExists,
        R::ErrorItemBusy => Code::ResourceExhausted,
        R::ErrorApiClientTooOld
        | R::ErrorApiServerTooOld
        | R::ErrorItemMultiple
        | R::ErrorProxyUnregistered
        | R::ErrorStateUnexpected => Code::FailedPrecondition,
        R::ErrorRequestTimeout => Code::DeadlineExceeded,
        R::ErrorStreamShutdown => Code::Aborted,
        R::ErrorStateUnreachable | R::ErrorPortBusy | R::ErrorRpc | R::ErrorRequestFailed => Code::Internal,
        R::Error | R::ErrorCustom => Code::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trip_keeps_code_and_message() {
        let e = RpcError::custom(123, "custom outcome");
        let back = RpcError::from(e.to_status());
        assert_eq!(back.code(), 123);
        assert_eq!(back.message(), "custom outcome");
    }

    #[test]
    fn foreign_status_is_a_transport_error() {
        let e = RpcError::from(Status::unavailable("connection refused"));
        assert_eq!(e.result_code(), Some(ResultCode::ErrorRpc));
        assert!(e.message().contains("connection refused"));
    }

    #[test]
    fn only_codes_between_ok_and_custom_raise() {
        let r = |code| api::Result { code, msg: "m".into(), stack: String::new() };
        assert!(RpcError::from_result(&r(0)).is_none());
        assert!(RpcError::from_result(&r(1)).is_some());
        assert!(RpcError::from_result(&r(99)).is_some());
        assert!(RpcError::from_result(&r(100)).is_none());
        assert!(RpcError::from_result(&r(150)).is_none());
    }
}

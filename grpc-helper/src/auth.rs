//! Guards on the dangerous RPCs (remote shutdown, config and logger changes, proxy
//! registration, event sending): a pluggable check with a bearer token out of the box.
//!
//! ```no_run
//! # async fn demo() -> Result<(), grpc_helper::RpcError> {
//! use grpc_helper::auth::BearerToken;
//! use grpc_helper::{RpcClient, RpcServer};
//!
//! let server = RpcServer::builder().auth_guard(BearerToken::new("s3cret")).start().await?;
//! let admin = RpcClient::builder("127.0.0.1", 54321).bearer_token("s3cret").connect_lazy()?;
//! # Ok(()) }
//! ```

use std::collections::HashSet;
use std::sync::Arc;

use http::HeaderMap;
use tonic::Status;

/// The methods guarded by default (gRPC paths).
///
/// ```
/// assert!(grpc_helper::auth::DANGEROUS_METHODS.contains(&"/RpcServerService/shutdown"));
/// ```
pub const DANGEROUS_METHODS: &[&str] = &[
    "/RpcServerService/shutdown",
    "/RpcServerService/proxy_register",
    "/RpcServerService/proxy_forget",
    "/ConfigService/set",
    "/ConfigService/reset",
    "/LoggerService/set",
    "/LoggerService/reset",
    "/EventService/send",
];

/// Decides whether a call to a guarded method may proceed.
///
/// ```
/// use grpc_helper::auth::AuthGuard;
///
/// /// Lets guarded calls through only from tools that name themselves `admin`.
/// struct AdminOnly;
///
/// impl AuthGuard for AdminOnly {
///     fn check(&self, path: &str, headers: &http::HeaderMap) -> Result<(), tonic::Status> {
///         match headers.get("client") {
///             Some(client) if client == "admin" => Ok(()),
///             _ => Err(tonic::Status::permission_denied(format!("{path} is for the `admin` client"))),
///         }
///     }
/// }
/// let builder = grpc_helper::RpcServer::builder().auth_guard(AdminOnly);
/// ```
pub trait AuthGuard: Send + Sync + 'static {
    /// `Ok` to let the call through; else the status to answer (UNAUTHENTICATED when no
    /// credentials were given, PERMISSION_DENIED when they are wrong), with a message that says
    /// what was expected.
    ///
    /// # Errors
    /// The refusal.
    fn check(&self, path: &str, headers: &HeaderMap) -> Result<(), Status>;
}

/// Requires the metadata `authorization: Bearer <token>`.
///
/// ```no_run
/// # async fn demo() -> Result<(), grpc_helper::RpcError> {
/// let token = std::env::var("MY_SERVER_TOKEN").expect("a token to guard with");
/// let server = grpc_helper::RpcServer::builder().auth_guard(grpc_helper::auth::BearerToken::new(token)).start().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct BearerToken(Arc<str>);

impl BearerToken {
    /// Accepts exactly this token.
    ///
    /// ```
    /// use grpc_helper::auth::{AuthGuard, BearerToken};
    ///
    /// let guard = BearerToken::new("s3cret");
    /// let mut headers = http::HeaderMap::new();
    /// assert_eq!(guard.check("/ConfigService/set", &headers).unwrap_err().code(), tonic::Code::Unauthenticated);
    /// headers.insert("authorization", "Bearer s3cret".parse().unwrap());
    /// assert!(guard.check("/ConfigService/set", &headers).is_ok());
    /// ```
    pub fn new(token: impl Into<String>) -> Self {
        Self(Arc::from(token.into()))
    }
}

impl BearerToken {
    pub(crate) fn secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(<hidden>)")
    }
}

impl AuthGuard for BearerToken {
    fn check(&self, path: &str, headers: &HeaderMap) -> Result<(), Status> {
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Err(Status::unauthenticated(format!(
                "{path} needs credentials: send the metadata `authorization: Bearer <token>`"
            )));
        };
        let given = value.as_bytes().strip_prefix(b"Bearer ").unwrap_or(b"");
        if constant_time_eq(given, self.0.as_bytes()) {
            Ok(())
        } else {
            Err(Status::permission_denied(format!("{path}: the bearer token is not valid")))
        }
    }
}

/// Compares without leaking, through timing, how much of the token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

/// The guard of a server and the paths it covers.
pub(crate) struct Guarded {
    pub guard: Box<dyn AuthGuard>,
    pub paths: HashSet<String>,
}

impl Guarded {
    /// The refusal of a call, if it is guarded and refused (logged, without the credentials).
    pub(crate) fn refuse(&self, path: &str, headers: &HeaderMap) -> Option<Status> {
        if !self.paths.contains(path) {
            return None;
        }
        let status = self.guard.check(path, headers).err()?;
        let caller = crate::CallerMetadata::from_headers(headers);
        tracing::warn!(target: "grpc_helper::auth", "refused {path} from {caller}: {:?} {}", status.code(), status.message());
        Some(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_token_codes() {
        let guard = BearerToken::new("abc");
        let mut headers = HeaderMap::new();
        assert_eq!(guard.check("/x", &headers).unwrap_err().code(), tonic::Code::Unauthenticated);
        headers.insert("authorization", "Bearer abd".parse().unwrap());
        assert_eq!(guard.check("/x", &headers).unwrap_err().code(), tonic::Code::PermissionDenied);
        headers.insert("authorization", "abc".parse().unwrap());
        assert_eq!(guard.check("/x", &headers).unwrap_err().code(), tonic::Code::PermissionDenied);
        headers.insert("authorization", "Bearer abc".parse().unwrap());
        assert!(guard.check("/x", &headers).is_ok());
        assert_eq!(format!("{guard:?}"), "BearerToken(<hidden>)");
    }
}

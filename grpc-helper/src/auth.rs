//! Guards on the dangerous RPCs (remote shutdown, config and logger changes, proxy
//! registration, event sending and interrupting): a pluggable check with a bearer token out of
//! the box. Without a guard, these RPCs are accepted only from the admin networks (loopback by
//! default, see [`RpcServerBuilder::admin_networks`](crate::RpcServerBuilder::admin_networks)).
//!
//! For code that guards more paths (`RpcServerBuilder::guard_method`): a path in the guarded
//! set passes when the peer is in the admin networks and the guard, if any, accepts it; one
//! check per call, before routing.
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
use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;
use ipnet::IpNet;
use tonic::Status;

use crate::logs::{Escaped, Throttle, clipped, left_out};

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
    "/EventService/interrupt",
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

    /// Checked once when the server starts: a guard that would let anyone through (an empty
    /// token, say) fails the start with this message.
    ///
    /// # Errors
    /// What is wrong with the guard's settings.
    fn validate(&self) -> Result<(), String> {
        Ok(())
    }
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
    /// An empty token is refused: `Bearer ` with nothing after it would then be accepted.
    fn validate(&self) -> Result<(), String> {
        if self.0.trim().is_empty() {
            return Err("The bearer token of the auth guard is empty: give a secret of your own".to_owned());
        }
        Ok(())
    }

    fn check(&self, path: &str, headers: &HeaderMap) -> Result<(), Status> {
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Err(Status::unauthenticated(format!(
                "{path} needs credentials: send the metadata `authorization: Bearer <token>`"
            )));
        };
        let given = value.as_bytes().strip_prefix(b"Bearer ");
        if !self.0.is_empty() && given.is_some_and(|given| constant_time_eq(given, self.0.as_bytes())) {
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

/// Who may call the guarded paths (see [`RpcServerBuilder::admin_networks`](crate::RpcServerBuilder::admin_networks)).
///
/// The rule, in one place: a guarded call passes when its peer is in the admin networks and
/// the guard, if any, accepts it. The admin networks are loopback when no guard is set, every
/// address when a guard is set, or what `admin_networks` gave; `allow_remote_admin` lifts them.
///
/// The peer is the TCP peer of the connection, never the caller's `ip` metadata (the caller's
/// own claim). A call forwarded by a main server to its backend comes from loopback: the
/// proxy's hop marker must make such a call count as remote, in [`Gate::peer_allowed`].
pub(crate) struct Gate {
    guard: Option<Box<dyn AuthGuard>>,
    paths: HashSet<String>,
    /// Bit `n` set: some guarded path is `n` bytes long (`n` < 64; bit 63 for longer ones). Most
    /// calls are told apart by length alone, without hashing their path.
    lengths: u64,
    /// `None`: any peer.
    networks: Option<Vec<IpNet>>,
    /// The refusals' log lines: anyone can be refused, as often as they like.
    refusals: Throttle,
}

fn length_bit(path: &str) -> u64 {
    1 << path.len().min(63)
}

/// Calls answered more fully to administrators: the router asks [`Gate::admin_view`] for these.
const ADMIN_VIEWS: [&str; 1] = ["/EventService/inspect"];

/// The admin networks of a server without a guard: this machine only.
pub(crate) const LOOPBACK_NETWORKS: &[&str] = &["127.0.0.0/8", "::1/128"];

impl Gate {
    /// `networks`: as given to `admin_networks` (`None`: the default of the rule above).
    pub(crate) fn new(
        guard: Option<Box<dyn AuthGuard>>,
        paths: HashSet<String>,
        networks: Option<Vec<IpNet>>,
        allow_remote_admin: bool,
    ) -> Self {
        let networks = match (allow_remote_admin, networks, &guard) {
            (true, _, _) => None,
            (false, Some(networks), _) => Some(networks),
            (false, None, Some(_)) => None,
            (false, None, None) => Some(LOOPBACK_NETWORKS.iter().map(|n| n.parse().expect("valid")).collect()),
        };
        let lengths = paths.iter().fold(0, |bits, path| bits | length_bit(path));
        Self { guard, paths, lengths, networks, refusals: Throttle::new() }
    }

    pub(crate) fn has_guard(&self) -> bool {
        self.guard.is_some()
    }

    /// The admin networks, as text (`None`: any).
    pub(crate) fn networks_text(&self) -> Option<String> {
        self.networks.as_ref().map(|n| n.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))
    }

    /// Whether `peer` is in the admin networks. `_headers`: where the proxy's hop marker is to
    /// be read (a forwarded call must count as remote, whatever its loopback peer).
    fn peer_allowed(&self, peer: Option<IpAddr>, _headers: &HeaderMap) -> bool {
        match (&self.networks, peer) {
            (None, _) => true,
            // IPv4 peers of a dual-stack listener arrive as ::ffff:a.b.c.d.
            (Some(networks), Some(peer)) => networks.iter().any(|n| n.contains(&peer.to_canonical())),
            (Some(_), None) => false,
        }
    }

    /// Whether the caller of a call answered more fully to administrators (`inspect` lists every
    /// queue to them) administers this server: from an admin network, and with credentials the
    /// guard accepts when there is one. `false` for every other path (not asked).
    pub(crate) fn admin_view(&self, path: &str, headers: &HeaderMap, peer: Option<IpAddr>) -> bool {
        ADMIN_VIEWS.contains(&path) && self.admits(path, headers, peer)
    }

    /// Whether the caller administers this server (what its admin RPCs would let through).
    pub(crate) fn admits(&self, path: &str, headers: &HeaderMap, peer: Option<IpAddr>) -> bool {
        self.peer_allowed(peer, headers) && self.guard.as_ref().is_none_or(|guard| guard.check(path, headers).is_ok())
    }

    /// The refusal of a call, if it is guarded and refused (logged, without the credentials);
    /// else whether the guard checked the caller's credentials and accepted them (each call is
    /// checked once: a guard may count or log what it sees).
    pub(crate) fn refuse(&self, path: &str, headers: &HeaderMap, peer: Option<IpAddr>) -> Result<bool, Status> {
        if self.lengths & length_bit(path) == 0 || !self.paths.contains(path) {
            return Ok(false);
        }
        let status = if self.peer_allowed(peer, headers) {
            let Some(guard) = &self.guard else { return Ok(false) };
            match guard.check(path, headers) {
                Ok(()) => return Ok(true),
                Err(status) => status,
            }
        } else {
            Status::permission_denied(self.network_refusal(path, peer))
        };
        if let Some(skipped) = self.refusals.admit() {
            let caller = crate::CallerMetadata::from_headers(headers).to_string();
            let peer = peer.map_or_else(|| "an unknown peer".to_owned(), |p| p.to_canonical().to_string());
            tracing::warn!(
                target: "grpc_helper::auth",
                "refused {} from {} at {peer}: {:?} {}{}",
                Escaped(&clipped(path, 256)),
                Escaped(&clipped(&caller, 256)),
                status.code(),
                Escaped(&clipped(status.message(), 512)),
                left_out(skipped)
            );
        }
        Err(status)
    }

    fn network_refusal(&self, path: &str, peer: Option<IpAddr>) -> String {
        let peer = peer.map_or_else(|| "an unknown peer".to_owned(), |p| p.to_canonical().to_string());
        let networks = self.networks_text().unwrap_or_default();
        let how = if self.has_guard() {
            "add its network to rpc-admin-networks (-c rpc-admin-networks=10.0.0.0/8,..., or \
             RpcServerBuilder::admin_networks), or allow_remote_admin() to let the auth guard alone decide"
        } else {
            "add its network to rpc-admin-networks (-c rpc-admin-networks=10.0.0.0/8,..., or \
             RpcServerBuilder::admin_networks: what a fleet of Python clients, which send no token, needs), \
             configure an auth guard (RpcServerBuilder::auth_guard, or --auth-token-file) and send its \
             credentials, or call allow_remote_admin() to accept it from anyone"
        };
        format!(
            "{} is an admin RPC, accepted only from {networks}; {peer} is not among them: to allow it, {how}",
            Escaped(path)
        )
    }
}

/// Parses admin networks: CIDR (`10.0.0.0/8`, `fd00::/8`) or a single address (`10.1.2.3`).
pub(crate) fn parse_networks<S: AsRef<str>>(networks: impl IntoIterator<Item = S>) -> Result<Vec<IpNet>, String> {
    networks
        .into_iter()
        .map(|text| {
            let text = text.as_ref().trim();
            text.parse::<IpNet>().or_else(|_| text.parse::<IpAddr>().map(IpNet::from)).map(|net| net.trunc()).map_err(
                |_| format!("invalid admin network {text:?}: expected CIDR like 10.0.0.0/8 or ::1/128, or an address"),
            )
        })
        .collect()
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

//! The transport limits of a server.

use std::time::Duration;

use super::pings::PingPolicy;
use crate::server::budget::RequestBudget;

/// Transport limits of a server (see the `RpcServerBuilder` methods of the same names).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnectionLimits {
    pub(crate) max_concurrent_streams: Option<u32>,
    pub(crate) http2_keepalive_interval: Option<Duration>,
    pub(crate) http2_keepalive_timeout: Duration,
    /// gRFC A8: pings closer than this end the connection (`None`: any ping is answered).
    pub(crate) http2_min_ping_interval: Option<Duration>,
    pub(crate) http2_pings_without_calls: bool,
    pub(crate) tcp_keepalive: Option<Duration>,
    pub(crate) handshake_timeout: Option<Duration>,
    pub(crate) idle_timeout: Option<Duration>,
    /// Bytes of request messages being received at once, per connection and per server
    /// (`None`: 16 and 64 times the largest request).
    pub(crate) receiving_per_connection: Option<usize>,
    pub(crate) receiving_per_server: Option<usize>,
    /// A request must arrive whole within this of the server's first wait for it (client
    /// streams: each message, once begun).
    pub(crate) request_read_timeout: Option<Duration>,
    /// Set at start: the largest request.
    pub(crate) max_request_size: usize,
}

impl ConnectionLimits {
    /// These limits, for a server whose largest request is `max_request_size`.
    pub(crate) fn resolved(mut self, max_request_size: usize) -> Self {
        self.max_request_size = max_request_size;
        self
    }

    /// The budgets of request bytes being received; never below one request of the largest size.
    pub(super) fn budget(&self) -> RequestBudget {
        let at_least_one = |limit: Option<usize>, times: usize| {
            limit.unwrap_or(self.max_request_size.saturating_mul(times)).max(self.max_request_size)
        };
        RequestBudget::new(
            at_least_one(self.receiving_per_connection, 16),
            at_least_one(self.receiving_per_server, 64),
            self.max_request_size,
            self.request_read_timeout,
        )
    }

    pub(super) fn pings(&self) -> Option<PingPolicy> {
        let min_interval = self.http2_min_ping_interval?;
        Some(PingPolicy { min_interval, without_calls: self.http2_pings_without_calls })
    }
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            // 256: on one connection throughput is flat past a few dozen calls in flight, while
            // each open call costs about 10 KiB (README, Connection limits).
            max_concurrent_streams: Some(256),
            // Off, as in gRPC's own servers (2 h there): with it on, hyper reads the clock for
            // every frame (cost measured in the README's benchmark). Vanished peers are found
            // by TCP keep-alive instead, which costs nothing per call.
            http2_keepalive_interval: None,
            http2_keepalive_timeout: Duration::from_secs(20),
            // gRFC A8's defaults, as in grpc-go and grpc C++.
            http2_min_ping_interval: Some(Duration::from_secs(300)),
            http2_pings_without_calls: false,
            tcp_keepalive: Some(Duration::from_secs(60)),
            handshake_timeout: Some(Duration::from_secs(10)),
            idle_timeout: Some(Duration::from_secs(300)),
            receiving_per_connection: None,
            receiving_per_server: None,
            request_read_timeout: Some(Duration::from_secs(30)),
            max_request_size: crate::call::MessageLimits::default().max_decoding,
        }
    }
}

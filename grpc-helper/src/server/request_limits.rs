//! Builder methods for the limits on what clients send: requests being received (see
//! `budget`), and HTTP/2 pings (gRFC A8).

use std::time::Duration;

use super::builder::RpcServerBuilder;

impl RpcServerBuilder {
    /// A request must arrive whole within this long after the server started waiting for it
    /// (default 30 s; `None`: no limit); past it, the call ends with DEADLINE_EXCEEDED and its
    /// stream is closed, so a client that never finishes its request holds no call, and its
    /// connection falls to the idle timeout. For a client stream, each message once begun must
    /// arrive within it; pauses between messages are free.
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = grpc_helper::RpcServer::builder().request_read_timeout(Some(Duration::from_secs(120)));
    /// ```
    pub fn request_read_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.connection_limits.request_read_timeout = timeout;
        self
    }

    /// The most bytes of request messages being received at once on one connection and on the
    /// whole server (defaults: 16 and 64 times [`max_request_size`](Self::max_request_size), so
    /// 64 MiB and 256 MiB; never below one request of the largest size). A message is counted
    /// at its declared length from its first bytes to its last (the memory the server reserves
    /// for it); one that would pass either budget gets RESOURCE_EXHAUSTED, saying which.
    ///
    /// ```
    /// let builder = grpc_helper::RpcServer::builder().max_receiving_bytes(32 << 20, 128 << 20);
    /// ```
    pub fn max_receiving_bytes(mut self, per_connection: usize, per_server: usize) -> Self {
        self.connection_limits.receiving_per_connection = Some(per_connection);
        self.connection_limits.receiving_per_server = Some(per_server);
        self
    }

    /// The shortest interval between a client's HTTP/2 pings (gRFC A8; default 5 min, as
    /// grpc-go and grpc C++; `None`: every ping is answered). A ping sooner than this after the
    /// previous one is a strike, unless the server sent a reply's headers or data in between;
    /// the third strike gets GOAWAY `ENHANCE_YOUR_CALM` with `too_many_pings`, and the
    /// connection ends (gRPC clients then double their keep-alive time). With no call in
    /// progress, a client may ping once in two hours, unless
    /// [`http2_permit_pings_without_calls`](Self::http2_permit_pings_without_calls).
    ///
    /// ```
    /// use std::time::Duration;
    /// // Clients keep their connections alive with a ping every 30 s.
    /// let builder = grpc_helper::RpcServer::builder().http2_min_ping_interval(Some(Duration::from_secs(20)));
    /// ```
    pub fn http2_min_ping_interval(mut self, interval: Option<Duration>) -> Self {
        self.connection_limits.http2_min_ping_interval = interval;
        self
    }

    /// Lets clients ping every [`http2_min_ping_interval`](Self::http2_min_ping_interval) while
    /// no call is in progress too (default `false`: once in two hours then, as gRPC servers do).
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = grpc_helper::RpcServer::builder()
    ///     .http2_min_ping_interval(Some(Duration::from_secs(60)))
    ///     .http2_permit_pings_without_calls(true);
    /// ```
    pub fn http2_permit_pings_without_calls(mut self, permit: bool) -> Self {
        self.connection_limits.http2_pings_without_calls = permit;
        self
    }
}

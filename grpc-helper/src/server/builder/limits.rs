//! Builder methods for the transport's limits: connections (streams, keep-alive, handshake and
//! idle timeouts), what clients send (requests being received, see `budget`), and HTTP/2 pings
//! (gRFC A8).

use std::time::Duration;

use super::RpcServerBuilder;

impl RpcServerBuilder {
    /// Most calls in progress at once on one HTTP/2 connection (default 256; `None`: no
    /// limit). The limit is announced to clients, which queue their extra calls until one ends;
    /// a client that ignores it has the extra streams refused (`REFUSED_STREAM`, which gRPC
    /// clients report as UNAVAILABLE and may retry).
    ///
    /// ```
    /// let builder = grpc_helper::RpcServer::builder().max_concurrent_streams(Some(100));
    /// ```
    pub fn max_concurrent_streams(mut self, max: Option<u32>) -> Self {
        self.connection_limits.max_concurrent_streams = max;
        self
    }

    /// HTTP/2 pings after this long without a frame from the client (default `None`: no pings,
    /// as gRPC servers do by default); a ping not answered within
    /// [`http2_keepalive_timeout`](Self::http2_keepalive_timeout) closes the connection. It finds
    /// a client process that hangs while its machine still answers TCP; vanished machines are
    /// found by [`tcp_keepalive`](Self::tcp_keepalive) at no cost per call. With pings on,
    /// hyper reads the clock on every frame (its cost per call: README, Benchmark).
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = grpc_helper::RpcServer::builder().http2_keepalive_interval(Some(Duration::from_secs(30)));
    /// ```
    pub fn http2_keepalive_interval(mut self, interval: Option<Duration>) -> Self {
        self.connection_limits.http2_keepalive_interval = interval;
        self
    }

    /// How long a keep-alive ping may go unanswered (default 20 s).
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = grpc_helper::RpcServer::builder().http2_keepalive_timeout(Duration::from_secs(5));
    /// ```
    pub fn http2_keepalive_timeout(mut self, timeout: Duration) -> Self {
        self.connection_limits.http2_keepalive_timeout = timeout;
        self
    }

    /// TCP keep-alive probes on accepted connections after this long without traffic (default
    /// 60 s; `None`: off), then every quarter of it: the kernel drops a connection whose peer
    /// machine is gone after 4 unanswered probes (2 minutes with the default).
    ///
    /// ```
    /// let builder = grpc_helper::RpcServer::builder().tcp_keepalive(None);
    /// ```
    pub fn tcp_keepalive(mut self, idle: Option<Duration>) -> Self {
        self.connection_limits.tcp_keepalive = idle;
        self
    }

    /// A connection that has not sent its HTTP/2 preface (or TLS hello) this long after being
    /// accepted is closed (default 10 s; `None`: never). Such connections are also closed as
    /// soon as shutdown starts.
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = grpc_helper::RpcServer::builder().handshake_timeout(Some(Duration::from_secs(3)));
    /// ```
    pub fn handshake_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.connection_limits.handshake_timeout = timeout;
        self
    }

    /// A connection without any call in progress for this long is closed (default 300 s;
    /// `None`: never). Clients reconnect on their next call (the `RpcClient` retries a call
    /// that races with the close); streams such as an events `listen` keep their connection.
    ///
    /// ```
    /// use std::time::Duration;
    /// let builder = grpc_helper::RpcServer::builder().idle_timeout(Some(Duration::from_secs(60)));
    /// ```
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.connection_limits.idle_timeout = timeout;
        self
    }

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

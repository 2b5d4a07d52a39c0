//! Builder methods for the limits on requests being received (see `metered`).

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
}

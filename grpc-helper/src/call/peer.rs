//! The connection a request came on, as the server attaches it to every request (tonic's
//! `connect_info`): its TCP peer, which the call path reads, and the server's own record of the
//! connection, which the call path does not look into.

use std::any::Any;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

#[derive(Clone)]
pub(crate) struct ConnInfo {
    peer: SocketAddr,
    state: Arc<dyn Any + Send + Sync>,
}

impl ConnInfo {
    pub(crate) fn new(peer: SocketAddr, state: Arc<dyn Any + Send + Sync>) -> Self {
        Self { peer, state }
    }

    /// The connection's TCP peer (never the caller's `ip` metadata, which the caller chooses).
    pub(crate) fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The server's record of the connection.
    pub(crate) fn state(&self) -> &Arc<dyn Any + Send + Sync> {
        &self.state
    }
}

/// The TCP peer of the connection a request came on (`None` outside a server connection).
pub(crate) fn peer_of<B>(request: &http::Request<B>) -> Option<IpAddr> {
    request.extensions().get::<ConnInfo>().map(|info| info.peer.ip())
}

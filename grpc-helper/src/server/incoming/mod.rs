//! Accepted connections: TLS, HTTP/2 ping limits, and the cutting of connections when the
//! shutdown grace period runs out, or when they hold resources without using them.
//!
//! tonic's graceful shutdown waits for every open stream to end, possibly forever; after the
//! grace period we `shutdown(2)` the remaining sockets, which ends their connections at once.
//!
//! Neither hyper nor h2 closes a connection that never sends its preface, or that completed the
//! handshake and then sits without a call: a watchdog does (see [`ConnectionLimits`]). Nor do
//! they limit a client's pings (gRFC A8): the connection follows its frames to do so, which is
//! why TLS is terminated here rather than by tonic.

mod accept;
mod io;
mod limits;
mod pings;
mod registry;
mod tracked;

pub(crate) use self::accept::{Incoming, bind, port_busy};
pub(crate) use self::limits::ConnectionLimits;
pub(crate) use self::registry::{CancelSignal, Connections};
pub(crate) use self::tracked::{Tracked, replay_charge_of};

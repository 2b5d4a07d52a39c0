//! Who holds how many queues, for the caps (`rpc-event-max-queues`, `-per-peer`).
//!
//! A queue and every stream that ever delivered it share one [`Slot`]; the slot is freed when
//! the last of them goes. So a stalled stream whose queue expired still counts against its
//! peer until its client closes it: what a peer holds on the server is always within its cap.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::RpcError;
use crate::api::ResultCode;

/// The address a queue belongs to: a caller's TCP peer, canonical (`::ffff:a.b.c.d` is
/// `a.b.c.d`, and `::1` is `127.0.0.1`, so that a client reaching `localhost` over either
/// stays itself). `None`: no connection (in-process callers).
pub(crate) type Peer = Option<IpAddr>;

/// The owner key of a TCP peer address.
pub(crate) fn peer_of(addr: Option<std::net::SocketAddr>) -> Peer {
    addr.map(|addr| match addr.ip().to_canonical() {
        IpAddr::V6(v6) if v6.is_loopback() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        ip => ip,
    })
}

/// The key a peer's queues are counted under for `rpc-event-max-queues-per-peer`: its address,
/// or for IPv6 its /64, which one host or site can fill with addresses of its own.
pub(crate) fn cap_group(peer: Peer) -> Peer {
    match peer {
        Some(IpAddr::V6(v6)) => Some(IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into())),
        other => other,
    }
}

/// `ERROR_ITEM_BUSY`: the queues of the whole server (or of every replica: `where_`) are at
/// their cap.
pub(crate) fn too_many(total: usize, max: usize, where_: &str) -> RpcError {
    RpcError::new(
        ResultCode::ErrorItemBusy,
        format!(
            "Too many event listening queues: {total} are open or retained{where_}, the most is {max} \
             (rpc-event-max-queues; raise it, or shorten rpc-event-retain-timeout)"
        ),
    )
}

/// `ERROR_ITEM_BUSY`: `peer`'s group holds its cap of queues.
pub(crate) fn too_many_from(peer: Peer, held: usize, max: usize, where_: &str) -> RpcError {
    let who = match cap_group(peer) {
        Some(IpAddr::V6(net)) => format!("{net}/64"),
        Some(ip) => ip.to_string(),
        None => "this process".to_owned(),
    };
    RpcError::new(
        ResultCode::ErrorItemBusy,
        format!(
            "Too many event listening queues from {who}: {held} are open or retained{where_}, the most per peer \
             address (IPv6: per /64) is {max} (rpc-event-max-queues-per-peer; raise it, or interrupt unused queues)"
        ),
    )
}

/// Whether `peer` may open one more queue (`made`: none yet) or keep queue `made`, given every
/// queue (name, and whether its owner is in `peer`'s group), oldest first: the queues made
/// before it, in all and of its group, are within the caps.
#[cfg(feature = "nats")]
pub(crate) fn within_caps(
    queues: &[(String, bool)],
    made: Option<&str>,
    peer: Peer,
    limits: &super::EventLimits,
    place: &str,
) -> Result<(), RpcError> {
    let before = queues.iter().position(|(name, _)| Some(name.as_str()) == made).unwrap_or(queues.len());
    let ours = queues[..before].iter().filter(|(_, same)| *same).count();
    if before >= limits.max_queues {
        return Err(too_many(before, limits.max_queues, place));
    }
    if ours >= limits.max_per_peer { Err(too_many_from(peer, ours, limits.max_per_peer, place)) } else { Ok(()) }
}

/// Slots in use, in all and per peer.
#[derive(Default)]
pub(super) struct Usage {
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_peer: HashMap<Peer, usize>,
}

/// One queue's place in the counts; `peer` is `None` for a queue restored from the file and
/// not claimed yet (counted in the total only).
pub(super) struct Slot {
    usage: Arc<Usage>,
    peer: Option<Peer>,
}

impl Usage {
    /// Slots in use: in all, and by `peer`'s group ([`cap_group`]).
    pub(super) fn held(&self, peer: Peer) -> (usize, usize) {
        let counts = self.counts.lock();
        (counts.total, counts.per_peer.get(&cap_group(peer)).copied().unwrap_or(0))
    }

    pub(super) fn take(self: &Arc<Self>, peer: Option<Peer>) -> Arc<Slot> {
        let peer = peer.map(cap_group);
        let mut counts = self.counts.lock();
        counts.total += 1;
        if let Some(peer) = peer {
            *counts.per_peer.entry(peer).or_default() += 1;
        }
        Arc::new(Slot { usage: Arc::clone(self), peer })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.usage.counts.lock();
        counts.total -= 1;
        if let Some(peer) = self.peer
            && let Some(n) = counts.per_peer.get_mut(&peer)
        {
            *n -= 1;
            if *n == 0 {
                counts.per_peer.remove(&peer);
            }
        }
    }
}

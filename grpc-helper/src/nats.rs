//! The one way this crate connects to NATS (feature `nats`): for the shared events
//! (`rpc-events-url`) and the shared user config items (`rpc-config-url`).

use std::time::Duration;

use crate::RpcError;
use crate::api::ResultCode;

/// Connects to `url`, retrying every 250 ms for `wait` (`rpc-events-wait`). `item` names the
/// item holding the URL and `purpose` what it is for, in the error and the logs.
///
/// # Errors
/// [`ResultCode::ErrorStateUnreachable`] when NATS cannot be reached within `wait`.
pub(crate) async fn connect(
    url: &str,
    wait: Duration,
    item: &str,
    purpose: &str,
) -> Result<async_nats::Client, RpcError> {
    let deadline = tokio::time::Instant::now() + wait;
    let mut attempts = 0u32;
    loop {
        let options = async_nats::ConnectOptions::new()
            .name(format!("grpc-helper {purpose}"))
            .connection_timeout(Duration::from_secs(2));
        match options.connect(url).await {
            Ok(client) => return Ok(client),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(RpcError::new(
                    ResultCode::ErrorStateUnreachable,
                    format!(
                        "Cannot reach NATS at {url} ({item}) for the {purpose}: {e}; start `nats-server -js` there, \
                         fix the URL, or set rpc-events-wait to wait for it at start"
                    ),
                ));
            }
            Err(e) => {
                // Said once; the retries go to DEBUG.
                if attempts == 0 {
                    tracing::warn!("Waiting up to {wait:?} for NATS at {url} ({item}, rpc-events-wait): {e}");
                } else {
                    tracing::debug!("Still waiting for NATS at {url}: {e}");
                }
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

/// An error of NATS while serving, naming the URL and the item that holds it.
pub(crate) fn unreachable(url: &str, item: &str, what: &str, e: impl std::fmt::Display) -> RpcError {
    RpcError::new(ResultCode::ErrorStateUnreachable, format!("NATS at {url} ({item}): {what}: {e}"))
}

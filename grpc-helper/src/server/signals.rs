//! [`RpcServer::serve_until_signalled`]: what a server's `main` ends with, so that the stop
//! signals of orchestrators (SIGTERM from Kubernetes, systemd, `docker stop`) drain like Ctrl-C.

use tokio::signal::unix::{Signal, SignalKind, signal};

use super::RpcServer;
use crate::{ResultCode, RpcError};

impl RpcServer {
    /// Serves until SIGTERM, SIGINT (Ctrl-C) or a remote `srv.shutdown`. A signal starts a
    /// graceful [`shutdown`](Self::shutdown) (calls in flight finish within the grace period,
    /// open streams end in band) and this returns once it is over; a second signal during the
    /// drain returns at once, for an operator who does not want to wait.
    ///
    /// Once called, SIGTERM and SIGINT no longer kill the process by themselves (tokio keeps
    /// its handlers for the life of the process): call it at the end of `main`.
    ///
    /// # Errors
    /// [`ResultCode::ErrorStateUnexpected`] when the signal handlers cannot be installed.
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> Result<(), grpc_helper::RpcError> {
    /// let server = grpc_helper::RpcServer::builder().port(54321).start().await?;
    /// server.serve_until_signalled().await?;
    /// println!("server stopped");
    /// # Ok(()) }
    /// ```
    pub async fn serve_until_signalled(&self) -> Result<(), RpcError> {
        let mut terminate = handler(SignalKind::terminate(), "SIGTERM")?;
        let mut interrupt = handler(SignalKind::interrupt(), "SIGINT")?;
        let received = tokio::select! {
            () = self.wait_shutdown() => return Ok(()),
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!("{received} received: shutting down gracefully (a second signal stops at once)");
        tokio::select! {
            () = self.shutdown() => {}
            _ = terminate.recv() => tracing::warn!("SIGTERM received again: stopping without waiting for the drain"),
            _ = interrupt.recv() => tracing::warn!("SIGINT received again: stopping without waiting for the drain"),
        }
        Ok(())
    }
}

fn handler(kind: SignalKind, name: &str) -> Result<Signal, RpcError> {
    signal(kind).map_err(|e| RpcError::new(ResultCode::ErrorStateUnexpected, format!("Cannot handle {name}: {e}")))
}

//! A tokio runtime sized to the CPUs the process may use.

use std::io;
use std::num::NonZeroUsize;

/// A tokio runtime for a server process, with I/O and timers: a current-thread runtime when
/// the process may use one CPU only, a multi-thread one with a worker per CPU otherwise.
///
/// The CPUs counted are those [`std::thread::available_parallelism`] sees: the affinity mask
/// (`taskset`) and a cgroup CPU quota included, so a container limited to one CPU gets the
/// current-thread runtime. On one CPU that runtime serves about a third more calls per second
/// than `#[tokio::main]`'s multi-thread one with its single worker (no work-stealing queues,
/// no cross-thread wake-ups; see the README's benchmark). `TOKIO_WORKER_THREADS` still sets
/// the number of workers of the multi-thread runtime.
///
/// As with any single worker, a manager method that blocks the thread holds up every call of
/// the server: use `tokio::task::spawn_blocking` for blocking work (`block_in_place` needs the
/// multi-thread runtime).
///
/// ```no_run
/// use grpc_helper::RpcServer;
///
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     grpc_helper::server::runtime()?.block_on(async {
///         let server = RpcServer::builder().port(50051).start().await?;
///         server.serve_until_signalled().await?;
///         Ok(())
///     })
/// }
/// ```
pub fn runtime() -> io::Result<tokio::runtime::Runtime> {
    runtime_for(std::thread::available_parallelism().map_or(1, NonZeroUsize::get))
}

fn runtime_for(cpus: usize) -> io::Result<tokio::runtime::Runtime> {
    if cpus <= 1 && std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().enable_all().build()
    }
}

#[cfg(test)]
mod tests {
    use tokio::runtime::RuntimeFlavor;

    use super::runtime_for;

    #[test]
    fn one_cpu_gets_the_current_thread_runtime_more_get_workers() {
        let one = runtime_for(1).unwrap();
        assert_eq!(one.handle().runtime_flavor(), RuntimeFlavor::CurrentThread);
        let two = runtime_for(2).unwrap();
        assert_eq!(two.handle().runtime_flavor(), RuntimeFlavor::MultiThread);
    }
}

//! Capacity with one core each: a server process pinned to one CPU, the load generator one
//! thread of this process pinned to another, so that no server can borrow CPU from the load
//! generator or from another server. The Python original is GIL-bound, about one core whatever
//! the machine; this gives every server that same core, and the ratio of throughputs is the
//! ratio of what one core serves.

use std::io;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::load::LoadSpec;
use crate::targets::{BareClient, EchoClient};

/// What one load run measured.
pub struct CapacityReport {
    pub calls: u64,
    pub window: Duration,
    /// CPU time of the server process during the window.
    pub server_cpu: Option<Duration>,
    /// CPU time of the load generator's thread during the window.
    pub client_cpu: Duration,
}

impl CapacityReport {
    pub fn per_second(&self) -> f64 {
        self.calls as f64 / self.window.as_secs_f64()
    }

    pub fn server_cpu_per_call(&self) -> Option<Duration> {
        self.server_cpu.filter(|_| self.calls > 0).map(|c| c.div_f64(self.calls as f64))
    }

    pub fn busy(&self, cpu: Duration) -> f64 {
        100.0 * cpu.as_secs_f64() / self.window.as_secs_f64()
    }
}

/// The first two CPUs this process may run on: (load generator, server).
pub fn two_cpus() -> Option<(usize, usize)> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it for this thread.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        set
    };
    // SAFETY: CPU_ISSET only reads the set, within its size.
    let mut cpus = (0..libc::CPU_SETSIZE as usize).filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) });
    Some((cpus.next()?, cpus.next()?))
}

/// Pins the calling thread to `cpu`. Async-signal-safe (no allocation), for `pre_exec`.
fn pin_current_thread(cpu: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; sched_setaffinity(0, ..) changes the calling thread only.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Makes the process `command` starts run on `cpu` only, every thread of it included (they
/// inherit the mask of the thread that execs).
pub fn pin_command(command: &mut Command, cpu: usize) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the hook only makes one system call, which is async-signal-safe.
    unsafe {
        command.pre_exec(move || pin_current_thread(cpu));
    }
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    // SAFETY: clock_gettime writes the timespec it is given.
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Closed-loop echo load from one thread pinned to `cpu` (a current-thread runtime, so the
/// load generator uses that core and no other): `spec.connections` tonic channels to `port`,
/// `spec.concurrency` calls on each, `spec.warmup` then `spec.duration` measured. `pid` is the
/// server's process.
pub fn run(cpu: usize, port: u16, pid: u32, spec: LoadSpec) -> Result<CapacityReport, String> {
    std::thread::Builder::new()
        .name("bench-capacity".into())
        .spawn(move || {
            pin_current_thread(cpu).map_err(|e| format!("cannot pin the load generator to CPU {cpu}: {e}"))?;
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
            runtime.block_on(drive(port, pid, spec))
        })
        .map_err(|e| e.to_string())?
        .join()
        .map_err(|_| "the load generator thread panicked".to_owned())?
}

async fn drive(port: u16, pid: u32, spec: LoadSpec) -> Result<CapacityReport, String> {
    let mut clients = Vec::with_capacity(spec.connections);
    for _ in 0..spec.connections {
        let mut client = BareClient::connect(port).await?;
        client.echo("warm-up".into()).await.map_err(|e| format!("first call: {e}"))?;
        clients.push(client);
    }
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for (c, client) in clients.iter().enumerate() {
        for w in 0..spec.concurrency {
            let (mut client, counting, stop, calls) =
                (client.clone(), Arc::clone(&counting), Arc::clone(&stop), Arc::clone(&calls));
            let text = format!("capacity {c}/{w}");
            workers.spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    client.echo(text.clone()).await?;
                    if counting.load(Ordering::Relaxed) {
                        calls.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Ok::<_, tonic::Status>(())
            });
        }
    }
    tokio::time::sleep(spec.warmup).await;
    let pid = pid.to_string();
    let (server_before, client_before, start) = (crate::load::process_cpu(&pid), thread_cpu(), Instant::now());
    counting.store(true, Ordering::Relaxed);
    tokio::time::sleep(spec.duration).await;
    counting.store(false, Ordering::Relaxed);
    let (server_after, client_after, end) = (crate::load::process_cpu(&pid), thread_cpu(), Instant::now());
    stop.store(true, Ordering::Relaxed);
    let report = CapacityReport {
        calls: calls.load(Ordering::Relaxed),
        window: end - start,
        server_cpu: server_before.zip(server_after).map(|(b, a)| a.saturating_sub(b)),
        client_cpu: client_after.saturating_sub(client_before),
    };
    let drained = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(done) = workers.join_next().await {
            done.map_err(|e| e.to_string())?.map_err(|e| format!("echo failed: {e}"))?;
        }
        Ok::<_, String>(())
    });
    drained.await.map_err(|_| "the load did not stop within 30 s".to_owned())??;
    Ok(report)
}

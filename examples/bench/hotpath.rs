//! `--hotpath KEY --calls N`: one connection, one call in flight, client and server on ONE
//! current-thread runtime, so everything a call costs runs on the thread that enters
//! [`hot_loop`]. Meant for `valgrind --tool=callgrind --collect-atstart=no
//! --toggle-collect='*hot_loop*'`: instruction counts per call are repeatable on a noisy machine,
//! where timings are not.

use std::time::Instant;

use tokio::runtime::Runtime;

use crate::targets::{ClientKind, Clients, EchoClient, EchoServer, ServerKind};

const PAYLOAD: &str = "hot path payload";

/// Calls made before the measured loop (connection set up, buffers and caches warm).
const WARMUP_CALLS: u64 = 2_000;

/// Runs `calls` echo calls with the given server and client kinds; prints
/// `ns/call` (wall time, indicative only) and returns false on any failed call.
pub fn run(server: ServerKind, client: ClientKind, calls: u64) -> bool {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    let setup = rt.block_on(async {
        let server = EchoServer::start(&tokio::runtime::Handle::current(), server, 0, 1).await?;
        let clients = Clients::connect(client, server.port(), 1).await?;
        Ok::<_, String>((server, clients))
    });
    let (server, clients) = match setup {
        Ok(pair) => pair,
        Err(e) => {
            eprintln!("hotpath: {e}");
            return false;
        }
    };
    let ok = match &clients {
        Clients::Bare(c) => measure(&rt, c[0].clone(), calls),
        Clients::BareWithMetadata(c) => measure(&rt, c[0].clone(), calls),
        Clients::Helper(c) => measure(&rt, c[0].clone(), calls),
    };
    drop(clients);
    rt.block_on(async { server.stop(&tokio::runtime::Handle::current()).await });
    ok
}

fn measure<C: EchoClient>(rt: &Runtime, client: C, calls: u64) -> bool {
    if let Err(e) = rt.block_on(echo_loop(client.clone(), WARMUP_CALLS)) {
        eprintln!("hotpath warm-up failed: {e}");
        return false;
    }
    let start = Instant::now();
    let result = hot_loop(rt, client, calls);
    let elapsed = start.elapsed();
    match result {
        Ok(()) => {
            println!(
                "hotpath: {calls} calls in {:.3}s, {:.0} ns/call (wall time; use callgrind for stable counts)",
                elapsed.as_secs_f64(),
                elapsed.as_nanos() as f64 / calls as f64
            );
            true
        }
        Err(e) => {
            eprintln!("hotpath failed: {e}");
            false
        }
    }
}

/// The measured calls (the callgrind toggle point: keep it out of line).
#[inline(never)]
fn hot_loop<C: EchoClient>(rt: &Runtime, client: C, calls: u64) -> Result<(), String> {
    rt.block_on(echo_loop(client, calls))
}

async fn echo_loop<C: EchoClient>(mut client: C, calls: u64) -> Result<(), String> {
    for _ in 0..calls {
        let reply = client.echo(PAYLOAD.to_owned()).await.map_err(|s| s.to_string())?;
        if reply != PAYLOAD {
            return Err(format!("unexpected echo reply {reply:?}"));
        }
    }
    Ok(())
}

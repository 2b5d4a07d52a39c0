//! The request-path fuzz target's rig and oracle (`fuzz_targets/request_path.rs`), shared with
//! `tests/parsers.rs`, which replays the committed corpus through it on every `cargo test`.

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use grpc_helper::RpcServer;
use grpc_helper::api::ProxyRegisterRequest;

/// A main server (proxying `/EventService/*`) and its backend, and one HTTP/2 connection.
pub struct Rig {
    runtime: tokio::runtime::Runtime,
    port: u16,
    send: tokio::sync::Mutex<h2::client::SendRequest<Bytes>>,
    _servers: (RpcServer, RpcServer),
}

/// The paths the first byte picks from; beyond them, the path is the fuzzer's own.
const PATHS: &[&str] = &[
    "/RpcServerService/info",
    "/RpcServerService/proxy_register",
    "/RpcServerService/proxy_forget",
    "/ConfigService/get",
    "/ConfigService/set",
    "/ConfigService/reset",
    "/LoggerService/get",
    "/LoggerService/reset",
    "/EventService/send",
    "/EventService/inspect",
    "/EventService/interrupt",
    "/grpc.health.v1.Health/Check",
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
];

/// The servers and the connection, made once; `on_panic` is installed as the panic hook first.
pub fn rig(on_panic: fn(&std::panic::PanicHookInfo<'_>)) -> &'static Rig {
    static RIG: OnceLock<Rig> = OnceLock::new();
    RIG.get_or_init(|| {
        std::panic::set_hook(Box::new(on_panic));
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let (port, send, servers) = runtime.block_on(async {
            let builder = || RpcServer::builder().ip("127.0.0.1".parse().unwrap()).port(0).install_logging(false);
            // The backend serves the events; the main forwards /EventService/* to it.
            let backend = builder().with_events().start().await.unwrap();
            let main = builder()
                .proxy::<grpc_helper::api::EventApiVersion>("events-backend", "EventService")
                .cli_config([("rpc-client-timeout".to_owned(), "1".to_owned())])
                .start()
                .await
                .unwrap();
            let registration = ProxyRegisterRequest {
                names: vec!["events-backend".into()],
                version: "1".into(),
                host: "127.0.0.1".into(),
                port: u32::from(backend.local_addr().port()),
            };
            main.auto_client().server_service().proxy_register(registration).await.unwrap();
            let port = main.local_addr().port();
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
            let (send, connection) = h2::client::handshake(tcp).await.unwrap();
            tokio::spawn(connection);
            (port, send, (main, backend))
        });
        Rig { runtime, port, send: tokio::sync::Mutex::new(send), _servers: servers }
    })
}

/// `data`: a path selector, then `name:value` header lines up to an empty line, then the body.
fn request(port: u16, data: &[u8]) -> Option<(http::Request<()>, Bytes)> {
    let (&selector, rest) = data.split_first()?;
    let mut parts = rest.splitn(2, |&b| b == 0);
    let head = parts.next().unwrap_or_default();
    let body = Bytes::copy_from_slice(parts.next().unwrap_or_default());
    let mut lines = head.split(|&b| b == b'\n');
    let path = match PATHS.get(usize::from(selector)) {
        Some(path) => (*path).to_owned(),
        None => String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned(),
    };
    // Shutting the rig down would end the run, not find a bug.
    let uri: http::Uri = format!("http://127.0.0.1:{port}{path}").parse().ok()?;
    if uri.path().contains("shutdown") || uri.path().contains("listen") {
        return None;
    }
    let mut builder = http::Request::post(uri).header("content-type", "application/grpc").header("te", "trailers");
    for line in lines {
        let Some(at) = line.iter().position(|&b| b == b':') else { continue };
        let (Ok(name), Ok(value)) =
            (http::HeaderName::from_bytes(&line[..at]), http::HeaderValue::from_bytes(&line[at + 1..]))
        else {
            continue;
        };
        if !matches!(
            name.as_str(),
            "te" | "content-type"
                | "connection"
                | "host"
                | "keep-alive"
                | "upgrade"
                | "transfer-encoding"
                | "proxy-connection"
        ) {
            builder = builder.header(name, value);
        }
    }
    Some((builder.body(()).ok()?, body))
}

/// Sends one input as a request and checks the answer.
pub fn drive(rig: &Rig, data: &[u8]) {
    let Some((request, body)) = request(rig.port, data) else { return };
    rig.runtime.block_on(async {
        let mut send = rig.send.lock().await;
        let mut ready = send.clone().ready().await.expect("the connection stays usable");
        *send = ready.clone();
        drop(send);
        let Ok((response, mut stream)) = ready.send_request(request, false) else { return };
        let _ = stream.send_data(body, true);
        match tokio::time::timeout(Duration::from_secs(3), response).await {
            Ok(Ok(response)) => {
                let (head, mut body) = response.into_parts();
                let mut status = head.headers.get("grpc-status").cloned();
                while status.is_none() {
                    match tokio::time::timeout(Duration::from_secs(3), body.data()).await {
                        Ok(Some(Ok(chunk))) => drop(body.flow_control().release_capacity(chunk.len())),
                        Ok(Some(Err(_))) | Err(_) => return,
                        Ok(None) => {
                            let trailers = tokio::time::timeout(Duration::from_secs(3), body.trailers()).await;
                            status = trailers
                                .ok()
                                .and_then(Result::ok)
                                .flatten()
                                .and_then(|t| t.get("grpc-status").cloned());
                            assert!(status.is_some(), "a gRPC answer without grpc-status");
                        }
                    }
                }
            }
            // A refused stream (a limit) is an answer too; a slow one is the deadline's business.
            Ok(Err(e)) => assert!(e.is_reset() || e.is_remote(), "{e}"),
            Err(_) => {}
        }
    });
}

//! TLS over real sockets: a round trip (auto-clients included), a plain-text client refused,
//! and mutual TLS.

use std::sync::Arc;
use std::time::Duration;

use grpc_helper::api::{Empty, Filter};
use grpc_helper::tls::{ClientTls, ServerTls};
use grpc_helper::{RpcClient, RpcServer};
use grpc_helper_tests::{EventLog, Sample, bounded, sample_stub, server_builder};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
}

/// A CA, a server certificate for `localhost`, a client certificate, all made for this test.
fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let issue = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_owned()]).unwrap().signed_by(&key, &ca).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    Pki { ca: ca.pem(), server: issue("localhost"), client: issue("client.local") }
}

fn tls_client(server: &RpcServer, tls: Option<ClientTls>) -> RpcClient {
    let builder = RpcClient::builder("127.0.0.1", server.local_addr().port()).no_retry();
    match tls {
        Some(tls) => builder.tls(tls),
        None => builder,
    }
    .connect_lazy()
    .unwrap()
}

/// grpc-helper's layer as the subscriber of this test process, with `log` records (rustls
/// logs through `log`) bridged at every level: set before any server starts, so that the
/// secrets test really sees the dependencies' DEBUG records.
fn logging() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        use tracing_subscriber::prelude::*;
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(grpc_helper::logs::layer()))
            .expect("no subscriber yet in this test process");
        tracing_log::LogTracer::builder()
            .with_max_level(tracing_log::log::LevelFilter::Trace)
            .init()
            .expect("no logger yet");
    });
}

async fn start(tls: ServerTls) -> RpcServer {
    logging();
    server_builder().tls(tls).manager(Sample::new(&EventLog::default(), Duration::ZERO)).start().await.unwrap()
}

#[tokio::test]
async fn tls_round_trip_and_plain_text_is_refused() {
    bounded(Duration::from_secs(30), async {
        let pki = pki();
        let server = start(ServerTls::new(pki.server.0.clone(), pki.server.1.clone()).ca(pki.ca.clone())).await;
        let client = tls_client(&server, Some(ClientTls::new(pki.ca.clone()).domain("localhost")));
        let info = client.server_service().info(Filter::default()).await.unwrap().into_inner();
        assert_eq!(info.items[0].name, "srv");
        // method1 calls the server again through the manager's auto-client: TLS too.
        let counted = sample_stub(&client).method1(Empty {}).await.unwrap().into_inner();
        assert_eq!(counted.r.unwrap().msg, "Found info count: 4");

        let plain = tls_client(&server, None).server_service().info(Filter::default()).await;
        assert!(plain.is_err(), "a plain-text client gets no answer from a TLS server");
        let wrong_ca = pki_ca_only();
        let untrusted = tls_client(&server, Some(ClientTls::new(wrong_ca).domain("localhost")));
        assert!(untrusted.server_service().info(Filter::default()).await.is_err(), "an unknown CA is refused");
        server.shutdown().await;
    })
    .await;
}

fn pki_ca_only() -> String {
    pki().ca
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate() {
    bounded(Duration::from_secs(30), async {
        let pki = pki();
        let tls = ServerTls::new(pki.server.0.clone(), pki.server.1.clone()).ca(pki.ca.clone()).verify_clients();
        let server = start(tls).await;
        let anonymous = tls_client(&server, Some(ClientTls::new(pki.ca.clone()).domain("localhost")));
        assert!(anonymous.server_service().info(Filter::default()).await.is_err(), "no client certificate");
        let identified =
            ClientTls::new(pki.ca.clone()).domain("localhost").identity(pki.client.0.clone(), pki.client.1.clone());
        let client = tls_client(&server, Some(identified));
        assert_eq!(client.server_service().info(Filter::default()).await.unwrap().into_inner().items.len(), 4);
        let counted = sample_stub(&client).method1(Empty {}).await.unwrap().into_inner();
        assert_eq!(counted.r.unwrap().msg, "Found info count: 4", "auto-clients present the server's identity");
        server.shutdown().await;
    })
    .await;
}

#[test]
fn tls_files_come_from_the_command_line() {
    use clap::Parser;
    use grpc_helper::cli::ServerArgs;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        server: ServerArgs,
    }
    logging();
    let dir = tempfile::tempdir().unwrap();
    let pki = pki();
    for (name, text) in [("cert.pem", &pki.server.0), ("key.pem", &pki.server.1), ("ca.pem", &pki.ca)] {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let path = |name: &str| dir.path().join(name).display().to_string();
    let cli =
        Cli::try_parse_from(["s", "-p", "0", "--tls-cert", &path("cert.pem"), "--tls-key", &path("key.pem")]).unwrap();
    assert!(Cli::try_parse_from(["s", "--tls-cert", &path("cert.pem")]).is_err(), "the key is required too");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let server = RpcServer::builder().ip("127.0.0.1".parse().unwrap()).args(&cli.server).start().await.unwrap();
        let client = tls_client(&server, Some(ClientTls::new(pki.ca.clone()).domain("localhost")));
        client.server_service().info(Filter::default()).await.unwrap();
        server.shutdown().await;
        let missing =
            Cli::try_parse_from(["s", "-p", "0", "--tls-cert", "/nope.pem", "--tls-key", "/nope.key"]).unwrap();
        let error = RpcServer::builder().args(&missing.server).start().await.err().unwrap();
        assert!(error.message().contains("/nope.pem"), "{error}");
    });
}

/// Secrets stay secret: with TLS, an auth guard and every logger at DEBUG, neither the TLS
/// private key nor a bearer token (right or wrong) reaches the log files or a debug dump.
#[tokio::test]
async fn no_key_or_token_in_logs_or_dumps() {
    use grpc_helper::Folders;

    use grpc_helper::api::{LoggerConfig, LoggerLevel, LoggerUpdate};
    use grpc_helper::auth::BearerToken;

    const TOKEN: &str = "secret-token-7f3a9c";
    const WRONG: &str = "wrong-token-b41e0d";
    logging();
    bounded(Duration::from_secs(30), async {
        let dir = tempfile::tempdir().unwrap();
        let pki = pki();
        let server = server_builder()
            .folders(Folders::default().workspace(dir.path()))
            .tls(ServerTls::new(pki.server.0.clone(), pki.server.1.clone()).ca(pki.ca.clone()))
            .auth_guard(BearerToken::new(TOKEN))
            .manager(Sample::new(&EventLog::default(), Duration::ZERO))
            .start()
            .await
            .unwrap();
        let connect = |token: &str| {
            RpcClient::builder("127.0.0.1", server.local_addr().port())
                .no_retry()
                .tls(ClientTls::new(pki.ca.clone()).domain("localhost"))
                .bearer_token(token)
                .connect_lazy()
                .unwrap()
        };
        let (client, intruder) = (connect(TOKEN), connect(WRONG));
        let mut log = client.logger_service();
        let debug = |name: &str| LoggerConfig { name: name.into(), enabled: true, level: LoggerLevel::LvlDebug as i32 };
        // "" is the root logger (a logger named "root" would be a plain target); the
        // transport crates get their own loggers at DEBUG as well.
        let loggers = ["", "grpc_helper", "h2", "hyper", "hyper_util", "rustls", "tonic", "tower"];
        log.set(LoggerUpdate { items: loggers.iter().map(|name| debug(name)).collect() }).await.unwrap();
        client.server_service().info(Filter::default()).await.unwrap();
        sample_stub(&client).method1(Empty {}).await.unwrap();
        let refused = intruder
            .logger_service()
            .reset(Filter { names: vec![String::new()], ignore_unknown: false })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
        let dump = server.dump().unwrap();
        server.shutdown().await;

        assert!(dump.starts_with(dir.path()), "the dump goes to the logs folder: {}", dump.display());
        let mut texts = Vec::new();
        let mut folders = vec![dir.path().to_owned()];
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(folder).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    folders.push(path);
                } else {
                    texts.push((path.clone(), String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned()));
                }
            }
        }
        let all: String = texts.iter().map(|(_, text)| text.as_str()).collect();
        assert!(all.contains(">>> "), "the calls were logged at DEBUG (else this test proves nothing)");
        // The dependencies' DEBUG records were really produced and written (hyper itself has no
        // tracing without its unstable cfg; tonic and hyper-util log at DEBUG on errors only).
        for target in [" h2::", " rustls::"] {
            let line = all.lines().find(|l| l.contains(" DEBUG") && l.contains(target));
            let targets: std::collections::BTreeSet<&str> =
                all.lines().filter_map(|l| l.split_whitespace().nth(3)).collect();
            assert!(line.is_some(), "no DEBUG record of{target} in the logs; targets: {targets:?}");
        }
        assert!(all.lines().any(|l| l.contains(" h2::") && l.contains("Headers")), "h2's frames were logged");
        assert!(all.contains("refused"), "the refusal was logged");
        // Every base64 line of the key's PEM body.
        let key_lines: Vec<&str> = pki.server.1.lines().filter(|l| !l.starts_with("-----") && l.len() > 16).collect();
        assert!(!key_lines.is_empty());
        for (path, text) in &texts {
            for secret in key_lines.iter().copied().chain([TOKEN, WRONG]) {
                assert!(!text.contains(secret), "{} holds a secret ({secret})", path.display());
            }
        }
    })
    .await;
}

/// Over TLS too (where tonic wraps the connection info), a call in progress keeps its
/// connection open past the idle timeout.
#[tokio::test]
async fn idle_timeout_counts_calls_over_tls() {
    logging();
    bounded(Duration::from_secs(30), async {
        let pki = pki();
        let server = server_builder()
            .tls(ServerTls::new(pki.server.0.clone(), pki.server.1.clone()).ca(pki.ca.clone()))
            .idle_timeout(Some(Duration::from_millis(300)))
            .manager(Sample::new(&EventLog::default(), Duration::from_millis(1500)))
            .start()
            .await
            .unwrap();
        let client = tls_client(&server, Some(ClientTls::new(pki.ca.clone()).domain("localhost")));
        let reply = sample_stub(&client).long_method(Empty {}).await.expect("not cut while running");
        assert_eq!(reply.into_inner().r.unwrap().msg, "shutting down: false");
        server.shutdown().await;
    })
    .await;
}

/// `verify_clients()` without a CA would accept any client: the server refuses to start.
#[tokio::test]
async fn verify_clients_without_a_ca_is_an_error() {
    logging();
    let pki = pki();
    let tls = ServerTls::new(pki.server.0.clone(), pki.server.1.clone()).verify_clients();
    let error = server_builder().tls(tls).start().await.err().expect("refused");
    assert_eq!(error.result_code(), Some(grpc_helper::ResultCode::ErrorParamMissing));
    assert!(error.message().contains("verify_clients needs the CA"), "{error}");
}

/// Settings the auto-clients cannot use (a server name that is no host name) fail the start
/// with an error, where they used to panic while hosting the managers.
#[tokio::test]
async fn a_bad_auto_client_identity_is_an_error_not_a_panic() {
    logging();
    let pki = pki();
    let tls = ServerTls::new(pki.server.0.clone(), pki.server.1.clone()).ca(pki.ca.clone()).domain("not a host name");
    let error = server_builder().tls(tls).start().await.err().expect("refused");
    assert_eq!(error.result_code(), Some(grpc_helper::ResultCode::ErrorParamInvalid));
    assert!(error.message().contains("auto-clients"), "{error}");
}

/// gRFC A8's ping limit holds over TLS too (the server follows the frames inside TLS).
#[tokio::test]
async fn too_many_pings_over_tls_get_goaway() {
    use tokio_rustls::rustls::{self, pki_types::CertificateDer, pki_types::pem::PemObject};
    bounded(Duration::from_secs(30), async {
        let pki = pki();
        let server = start(ServerTls::new(pki.server.0.clone(), pki.server.1.clone()).ca(pki.ca.clone())).await;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_slice(pki.ca.as_bytes()).unwrap()).unwrap();
        let mut config =
            rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let tcp = tokio::net::TcpStream::connect(server.local_addr()).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap();
        let (_send, mut connection) = h2::client::handshake(tls).await.unwrap();
        let mut pings = connection.ping_pong().unwrap();
        let connection = tokio::spawn(connection);
        let mut answered = 0;
        while answered < 10 && pings.ping(h2::Ping::opaque()).await.is_ok() {
            answered += 1;
        }
        assert_eq!(answered, 3, "two early pings forgiven, the third one too many");
        let ended = connection.await.unwrap().unwrap_err();
        assert!(ended.is_go_away(), "{ended}");
        assert_eq!(ended.reason(), Some(h2::Reason::ENHANCE_YOUR_CALM));
        server.shutdown().await;
    })
    .await;
}

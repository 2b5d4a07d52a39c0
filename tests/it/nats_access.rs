//! Servers reaching a `nats-server` that has authentication on: user and password, token and
//! NKey, each from a file named by a config item; credentials in the URL refused; and two
//! fleets on one NATS kept apart by `rpc-nats-prefix`.
//!
//! Needs `nats-server` (Debian package `nats-server`, installed by `.ci/run`).

use std::path::Path;
use std::time::Duration;

use grpc_helper::api::event_service_client::EventServiceClient;
use grpc_helper::api::{ConfigItemUpdate, ConfigUpdate, Event, EventApiVersion, EventFilter, ResultCode};
use grpc_helper::config::ConfigItem;
use grpc_helper::{RpcChannel, RpcError, RpcServer};
use grpc_helper_tests::LIMIT;
use grpc_helper_tests::nats::NatsServer;
use grpc_helper_tests::{bounded, client_of, free_port, server_builder};

const SHARED: ConfigItem = ConfigItem::new("shared-item", "An item shared by a fleet's replicas", "default");

/// An events server whose events go through NATS at `url`, with these other items.
async fn events_server(url: &str, items: &[(&str, String)]) -> Result<RpcServer, RpcError> {
    let items = items.iter().map(|(k, v)| ((*k).to_owned(), v.clone()));
    let url = std::iter::once(("rpc-events-url".to_owned(), url.to_owned()));
    server_builder().with_events().cli_config(url.chain(items)).start().await
}

fn events(server: &RpcServer) -> EventServiceClient<RpcChannel> {
    EventServiceClient::new(client_of(server).channel::<EventApiVersion>())
}

/// A file in `dir` holding `text` (a password, token or seed).
fn secret_file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{text}\n")).unwrap();
    path.to_str().unwrap().to_owned()
}

/// An event sent on `sender` reaches a listener on `listener` (both through NATS).
async fn delivered(sender: &RpcServer, listener: &RpcServer, name: &str) -> bool {
    let filter = EventFilter { names: vec![name.to_owned()], client_id: 0, after: None };
    let mut stream = events(listener).listen(filter).await.unwrap().into_inner();
    stream.message().await.unwrap().unwrap();
    events(sender).send(Event { name: name.to_owned(), properties: vec![] }).await.unwrap();
    match tokio::time::timeout(Duration::from_secs(2), stream.message()).await {
        Ok(Ok(Some(status))) => status.event.is_some_and(|e| e.name == name),
        _ => false,
    }
}

#[tokio::test]
async fn a_user_and_password_from_files_are_required_and_never_taken_from_the_url() {
    bounded(LIMIT, async {
        let nats = NatsServer::start_with(free_port(), &["--user", "fleet", "--pass", "pass-7f3a"]);
        let dir = tempfile::tempdir().unwrap();
        let refused = events_server(&nats.url(), &[]).await.err().expect("no credentials, no start");
        assert_eq!(refused.result_code(), Some(ResultCode::ErrorStateUnreachable), "{refused}");
        assert!(refused.message().contains("rpc-nats-*"), "{refused}");

        let in_url = format!("nats://fleet:pass-7f3a@127.0.0.1:{}", nats.port);
        let refused = events_server(&in_url, &[]).await.err().expect("credentials in the URL are refused");
        assert!(refused.message().contains("rpc-nats-password-file"), "{refused}");
        assert!(!refused.message().contains("pass-7f3a"), "the password is echoed: {refused}");

        let items = [
            ("rpc-nats-user", "fleet".to_owned()),
            ("rpc-nats-password-file", secret_file(dir.path(), "password", "pass-7f3a")),
        ];
        let (one, two) =
            (events_server(&nats.url(), &items).await.unwrap(), events_server(&nats.url(), &items).await.unwrap());
        assert!(delivered(&one, &two, "with-password").await);
        let wrong =
            [("rpc-nats-user", "fleet".to_owned()), ("rpc-nats-password-file", secret_file(dir.path(), "bad", "nope"))];
        assert!(events_server(&nats.url(), &wrong).await.is_err(), "a wrong password is refused");
        one.shutdown().await;
        two.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_token_and_an_nkey_from_files_are_accepted() {
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let tokened = NatsServer::start_with(free_port(), &["--auth", "token-91c2"]);
        let items = [("rpc-nats-token-file", secret_file(dir.path(), "token", "token-91c2"))];
        let server = events_server(&tokened.url(), &items).await.unwrap();
        assert!(delivered(&server, &server, "with-token").await);
        server.shutdown().await;

        let user = nkeys::KeyPair::new_user();
        let conf = dir.path().join("nats.conf");
        std::fs::write(&conf, format!("authorization {{ users = [ {{ nkey: \"{}\" }} ] }}\n", user.public_key()))
            .unwrap();
        let nkeyed = NatsServer::start_with(free_port(), &["-c", conf.to_str().unwrap()]);
        assert!(events_server(&nkeyed.url(), &[]).await.is_err(), "no seed, no start");
        let items = [("rpc-nats-nkey-file", secret_file(dir.path(), "seed", &user.seed().unwrap()))];
        let server = events_server(&nkeyed.url(), &items).await.unwrap();
        assert!(delivered(&server, &server, "with-nkey").await);
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn two_fleets_on_one_nats_keep_their_events_and_config_apart_by_prefix() {
    bounded(LIMIT, async {
        let nats = NatsServer::start();
        let fleet = |prefix: &str| [("rpc-nats-prefix", prefix.to_owned())];
        let a1 = events_server(&nats.url(), &fleet("fleet-a")).await.unwrap();
        let a2 = events_server(&nats.url(), &fleet("fleet-a")).await.unwrap();
        let b1 = events_server(&nats.url(), &fleet("fleet_b")).await.unwrap();
        assert!(delivered(&a1, &a2, "within-a").await, "a fleet shares its events");
        assert!(!delivered(&b1, &a1, "from-b").await, "another fleet's events stay there");
        assert!(delivered(&b1, &b1, "within-b").await);
        // The shared config items too: a set in one fleet stays there.
        let config_server = |prefix: &str| {
            let items = [("rpc-config-url", nats.url()), ("rpc-nats-prefix", prefix.to_owned())];
            server_builder().user_items(&[SHARED]).cli_config(items.map(|(k, v)| (k.to_owned(), v))).start()
        };
        let (ca, cb) = (config_server("fleet-a").await.unwrap(), config_server("fleet_b").await.unwrap());
        let update = ConfigUpdate {
            items: vec![ConfigItemUpdate { name: SHARED.name().into(), value: "set-in-a".into() }],
            ignore_unknown: false,
        };
        client_of(&ca).config_service().set(update).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(cb.config().get(&SHARED).as_str(), "default", "fleet b's item is its own");
        assert_eq!(ca.config().get(&SHARED).as_str(), "set-in-a");
        ca.shutdown().await;
        cb.shutdown().await;
        let bad = events_server(&nats.url(), &fleet("a.b")).await.err().expect("a dot would split the subject");
        assert_eq!(bad.result_code(), Some(ResultCode::ErrorParamInvalid), "{bad}");
        for server in [a1, a2, b1] {
            server.shutdown().await;
        }
    })
    .await;
}

#[tokio::test]
async fn tls_to_nats_with_a_ca_from_a_file() {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    bounded(LIMIT, async {
        let dir = tempfile::tempdir().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let cert = CertificateParams::new(names).unwrap().signed_by(&key, &ca).unwrap();
        let (cert_file, key_file) = (
            secret_file(dir.path(), "cert.pem", &cert.pem()),
            secret_file(dir.path(), "key.pem", &key.serialize_pem()),
        );
        let nats = NatsServer::start_with(free_port(), &["--tls", "--tlscert", &cert_file, "--tlskey", &key_file]);

        let items = [("rpc-nats-ca-file", secret_file(dir.path(), "ca.pem", &ca.pem()))];
        let server = events_server(&nats.url(), &items).await.unwrap();
        assert!(delivered(&server, &server, "over-tls").await);
        server.shutdown().await;
        let other = CertifiedIssuer::self_signed(
            CertificateParams::new(Vec::<String>::new()).unwrap(),
            KeyPair::generate().unwrap(),
        )
        .unwrap();
        let wrong = [("rpc-nats-ca-file", secret_file(dir.path(), "other.pem", &other.pem()))];
        assert!(events_server(&nats.url(), &wrong).await.is_err(), "a server certificate the CA did not sign");
        let missing = [("rpc-nats-ca-file", "/no/such/ca.pem".to_owned())];
        let refused = events_server(&nats.url(), &missing).await.err().unwrap();
        assert!(refused.message().contains("/no/such/ca.pem"), "{refused}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_caps_hold_across_replicas_under_concurrent_listens() {
    bounded(LIMIT, async {
        let nats = NatsServer::start();
        let caps = [("rpc-event-max-queues-per-peer", "2".to_owned())];
        let replicas =
            [events_server(&nats.url(), &caps).await.unwrap(), events_server(&nats.url(), &caps).await.unwrap()];
        let opens = (0..50).map(|n| {
            let mut stub = events(&replicas[n % 2]);
            tokio::spawn(async move {
                let filter = EventFilter { names: vec![], client_id: 0, after: None };
                match stub.listen(filter).await {
                    Ok(reply) => {
                        let mut stream = reply.into_inner();
                        let first = stream.message().await;
                        first.map(|m| m.map(|m| (m.client_id, stream))).map_err(RpcError::from)
                    }
                    Err(status) => Err(RpcError::from(status)),
                }
            })
        });
        let mut admitted = Vec::new();
        for open in opens.collect::<Vec<_>>() {
            match open.await.unwrap() {
                Ok(Some(queue)) => admitted.push(queue),
                Ok(None) => panic!("a stream without its first message"),
                Err(e) => assert_eq!(e.result_code(), Some(ResultCode::ErrorItemBusy), "{e}"),
            }
        }
        assert!((1..=2).contains(&admitted.len()), "{} queues admitted past a cap of 2", admitted.len());
        drop(admitted);
        for server in replicas {
            server.shutdown().await;
        }
    })
    .await;
}

//! What one unauthenticated request can cost the server: numbers from the wire that must not
//! panic, repeated names that must not multiply what the server builds or keeps, replies over
//! the reply limit, and made-up paths that must not bind metric series.

use std::time::{Duration, Instant};

use grpc_helper::RpcServer;
use grpc_helper::api::{Event, EventFilter, Filter, ResultCode};
use grpc_helper_tests::LIMIT;
use grpc_helper_tests::api::{SampleApiVersion, SampleRequest, sample_service_client::SampleServiceClient};
use grpc_helper_tests::{
    EventLog, Sample, bounded, client_of, code_of, raw_h2, register_sample_backend, sample_stub, server_builder,
    still_serving,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::StreamExt;

/// A plain tonic stub, so that the request carries exactly the metadata the test sets.
async fn raw_sample_stub(server: &RpcServer) -> SampleServiceClient<tonic::transport::Channel> {
    let uri = format!("http://{}", server.local_addr());
    SampleServiceClient::new(tonic::transport::Channel::from_shared(uri).unwrap().connect().await.unwrap())
}

fn with_timeout(text: &'static str, echo: &str) -> tonic::Request<SampleRequest> {
    let mut request = tonic::Request::new(SampleRequest { foo: echo.into() });
    request.metadata_mut().insert("grpc-timeout", text.parse().unwrap());
    request
}

#[tokio::test]
async fn a_grpc_timeout_of_twenty_digits_is_no_deadline_and_no_panic() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let backend =
            server_builder().manager(Sample::new(&EventLog::default(), Duration::ZERO)).start().await.unwrap();
        let main = server_builder().proxy::<SampleApiVersion>("sample", "SampleService").start().await.unwrap();
        register_sample_backend(&main, &backend).await;
        // Through the main server's forward (its client read the number: an `Instant` overflow).
        let mut through_main = raw_sample_stub(&main).await;
        for text in ["18446744073709551615H", "99999999999999999999n", "99999999H", "123456789S"] {
            let reply = through_main.method4(with_timeout(text, text)).await;
            assert_eq!(reply.expect(text).into_inner().bar, text);
        }
        // A grpc-helper client given the same number by its caller.
        let mut stub = sample_stub(&client_of(&backend));
        let reply = stub.method4(with_timeout("18446744073709551615H", "client")).await.unwrap();
        assert_eq!(reply.into_inner().bar, "client");
        // A valid timeout still bounds the call.
        // (CANCELLED when tonic's own timer on the main server fires first: its wording of an
        // expired deadline.)
        let reply = through_main.method4(with_timeout("1m", "soon")).await;
        let ended = [tonic::Code::DeadlineExceeded, tonic::Code::Cancelled];
        assert!(
            reply.as_ref().is_ok_and(|r| r.get_ref().bar == "soon")
                || ended.contains(&reply.as_ref().unwrap_err().code()),
            "{reply:?}"
        );
        still_serving(&main).await;
        main.shutdown().await;
        backend.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn repeated_names_are_answered_once_and_their_count_is_capped() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let server = server_builder().start().await.unwrap();
        let client = client_of(&server);
        let names = |name: &str, count: usize| Filter { names: vec![name.to_owned(); count], ignore_unknown: false };

        let info = client.server_service().info(names("srv", 1_024)).await.unwrap().into_inner();
        assert_eq!(info.items.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["srv"]);
        let mut two = names("log", 2);
        two.names.insert(1, "srv".into());
        let info = client.server_service().info(two).await.unwrap().into_inner();
        assert_eq!(info.items.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["log", "srv"]);

        let loggers = client.logger_service().get(names("demo", 1_024)).await.unwrap().into_inner();
        assert_eq!(loggers.items.len(), 1);
        let loggers = client.logger_service().reset(names("demo", 1_024)).await.unwrap().into_inner();
        assert_eq!(loggers.items.len(), 1);

        for (what, refused) in [
            ("service", client.server_service().info(names("srv", 1_025)).await.map(drop)),
            ("logger", client.logger_service().get(names("demo", 5_000)).await.map(drop)),
            ("logger", client.logger_service().reset(names("demo", 1_025)).await.map(drop)),
        ] {
            let status = refused.expect_err(what);
            assert_eq!(code_of(status.clone()), ResultCode::ErrorParamInvalid as i32, "{status:?}");
            let expected = format!("Too many {what} names in one request");
            assert!(status.message().contains(&expected) && status.message().contains("at most 1024"), "{status:?}");
        }
        still_serving(&server).await;
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn listen_filters_keep_each_name_once_and_refuse_too_many() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let server = server_builder().with_events().start().await.unwrap();
        let client = client_of(&server);
        let mut names = vec!["wanted".to_owned(); 1_000];
        names.push("also".into());
        let filter = EventFilter { names, client_id: 0, after: None };
        let mut stream = client.events_service().listen(filter).await.unwrap().into_inner();
        let greeting = stream.next().await.unwrap().unwrap();
        assert_ne!(greeting.client_id, 0);
        for name in ["other", "wanted", "also", "wanted"] {
            client.events_service().send(Event { name: name.into(), properties: vec![] }).await.unwrap();
        }
        for expected in ["wanted", "also", "wanted"] {
            assert_eq!(stream.next().await.unwrap().unwrap().event.unwrap().name, expected);
        }

        let filter = EventFilter { names: vec!["x".to_owned(); 1_025], client_id: 0, after: None };
        let status = match client.events_service().listen(filter).await {
            Ok(reply) => reply.into_inner().next().await.unwrap().unwrap_err(),
            Err(status) => status,
        };
        assert_eq!(code_of(status.clone()), ResultCode::ErrorParamInvalid as i32, "{status:?}");
        assert!(status.message().contains("Too many event names"), "{status:?}");
        still_serving(&server).await;
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn a_reply_over_the_reply_limit_is_resource_exhausted_and_the_server_goes_on() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let server = server_builder()
            .manager(Sample::new(&EventLog::default(), Duration::ZERO))
            .max_reply_size(200)
            .start()
            .await
            .unwrap();
        let mut stub = sample_stub(&client_of(&server));
        let small = stub.method4(SampleRequest { foo: "small".into() }).await.unwrap();
        assert_eq!(small.into_inner().bar, "small");

        let large = "x".repeat(300);
        let status = stub.method4(SampleRequest { foo: large.clone() }).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
        assert!(
            status.message().contains("SampleService.method4") && status.message().contains("limit of 200 bytes"),
            "{status:?}"
        );

        // A stream item over the limit ends the stream with the same status.
        let requests = tokio_stream::iter(["ok".to_owned(), large].map(|foo| SampleRequest { foo }));
        let mut replies = stub.s_method4(requests).await.unwrap().into_inner();
        assert_eq!(replies.next().await.unwrap().unwrap().bar, "ok");
        let status = replies.next().await.unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
        assert!(replies.next().await.is_none());
        still_serving(&server).await;
        server.shutdown().await;
    })
    .await;
}

/// The Prometheus text of a metrics port, over a plain HTTP/1.1 request.
async fn scrape(server: &RpcServer) -> String {
    let mut stream = tokio::net::TcpStream::connect(server.metrics_addr().unwrap()).await.unwrap();
    stream.write_all(b"GET /metrics HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n").await.unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_paths_bind_no_metric_series_and_real_methods_keep_theirs() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let server = server_builder().metrics_port(0).start().await.unwrap();
        let port = server.local_addr().port();
        let connection = raw_h2::connect(port, None).await;
        let filler = "x".repeat(2_000);
        for i in 0..1_100 {
            // Unknown methods of a hosted service, and unknown services.
            let path = if i % 2 == 0 { format!("/RpcServerService/{filler}{i}") } else { format!("/No{i}/{filler}") };
            // Headers only: the answer (trailers-only) comes before any body could be sent.
            let mut send = connection.send.clone().ready().await.unwrap();
            let (response, _) = send.send_request(raw_h2::request(port, &path), true).unwrap();
            let response = response.await.unwrap();
            assert_eq!(response.headers().get("grpc-status").unwrap(), "12", "{path}");
        }
        client_of(&server).server_service().info(Filter::default()).await.unwrap();
        let text = scrape(&server).await;
        assert!(text.len() < 64 * 1024, "a scrape of {} bytes", text.len());
        assert!(!text.contains(&filler), "a made-up path is a label");
        assert!(text.contains("grpc_method=\"RpcServerService/info\""), "no series of info:\n{text}");
        let other = text.lines().find(|l| l.starts_with("grpc_server_call_started") && l.contains("\"other\""));
        assert!(other.is_some_and(|l| l.ends_with(" 1100")), "{other:?}");
        server.shutdown().await;
    })
    .await;
}

#[tokio::test]
async fn the_metrics_port_closes_a_connection_that_sends_no_request() {
    let _heavy = grpc_helper_tests::heavy();
    bounded(LIMIT, async {
        let server = server_builder().metrics_port(0).start().await.unwrap();
        let mut idle = tokio::net::TcpStream::connect(server.metrics_addr().unwrap()).await.unwrap();
        idle.write_all(b"GET /metr").await.unwrap();
        let started = Instant::now();
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(20), idle.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "still open after 20 s");
        assert!(started.elapsed() >= Duration::from_secs(4), "closed after {:?}", started.elapsed());
        assert!(scrape(&server).await.contains("200 OK"));
        server.shutdown().await;
    })
    .await;
}

//! Generates the built-in API from proto/ with the same helper that users call
//! (`grpc-helper-build`). `proto/grpc_helper_api` links to the workspace's `proto/`;
//! `cargo package` copies the files.
use grpc_helper_build as build;

use tonic_build::manual::{Method, Service};

fn main() {
    let files =
        ["common", "server", "config", "logger", "events"].map(|name| format!("proto/grpc_helper_api/{name}.proto"));
    build::Builder::new()
        .generate_api()
        .compile(&files, &["proto"])
        .unwrap_or_else(|e| panic!("grpc-helper API protos: {e}"));
    events_server();
}

/// The server half of `EventService` as hosted by the `events` manager: the same paths and
/// messages as the proto's, but `listen` replies are written from bytes encoded once per event
/// (`crate::events::ListenCodec`) rather than encoded per listener.
fn events_server() {
    const CODEC: &str = "::grpc_helper::__private::Codec";
    let method = |name: &str, input: &str, output: &str| {
        Method::builder()
            .name(name)
            .route_name(name)
            .input_type(format!("crate::api::{input}"))
            .output_type(output)
            .codec_path(CODEC)
    };
    let service = Service::builder()
        .name("EventService")
        .package("")
        .method(
            method("listen", "EventFilter", "crate::events::ListenReply")
                .codec_path("crate::events::ListenCodec")
                .server_streaming()
                .build(),
        )
        .method(method("interrupt", "EventInterrupt", "crate::api::ResultStatus").build())
        .method(method("send", "Event", "crate::api::ResultStatus").build())
        .method(method("inspect", "Empty", "crate::api::EventQueueStatus").build())
        .build();
    // Default stubs, as for the API: the macro implements streaming methods with a `BoxStream`.
    let server = tonic_build::CodeGenBuilder::new()
        .emit_package(true)
        .generate_default_stubs(true)
        .generate_server(&service, "");
    // The `methods` module that `build::compile` writes beside its servers, for this one.
    let mut code = server.to_string();
    let methods = [
        ("listen", "EventFilter", "crate::events::ListenReply"),
        ("interrupt", "EventInterrupt", "crate::api::ResultStatus"),
        ("send", "Event", "crate::api::ResultStatus"),
        ("inspect", "Empty", "crate::api::EventQueueStatus"),
    ]
    .map(|(name, request, reply)| build::MethodTypes {
        name: name.to_owned(),
        request: format!("crate::api::{request}"),
        reply: reply.to_owned(),
        server_streaming: name == "listen",
    });
    build::insert_methods(&mut code, "event_service_server", &methods);
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR is set for build scripts"));
    std::fs::write(out.join("event_service_server.rs"), code)
        .unwrap_or_else(|e| panic!("cannot write the events server: {e}"));
}

//! grpc-helper's built-in API is generated code committed in `grpc-helper/generated/`
//! (as tonic-health commits its own), so that no build of grpc-helper compiles protos. This test
//! generates it again from `proto/grpc_helper_api/` and fails when the committed files differ;
//! `GRPC_HELPER_GENERATED=overwrite cargo test -p grpc-helper-build --test builtin_api` rewrites
//! them after a change to the protos or to the generator.

use std::path::{Path, PathBuf};

use tonic_build::manual::{Method, Service};

/// The proto files, with the workspace's `proto/` as include folder.
const PROTOS: [&str; 5] = ["common", "server", "config", "logger", "events"];
/// What the generation writes that grpc-helper includes.
const FILES: [&str; 3] = ["_.rs", "grpc_helper_descriptor.bin", "event_service_server.rs"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_owned()
}

#[test]
fn committed_builtin_api_is_what_the_protos_generate() {
    let out = tempfile::tempdir().unwrap();
    let includes = [workspace().join("proto")];
    let files = PROTOS.map(|name| includes[0].join(format!("grpc_helper_api/{name}.proto")));
    grpc_helper_build::Builder::new()
        .generate_api()
        .out_dir(out.path())
        .compile(&files, &includes)
        .unwrap_or_else(|e| panic!("grpc-helper API protos: {e}"));
    std::fs::write(out.path().join("event_service_server.rs"), events_server()).unwrap();

    let committed = workspace().join("grpc-helper/generated");
    let overwrite = std::env::var("GRPC_HELPER_GENERATED").is_ok_and(|v| v == "overwrite");
    let mut stale = Vec::new();
    for file in FILES {
        let fresh = std::fs::read(out.path().join(file)).unwrap();
        if std::fs::read(committed.join(file)).ok().as_ref() != Some(&fresh) {
            if overwrite {
                std::fs::write(committed.join(file), &fresh).unwrap();
            } else {
                stale.push(file);
            }
        }
    }
    assert!(
        stale.is_empty(),
        "{stale:?} in {} differ from what the protos generate: run \
         `GRPC_HELPER_GENERATED=overwrite cargo test -p grpc-helper-build --test builtin_api` and commit them",
        committed.display()
    );
}

/// The server half of `EventService` as hosted by the `events` manager: the same paths and
/// messages as the proto's, but `listen` replies are written from bytes encoded once per event
/// (`crate::events::ListenCodec`) rather than encoded per listener.
fn events_server() -> String {
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
    // The `methods` module that `compile` writes beside its servers, for this one.
    let mut code = server.to_string();
    let methods = [
        ("listen", "EventFilter", "crate::events::ListenReply"),
        ("interrupt", "EventInterrupt", "crate::api::ResultStatus"),
        ("send", "Event", "crate::api::ResultStatus"),
        ("inspect", "Empty", "crate::api::EventQueueStatus"),
    ]
    .map(|(name, request, reply)| grpc_helper_build::MethodTypes {
        name: name.to_owned(),
        request: format!("crate::api::{request}"),
        reply: reply.to_owned(),
        server_streaming: name == "listen",
    });
    grpc_helper_build::insert_methods(&mut code, "event_service_server", &methods);
    code
}

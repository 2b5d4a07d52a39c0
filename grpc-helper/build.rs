//! Generates the built-in API from proto/ with the same helper that users call.
//! (`proto/grpc_helper_api` links to the workspace's `proto/`; `cargo package` copies the files.)
#[allow(dead_code, missing_docs)]
#[path = "src/build.rs"]
mod build;

fn main() {
    let files =
        ["common", "server", "config", "logger", "events"].map(|name| format!("proto/grpc_helper_api/{name}.proto"));
    build::Builder::new()
        .generate_api()
        .compile(&files, &["proto"])
        .unwrap_or_else(|e| panic!("grpc-helper API protos: {e}"));
}

//! Compiles the sample services used by the integration tests (one of them in a proto package).
fn main() {
    grpc_helper_build::compile(&["../proto/sample/sample.proto", "../proto/sample/packaged.proto"], &["../proto"])
        .expect("sample protos");
}

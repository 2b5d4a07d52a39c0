//! Compiles the sample service used by the integration tests.
fn main() {
    grpc_helper::build::compile(&["../proto/sample/sample.proto"], &["../proto"]).expect("sample.proto");
}

//! Compiles the sample service of the examples.
fn main() {
    grpc_helper::build::compile(&["../proto/sample/sample.proto"], &["../proto"]).expect("sample.proto");
}

//! Compiles the sample service with grpc-helper's compiler (`include_protos!` in lib.rs).
fn main() {
    grpc_helper_build::compile(&["../../proto/sample/sample.proto"], &["../../proto"]).expect("sample.proto");
}

fn main() {
    grpc_helper_build::compile(&["proto/inventory.proto"], &["proto"]).expect("inventory.proto");
}

fn main() {
    grpc_helper::build::compile(&["proto/inventory.proto"], &["proto"]).expect("inventory.proto");
}

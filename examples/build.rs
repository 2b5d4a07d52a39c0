//! Compiles the sample service with plain `tonic-prost-build` (standard `ProstCodec`, no
//! grpc-helper derives or paths) into `$OUT_DIR/bare/`, the baseline of the `bench` example.
//! (grpc-helper's own code for it is in `grpc-helper-sample`.)
use std::path::PathBuf;

fn main() {
    compile_bare();
}

/// Plain tonic code for `sample.proto` and what it imports (`grpc_helper_api/common.proto`):
/// neither has a `package`, so everything lands in `$OUT_DIR/bare/_.rs`.
fn compile_bare() {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo")).join("bare");
    std::fs::create_dir_all(&out_dir).expect("create $OUT_DIR/bare");
    let mut compiler = protox::Compiler::new(["../proto"]).expect("proto include path");
    compiler.include_imports(true);
    compiler.open_file("sample/sample.proto").expect("parse sample.proto");
    let fds = compiler.file_descriptor_set();
    // Default stubs: the bench implements only method4 and s_method2; streaming replies are then
    // `BoxStream`s, as in grpc-helper's generated servers. The codec stays tonic's `ProstCodec`.
    tonic_prost_build::configure()
        .out_dir(&out_dir)
        .build_client(true)
        .build_server(true)
        .generate_default_stubs(true)
        .compile_fds(fds)
        .expect("generate the bare tonic code of sample.proto");
    println!("cargo:rerun-if-changed=../proto");
    println!("cargo:rerun-if-changed=build.rs");
}

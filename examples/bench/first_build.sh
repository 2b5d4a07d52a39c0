#!/usr/bin/env bash
# The first build a newcomer waits for, side by side with a tonic hello world's (same machine,
# same dev profile, crates already downloaded, each from an empty target folder):
#   1. a tonic hello world: tonic, prost, tokio, a proto compiled by protox in build.rs, server and
#      client in one example (`cargo run --example hello`);
#   2. this repository's demo on a clean clone of HEAD (`cargo run --example demo`, the README's
#      main command);
#   3. a user's own small service on grpc-helper's default features (tests/user-project, an
#      inventory service with its own proto, build script and client calls: `cargo run`), with
#      the crates of that clone as its grpc-helper.
# Prints the wall times and the ratios to the hello world's. Usage: examples/bench/first_build.sh [-r RUNS]
set -euo pipefail
runs=1
[[ "${1:-}" == "-r" ]] && runs="$2"
repo="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d)"
trap '[[ -n "${KEEP_WORK:-}" ]] || rm -rf "$work"' EXIT

hello="$work/hello"
mkdir -p "$hello/examples"
cat > "$hello/Cargo.toml" <<'TOML'
[package]
name = "hello"
version = "0.1.0"
edition = "2024"

[dependencies]
tonic = "0.14"
tonic-prost = "0.14"
prost = "0.14"
tokio = { version = "1", features = ["rt-multi-thread", "macros", "net"] }
tokio-stream = { version = "0.1", features = ["net"] }

[build-dependencies]
protox = "0.10"
tonic-prost-build = "0.14"
TOML
cat > "$hello/hello.proto" <<'PROTO'
syntax = "proto3";
package hello;
service Greeter { rpc SayHello(HelloRequest) returns (HelloReply); }
message HelloRequest { string name = 1; }
message HelloReply { string message = 1; }
PROTO
cat > "$hello/build.rs" <<'RS'
fn main() {
    let fds = protox::compile(["hello.proto"], ["."]).expect("hello.proto");
    tonic_prost_build::configure().compile_fds(fds).expect("generate");
}
RS
mkdir -p "$hello/src" && echo "" > "$hello/src/lib.rs"
cat > "$hello/examples/hello.rs" <<'RS'
mod pb {
    tonic::include_proto!("hello");
}
use pb::greeter_client::GreeterClient;
use pb::greeter_server::{Greeter, GreeterServer};
use pb::{HelloReply, HelloRequest};

struct Hello;

#[tonic::async_trait]
impl Greeter for Hello {
    async fn say_hello(&self, r: tonic::Request<HelloRequest>) -> Result<tonic::Response<HelloReply>, tonic::Status> {
        Ok(tonic::Response::new(HelloReply { message: format!("Hello, {}", r.into_inner().name) }))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio::spawn(tonic::transport::Server::builder().add_service(GreeterServer::new(Hello)).serve_with_incoming(incoming));
    let mut client = GreeterClient::connect(format!("http://{addr}")).await?;
    let reply = client.say_hello(HelloRequest { name: "world".into() }).await?;
    println!("{}", reply.into_inner().message);
    Ok(())
}
RS
(cd "$hello" && cargo generate-lockfile --offline -q 2>/dev/null || cargo generate-lockfile -q)

git clone -q "$repo" "$work/repo"

user="$work/user"
cp -r "$work/repo/tests/user-project" "$user"
cp "$work/repo/Cargo.lock" "$user/"
cat >>"$user/Cargo.toml" <<TOML

[patch.crates-io]
grpc-helper = { path = "$work/repo/grpc-helper" }
grpc-helper-macros = { path = "$work/repo/grpc-helper-macros" }
grpc-helper-build = { path = "$work/repo/grpc-helper-build" }
TOML

# Wall seconds of a command, which must succeed (its output is kept in $work/last.log).
seconds() {
  local start
  start=$(date +%s.%N)
  "$@" >"$work/last.log" 2>&1 </dev/null || { cat "$work/last.log" >&2; echo "failed: $*" >&2; exit 1; }
  echo "$(date +%s.%N) - $start" | bc
}
for run in $(seq "$runs"); do
  rm -rf "$hello/target" "$work/repo/target" "$user/target"
  h=$(cd "$hello" && seconds cargo run --example hello)
  d=$(cd "$work/repo" && seconds cargo run --example demo)
  u=$(cd "$user" && seconds cargo run)
  printf 'run %d: tonic hello world %.0f s; grpc-helper demo %.0f s: %.2fx; a user'"'"'s service %.0f s: %.2fx\n' \
    "$run" "$h" "$d" "$(echo "$d / $h" | bc -l)" "$u" "$(echo "$u / $h" | bc -l)"
done

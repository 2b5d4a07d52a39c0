#![allow(unused)]

use grpc_helper::ApiVersion;

#[derive(ApiVersion)]
enum Versions {
    V1,
    V2(u32),
    V3 { minor: u32 },
}

fn main() {}

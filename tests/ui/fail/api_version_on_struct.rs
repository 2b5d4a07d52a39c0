#![allow(unused)]

use grpc_helper::ApiVersion;

#[derive(ApiVersion)]
struct Version(u32);

fn main() {}

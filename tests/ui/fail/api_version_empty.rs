#![allow(unused)]

use grpc_helper::ApiVersion;

#[derive(ApiVersion)]
enum NoVersions {}

fn main() {}

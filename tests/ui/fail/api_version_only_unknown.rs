#![allow(unused)]

use grpc_helper::ApiVersion;

#[derive(ApiVersion)]
enum OnlyUnknown {
    Unknown = 0,
}

fn main() {
    let _ = OnlyUnknown::CURRENT;
}

//! `#[derive(ApiVersion)]`: aliases, an explicit unknown value, gaps and implicit values.
use grpc_helper::ApiVersion;

#[derive(ApiVersion)]
#[allow(dead_code)]
enum Aliased {
    Unknown = 0,
    Supported = 2,
    Middle = 3,
    Current = 5,
}

#[derive(ApiVersion)]
#[allow(dead_code)]
enum Implicit {
    Zero,
    One,
    Two,
}

fn main() {
    assert_eq!((Aliased::SUPPORTED, Aliased::CURRENT), (2, 5));
    assert_eq!((Implicit::SUPPORTED, Implicit::CURRENT), (1, 2));
}

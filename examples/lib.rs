//! Shared pieces of the examples: the sample service and the client walk-through, from
//! `grpc-helper-sample` (`examples/sample/`, which the demo builds alone).

pub use grpc_helper_sample::*;

//! Messages and services of the built-in API, generated from `proto/grpc_helper_api/*.proto`.
//!
//! Wire-compatible with the Python `grpc-helper-api` 2.x: no proto package, so the gRPC paths are
//! `/RpcServerService/info`, `/ConfigService/get`, ... Types are re-used (not regenerated) by
//! user protos compiled with [`build::compile`](crate::build::compile) that import
//! `grpc_helper_api/common.proto`.
//!
//! prost keeps one variant per value, so aliases such as `SERVER_API_CURRENT` have no Rust
//! variant: use [`ApiVersion::CURRENT`](crate::ApiVersion::CURRENT) instead.
#![allow(missing_docs, clippy::all)]

include!(concat!(env!("OUT_DIR"), "/grpc_helper_protos.rs"));

/// The encoded descriptors of the built-in API (for server reflection).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/grpc_helper_descriptor.bin"));

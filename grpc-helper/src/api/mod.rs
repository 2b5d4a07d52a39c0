//! Messages and services of the built-in API, generated from `proto/grpc_helper_api/*.proto`.
//!
//! Wire-compatible with the Python `grpc-helper-api` 2.x: no proto package, so the gRPC paths are
//! `/RpcServerService/info`, `/ConfigService/get`, ... Types are re-used (not regenerated) by
//! user protos compiled with `grpc_helper_build::compile` (crate `grpc-helper-build`) that import
//! `grpc_helper_api/common.proto`.
//!
//! prost keeps one variant per value, so aliases such as `SERVER_API_CURRENT` have no Rust
//! variant: use [`ApiVersion::CURRENT`](crate::ApiVersion::CURRENT) instead.
//!
//! ```
//! use grpc_helper::ApiVersion;
//! use grpc_helper::api::{ResultCode, ServerApiVersion};
//!
//! assert!(ServerApiVersion::CURRENT >= ServerApiVersion::SUPPORTED);
//! assert_eq!(ResultCode::ErrorItemUnknown.as_str_name(), "ERROR_ITEM_UNKNOWN");
//! ```
#![allow(missing_docs, clippy::all)]

// Committed, not generated at build time: `grpc-helper-build`'s `builtin_api` test checks that
// it is what the protos generate (and rewrites it with GRPC_HELPER_GENERATED=overwrite).
include!(concat!(env!("CARGO_MANIFEST_DIR"), "/generated/_.rs"));

/// The encoded descriptors of the built-in API (for server reflection).
///
/// ```
/// // The server registers it already; a tonic server of your own can do the same:
/// let reflection = tonic_reflection::server::Builder::configure()
///     .register_encoded_file_descriptor_set(grpc_helper::api::FILE_DESCRIPTOR_SET)
///     .build_v1();
/// assert!(reflection.is_ok());
/// ```
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/generated/grpc_helper_descriptor.bin"));

//! Guides: one page per topic, from writing a service to running a fleet of replicas.
//!
//! Each page is a Markdown file of `grpc-helper/docs/`, readable on its own in the repository.
//! Its Rust code blocks are doctests: compiled, and run where they can be (a block that cannot
//! says why in the line before it).

#[doc = include_str!("../docs/usage.md")]
pub mod usage {}

#[doc = include_str!("../docs/migrating-from-python.md")]
pub mod migrating_from_python {}

#[doc = include_str!("../docs/operations.md")]
pub mod operations {}

#[doc = include_str!("../docs/security.md")]
pub mod security {}

#[doc = include_str!("../docs/events.md")]
pub mod events {}

#[doc = include_str!("../docs/proxying.md")]
pub mod proxying {}

#[doc = include_str!("../docs/replicas.md")]
pub mod replicas {}

#[doc = include_str!("../docs/metrics-and-traces.md")]
pub mod metrics_and_traces {}

#[doc = include_str!("../docs/benchmarks.md")]
pub mod benchmarks {}

#[doc = include_str!("../docs/development.md")]
pub mod development {}

//! Procedural macros of [grpc-helper](https://docs.rs/grpc-helper). Use them through the
//! `grpc_helper` re-exports; every expansion is a thin call into `grpc_helper::__private`.

mod api_version;
mod errors;
mod manager;
mod rpc_message;

use proc_macro::TokenStream;

/// Derives `grpc_helper::ApiVersion` for a fieldless enum of API versions.
///
/// Value 0 means "unknown" and is skipped; the lowest other value is the oldest version the
/// service still supports, the highest is the current one. Aliases and explicit values are fine.
#[proc_macro_derive(ApiVersion)]
pub fn derive_api_version(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    api_version::expand(&input).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// Derives `grpc_helper::RpcMessage`: a message with a field `r` carries errors in band.
#[proc_macro_derive(RpcMessage)]
pub fn derive_rpc_message(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    rpc_message::expand(&input).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// Turns an impl block into a hosted, version-checked gRPC service.
///
/// `#[rpc_manager(service = "my", version = api::MyApiVersion)]`: `service` is the short name
/// `info` lists, `version` the enum deriving `ApiVersion`. The tonic trait follows from the
/// version's name (`api::MyApiVersion` serves `api::my_service_server::MyService`); name it with
/// `grpc = path::to::x_server::X` when it does not. `crate = path` points at a re-exported
/// `grpc_helper`. See `grpc_helper::Manager` for the methods and hooks.
#[proc_macro_attribute]
pub fn rpc_manager(args: TokenStream, item: TokenStream) -> TokenStream {
    manager::expand(args.into(), item.into()).into()
}

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

/// (Implementation note: the expansion is a tonic trait impl whose every method is one call into
/// `grpc_helper`'s hidden runtime entry points, so behaviour lives and is tested in the runtime.)
#[proc_macro_attribute]
pub fn rpc_manager(args: TokenStream, item: TokenStream) -> TokenStream {
    manager::expand(args.into(), item.into()).into()
}

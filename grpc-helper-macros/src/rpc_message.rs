//! `#[derive(RpcMessage)]`: a struct with a field `r` carries errors in band there.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Data, DeriveInput, Error, Fields};

pub fn expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    let Data::Struct(data) = &input.data else {
        return Err(Error::new_spanned(&input.ident, "RpcMessage can only be derived for a message struct"));
    };
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let has_result = matches!(&data.fields, Fields::Named(named)
        if named.named.iter().any(|f| f.ident.as_ref().is_some_and(|i| i == "r")));
    let body = if has_result {
        quote! {
            #[inline]
            fn result(&self) -> ::core::option::Option<&::grpc_helper::api::Result> {
                self.r.as_ref()
            }
            #[inline]
            fn from_result(result: ::grpc_helper::api::Result) -> ::core::option::Option<Self> {
                ::core::option::Option::Some(Self {
                    r: ::core::option::Option::Some(result),
                    ..::core::default::Default::default()
                })
            }
        }
    } else {
        quote! {}
    };
    Ok(quote! {
        impl #impl_generics ::grpc_helper::RpcMessage for #ident #ty_generics #where_clause { #body }
    })
}

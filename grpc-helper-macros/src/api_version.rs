//! `#[derive(ApiVersion)]`: checks the enum shape, then lists the discriminants for the runtime.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Data, DeriveInput, Error, Fields};

pub fn expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    let Data::Enum(data) = &input.data else {
        return Err(Error::new_spanned(
            &input.ident,
            "ApiVersion can only be derived for an enum of versions, e.g. `enum MyApiVersion { V1 = 1, V2 = 2 }`",
        ));
    };
    if data.variants.is_empty() {
        return Err(Error::new_spanned(
            &input.ident,
            "an ApiVersion enum needs at least one non-zero variant, e.g. `V1 = 1`",
        ));
    }
    if !input.generics.params.is_empty() {
        return Err(Error::new_spanned(&input.generics, "an ApiVersion enum cannot be generic"));
    }
    let mut errors: Option<Error> = None;
    for variant in &data.variants {
        if !matches!(variant.fields, Fields::Unit) {
            let e = Error::new_spanned(variant, "ApiVersion variants cannot carry data: write `Name = <number>`");
            match &mut errors {
                Some(all) => all.combine(e),
                None => errors = Some(e),
            }
        }
    }
    if let Some(e) = errors {
        return Err(e);
    }
    let ident = &input.ident;
    let variants = data.variants.iter().map(|v| &v.ident);
    Ok(quote! {
        impl ::grpc_helper::ApiVersion for #ident {
            const VALUES: &'static [i64] = &[#(#ident::#variants as i64),*];
            const SUPPORTED: u32 = ::grpc_helper::__private::supported_version(Self::VALUES);
            const CURRENT: u32 = ::grpc_helper::__private::current_version(Self::VALUES);
        }
        // Evaluated even if the constants are never used: an enum without a positive value fails here.
        const _: u32 = <#ident as ::grpc_helper::ApiVersion>::SUPPORTED;
    })
}

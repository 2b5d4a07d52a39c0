//! `#[derive(ApiVersion)]`: checks the enum shape, then lists the discriminants for the runtime.

use proc_macro2::TokenStream;
use quote::quote;
use syn::punctuated::Punctuated;
use syn::{Data, DeriveInput, Error, Expr, Fields, Lit, UnOp, Variant};

use crate::errors::Errors;

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
    let mut errors = Errors::default();
    for variant in &data.variants {
        if !matches!(variant.fields, Fields::Unit) {
            errors.spanned(variant, "ApiVersion variants cannot carry data: write `Name = <number>`");
        }
    }
    errors.finish(())?;
    let ident = &input.ident;
    let variants = data.variants.iter().map(|v| &v.ident);
    // Values known here (literals, implicit ones) are checked here, at the user's enum, beside
    // an impl that keeps the rest of the program compiling; the runtime's const check covers
    // discriminants written as expressions.
    if literal_values(&data.variants)
        .is_some_and(|values| !values.iter().any(|v| (1..=i64::from(u32::MAX)).contains(v)))
    {
        let error =
            Error::new_spanned(ident, "an ApiVersion enum needs a variant with a positive value, e.g. `V1 = 1`");
        let error = error.into_compile_error();
        return Ok(quote! {
            #error
            impl ::grpc_helper::ApiVersion for #ident {
                const VALUES: &'static [i64] = &[#(#ident::#variants as i64),*];
                const SUPPORTED: u32 = 0;
                const CURRENT: u32 = 0;
            }
        });
    }
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

/// Every discriminant, when all are integer literals or implicit (previous + 1, from 0).
fn literal_values(variants: &Punctuated<Variant, syn::Token![,]>) -> Option<Vec<i64>> {
    let mut next = 0i64;
    let mut values = Vec::with_capacity(variants.len());
    for variant in variants {
        let value = match &variant.discriminant {
            None => next,
            Some((_, expr)) => literal(expr)?,
        };
        values.push(value);
        next = value.checked_add(1)?;
    }
    Some(values)
}

fn literal(expr: &Expr) -> Option<i64> {
    match expr {
        Expr::Lit(syn::ExprLit { lit: Lit::Int(int), .. }) => int.base10_parse().ok(),
        Expr::Unary(syn::ExprUnary { op: UnOp::Neg(_), expr, .. }) => literal(expr).map(|v| -v),
        Expr::Group(group) => literal(&group.expr),
        Expr::Paren(paren) => literal(&paren.expr),
        _ => None,
    }
}

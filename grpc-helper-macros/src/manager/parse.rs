//! Parsing of `#[rpc_manager(...)]` arguments and of the annotated impl block.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::{Attribute, Expr, ImplItem, ImplItemFn, ItemImpl, Lit, Meta, Path, Token};

use crate::errors::Errors;

/// The raw arguments, each with the tokens the user wrote (for error spans).
pub struct Args {
    pub service: Option<syn::LitStr>,
    pub version: Option<Path>,
    pub grpc: Option<Path>,
    pub krate: Option<Path>,
}

impl Args {
    /// The paths the user named (`version`, `grpc`), for the fallback expansion.
    pub fn paths(&self) -> Vec<Path> {
        self.version.iter().chain(&self.grpc).cloned().collect()
    }
}

pub enum HookKind {
    Load,
    Shutdown,
}

pub struct Parsed {
    pub args: Args,
    pub item: ItemImpl,
    /// Every `fn` of the block, with its hook attribute if any (already stripped from `item`).
    pub methods: Vec<(ImplItemFn, Option<(HookKind, Attribute)>)>,
    /// Where to point errors about the whole attribute.
    pub attr_span: Span,
}

pub fn parse(args: TokenStream, item: TokenStream, errors: &mut Errors) -> Option<Parsed> {
    let attr_span = if args.is_empty() {
        Span::call_site()
    } else {
        args.clone().into_iter().next().map_or(Span::call_site(), |t| t.span())
    };
    let mut parsed_args = Args { service: None, version: None, grpc: None, krate: None };
    let parser = syn::meta::parser(|meta| parse_arg(meta, &mut parsed_args, errors));
    if let Err(e) = parser.parse2(args) {
        errors.push(e);
        return None;
    }
    let args = parsed_args;
    let mut item: ItemImpl = match syn::parse2(item) {
        Ok(item) => item,
        Err(e) => {
            errors.push(syn::Error::new(
                e.span(),
                "#[rpc_manager] goes on an impl block: `#[rpc_manager(...)] impl MyManager { ... }`",
            ));
            return None;
        }
    };
    let mut methods = Vec::new();
    for impl_item in &mut item.items {
        if let ImplItem::Fn(f) = impl_item {
            let hook = take_hook_attribute(&mut f.attrs, errors);
            methods.push((f.clone(), hook));
        }
    }
    Some(Parsed { args, item, methods, attr_span })
}

/// One `name = value` argument. A wrong value is reported and parsing goes on, so that every
/// mistake of the attribute shows at once.
fn parse_arg(meta: ParseNestedMeta<'_>, args: &mut Args, errors: &mut Errors) -> syn::Result<()> {
    if !meta.input.peek(Token![=]) {
        // A bare word or a list: skip what follows it, up to the next comma.
        let rest: TokenStream = meta.input.step(|cursor| {
            let mut rest = *cursor;
            let mut skipped = TokenStream::new();
            while let Some((tt, next)) = rest.token_tree() {
                if matches!(&tt, proc_macro2::TokenTree::Punct(p) if p.as_char() == ',') {
                    break;
                }
                skipped.extend([tt]);
                rest = next;
            }
            Ok((skipped, rest))
        })?;
        let path = &meta.path;
        errors.spanned(quote::quote!(#path #rest), "expected `name = value`, e.g. `service = \"my\"`");
        return Ok(());
    }
    let value: Expr = meta.value()?.parse()?;
    let path = &meta.path;
    let duplicate = if path.is_ident("service") {
        match &value {
            Expr::Lit(syn::ExprLit { lit: Lit::Str(s), .. }) => args.service.replace(s.clone()).is_some(),
            other => {
                errors.spanned(other, "`service` takes a string: the short service name, e.g. `service = \"my\"`");
                false
            }
        }
    } else if path.is_ident("version") {
        let taken = path_value(&value).map(|p| args.version.replace(p).is_some());
        taken.unwrap_or_else(|| {
            errors.spanned(&value, "`version` takes the API version enum type, e.g. `version = MyApiVersion`");
            false
        })
    } else if path.is_ident("grpc") {
        let taken = path_value(&value).map(|p| args.grpc.replace(p).is_some());
        taken.unwrap_or_else(|| {
            errors.spanned(
                &value,
                "`grpc` takes the generated tonic trait, e.g. `grpc = my_service_server::MyService` \
                 (optional when the version is named after the service: `MyApiVersion`)",
            );
            false
        })
    } else if path.is_ident("crate") {
        let taken = path_value(&value).map(|p| args.krate.replace(p).is_some());
        taken.unwrap_or_else(|| {
            errors.spanned(
                &value,
                "`crate` takes a path to the grpc_helper crate, e.g. `crate = ::my_reexport::grpc_helper`",
            );
            false
        })
    } else {
        let key = path.to_token_stream().to_string().replace(' ', "");
        errors.spanned(path, format!("unknown argument `{key}`: expected `service`, `version`, `grpc` or `crate`"));
        false
    };
    if duplicate {
        let key = path.to_token_stream().to_string();
        errors.spanned(path, format!("`{key}` is given twice"));
    }
    Ok(())
}

fn path_value(expr: &Expr) -> Option<Path> {
    match expr {
        Expr::Path(p) if p.qself.is_none() => Some(p.path.clone()),
        _ => None,
    }
}

fn hook_kind(attr: &Attribute) -> Option<HookKind> {
    if attr.path().is_ident("on_load") {
        Some(HookKind::Load)
    } else if attr.path().is_ident("on_shutdown") {
        Some(HookKind::Shutdown)
    } else {
        None
    }
}

fn take_hook_attribute(attrs: &mut Vec<Attribute>, errors: &mut Errors) -> Option<(HookKind, Attribute)> {
    let mut found = None;
    let mut kept = Vec::with_capacity(attrs.len());
    for attr in attrs.drain(..) {
        match hook_kind(&attr) {
            Some(kind) => {
                if !matches!(attr.meta, Meta::Path(_)) {
                    errors.spanned(&attr, "hook attributes take no arguments: write `#[on_load]` or `#[on_shutdown]`");
                }
                if found.is_some() {
                    errors.spanned(&attr, "a method can be only one hook");
                } else {
                    found = Some((kind, attr));
                }
            }
            None => kept.push(attr),
        }
    }
    *attrs = kept;
    found
}

/// The user's impl block without the hook attributes (emitted beside errors).
pub fn strip_hook_attributes(item: TokenStream) -> TokenStream {
    match syn::parse2::<ItemImpl>(item.clone()) {
        Ok(mut block) => {
            for impl_item in &mut block.items {
                if let ImplItem::Fn(f) = impl_item {
                    f.attrs.retain(|a| hook_kind(a).is_none());
                }
            }
            block.into_token_stream()
        }
        Err(_) => item,
    }
}

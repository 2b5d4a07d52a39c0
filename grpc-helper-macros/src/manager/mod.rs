//! `#[rpc_manager]`: parse the arguments and the impl block, validate, then expand.
//! Every error found is reported at once, each at the user's own tokens.

mod check;
mod expand;
mod parse;

use proc_macro2::TokenStream;

use crate::errors::Errors;

pub fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let item_tokens = item.clone();
    let parsed = parse::parse(args, item, &mut errors);
    let named = parsed.as_ref().map(|parsed| parsed.args.paths()).unwrap_or_default();
    let model = parsed.and_then(|parsed| check::check(parsed, &mut errors));
    match (model, errors.take()) {
        (Some(model), None) => expand::expand(&model),
        // Keep the user's impl so one mistake does not cascade into "method not found" errors,
        // and use what the arguments name, so that their imports are not reported as unused.
        (_, Some(error)) => {
            let mut out = parse::strip_hook_attributes(item_tokens);
            out.extend(named.iter().map(|path| quote::quote!(#[allow(unused_imports)] use #path as _;)));
            out.extend(error.into_compile_error());
            out
        }
        (None, None) => unreachable!("parsing failed without an error"),
    }
}

//! `#[rpc_manager]`: parse the arguments and the impl block, validate, then expand.
//! Every error found is reported at once, each at the user's own tokens.

mod check;
mod expand;
mod parse;

use proc_macro2::TokenStream;

pub fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let item_tokens = item.clone();
    let model = parse::parse(args, item, &mut errors).and_then(|parsed| check::check(parsed, &mut errors));
    match (model, errors.take()) {
        (Some(model), None) => expand::expand(&model),
        // Keep the user's impl so one mistake does not cascade into "method not found" errors.
        (_, Some(error)) => {
            let mut out = parse::strip_hook_attributes(item_tokens);
            out.extend(error.into_compile_error());
            out
        }
        (None, None) => unreachable!("parsing failed without an error"),
    }
}

/// Collects errors so that all of them are reported in one compilation.
#[derive(Default)]
pub struct Errors(Option<syn::Error>);

impl Errors {
    pub fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub fn spanned(&mut self, tokens: impl quote::ToTokens, message: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    fn take(&mut self) -> Option<syn::Error> {
        self.0.take()
    }
}

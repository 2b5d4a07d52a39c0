//! The error collector every macro of the crate reports through: all errors of one
//! expansion at once, each at the user's own tokens.

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

    pub fn take(&mut self) -> Option<syn::Error> {
        self.0.take()
    }

    /// `Ok(value)` when nothing was reported, else every error combined.
    pub fn finish<T>(mut self, value: T) -> syn::Result<T> {
        match self.take() {
            Some(error) => Err(error),
            None => Ok(value),
        }
    }
}

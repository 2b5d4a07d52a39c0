//! Names listed in a request (`Filter.names`, `EventFilter.names`): each answered or kept once,
//! and at most [`MAX_NAMES`] of them, so that what the server builds or keeps for a request
//! grows with the distinct names it lists, not with how often it repeats them.

use std::collections::HashSet;
use std::sync::Arc;

use crate::RpcError;
use crate::api::ResultCode;

/// Most names one request may list (repeats included): far more than a server has services,
/// loggers worth asking for at once, or event names a listener filters on.
pub(crate) const MAX_NAMES: usize = 1_024;

/// `names` with repeats dropped, in the order each first appears; refused in band
/// (`ERROR_PARAM_INVALID`) past [`MAX_NAMES`].
pub(crate) fn distinct<'a>(names: &'a [String], what: &str) -> Result<Vec<&'a str>, RpcError> {
    check_count(names.len(), what)?;
    let mut seen = HashSet::with_capacity(names.len());
    Ok(names.iter().map(String::as_str).filter(|name| seen.insert(*name)).collect())
}

pub(crate) fn check_count(count: usize, what: &str) -> Result<(), RpcError> {
    if count > MAX_NAMES {
        return Err(RpcError::new(
            ResultCode::ErrorParamInvalid,
            format!("Too many {what} names in one request: {count} (at most {MAX_NAMES}; ask in several requests)"),
        ));
    }
    Ok(())
}

/// The event names a listener asked for (all when empty), each kept once and matched in
/// constant time, shared by its queue and its stream.
#[derive(Debug, Clone, Default)]
pub(crate) struct NameFilter(Option<Arc<HashSet<Box<str>>>>);

impl NameFilter {
    /// Checks each name with `check` and the count against [`MAX_NAMES`].
    pub(crate) fn new(names: Vec<String>, check: impl Fn(&str) -> Result<(), RpcError>) -> Result<Self, RpcError> {
        check_count(names.len(), "event")?;
        if names.is_empty() {
            return Ok(Self::default());
        }
        let set = names.into_iter().map(|name| check(&name).map(|()| name.into_boxed_str()));
        Ok(Self(Some(Arc::new(set.collect::<Result<_, _>>()?))))
    }

    /// Whether an event of this name is delivered.
    pub(crate) fn passes(&self, name: &str) -> bool {
        self.0.as_ref().is_none_or(|names| names.contains(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_dropped_in_first_order_and_the_count_is_capped() {
        let names: Vec<String> = ["b", "a", "b", "c", "a"].map(String::from).into();
        assert_eq!(distinct(&names, "service").unwrap(), ["b", "a", "c"]);
        let many = vec!["srv".to_owned(); MAX_NAMES + 1];
        let error = distinct(&many, "service").unwrap_err();
        assert_eq!(error.code(), ResultCode::ErrorParamInvalid as i32);
        assert!(error.message().contains("1025") && error.message().contains("1024"), "{error}");
        assert_eq!(distinct(&many[1..], "service").unwrap(), ["srv"]);
    }

    #[test]
    fn an_empty_filter_passes_everything() {
        let none = |_: &str| Ok(());
        assert!(NameFilter::new(Vec::new(), none).unwrap().passes("x"));
        let filter = NameFilter::new(vec!["a".into(), "a".into(), "b".into()], none).unwrap();
        assert!(filter.passes("a") && filter.passes("b") && !filter.passes("c"));
        assert!(NameFilter::new(vec!["a".into(); MAX_NAMES + 1], none).is_err());
    }
}

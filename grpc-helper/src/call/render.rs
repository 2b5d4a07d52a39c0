//! What the call traces and the debug dump show of a message: `Type{fields}`, cut at 1024
//! characters as the original does (its `>>>` / `<<<` lines), from the message's `Debug`.
//!
//! Nothing here runs per call unless DEBUG is on for the calls' target, except the request
//! snapshot of the pending-call record: a clone of a small request (no allocation for an
//! empty one), formatted only when a dump is written.

use std::fmt::{self, Debug, Write as _};
use std::marker::PhantomData;

/// Longest rendering kept; longer ones end with `...`.
pub(crate) const MAX_TRACE: usize = 1024;

/// Requests larger than this (encoded) are rendered at once instead of cloned for the dump.
const MAX_CLONED: usize = 4096;

/// `Type{ field: value, .. }`, at most [`MAX_TRACE`] characters then `...`.
pub(crate) fn render(message: &dyn Debug) -> String {
    let mut out = Bounded(String::new());
    // An error only means the bound was reached.
    let full = write!(out, "{message:?}").is_ok();
    let mut text = out.0;
    // `Empty` (a message without fields) reads `Empty{}`, `Filter { .. }` reads `Filter{ .. }`.
    match text.find(' ') {
        Some(space) if text[space..].starts_with(" {") => {
            text.remove(space);
        }
        None if full => text.push_str("{}"),
        _ => {}
    }
    if !full {
        text.push_str("...");
    }
    text
}

/// A `fmt::Write` that refuses to grow past [`MAX_TRACE`] bytes (which stops the formatting).
struct Bounded(String);

impl fmt::Write for Bounded {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = MAX_TRACE.saturating_sub(self.0.len());
        if s.len() <= room {
            self.0.push_str(s);
            return Ok(());
        }
        let mut cut = room;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        self.0.push_str(&s[..cut]);
        Err(fmt::Error)
    }
}

/// What the pending-call record keeps of a request, for the dump.
pub type Snapshot = Box<dyn Debug + Send + Sync>;

/// How to snapshot a request type: chosen by the macro at the method (see [`Probe`]).
pub type SnapshotFn<Req> = Option<fn(&Req) -> Snapshot>;

/// Picks, at a concrete request type, a snapshot function: a clone for messages (small ones;
/// larger ones rendered at once), none for `Streaming<Req>` (its content arrives later).
/// Resolved by method lookup (`(&&Probe::<Req>::new()).snapshot_fn()`): the impl on
/// `&Probe<T>` applies to cloneable messages, the one on `Probe<T>` to everything else.
pub struct Probe<T>(PhantomData<T>);

impl<T> Probe<T> {
    /// The probe of `T`.
    pub fn new() -> Self {
        Self(PhantomData)
    }
}

impl<T> Default for Probe<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Snapshots of cloneable messages.
pub trait SnapshotByClone<T> {
    /// The snapshot function of `T`.
    fn snapshot_fn(&self) -> SnapshotFn<T>;
}

impl<T: prost::Message + Clone + Debug + 'static> SnapshotByClone<T> for &Probe<T> {
    fn snapshot_fn(&self) -> SnapshotFn<T> {
        Some(|request| {
            if request.encoded_len() <= MAX_CLONED {
                Box::new(request.clone())
            } else {
                Box::new(Rendered(render(request)))
            }
        })
    }
}

/// No snapshot (client streams).
pub trait SnapshotNone<T> {
    /// `None`.
    fn snapshot_fn(&self) -> SnapshotFn<T>;
}

impl<T> SnapshotNone<T> for Probe<T> {
    fn snapshot_fn(&self) -> SnapshotFn<T> {
        None
    }
}

/// A rendering kept as is (its `Debug` writes it back).
struct Rendered(String);

impl Debug for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Empty, Filter};

    #[test]
    fn messages_render_as_type_and_fields() {
        assert_eq!(render(&Empty {}), "Empty{}");
        let filter = Filter { names: vec!["a".into()], ignore_unknown: false };
        assert_eq!(render(&filter), r#"Filter{ names: ["a"], ignore_unknown: false }"#);
    }

    #[test]
    fn long_renderings_are_cut_at_1024_characters() {
        let filter = Filter { names: vec!["é".repeat(2000)], ignore_unknown: true };
        let text = render(&filter);
        assert!(text.ends_with("..."), "{text}");
        assert!(text.len() <= MAX_TRACE + 3);
        assert!(text.starts_with("Filter{ names: [\"éé"));
    }

    #[test]
    #[allow(clippy::needless_borrow)] // the borrows pick the impl, as in the generated code
    fn requests_are_snapshot_by_clone_and_streams_not_at_all() {
        let snapshot = (&&Probe::<Filter>::new()).snapshot_fn().expect("a message is cloned");
        let filter = Filter { names: vec!["x".into()], ignore_unknown: true };
        assert_eq!(render(&*snapshot(&filter)), render(&filter));
        assert!((&&Probe::<tonic::Streaming<Filter>>::new()).snapshot_fn().is_none());
        let large = Filter { names: vec!["n".repeat(10_000)], ignore_unknown: false };
        assert!(render(&*snapshot(&large)).ends_with("..."));
    }
}

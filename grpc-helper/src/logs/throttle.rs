//! Log lines that a caller can cause (a refused call, a reply over the limit): at most a burst
//! per second, so that a flood of such calls cannot fill the disk or drown the other lines. What
//! was left out is counted and said in the next line written.

use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Lines written per second at most.
const PER_SECOND: u32 = 10;

/// A per-site budget of log lines: `static REFUSED: Throttle = Throttle::new();`.
pub(crate) struct Throttle(Mutex<Window>);

struct Window {
    start: Option<Instant>,
    written: u32,
    skipped: u64,
}

impl Throttle {
    pub(crate) const fn new() -> Self {
        Self(Mutex::new(Window { start: None, written: 0, skipped: 0 }))
    }

    /// `Some(n)`: write the line, and say that `n` were left out before it; `None`: leave it out.
    pub(crate) fn admit(&self) -> Option<u64> {
        let mut window = self.0.lock();
        let now = Instant::now();
        if window.start.is_none_or(|start| now.duration_since(start) >= Duration::from_secs(1)) {
            window.start = Some(now);
            window.written = 0;
        }
        if window.written == PER_SECOND {
            window.skipped += 1;
            return None;
        }
        window.written += 1;
        Some(std::mem::take(&mut window.skipped))
    }
}

/// ` (N more left out)`, or nothing.
pub(crate) fn left_out(skipped: u64) -> String {
    if skipped == 0 { String::new() } else { format!(" ({skipped} more like it left out)") }
}

/// At most `max` characters of a caller's text, marked when cut.
pub(crate) fn clipped(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => text.into(),
        Some((at, _)) => format!("{}... ({} bytes)", &text[..at], text.len()).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_written_the_rest_counted_into_the_next_window() {
        let throttle = Throttle::new();
        let written = (0..25).filter_map(|_| throttle.admit()).count();
        assert_eq!(written, PER_SECOND as usize);
        throttle.0.lock().start = Some(Instant::now() - Duration::from_secs(2));
        assert_eq!(throttle.admit(), Some(15));
        assert_eq!(left_out(15), " (15 more like it left out)");
        assert_eq!(clipped("abcdef", 3), "abc... (6 bytes)");
        assert_eq!(clipped("abc", 3), "abc");
    }
}

//! A panic in a manager becomes the call's in-band `ERROR` reply, as an exception does in the
//! original: catching costs nothing until something panics (unwinding tables, no check per
//! poll), and the stack is captured only when `RUST_BACKTRACE` asks for it.

use std::any::Any;
use std::backtrace::{Backtrace, BacktraceStatus};
use std::cell::RefCell;
use std::sync::Once;

use crate::RpcError;
use crate::api::ResultCode;

thread_local! {
    /// The stack of the last panic on this thread, when backtraces are enabled.
    static LAST_STACK: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Chains a panic hook that keeps the panicking thread's stack for [`to_error`] (the stack is
/// gone once `catch_unwind` returns). The previous hook still runs (it prints the panic).
pub(crate) fn install_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // `capture` reads RUST_BACKTRACE / RUST_LIB_BACKTRACE (once, then cached).
            let backtrace = Backtrace::capture();
            let stack =
                (backtrace.status() == BacktraceStatus::Captured).then(|| from_the_panic(&backtrace.to_string()));
            LAST_STACK.with(|last| *last.borrow_mut() = stack);
            previous(info);
        }));
    });
}

/// The stack from the frame that panicked: without the frames of this hook and of the panic
/// machinery above it (each frame is a `N: symbol` line, then its `at file:line` lines).
fn from_the_panic(stack: &str) -> String {
    let machinery = |symbol: &str| {
        ["panic", "backtrace", "rust_begin_unwind", "as core::ops::function::Fn"].iter().any(|m| symbol.contains(m))
    };
    let mut lines = stack.lines().peekable();
    while let Some(line) = lines.peek() {
        let frame = line.trim_start().split_once(": ").filter(|(n, _)| n.chars().all(|c| c.is_ascii_digit()));
        match frame {
            Some((_, symbol)) if !machinery(symbol) => break,
            _ => {
                lines.next();
            }
        }
    }
    let rest: Vec<&str> = lines.collect();
    if rest.is_empty() { stack.to_owned() } else { rest.join("\n") }
}

/// The text a panic was raised with (`panic!("...")`, `unwrap` on `None`, ...).
pub(crate) fn message(payload: &(dyn Any + Send)) -> &str {
    if let Some(text) = payload.downcast_ref::<&'static str>() {
        text
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text
    } else {
        "(a panic without a message)"
    }
}

/// The in-band error for a panic caught while serving `service.method`, with the stack when
/// one was captured and the caller is `trusted`: on this machine, or authenticated by the
/// server's guard (a stack tells anyone else too much of the server's code); the panic is
/// logged at ERROR, with its stack.
pub(crate) fn to_error(payload: &(dyn Any + Send), service: &str, method: &str, trusted: bool) -> RpcError {
    let text = message(payload);
    let stack = LAST_STACK.with(|last| last.borrow_mut().take()).unwrap_or_default();
    if stack.is_empty() {
        tracing::error!(target: super::dispatch::CALL_TARGET, "{service}.{method} panicked: {text}");
    } else {
        tracing::error!(target: super::dispatch::CALL_TARGET, "{service}.{method} panicked: {text}\n{stack}");
    }
    let error = RpcError::new(ResultCode::Error, format!("{service}.{method} panicked: {text}"));
    if trusted { error.with_stack(stack) } else { error }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stack_goes_in_band_to_a_trusted_caller_only() {
        let payload: Box<dyn Any + Send> = Box::new("boom");
        for (trusted, expected) in [(true, "at src/lib.rs:1"), (false, "")] {
            LAST_STACK.with(|last| *last.borrow_mut() = Some("at src/lib.rs:1".to_owned()));
            let error = to_error(&*payload, "S", "m", trusted);
            assert_eq!((error.message(), error.stack()), ("S.m panicked: boom", expected), "trusted: {trusted}");
        }
    }
}

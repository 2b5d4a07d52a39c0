//! Value rules of config items, with the number syntax of the Python original (surrounding
//! spaces, a sign, `_` between digits; floats also `1e3`, `inf`).

use crate::RpcError;
use crate::api::{ConfigValidator, ResultCode};

/// How the values of a config item are checked.
///
/// ```
/// use grpc_helper::config::{ConfigItem, Validator};
/// use grpc_helper::{ResultCode, RpcError};
///
/// fn even(name: &str, value: &str) -> Result<(), RpcError> {
///     match value.trim().parse::<u32>() {
///         Ok(n) if n % 2 == 0 => Ok(()),
///         _ => Err(RpcError::new(ResultCode::ErrorParamInvalid, format!("{name} must be an even number"))),
///     }
/// }
/// const PAIRS: ConfigItem = ConfigItem::new("my-pairs", "Even count", "2").validator(Validator::Custom(even));
/// assert!(PAIRS.validate("4").is_ok());
/// assert_eq!(PAIRS.validate("3").unwrap_err().message(), "my-pairs must be an even number");
/// ```
#[derive(Clone, Copy)]
pub enum Validator {
    /// Any text.
    String,
    /// A whole number.
    Int,
    /// A whole number > 0.
    PosInt,
    /// A number.
    Float,
    /// A number > 0.
    PosFloat,
    /// A function of (item name, value) that returns an error for invalid values.
    Custom(fn(&str, &str) -> Result<(), RpcError>),
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.rule())
    }
}

impl Validator {
    /// The wire enum value (`ConfigItem.validator`).
    ///
    /// ```
    /// use grpc_helper::api::ConfigValidator;
    /// use grpc_helper::config::Validator;
    ///
    /// assert_eq!(Validator::PosInt.to_proto(), ConfigValidator::ConfigValidPosInt);
    /// ```
    pub fn to_proto(self) -> ConfigValidator {
        match self {
            Self::String => ConfigValidator::ConfigValidString,
            Self::Int => ConfigValidator::ConfigValidInt,
            Self::PosInt => ConfigValidator::ConfigValidPosInt,
            Self::Float => ConfigValidator::ConfigValidFloat,
            Self::PosFloat => ConfigValidator::ConfigValidPosFloat,
            Self::Custom(_) => ConfigValidator::ConfigValidCustom,
        }
    }

    /// The rule in words, for error messages.
    ///
    /// ```
    /// use grpc_helper::config::Validator;
    /// assert_eq!(Validator::PosFloat.rule(), "a number > 0");
    /// ```
    pub fn rule(self) -> &'static str {
        match self {
            Self::String => "any text",
            Self::Int => "a whole number",
            Self::PosInt => "a whole number > 0",
            Self::Float => "a number",
            Self::PosFloat => "a number > 0",
            Self::Custom(_) => "a custom rule",
        }
    }

    /// Checks a non-empty value.
    pub(crate) fn check(self, name: &str, value: &str) -> Result<(), RpcError> {
        let invalid = |what: &str| {
            RpcError::new(
                ResultCode::ErrorParamInvalid,
                format!("Invalid {what} value for config item {name}: {value:?} (expected {})", self.rule()),
            )
        };
        let not_positive = || {
            RpcError::new(
                ResultCode::ErrorParamInvalid,
                format!("Expected strictly positive value for config item {name} but got {value:?}"),
            )
        };
        match self {
            Self::String => Ok(()),
            Self::Int => parse_int(value).map(drop).ok_or_else(|| invalid("int")),
            Self::PosInt => match parse_int(value) {
                None => Err(invalid("int")),
                Some(v) if v <= 0 => Err(not_positive()),
                Some(_) => Ok(()),
            },
            Self::Float => parse_float(value).map(drop).ok_or_else(|| invalid("float")),
            Self::PosFloat => match parse_float(value) {
                None => Err(invalid("float")),
                // NaN is refused too (the original lets it through).
                Some(v) if v.is_nan() || v <= 0.0 => Err(not_positive()),
                Some(_) => Ok(()),
            },
            Self::Custom(check) => check(name, value),
        }
    }
}

/// Removes `_` digit separators (only single ones between two digits are allowed).
fn without_separators(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'_' {
            let digit_before = i > 0 && bytes[i - 1].is_ascii_digit();
            let digit_after = bytes.get(i + 1).is_some_and(u8::is_ascii_digit);
            if !(digit_before && digit_after) {
                return None;
            }
        } else {
            out.push(b as char);
        }
    }
    Some(out)
}

/// An integer as Python's `int()` reads a decimal string.
pub(crate) fn parse_int(value: &str) -> Option<i64> {
    let text = without_separators(value.trim())?;
    let digits = text.strip_prefix(['+', '-']).unwrap_or(&text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A number as Python's `float()` reads a string.
pub(crate) fn parse_float(value: &str) -> Option<f64> {
    let text = without_separators(value.trim())?;
    let body = text.strip_prefix(['+', '-']).unwrap_or(&text).to_ascii_lowercase();
    let named = matches!(body.as_str(), "inf" | "infinity" | "nan");
    let numeric =
        !body.is_empty() && body.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'+' | b'-'));
    if !(named || numeric) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_follow_python() {
        for (text, expected) in [("12", 12), (" -3 ", -3), ("+7", 7), ("1_000", 1000)] {
            assert_eq!(parse_int(text), Some(expected), "{text}");
        }
        for text in ["", "abc", "1.5", "0x10", "1e3", "1__0", "_1", "1_", "--1"] {
            assert_eq!(parse_int(text), None, "{text}");
        }
    }

    #[test]
    fn floats_follow_python() {
        for (text, expected) in [("1.5", 1.5), (" 2 ", 2.0), ("1e3", 1000.0), ("-0.5", -0.5), ("1_0.5", 10.5)] {
            assert_eq!(parse_float(text), Some(expected), "{text}");
        }
        assert!(parse_float("inf").unwrap().is_infinite());
        assert!(parse_float("nan").unwrap().is_nan());
        for text in ["", "abc", "1.2.3x", "0x10", "1__0"] {
            assert_eq!(parse_float(text), None, "{text}");
        }
    }

    #[test]
    fn rules_say_what_was_expected() {
        let e = Validator::PosInt.check("my-item", "0").unwrap_err();
        assert_eq!(e.result_code(), Some(ResultCode::ErrorParamInvalid));
        assert_eq!(e.message(), "Expected strictly positive value for config item my-item but got \"0\"");
        let e = Validator::Float.check("my-item", "x").unwrap_err();
        assert!(e.message().contains("(expected a number)"), "{e}");
        assert!(Validator::PosFloat.check("my-item", "nan").is_err());
        assert!(Validator::PosFloat.check("my-item", "0.1").is_ok());
    }
}

//! The oracles of the fuzz targets, shared with the property tests (`tests/parsers.rs`
//! includes this file): one `target_*` function per fuzz target runs an input through a parser
//! (`grpc_helper::__fuzz`, feature `fuzz-api`) and asserts its invariants; a violation panics.

use grpc_helper::__fuzz::*;
use grpc_helper::CallerMetadata;
use grpc_helper::api::ResultCode;
use grpc_helper::config::{ConfigItem, Validator};
use http::{HeaderMap, HeaderName, HeaderValue};

/// A fuzz target: runs one input through a parser and panics when an invariant breaks.
pub type Target = fn(&[u8]);

/// Every fuzz target by name: the files of `fuzz/fuzz_targets/` and folders of `fuzz/corpus/`.
pub const TARGETS: [(&str, Target); 4] = [
    ("metadata", target_metadata),
    ("config_value", target_config_value),
    ("config_file", target_config_file),
    ("proxy_state", target_proxy_state),
];

/// Request headers from bytes: `name:value` lines; lines that are not a valid header are
/// skipped, repeated names are kept (appended).
pub fn headers_from_bytes(data: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => (&line[..i], &line[i + 1..]),
            None => (line, &b""[..]),
        };
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            headers.append(name, value);
        }
    }
    headers
}

/// The API version a client sends, read independently of the server's parser: optional `+`,
/// then decimal digits that fit in a `u32`.
pub fn expected_api_version(raw: &[u8]) -> Option<u32> {
    let digits = raw.strip_prefix(b"+").unwrap_or(raw);
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u32, |n, d| n.checked_mul(10)?.checked_add(u32::from(d - b'0')))
}

/// Asserts that the api_version check of `raw` against `supported..=current` gives exactly the
/// outcome the protocol defines (no value: accepted; not a number: invalid; else by range).
pub fn assert_api_version_check(raw: Option<&[u8]>, supported: u32, current: u32) {
    let result = check_api_version(raw, supported, current);
    let expected = match raw {
        None | Some(b"") => None,
        Some(raw) => Some(match expected_api_version(raw) {
            None => ResultCode::ErrorParamInvalid,
            Some(v) if v > current => ResultCode::ErrorApiServerTooOld,
            Some(v) if v < supported => ResultCode::ErrorApiClientTooOld,
            Some(_) => ResultCode::Ok,
        }),
    };
    match (&result, expected) {
        (Ok(()), None | Some(ResultCode::Ok)) => {}
        (Err(e), Some(code)) if e.result_code() == Some(code) && code != ResultCode::Ok => {}
        _ => panic!("api_version {raw:?} against {supported}..={current}: got {result:?}, expected {expected:?}"),
    }
}

/// Fuzz target `metadata`: bytes 0 and 1 pick the service's version range, the rest are header
/// lines; checks every [`CallerMetadata`] reading and the api_version check on them.
pub fn target_metadata(data: &[u8]) {
    let (supported, current, rest) = match data {
        [a, b, rest @ ..] => {
            // High bit: a range at the top of u32, where overflows would show.
            let base = if a & 0x80 != 0 { u32::MAX - 0x17f } else { 0 };
            let supported = base + u32::from(a & 0x7f);
            (supported, supported + u32::from(*b), rest)
        }
        _ => (1, 2, data),
    };
    let headers = headers_from_bytes(rest);
    let caller = CallerMetadata::from_headers(&headers);
    let visible = |v: &HeaderValue| v.as_bytes().iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b));
    let expected = |key: &str| match headers.get(key) {
        Some(v) if visible(v) => std::str::from_utf8(v.as_bytes()).expect("visible ASCII"),
        _ => "",
    };
    let read = [
        ("client", caller.client()),
        ("user", caller.user()),
        ("host", caller.host()),
        ("ip", caller.ip()),
        ("api_version", caller.api_version()),
    ];
    for (key, value) in read {
        assert_eq!(value, expected(key), "metadata {key} of {headers:?}");
    }
    // Caller text is escaped for log lines: control characters, line separators, bidi overrides.
    let escaped = |v: &str| -> String {
        v.chars()
            .map(|c| match c {
                '\n' => "\\n".to_owned(),
                '\r' => "\\r".to_owned(),
                '\t' => "\\t".to_owned(),
                c if c.is_control()
                    || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') =>
                {
                    format!("\\u{{{:x}}}", u32::from(c))
                }
                c => c.to_string(),
            })
            .collect()
    };
    let or = |v: &str, missing: &'static str| if v.is_empty() { missing.to_owned() } else { escaped(v) };
    let display = format!(
        "[{}]{}@{}({}) api:{}",
        or(read[0].1, "unknown"),
        or(read[1].1, "unknown"),
        or(read[2].1, "unknown"),
        or(read[3].1, "unknown"),
        or(read[4].1, "0")
    );
    assert_eq!(caller.to_string(), display);
    let raw = api_version_bytes(&caller);
    assert_eq!(raw, headers.get("api_version").map(HeaderValue::as_bytes), "the first api_version is checked");
    assert_api_version_check(raw, supported, current);
}

/// The validators a fuzz input's first byte picks from.
const VALIDATORS: [Validator; 5] =
    [Validator::String, Validator::Int, Validator::PosInt, Validator::Float, Validator::PosFloat];

/// Fuzz target `config_value`: byte 0 picks the validator (low bits) and whether empty values
/// are allowed (high bit), the rest is the value (lossy UTF-8).
pub fn target_config_value(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else { return };
    let validator = VALIDATORS[usize::from(first & 0x7f) % VALIDATORS.len()];
    assert_config_value(validator, first & 0x80 != 0, &String::from_utf8_lossy(rest));
}

/// Asserts the invariants of config value validation and typed reading for one value.
pub fn assert_config_value(validator: Validator, can_be_empty: bool, value: &str) {
    let item = ConfigItem::new("fuzz-item", "fuzzed item", "").validator(validator);
    let item = if can_be_empty { item.can_be_empty() } else { item };
    let result = item.validate(value);
    if value.is_empty() {
        match &result {
            Ok(()) => assert!(can_be_empty, "empty value accepted by an item that forbids it"),
            Err(e) => {
                assert!(!can_be_empty, "empty value refused by an item that allows it: {e}");
                assert_eq!(e.result_code(), Some(ResultCode::ErrorParamMissing), "{e}");
            }
        }
        return;
    }
    if let Err(e) = &result {
        assert_eq!(e.result_code(), Some(ResultCode::ErrorParamInvalid), "{e}");
        assert!(e.message().contains("fuzz-item"), "the error names the item: {e}");
    }
    let int = parse_int(value);
    let float = parse_float(value);
    let accepted = match validator {
        Validator::String | Validator::Custom(_) => true,
        Validator::Int => int.is_some(),
        Validator::PosInt => int.is_some_and(|i| i > 0),
        Validator::Float => float.is_some(),
        Validator::PosFloat => float.is_some_and(|f| f > 0.0),
    };
    assert_eq!(result.is_ok(), accepted, "{validator:?} on {value:?}: {result:?} (int {int:?}, float {float:?})");
    // Surrounding white space never matters.
    assert_eq!(parse_int(&format!(" {value}\t")), int, "padded {value:?}");
    if let Some(i) = int {
        assert_eq!(parse_int(&i.to_string()), Some(i), "{value:?} round trip");
        assert_eq!(float, Some(i as f64), "the int {value:?} reads as the same float");
    }
    if let Some(f) = float {
        let again = parse_float(&f.to_string()).unwrap_or_else(|| panic!("{f} (from {value:?}) does not parse"));
        assert!(again.to_bits() == f.to_bits() || (f.is_nan() && again.is_nan()), "{value:?}: {f} -> {again}");
        match parse_duration(value) {
            Some(d) => {
                assert!(f.is_finite() && f > -1e-9, "{value:?} ({f}) read as duration {d:?}");
                assert!((d.as_secs_f64() - f).abs() <= 1e-9 + f.abs() * 1e-15, "{value:?} ({f}) -> {d:?}");
            }
            // Out of range: negative, NaN, infinite or beyond u64::MAX seconds.
            None => assert!(!(0.0..1.8e19).contains(&f), "{value:?} ({f}) refused as a duration"),
        }
    } else {
        assert_eq!(parse_duration(value), None, "{value:?} is no number but a duration");
    }
}

/// Fuzz target `config_file`: the bytes are a `config.json`; an accepted file is a JSON object of
/// strings whose map survives being written as the server writes it and read again.
pub fn target_config_file(data: &[u8]) {
    let result = parse_config_file(data);
    let is_string_object = match serde_json::from_slice::<serde_json::Value>(data) {
        Ok(serde_json::Value::Object(object)) => object.values().all(serde_json::Value::is_string),
        _ => false,
    };
    match result {
        Ok(map) => {
            assert!(is_string_object, "accepted a file that is not an object of strings");
            let text = config_file_text(&map);
            assert_eq!(parse_config_file(text.as_bytes()).as_ref().ok(), Some(&map), "re-read of {text}");
        }
        Err(e) => {
            assert!(!is_string_object, "refused an object of strings: {e}");
            assert_eq!(e.result_code(), Some(ResultCode::ErrorModelInvalid), "{e}");
            assert!(e.message().contains(FILE), "the error names the file: {e}");
        }
    }
}

/// The services a fuzzed `proxy.json` is read for: every name not starting with `_`.
pub fn fuzz_known_service(name: &str) -> bool {
    !name.starts_with('_')
}

/// Fuzz target `proxy_state`: the bytes are a `proxy.json`; accepted registrations belong to
/// known services, have a usable port, and survive being written and read again.
pub fn target_proxy_state(data: &[u8]) {
    match parse_proxy_state(data, &fuzz_known_service) {
        Ok(entries) => {
            for (i, entry) in entries.iter().enumerate() {
                assert!(fuzz_known_service(&entry.name), "unknown service {entry:?} read");
                assert!(entry.port <= u32::from(u16::MAX), "port out of range read: {entry:?}");
                assert!(entries[..i].iter().all(|e| e.name != entry.name), "{} read twice", entry.name);
            }
            let text = proxy_state_text(&entries);
            let again = parse_proxy_state(text.as_bytes(), &fuzz_known_service)
                .unwrap_or_else(|e| panic!("re-read of {text}: {e}"));
            let registered: Vec<_> = entries.into_iter().filter(|e| e.port > 0).collect();
            assert_eq!(again, registered, "re-read of {text}");
        }
        Err(e) => {
            assert_eq!(e.result_code(), Some(ResultCode::ErrorModelInvalid), "{e}");
            assert!(e.message().contains(FILE), "the error names the file: {e}");
        }
    }
}

//! Property tests of the parsers of untrusted input: `api_version` and caller metadata, config
//! values, `config.json` and `proxy.json` (through `grpc_helper::__fuzz`, the entry points the
//! fuzz targets use, and their oracles in `fuzz/oracles.rs`), and a replay of every committed
//! fuzz corpus file.

use std::collections::BTreeMap;
use std::path::Path;

use grpc_helper::__fuzz::{self as fuzz, ProxyEntry};
use grpc_helper::CallerMetadata;
use grpc_helper::api::ResultCode;
use grpc_helper::config::Validator;
use proptest::prelude::*;

// The fuzz targets' oracles, shared with `cargo fuzz`.
#[path = "../../fuzz/oracles.rs"]
mod oracles;

fn code_of<T: std::fmt::Debug>(result: Result<T, grpc_helper::RpcError>) -> Option<ResultCode> {
    result.err().and_then(|e| e.result_code())
}

// ---- api_version and caller metadata

proptest! {
    #[test]
    fn api_version_in_range_is_accepted_in_any_decimal_spelling(
        supported in any::<u32>(), span in any::<u32>(), offset in any::<u32>(), zeros in 0usize..4, plus: bool,
    ) {
        let current = supported.saturating_add(span);
        let client = supported + offset % (current - supported).saturating_add(1).max(1);
        let text = format!("{}{}{client}", if plus { "+" } else { "" }, "0".repeat(zeros));
        prop_assert!(fuzz::check_api_version(Some(text.as_bytes()), supported, current).is_ok(), "{text}");
    }

    #[test]
    fn api_version_out_of_range_says_which_side_is_too_old(client in any::<u32>(), supported in any::<u32>(), span in any::<u32>()) {
        let current = supported.saturating_add(span);
        let code = code_of(fuzz::check_api_version(Some(client.to_string().as_bytes()), supported, current));
        let expected = if client > current {
            Some(ResultCode::ErrorApiServerTooOld)
        } else if client < supported {
            Some(ResultCode::ErrorApiClientTooOld)
        } else {
            None
        };
        prop_assert_eq!(code, expected);
    }

    #[test]
    fn api_version_that_is_not_a_u32_is_invalid_and_quoted(
        text in prop_oneof![
            "-[0-9]{1,5}",                      // negative
            "[0-9]{0,3}[a-zA-Z .,#é][0-9]{0,3}", // letters, spaces, non-ASCII
            "[1-9][0-9]{10,20}",                // above u32::MAX
            Just("+".to_owned()),
        ],
    ) {
        let error = fuzz::check_api_version(Some(text.as_bytes()), 1, 2).unwrap_err();
        prop_assert_eq!(error.result_code(), Some(ResultCode::ErrorParamInvalid));
        let quoted = format!("{text:?}");
        prop_assert!(error.message().contains(&quoted), "{}", error.message());
    }

    #[test]
    fn api_version_check_of_any_bytes_follows_the_protocol(raw in proptest::collection::vec(any::<u8>(), 0..16), supported: u32, span: u8) {
        oracles::assert_api_version_check(Some(&raw), supported, supported.saturating_add(u32::from(span)));
    }

    #[test]
    fn caller_metadata_reads_back_visible_ascii_values(
        client in "[ -~]{0,12}", user in "[!-~]{0,12}", host in "[!-~]{0,12}", ip in "[0-9.]{0,15}", api in "[0-9]{0,3}",
    ) {
        // Header values lose surrounding spaces on the wire, so the generated ones start and end visibly.
        let client = client.trim().to_owned();
        let lines = format!("client:{client}\nuser:{user}\nhost:{host}\nip:{ip}\napi_version:{api}");
        let caller = CallerMetadata::from_headers(&oracles::headers_from_bytes(lines.as_bytes()));
        prop_assert_eq!(
            [caller.client(), caller.user(), caller.host(), caller.ip(), caller.api_version()],
            [client.as_str(), user.as_str(), host.as_str(), ip.as_str(), api.as_str()]
        );
        let or = |v: &str, missing: &str| if v.is_empty() { missing.to_owned() } else { v.to_owned() };
        prop_assert_eq!(
            caller.to_string(),
            format!("[{}]{}@{}({}) api:{}", or(&client, "unknown"), or(&user, "unknown"), or(&host, "unknown"), or(&ip, "unknown"), or(&api, "0"))
        );
    }

    #[test]
    fn caller_metadata_with_non_ascii_bytes_reads_as_missing(prefix in "[a-z]{0,4}", byte in 0x80u8..=0xff) {
        let mut lines = format!("api_version:1\nclient:{prefix}").into_bytes();
        lines.push(byte);
        let caller = CallerMetadata::from_headers(&oracles::headers_from_bytes(&lines));
        prop_assert_eq!(caller.client(), "");
        prop_assert!(caller.to_string().starts_with("[unknown]"));
    }

    #[test]
    fn repeated_metadata_keys_read_the_first_value(first in 1u32..100, second in 100u32..200) {
        let lines = format!("api_version:{first}\napi_version:{second}\nclient:a\nclient:b");
        let caller = CallerMetadata::from_headers(&oracles::headers_from_bytes(lines.as_bytes()));
        prop_assert_eq!(caller.api_version(), first.to_string());
        prop_assert_eq!(caller.client(), "a");
        prop_assert!(fuzz::check_api_version(fuzz::api_version_bytes(&caller), 1, 99).is_ok());
    }

    #[test]
    fn metadata_of_any_header_bytes_reads_consistently(data in proptest::collection::vec(any::<u8>(), 0..96)) {
        oracles::target_metadata(&data);
    }
}

#[test]
fn absent_or_empty_api_version_is_not_checked() {
    for (supported, current) in [(1, 1), (5, 9), (u32::MAX, u32::MAX)] {
        assert!(fuzz::check_api_version(None, supported, current).is_ok());
        assert!(fuzz::check_api_version(Some(b""), supported, current).is_ok());
    }
}

// ---- config values

const ALL_VALIDATORS: [Validator; 5] =
    [Validator::String, Validator::Int, Validator::PosInt, Validator::Float, Validator::PosFloat];

/// `1234567` → `1_234_567`: Python's digit grouping.
fn grouped(digits: &str) -> String {
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push('_');
        }
        out.push(c);
    }
    out
}

proptest! {
    #[test]
    fn any_int_reads_back_in_every_python_spelling(i: i64, pad in "[ \t]{0,2}", plus: bool, group: bool) {
        let digits = i.unsigned_abs().to_string();
        let digits = if group { grouped(&digits) } else { digits };
        let sign = if i < 0 { "-" } else if plus { "+" } else { "" };
        let text = format!("{pad}{sign}{digits}{pad}");
        prop_assert_eq!(fuzz::parse_int(&text), Some(i), "{}", text);
        prop_assert_eq!(fuzz::parse_float(&text), Some(i as f64), "{}", text);
        prop_assert!(fuzz::check_value(Validator::Int, &text).is_ok());
        prop_assert_eq!(fuzz::check_value(Validator::PosInt, &text).is_ok(), i > 0, "{}", text);
        prop_assert!(fuzz::check_value(Validator::Float, &text).is_ok());
    }

    #[test]
    fn any_finite_float_reads_back_exactly(f in any::<f64>().prop_filter("finite", |f| f.is_finite()), exp: bool) {
        let text = if exp { format!("{f:e}") } else { f.to_string() };
        prop_assert_eq!(fuzz::parse_float(&text).map(f64::to_bits), Some(f.to_bits()), "{}", text);
        prop_assert!(fuzz::check_value(Validator::Float, &text).is_ok());
        prop_assert_eq!(fuzz::check_value(Validator::PosFloat, &text).is_ok(), f > 0.0, "{}", text);
        let duration = fuzz::parse_duration(&text);
        if f < 0.0 {
            prop_assert_eq!(duration, None, "{}", text);
        } else if f < 1e18 {
            let secs = duration.map(|d| d.as_secs_f64()).unwrap_or(f64::NAN);
            prop_assert!((secs - f).abs() <= 1e-9 * (1.0 + f), "{} read as {} s", text, secs);
        }
    }

    #[test]
    fn values_with_a_stray_character_are_no_number(text in "[0-9]{0,4}[#@/:x,;][0-9]{0,4}") {
        prop_assert_eq!(fuzz::parse_int(&text), None);
        prop_assert_eq!(fuzz::parse_float(&text), None);
        for validator in [Validator::Int, Validator::PosInt, Validator::Float, Validator::PosFloat] {
            let error = fuzz::check_value(validator, &text).unwrap_err();
            prop_assert_eq!(error.result_code(), Some(ResultCode::ErrorParamInvalid));
            let quoted = format!("{text:?}");
            prop_assert!(error.message().contains("fuzz-item") && error.message().contains(&quoted), "{}", error);
        }
        prop_assert!(fuzz::check_value(Validator::String, &text).is_ok());
    }

    #[test]
    fn underscores_are_only_allowed_between_digits(digits in "[0-9]{1,4}", at in 0usize..3) {
        let text = [format!("_{digits}"), format!("{digits}_"), format!("{digits}__0")][at].clone();
        prop_assert_eq!(fuzz::parse_int(&text), None, "{}", text);
        prop_assert_eq!(fuzz::parse_float(&text), None, "{}", text);
    }

    #[test]
    fn validation_agrees_with_typed_reads_for_any_text(value in "\\PC{0,12}|[-+ 0-9_.eE]{0,12}", can_be_empty: bool) {
        for validator in ALL_VALIDATORS {
            oracles::assert_config_value(validator, can_be_empty, &value);
        }
    }

    #[test]
    fn config_values_of_any_bytes_keep_the_invariants(data in proptest::collection::vec(any::<u8>(), 0..24)) {
        oracles::target_config_value(&data);
    }
}

#[test]
fn named_floats_follow_python() {
    for text in ["inf", "-Infinity", "+INF", " nan "] {
        assert!(fuzz::parse_float(text).is_some(), "{text}");
        assert_eq!(fuzz::parse_int(text), None, "{text}");
    }
    assert!(fuzz::check_value(Validator::PosFloat, "nan").is_err(), "NaN is not > 0");
    assert!(fuzz::check_value(Validator::PosFloat, "inf").is_ok());
    assert_eq!(fuzz::parse_duration("inf"), None);
}

// ---- config.json

fn json_scalar_or_container() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        Just(serde_json::json!([])),
        Just(serde_json::json!({"nested": "x"})),
    ]
}

proptest! {
    #[test]
    fn any_config_map_written_by_the_server_reads_back_the_same(map in proptest::collection::btree_map(any::<String>(), any::<String>(), 0..6)) {
        let text = fuzz::config_file_text(&map);
        prop_assert_eq!(fuzz::parse_config_file(text.as_bytes()).ok(), Some(map.clone()));
        let compact = serde_json::to_vec(&map).unwrap();
        prop_assert_eq!(fuzz::parse_config_file(&compact).ok(), Some(map));
    }

    #[test]
    fn a_config_value_that_is_not_a_string_refuses_the_file(
        map in proptest::collection::btree_map("[a-z-]{1,8}", "[ -~]{0,8}", 0..4), key in "[A-Z]{1,4}", bad in json_scalar_or_container(),
    ) {
        let mut object: serde_json::Map<String, serde_json::Value> = map.into_iter().map(|(k, v)| (k, v.into())).collect();
        object.insert(key, bad);
        let error = fuzz::parse_config_file(&serde_json::to_vec(&object).unwrap()).unwrap_err();
        prop_assert_eq!(error.result_code(), Some(ResultCode::ErrorModelInvalid));
        prop_assert!(error.message().contains(fuzz::FILE), "{}", error.message());
    }

    #[test]
    fn a_config_file_that_is_not_an_object_is_refused(bad in prop_oneof![json_scalar_or_container(), any::<String>().prop_map(serde_json::Value::from)]) {
        prop_assume!(!bad.is_object());
        let error = fuzz::parse_config_file(&serde_json::to_vec(&bad).unwrap()).unwrap_err();
        prop_assert_eq!(error.result_code(), Some(ResultCode::ErrorModelInvalid));
    }

    #[test]
    fn a_truncated_config_file_is_refused_not_read_short(
        map in proptest::collection::btree_map("[a-z-]{1,8}", "\\PC{0,8}", 1..4), cut in any::<prop::sample::Index>(),
    ) {
        let text = fuzz::config_file_text(&map);
        let end = text.trim_end().len();
        let cut = cut.index(end);
        prop_assert!(fuzz::parse_config_file(&text.as_bytes()[..cut]).is_err(), "{:?}", &text[..cut]);
    }

    #[test]
    fn config_file_of_any_bytes_keeps_the_invariants(data in proptest::collection::vec(any::<u8>(), 0..64)) {
        oracles::target_config_file(&data);
    }
}

// ---- proxy.json

fn proxy_entries() -> impl Strategy<Value = Vec<ProxyEntry>> {
    proptest::collection::btree_map("[a-z][a-z0-9-]{0,8}", ("\\PC{0,10}", 0u32..=65535, "\\PC{0,8}"), 0..5).prop_map(
        |map| map.into_iter().map(|(name, (host, port, version))| ProxyEntry { name, version, host, port }).collect(),
    )
}

fn one_entry_file(name: &str, entry: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ name: entry })).unwrap()
}

proptest! {
    #[test]
    fn registrations_written_by_the_main_server_read_back_the_same(entries in proxy_entries()) {
        let text = fuzz::proxy_state_text(&entries);
        let registered: Vec<_> = entries.into_iter().filter(|e| e.port > 0).collect();
        prop_assert_eq!(fuzz::parse_proxy_state(text.as_bytes(), &|_| true).ok(), Some(registered));
    }

    #[test]
    fn a_port_beyond_65535_is_refused_for_a_known_service(port in 65536u64..) {
        let file = one_entry_file("sample", serde_json::json!({"host": "h", "port": port, "version": "1"}));
        let error = fuzz::parse_proxy_state(&file, &|name| name == "sample").unwrap_err();
        prop_assert_eq!(error.result_code(), Some(ResultCode::ErrorModelInvalid));
        prop_assert!(error.message().contains("sample: port must be 0 to 65535"), "{}", error.message());
        prop_assert_eq!(fuzz::parse_proxy_state(&file, &|_| false).ok(), Some(vec![]), "unknown services are skipped");
    }

    #[test]
    fn a_missing_or_mistyped_field_is_refused_for_a_known_service_only(
        field in prop_oneof![Just("host"), Just("port"), Just("version")], bad in json_scalar_or_container(), drop: bool,
    ) {
        let mut entry = serde_json::json!({"host": "h", "port": 80, "version": "1"});
        if drop {
            entry.as_object_mut().unwrap().remove(field);
        } else {
            // Integers are valid ports: replace them by a negative one.
            let bad = if field == "port" && bad.is_u64() { serde_json::json!(-1) } else { bad };
            prop_assume!(field == "port" || !bad.is_string());
            entry[field] = bad;
        }
        let file = one_entry_file("sample", entry);
        prop_assert_eq!(code_of(fuzz::parse_proxy_state(&file, &|name| name == "sample")), Some(ResultCode::ErrorModelInvalid));
        prop_assert_eq!(fuzz::parse_proxy_state(&file, &|_| false).ok(), Some(vec![]));
    }

    #[test]
    fn a_truncated_proxy_file_is_refused(entries in proxy_entries(), cut in any::<prop::sample::Index>()) {
        let text = fuzz::proxy_state_text(&entries);
        let cut = cut.index(text.trim_end().len());
        prop_assert!(fuzz::parse_proxy_state(&text.as_bytes()[..cut], &|_| true).is_err());
    }

    #[test]
    fn proxy_state_of_any_bytes_keeps_the_invariants(data in proptest::collection::vec(any::<u8>(), 0..64)) {
        oracles::target_proxy_state(&data);
    }
}

/// Found by the `proxy_state` fuzz target: a port above 65535 was read, then truncated to
/// another port when forwarding.
#[test]
fn proxy_state_with_port_77467_is_refused() {
    let file = br#"{"sample": {"host": "!", "port": 77467, "version": "1.0"}}"#;
    let error = fuzz::parse_proxy_state(file, &|_| true).unwrap_err();
    assert_eq!(error.result_code(), Some(ResultCode::ErrorModelInvalid));
}

// ---- fuzz corpus replay

#[test]
fn every_committed_fuzz_input_replays_clean() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let mut counts = BTreeMap::new();
    for (name, target) in oracles::TARGETS {
        let dir = corpus.join(name);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            if std::panic::catch_unwind(|| target(&data)).is_err() {
                panic!("{name}: {} fails again", path.display());
            }
            *counts.entry(name).or_insert(0) += 1;
        }
        assert!(counts.get(name).is_some_and(|&n| n > 0), "no corpus for {name} in {}", dir.display());
    }
    eprintln!("fuzz corpus replayed: {counts:?}");
}

// ---- the request path's fuzz corpus, replayed over a real connection

#[allow(dead_code, missing_docs)]
#[path = "../../fuzz/request_path.rs"]
mod request_path;

static PANICS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn count_panic(info: &std::panic::PanicHookInfo<'_>) {
    eprintln!("panic: {info}");
    PANICS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

#[test]
fn every_committed_request_path_input_is_answered_and_panics_nowhere() {
    let rig = request_path::rig(count_panic);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/request_path");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        request_path::drive(rig, &std::fs::read(entry.unwrap().path()).unwrap());
        replayed += 1;
    }
    assert!(replayed > 0, "no corpus in {}", dir.display());
    assert_eq!(PANICS.load(std::sync::atomic::Ordering::SeqCst), 0, "a server task panicked");
}

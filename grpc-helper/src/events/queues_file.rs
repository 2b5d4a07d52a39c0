//! The `queues.json` format: the original's `{"<id>": [], ...}` map, read and written, and the
//! `[1, 2]` list that versions of this crate before 0.1 wrote, read only.

use std::path::Path;

use crate::RpcError;
use crate::api::ResultCode;

/// The queue ids of a parsed `queues.json`; `path` only names the file in the error.
pub(crate) fn ids_from_json(value: serde_json::Value, path: &Path) -> Result<Vec<u32>, RpcError> {
    let invalid = |why: String| {
        RpcError::new(
            ResultCode::ErrorModelInvalid,
            format!(
                "Invalid queues json file (expecting {{\"<id>\": [], ...}} or a list of ids: {why}): {}",
                path.display()
            ),
        )
    };
    match value {
        serde_json::Value::Object(map) => map
            .keys()
            .map(|key| key.trim().parse::<u32>().map_err(|e| invalid(format!("key {key:?} is not a queue id: {e}"))))
            .collect(),
        list @ serde_json::Value::Array(_) => serde_json::from_value(list).map_err(|e| invalid(e.to_string())),
        other => Err(invalid(format!("got {other}"))),
    }
}

/// The original's form: each id a key, with the empty list of persisted events it expects.
pub(crate) fn ids_to_json(ids: impl IntoIterator<Item = u32>) -> serde_json::Value {
    ids.into_iter().map(|id| (id.to_string(), serde_json::json!([]))).collect::<serde_json::Map<_, _>>().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Vec<u32>, RpcError> {
        ids_from_json(serde_json::from_str(text).unwrap(), Path::new("/w/queues.json"))
    }

    #[test]
    fn reads_the_original_map_and_the_old_list() {
        assert_eq!(read(r#"{"1": [], "7": []}"#).unwrap(), [1, 7]);
        assert_eq!(read("[1, 2]").unwrap(), [1, 2]);
        assert_eq!(read("{}").unwrap(), Vec::<u32>::new());
    }

    #[test]
    fn writes_the_original_map() {
        assert_eq!(ids_to_json([1, 12]), serde_json::json!({"1": [], "12": []}));
        assert_eq!(read(&ids_to_json([3, 4]).to_string()).unwrap(), [3, 4]);
    }

    #[test]
    fn other_shapes_name_the_file_and_the_expected_form() {
        for text in [r#"{"x": []}"#, r#"["a"]"#, "12", r#"{"-1": []}"#] {
            let error = read(text).unwrap_err();
            assert_eq!(error.result_code(), Some(ResultCode::ErrorModelInvalid), "{text}");
            assert!(
                error
                    .message()
                    .starts_with("Invalid queues json file (expecting {\"<id>\": [], ...} or a list of ids: "),
                "{error}"
            );
            assert!(error.message().ends_with(": /w/queues.json"), "{error}");
        }
    }
}

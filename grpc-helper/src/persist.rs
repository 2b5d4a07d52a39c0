//! Crash-safe state files: write a temporary file beside the target, flush it to disk, rename
//! it over the target, then flush the folder, so a reader sees the old or the new content,
//! never a partial one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use crate::RpcError;
use crate::api::ResultCode;

/// Atomically replaces `path` with `bytes` (the folder must exist).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let temp = dir.join(format!(".{}.{}.tmp", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new().write(true).create(true).truncate(true).open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Reads a JSON state file: `Ok(None)` when it does not exist; a clear error naming the file
/// when it cannot be read or parsed.
pub(crate) fn read_json(path: &Path) -> Result<Option<serde_json::Value>, RpcError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(RpcError::new(ResultCode::ErrorModelInvalid, format!("Cannot read {}: {e}", path.display())));
        }
    };
    parse_json(&bytes, path).map(Some)
}

/// Parses the contents of a JSON state file (UTF-8 is checked by the parser); `path` only
/// names the file in the error.
pub(crate) fn parse_json(bytes: &[u8], path: &Path) -> Result<serde_json::Value, RpcError> {
    serde_json::from_slice(bytes).map_err(|e| {
        RpcError::new(ResultCode::ErrorModelInvalid, format!("Invalid json file (bad json: {e}): {}", path.display()))
    })
}

/// The text [`write_json`] writes: pretty JSON and a final newline.
pub(crate) fn json_text(value: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("JSON values always serialize");
    text.push('\n');
    text
}

/// Writes pretty JSON atomically, creating the folder if needed.
pub(crate) fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), RpcError> {
    let failed =
        |e: io::Error| RpcError::new(ResultCode::ErrorRequestFailed, format!("Cannot write {}: {e}", path.display()));
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(failed)?;
    }
    write_atomic(path, json_text(value).as_bytes()).map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_content_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_json(&path, &serde_json::json!({"a": "1"})).unwrap();
        write_json(&path, &serde_json::json!({"a": "2"})).unwrap();
        assert_eq!(read_json(&path).unwrap().unwrap(), serde_json::json!({"a": "2"}));
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["state.json"]);
    }

    #[test]
    fn missing_file_is_none_and_bad_json_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        assert!(read_json(&path).unwrap().is_none());
        fs::write(&path, "{not json").unwrap();
        let error = read_json(&path).unwrap_err();
        assert_eq!(error.result_code(), Some(ResultCode::ErrorModelInvalid));
        assert!(error.message().contains(&path.display().to_string()), "{error}");
    }
}

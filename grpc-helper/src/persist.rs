//! Crash-safe state files: write a temporary file beside the target, flush it to disk, rename
//! it over the target, then flush the folder, so a reader sees the old or the new content,
//! never a partial one.
//!
//! Concurrency: the writes of one file are serialised (a lock per path), and each write has a
//! temporary file of its own, with an unguessable name, created exclusively and without
//! following links: two writers never share a temporary file, and a link planted beside the
//! target cannot redirect a write.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, Weak};

use parking_lot::Mutex;

use crate::RpcError;
use crate::api::ResultCode;

/// The lock of one file's writes (kept while a writer holds it).
fn lock_of(path: &Path) -> Arc<Mutex<()>> {
    static LOCKS: OnceLock<Mutex<HashMap<PathBuf, Weak<Mutex<()>>>>> = OnceLock::new();
    let mut locks = LOCKS.get_or_init(Default::default).lock();
    if let Some(lock) = locks.get(path).and_then(Weak::upgrade) {
        return lock;
    }
    locks.retain(|_, lock| lock.strong_count() > 0);
    let lock = Arc::new(Mutex::new(()));
    locks.insert(path.to_path_buf(), Arc::downgrade(&lock));
    lock
}

/// A new temporary file beside the target: `.<name>.<pid>.<random>.tmp`, created exclusively
/// (`O_EXCL`: an existing file or link there fails, and another name is tried) and `O_NOFOLLOW`,
/// readable by the owner only (state files name peers, backends and queue ids).
fn create_temp(dir: &Path, name: &str) -> io::Result<(PathBuf, File)> {
    let mut last = None;
    for _ in 0..8 {
        let temp = dir.join(format!(".{name}.{}.{:016x}.tmp", std::process::id(), crate::random::u64()));
        match OpenOptions::new().write(true).create_new(true).custom_flags(libc::O_NOFOLLOW).mode(0o600).open(&temp) {
            Ok(file) => return Ok((temp, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no temporary file name left")))
}

/// Atomically replaces `path` with `bytes` (the folder must exist).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let lock = lock_of(path);
    let _serialised = lock.lock();
    let (temp, mut file) = create_temp(dir, &name.to_string_lossy())?;
    let result = (|| {
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
    fn concurrent_writers_of_one_file_never_leave_it_partial() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.json");
        write_json(&path, &serde_json::json!({"writer": "none"})).unwrap();
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let reader = scope.spawn(|| {
                let mut reads = 0;
                let mut torn = Vec::new();
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    match read_json(&path) {
                        Ok(Some(value)) if value.get("writer").is_some() => reads += 1,
                        other => torn.push(format!("{other:?}")),
                    }
                }
                assert!(torn.is_empty(), "readers saw {} partial files, e.g. {:.200}", torn.len(), torn[0]);
                reads
            });
            let writers: Vec<_> = (0..8)
                .map(|writer| {
                    let path = &path;
                    scope.spawn(move || {
                        for round in 0..40 {
                            // Sizes differ, so that a shared temporary file would show a torn write.
                            let padding = "x".repeat((writer * 997 + round * 131) % 20_000);
                            write_json(path, &serde_json::json!({"writer": writer.to_string(), "padding": padding}))
                                .unwrap();
                        }
                    })
                })
                .collect();
            // Joined before any unwrap: a failed writer must not leave the reader spinning.
            let written: Vec<_> = writers.into_iter().map(std::thread::ScopedJoinHandle::join).collect();
            done.store(true, std::sync::atomic::Ordering::Relaxed);
            let reads = reader.join();
            assert!(written.iter().all(Result::is_ok), "a writer failed");
            assert!(reads.unwrap() > 0);
        });
        let value = read_json(&path).unwrap().unwrap();
        assert!(value["writer"].as_str().unwrap().parse::<usize>().unwrap() < 8, "{value}");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["proxy.json"], "no temporary file left");
    }

    #[test]
    fn a_link_planted_at_a_predictable_temporary_name_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim.txt");
        fs::write(&victim, "precious").unwrap();
        let path = dir.path().join("loggers.json");
        // Where the previous scheme wrote, and the same with a few likely suffixes.
        let pid = std::process::id();
        for name in [format!(".loggers.json.{pid}.tmp"), format!(".loggers.json.{pid}.0.tmp")] {
            std::os::unix::fs::symlink(&victim, dir.path().join(name)).unwrap();
        }
        write_json(&path, &serde_json::json!({"app": "DEBUG"})).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious", "the link was not followed");
        assert_eq!(read_json(&path).unwrap().unwrap(), serde_json::json!({"app": "DEBUG"}));
        assert!(!fs::symlink_metadata(&path).unwrap().file_type().is_symlink());
    }

    #[test]
    fn an_existing_name_is_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (first, _file) = create_temp(dir.path(), "x.json").unwrap();
        let (second, _file) = create_temp(dir.path(), "x.json").unwrap();
        assert_ne!(first, second);
        // O_NOFOLLOW | O_EXCL: a link at the chosen name fails instead of being followed.
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path().join("target"), &link).unwrap();
        let error = OpenOptions::new().write(true).create_new(true).custom_flags(libc::O_NOFOLLOW).open(&link);
        assert_eq!(error.unwrap_err().kind(), io::ErrorKind::AlreadyExists);
        assert!(!dir.path().join("target").exists());
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

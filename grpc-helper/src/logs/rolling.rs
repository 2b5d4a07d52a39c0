//! A log file rotated on time, like Python's `TimedRotatingFileHandler`: `name.log` is renamed
//! `name.log.YYYY-MM-DD_HH-MM-SS` when its interval ends, and only the newest `backup` renamed
//! files are kept (0 keeps all).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, Duration, Local, NaiveTime, TimeZone};

/// When files rotate (`rpc-logs-interval-unit` × `rpc-logs-interval`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rotation {
    /// Every `n` seconds.
    Every(i64),
    /// At midnight, every `n` days.
    Midnight(i64),
    /// At midnight before the given weekday (0 = Monday), every `n` weeks.
    Weekly(u32, i64),
}

impl Rotation {
    /// From the unit (S, M, H, D, MIDNIGHT, W0–W6, any case) and the interval.
    pub(crate) fn parse(unit: &str, interval: i64) -> Option<Self> {
        // Validated on the way in; clamped again so that no product or date can overflow.
        let interval = interval.clamp(1, crate::config::RpcConfig::MAX_LOGS_INTERVAL);
        Some(match unit.to_ascii_uppercase().as_str() {
            "S" => Self::Every(interval),
            "M" => Self::Every(60 * interval),
            "H" => Self::Every(3600 * interval),
            "D" => Self::Every(86400 * interval),
            "MIDNIGHT" => Self::Midnight(interval),
            w if w.len() == 2 && w.starts_with('W') => Self::Weekly(w[1..].parse().ok().filter(|d| *d <= 6)?, interval),
            _ => return None,
        })
    }

    /// The end of the interval that starts at `from`.
    fn next_after(self, from: DateTime<Local>) -> DateTime<Local> {
        let midnight_after = |days: i64| {
            let date = from.date_naive() + Duration::days(days);
            Local.from_local_datetime(&date.and_time(NaiveTime::MIN)).earliest().unwrap_or(from + Duration::days(days))
        };
        match self {
            Self::Every(seconds) => from + Duration::seconds(seconds),
            Self::Midnight(days) => midnight_after(days),
            Self::Weekly(day, weeks) => {
                let today = from.weekday().num_days_from_monday();
                let ahead = (i64::from(day) - i64::from(today)).rem_euclid(7);
                let ahead = if ahead == 0 { 7 } else { ahead };
                midnight_after(ahead + 7 * (weeks - 1))
            }
        }
    }
}

/// One rotating log file.
pub(crate) struct RollingFile {
    path: PathBuf,
    file: File,
    rotation: Rotation,
    backup: usize,
    opened: DateTime<Local>,
    next: DateTime<Local>,
}

/// Opens a log for appending: never through a symbolic link (a link planted in the logs folder
/// would send the lines elsewhere), and a new one readable by its owner only (at DEBUG, the
/// call lines hold request contents).
fn open_log(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new().create(true).append(true).custom_flags(libc::O_NOFOLLOW).mode(0o600).open(path).map_err(|e| {
        if e.raw_os_error() == Some(libc::ELOOP) {
            io::Error::new(
                e.kind(),
                format!("{} is a symbolic link: logs are not written through links", path.display()),
            )
        } else {
            e
        }
    })
}

impl RollingFile {
    pub(crate) fn open(path: PathBuf, rotation: Rotation, backup: usize) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = open_log(&path)?;
        let opened = Local::now();
        Ok(Self { path, file, rotation, backup, opened, next: rotation.next_after(opened) })
    }

    pub(crate) fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        let now = Local::now();
        if now >= self.next {
            self.rotate(now)?;
        }
        self.file.write_all(line)
    }

    fn rotate(&mut self, now: DateTime<Local>) -> io::Result<()> {
        let suffix = self.opened.format("%Y-%m-%d_%H-%M-%S");
        let mut rotated = PathBuf::from(format!("{}.{suffix}", self.path.display()));
        let mut n = 1;
        while rotated.exists() {
            n += 1;
            rotated = PathBuf::from(format!("{}.{suffix}.{n}", self.path.display()));
        }
        std::fs::rename(&self.path, &rotated)?;
        self.file = open_log(&self.path)?;
        self.opened = now;
        self.next = self.rotation.next_after(now);
        self.prune()
    }

    /// Keeps the newest `backup` rotated files.
    fn prune(&self) -> io::Result<()> {
        if self.backup == 0 {
            return Ok(());
        }
        let mut rotated = rotated_files(&self.path)?;
        rotated.sort();
        let excess = rotated.len().saturating_sub(self.backup);
        for old in &rotated[..excess] {
            let _ = std::fs::remove_file(old);
        }
        Ok(())
    }
}

/// `name.log.*` beside `path`.
fn rotated_files(path: &Path) -> io::Result<Vec<PathBuf>> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else { return Ok(Vec::new()) };
    let prefix = format!("{}.", name.to_string_lossy());
    Ok(std::fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(&prefix)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_intervals() {
        assert_eq!(Rotation::parse("s", 2), Some(Rotation::Every(2)));
        assert_eq!(Rotation::parse("H", 1), Some(Rotation::Every(3600)));
        assert_eq!(Rotation::parse("midnight", 1), Some(Rotation::Midnight(1)));
        assert_eq!(Rotation::parse("W6", 1), Some(Rotation::Weekly(6, 1)));
        assert_eq!(Rotation::parse("W7", 1), None);
        let from = Local::now();
        let next = Rotation::Midnight(1).next_after(from);
        assert!(next > from && next - from <= Duration::hours(25));
        let weekly = Rotation::Weekly(from.weekday().num_days_from_monday(), 1).next_after(from);
        assert!(weekly - from > Duration::days(6), "same weekday: next week");
    }

    #[test]
    fn a_huge_interval_computes_a_date_instead_of_panicking() {
        let from = Local::now();
        for unit in ["S", "M", "H", "D", "MIDNIGHT", "W3"] {
            let next = Rotation::parse(unit, i64::MAX).unwrap().next_after(from);
            assert!(next > from, "{unit}");
        }
    }

    #[test]
    fn rotates_and_keeps_the_newest_backups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        let mut file = RollingFile::open(path.clone(), Rotation::Every(1), 2).unwrap();
        for i in 0..4 {
            // Force the interval to end.
            file.next = Local::now() - Duration::seconds(1);
            file.opened = Local::now() - Duration::seconds(10 - i);
            file.write_line(format!("line {i}\n").as_bytes()).unwrap();
        }
        assert_eq!(rotated_files(&path).unwrap().len(), 2);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "line 3\n");
    }
}

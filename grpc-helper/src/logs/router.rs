//! Routes each event to log files: `<logs>/<service>/<service>.log` for events inside a
//! manager's `rpc{service, server}` span, and `<logs>/root/root.log` of that server for every
//! event (events outside any server go to every server's root log).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::OnceLock;

use parking_lot::Mutex;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

use super::escape::{Escaped, EscapingWriter};
use super::rolling::{RollingFile, Rotation};

/// Where one server writes its logs.
pub(crate) struct ServerLogs {
    dir: PathBuf,
    rotation: Rotation,
    backup: usize,
    root: Option<RollingFile>,
    services: HashMap<String, RollingFile>,
}

impl ServerLogs {
    fn write(&mut self, service: Option<&str>, line: &[u8]) {
        let (dir, rotation, backup) = (&self.dir, self.rotation, self.backup);
        let open = |name: &str| {
            RollingFile::open(dir.join(name).join(format!("{name}.log")), rotation, backup)
                .map_err(|e| eprintln!("grpc-helper: cannot open log file in {}: {e}", dir.display()))
                .ok()
        };
        if let Some(service) = service {
            if !self.services.contains_key(service)
                && let Some(file) = open(service)
            {
                self.services.insert(service.to_owned(), file);
            }
            if let Some(file) = self.services.get_mut(service) {
                let _ = file.write_line(line);
            }
        }
        if self.root.is_none() {
            self.root = open("root");
        }
        if let Some(file) = &mut self.root {
            let _ = file.write_line(line);
        }
    }
}

/// Every server's logs, by server id.
fn registry() -> &'static Mutex<HashMap<u64, ServerLogs>> {
    static SERVERS: OnceLock<Mutex<HashMap<u64, ServerLogs>>> = OnceLock::new();
    SERVERS.get_or_init(Default::default)
}

/// Starts writing the logs of server `id` in `dir`; stops when the guard is dropped.
pub(crate) fn register(id: u64, dir: PathBuf, rotation: Rotation, backup: usize) -> LogsGuard {
    let logs = ServerLogs { dir, rotation, backup, root: None, services: HashMap::new() };
    registry().lock().insert(id, logs);
    LogsGuard(id)
}

/// Closes a server's log files when dropped.
pub(crate) struct LogsGuard(u64);

impl Drop for LogsGuard {
    fn drop(&mut self) {
        registry().lock().remove(&self.0);
    }
}

/// The service and server of a manager span, kept in the span's extensions.
struct Tag {
    service: String,
    server: u64,
}

#[derive(Default)]
struct TagVisitor {
    service: Option<String>,
    server: Option<u64>,
}

impl Visit for TagVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "service" {
            self.service = Some(value.to_owned());
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() == "server" {
            self.server = Some(value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "service" && self.service.is_none() {
            self.service = Some(format!("{value:?}").trim_matches('"').to_owned());
        }
    }
}

/// Formats `message` first, then the other fields as `key=value`.
struct LineVisitor<'a> {
    line: &'a mut String,
    fields: String,
    /// The real target of a record of the `log` crate (bridged by `tracing-log`, whose events
    /// all have the target `log`).
    log_target: Option<String>,
}

// Escaped: a record is one line, whatever client-supplied text its message holds.
impl Visit for LineVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => drop(EscapingWriter(self.line).write_str(value)),
            "log.target" => self.log_target = Some(value.to_owned()),
            "log.module_path" | "log.file" => {}
            name => drop(write!(EscapingWriter(&mut self.fields), " {name}={value}")),
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if field.name() != "log.line" {
            let _ = write!(self.fields, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(EscapingWriter(self.line), "{value:?}");
        } else {
            let _ = write!(EscapingWriter(&mut self.fields), " {}={value:?}", field.name());
        }
    }
}

/// The file-writing layer.
pub(crate) struct FileRouter;

impl<S> Layer<S> for FileRouter
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if !super::is_rpc_span(attrs.metadata()) {
            return;
        }
        let mut visitor = TagVisitor::default();
        attrs.record(&mut visitor);
        if let (Some(service), Some(server), Some(span)) = (visitor.service, visitor.server, ctx.span(id)) {
            span.extensions_mut().insert(Tag { service, server });
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut servers = registry().lock();
        if servers.is_empty() {
            return;
        }
        let tag = ctx.event_scope(event).and_then(|scope| {
            scope
                .from_root()
                .filter_map(|span| span.extensions().get::<Tag>().map(|t| (t.server, t.service.clone())))
                .last()
        });
        let meta = event.metadata();
        let mut message = String::new();
        let mut visitor = LineVisitor { line: &mut message, fields: String::new(), log_target: None };
        event.record(&mut visitor);
        let (fields, log_target) = (std::mem::take(&mut visitor.fields), visitor.log_target.take());
        let target = log_target.as_deref().unwrap_or(meta.target());
        let time = chrono::Local::now().format("%Y-%m-%d %H:%M:%S%.3f");
        let line = format!("{time} {:<5} {}: {message}{fields}\n", meta.level(), Escaped(target));
        match tag {
            Some((server, service)) => {
                if let Some(logs) = servers.get_mut(&server) {
                    logs.write(Some(&service), line.as_bytes());
                }
            }
            None => {
                for logs in servers.values_mut() {
                    logs.write(None, line.as_bytes());
                }
            }
        }
    }
}

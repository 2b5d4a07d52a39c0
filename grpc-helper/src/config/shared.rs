//! The user items shared by replicas through a NATS JetStream key-value bucket
//! (`rpc-config-url`, feature `nats`).
//!
//! The bucket [`BUCKET`] holds one key, [`KEY`]: a JSON object of strings, like
//! `config.json`, with every user item set remotely and not reset since. One document rather
//! than a key per item, so that a `set` of several items is one write (all or nothing) and
//! each replica applies it at once. Writes compare and swap on the key's revision, so two
//! replicas setting different items at the same time both win. Every replica watches the key
//! and applies each new revision: an item missing from it is at this replica's default, a
//! value this replica finds invalid is skipped with a warning. Names that this server does not
//! define are kept untouched: they may be the items of another kind of server.

use std::collections::BTreeMap;
use std::sync::Weak;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use tokio_stream::StreamExt as _;

use super::{Config, Inner};
use crate::RpcError;
use crate::api::ResultCode;

/// The key-value bucket of the shared user items.
pub(crate) const BUCKET: &str = "GRPC_HELPER_CONFIG";
/// Its one key: the JSON object of the items set remotely.
pub(crate) const KEY: &str = "user-items";
const ITEM: &str = "rpc-config-url";
/// Revisions kept per key: enough to read what changed recently with `nats kv history`.
const HISTORY: i64 = 5;

/// How many times a write retries when another replica wrote between its read and its write.
const CONFLICT_RETRIES: usize = 20;

pub(super) struct Shared {
    url: String,
    store: kv::Store,
    /// One write at a time from this process: they would only conflict with each other.
    writing: tokio::sync::Mutex<()>,
    watcher: tokio::task::AbortHandle,
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

type Document = BTreeMap<String, String>;

fn unreachable(url: &str, what: &str, e: impl std::fmt::Display) -> RpcError {
    crate::nats::unreachable(url, ITEM, what, e)
}

fn parse(bytes: &[u8]) -> Result<Document, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("not a JSON object of strings ({e})"))
}

impl Config {
    /// Connects to the NATS at `url`, makes the bucket if it is missing, applies its values
    /// (or seeds it with this replica's persisted ones when it is empty), and starts watching.
    ///
    /// # Errors
    /// [`ResultCode::ErrorStateUnreachable`] when NATS cannot be reached within `wait` or has
    /// no JetStream.
    pub(crate) async fn share(&self, access: &crate::nats::NatsAccess) -> Result<(), RpcError> {
        let (url, name) = (access.url.as_str(), access.name(BUCKET));
        let client = crate::nats::connect(access, "shared config items").await?;
        let js = jetstream::new(client);
        let store = bucket(&js, &name).await.map_err(|e| {
            unreachable(url, "no JetStream key-value bucket for the config (is the server started with -js?)", e)
        })?;
        let current = store.entry(KEY).await.map_err(|e| unreachable(url, "config not read", e))?;
        match current.filter(|e| e.operation == kv::Operation::Put) {
            Some(entry) => {
                self.apply_entry(&entry);
                if self.0.persisted.as_deref().is_some_and(std::path::Path::exists) {
                    tracing::info!(
                        "User config items come from NATS at {url} (bucket {name}); those of the workspace \
                         config.json are not used"
                    );
                }
            }
            None => self.seed(&store, url).await?,
        }
        let watcher = tokio::spawn(watch(Config::downgrade(self), store.clone(), url.to_owned())).abort_handle();
        let shared = Shared { url: url.to_owned(), store, writing: tokio::sync::Mutex::new(()), watcher };
        if self.0.shared.set(shared).is_err() {
            return Err(RpcError::new(ResultCode::ErrorStateUnexpected, "the config is already shared"));
        }
        tracing::info!("User config items shared through NATS at {url} (bucket {name})");
        Ok(())
    }

    /// The first replica of a fleet brings the values it persisted (`create` fails when
    /// another replica was first: then its document is applied).
    async fn seed(&self, store: &kv::Store, url: &str) -> Result<(), RpcError> {
        let document: Document = (self.0.entries.iter())
            .filter(|e| e.user && *e.value.read() != e.default)
            .map(|e| (e.item.name.to_owned(), e.value.read().clone()))
            .collect();
        let bytes = serde_json::to_vec(&document).expect("a map of strings serialises");
        match store.create(KEY, bytes.into()).await {
            Ok(revision) => {
                if !document.is_empty() {
                    tracing::info!(
                        "Shared config (bucket {}) started from this replica's values: {document:?}",
                        store.name
                    );
                }
                self.apply(&document, revision);
                Ok(())
            }
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                let entry = store.entry(KEY).await.map_err(|e| unreachable(url, "config not read", e))?;
                if let Some(entry) = entry {
                    self.apply_entry(&entry);
                }
                Ok(())
            }
            Err(e) => Err(unreachable(url, "config not stored", e)),
        }
    }

    /// Stops applying the bucket's changes (at shutdown).
    pub(crate) fn stop_sharing(&self) {
        if let Some(shared) = self.0.shared.get() {
            shared.watcher.abort();
        }
    }

    /// Stores new values (`None`: back to the default) in the bucket, then applies them here;
    /// the other replicas apply them from their watch. Validated by the caller.
    pub(super) async fn store_shared(&self, values: &[(String, Option<String>)]) -> Result<(), RpcError> {
        let shared = self.0.shared.get().expect("called when shared");
        let _one_at_a_time = shared.writing.lock().await;
        let url = &shared.url;
        for _ in 0..CONFLICT_RETRIES {
            let current = shared.store.entry(KEY).await.map_err(|e| unreachable(url, "config not changed", e))?;
            let (mut document, revision) = match current {
                Some(entry) if entry.operation == kv::Operation::Put => {
                    // A document damaged by hand is replaced, not merged.
                    (parse(&entry.value).unwrap_or_default(), entry.revision)
                }
                Some(entry) => (Document::new(), entry.revision),
                None => (Document::new(), 0),
            };
            for (name, value) in values {
                match value {
                    Some(value) => document.insert(name.clone(), value.clone()),
                    None => document.remove(name),
                };
            }
            let bytes = serde_json::to_vec(&document).expect("a map of strings serialises").into();
            let written = match revision {
                0 => shared
                    .store
                    .create(KEY, bytes)
                    .await
                    .map_err(|e| (e.kind() == kv::CreateErrorKind::AlreadyExists, e.to_string())),
                _ => (shared.store.update(KEY, bytes, revision).await)
                    .map_err(|e| (e.kind() == kv::UpdateErrorKind::WrongLastRevision, e.to_string())),
            };
            match written {
                Ok(revision) => {
                    self.apply(&document, revision);
                    return Ok(());
                }
                Err((true, _)) => continue,
                Err((false, e)) => return Err(unreachable(url, "config not changed", e)),
            }
        }
        Err(RpcError::new(
            ResultCode::ErrorItemBusy,
            format!("Config not changed: other replicas kept changing it ({CONFLICT_RETRIES} tries); try again"),
        ))
    }

    fn apply_entry(&self, entry: &kv::Entry) {
        let document = match entry.operation {
            kv::Operation::Put => match parse(&entry.value) {
                Ok(document) => document,
                Err(e) => {
                    tracing::warn!("Shared config (key {KEY}) revision {} ignored: {e}", entry.revision);
                    return;
                }
            },
            // Deleted or purged by hand: every item back to its default.
            kv::Operation::Delete | kv::Operation::Purge => Document::new(),
        };
        self.apply(&document, entry.revision);
    }

    /// Makes `document` the values of the user items, unless a later revision is applied.
    fn apply(&self, document: &Document, revision: u64) {
        let mut applied = self.0.applied_revision.lock();
        if revision <= *applied {
            return;
        }
        for entry in self.0.entries.iter().filter(|e| e.user) {
            let value = document.get(entry.item.name).unwrap_or(&entry.default);
            if *entry.value.read() == *value {
                continue;
            }
            match entry.item.validate(value) {
                Ok(()) => {
                    let old = std::mem::replace(&mut *entry.value.write(), value.clone());
                    tracing::info!(
                        "Config item {} set to {value:?} (was {old:?}) from the shared config (revision {revision})",
                        entry.item.name
                    );
                }
                Err(e) => tracing::warn!(
                    "Shared config value {value:?} of {} is invalid here, kept {:?}: {}",
                    entry.item.name,
                    entry.value.read(),
                    e.message()
                ),
            }
        }
        *applied = revision;
        self.0.changes.send_modify(|n| *n += 1);
    }

    fn downgrade(&self) -> Weak<Inner> {
        std::sync::Arc::downgrade(&self.0)
    }
}

/// Opens the bucket, making it when missing. Its stream is made here, with the settings that
/// a key-value bucket needs, because `create_key_value` first asks for the account's limits in
/// a form that NATS 2.9 (Debian's) does not answer.
async fn bucket(js: &jetstream::Context, name: &str) -> Result<kv::Store, async_nats::Error> {
    use jetstream::stream;
    let settings = stream::Config {
        name: format!("KV_{name}"),
        description: Some("grpc-helper user config items (rpc-config-url)".into()),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: HISTORY,
        storage: stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        num_replicas: 1,
        ..Default::default()
    };
    js.get_or_create_stream(settings).await?;
    Ok(js.get_key_value(name).await?)
}

/// Applies every new revision of the key until the config is dropped or stops sharing;
/// watches again after a failure (NATS gone, then back).
async fn watch(config: Weak<Inner>, store: kv::Store, url: String) {
    let mut failing = false;
    loop {
        match store.watch_with_history(KEY).await {
            Ok(mut entries) => {
                if std::mem::take(&mut failing) {
                    tracing::info!("Watching the shared config at {url} again");
                }
                while let Some(entry) = entries.next().await {
                    let Some(inner) = config.upgrade() else { return };
                    match entry {
                        Ok(entry) => Config(inner).apply_entry(&entry),
                        Err(e) => {
                            tracing::warn!("Watch of the shared config at {url} ({ITEM}) broken: {e}");
                            failing = true;
                            break;
                        }
                    }
                }
            }
            // Said once per outage; the retries go to DEBUG.
            Err(e) if !failing => {
                tracing::warn!("Cannot watch the shared config at {url} ({ITEM}), retrying every second: {e}");
                failing = true;
            }
            Err(e) => tracing::debug!("Still cannot watch the shared config at {url}: {e}"),
        }
        if config.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

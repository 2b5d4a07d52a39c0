//! The one way this crate connects to NATS (feature `nats`): for the shared events
//! (`rpc-events-url`) and the shared user config items (`rpc-config-url`), with NATS's own
//! authentication and TLS from files named by config items, and a prefix on every name used
//! there, so that two fleets can share one NATS.

use std::path::PathBuf;
use std::time::Duration;

use crate::RpcError;
use crate::api::ResultCode;
use crate::config::{Config, RpcConfig};

/// How this server reaches NATS: the URL (logged, so never holding credentials), the
/// credentials and CA from files, and the prefix of its names there.
#[derive(Clone, Debug)]
pub(crate) struct NatsAccess {
    pub(crate) url: String,
    /// The item holding the URL, for the messages.
    pub(crate) item: &'static str,
    prefix: String,
    user: Option<(String, PathBuf)>,
    token_file: Option<PathBuf>,
    nkey_file: Option<PathBuf>,
    creds_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    wait: Duration,
}

fn invalid(message: String) -> RpcError {
    RpcError::new(ResultCode::ErrorParamInvalid, message)
}

impl NatsAccess {
    /// The access to the NATS at `url` (held by `item`), with the server's `rpc-nats-*` items.
    pub(crate) fn from_config(config: &Config, url: &str, item: &'static str) -> Result<Self, RpcError> {
        let text = |it: &crate::config::ConfigItem| config.get(it).as_str().trim().to_owned();
        let file = |it: &crate::config::ConfigItem| Some(PathBuf::from(text(it))).filter(|p| !p.as_os_str().is_empty());
        let authority = url.split_once("://").map_or(url, |(_, rest)| rest);
        if authority.split('/').next().is_some_and(|host| host.contains('@')) {
            return Err(invalid(format!(
                "{item} holds credentials: give them in files instead (rpc-nats-user with rpc-nats-password-file, \
                 rpc-nats-token-file, rpc-nats-nkey-file or rpc-nats-creds-file): the URL is shown in logs and errors"
            )));
        }
        let user = match (text(&RpcConfig::NATS_USER), file(&RpcConfig::NATS_PASSWORD_FILE)) {
            (user, Some(password)) if !user.is_empty() => Some((user, password)),
            (user, None) if user.is_empty() => None,
            _ => {
                return Err(invalid(
                    "rpc-nats-user and rpc-nats-password-file go together: set both or neither".into(),
                ));
            }
        };
        let wait = Duration::from_secs(u64::try_from(config.get(&RpcConfig::EVENTS_WAIT).as_int()?).unwrap_or(0));
        Ok(Self {
            url: url.to_owned(),
            item,
            prefix: text(&RpcConfig::NATS_PREFIX),
            user,
            token_file: file(&RpcConfig::NATS_TOKEN_FILE),
            nkey_file: file(&RpcConfig::NATS_NKEY_FILE),
            creds_file: file(&RpcConfig::NATS_CREDS_FILE),
            ca_file: file(&RpcConfig::NATS_CA_FILE),
            wait,
        })
    }

    /// A stream or bucket name (`GRPC_HELPER_EVENTS`), under the prefix (`fleet-a_GRPC_HELPER_EVENTS`).
    pub(crate) fn name(&self, base: &str) -> String {
        if self.prefix.is_empty() { base.to_owned() } else { format!("{}_{base}", self.prefix) }
    }

    /// A subject (`grpc-helper.events`), under the prefix (`fleet-a.grpc-helper.events`).
    pub(crate) fn subject(&self, base: &str) -> String {
        if self.prefix.is_empty() { base.to_owned() } else { format!("{}.{base}", self.prefix) }
    }

    /// The connect options: a name, a timeout, and the credentials and CA read from their files.
    async fn options(&self, purpose: &str) -> Result<async_nats::ConnectOptions, RpcError> {
        let read = |item: &str, path: &PathBuf| {
            std::fs::read_to_string(path)
                .map(|text| text.trim().to_owned())
                .map_err(|e| invalid(format!("Cannot read {item} {}: {e}", path.display())))
        };
        let mut options = async_nats::ConnectOptions::new()
            .name(format!("grpc-helper {purpose}"))
            .connection_timeout(Duration::from_secs(2));
        if let Some((user, password)) = &self.user {
            options = options.user_and_password(user.clone(), read("rpc-nats-password-file", password)?);
        }
        if let Some(path) = &self.token_file {
            options = options.token(read("rpc-nats-token-file", path)?);
        }
        if let Some(path) = &self.nkey_file {
            options = options.nkey(read("rpc-nats-nkey-file", path)?);
        }
        if let Some(path) = &self.creds_file {
            options = options
                .credentials_file(path)
                .await
                .map_err(|e| invalid(format!("Cannot use rpc-nats-creds-file {}: {e}", path.display())))?;
        }
        if let Some(path) = &self.ca_file {
            if !path.is_file() {
                return Err(invalid(format!("rpc-nats-ca-file {} is not a file", path.display())));
            }
            options = options.add_root_certificates(path.clone()).require_tls(true);
        }
        Ok(options)
    }
}

/// Connects, retrying every 250 ms for `rpc-events-wait`; `purpose` says what for, in the
/// error and the logs.
///
/// # Errors
/// [`ResultCode::ErrorStateUnreachable`] when NATS cannot be reached (or refuses the
/// credentials) within the wait; [`ResultCode::ErrorParamInvalid`] for a credentials file
/// that cannot be read.
pub(crate) async fn connect(access: &NatsAccess, purpose: &str) -> Result<async_nats::Client, RpcError> {
    let (url, item, wait) = (access.url.as_str(), access.item, access.wait);
    let deadline = crate::wire::instant_after(std::time::Instant::now(), wait);
    let mut attempts = 0u32;
    loop {
        match access.options(purpose).await?.connect(url).await {
            Ok(client) => return Ok(client),
            Err(e) if std::time::Instant::now() >= deadline => {
                return Err(RpcError::new(
                    ResultCode::ErrorStateUnreachable,
                    format!(
                        "Cannot reach NATS at {url} ({item}) for the {purpose}: {e}; start `nats-server -js` there, \
                         fix the URL or the rpc-nats-* credentials, or set rpc-events-wait to wait for it at start"
                    ),
                ));
            }
            Err(e) => {
                // Said once; the retries go to DEBUG.
                if attempts == 0 {
                    tracing::warn!("Waiting up to {wait:?} for NATS at {url} ({item}, rpc-events-wait): {e}");
                } else {
                    tracing::debug!("Still waiting for NATS at {url}: {e}");
                }
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

/// An error of NATS while serving, naming the URL and the item that holds it.
pub(crate) fn unreachable(url: &str, item: &str, what: &str, e: impl std::fmt::Display) -> RpcError {
    RpcError::new(ResultCode::ErrorStateUnreachable, format!("NATS at {url} ({item}): {what}: {e}"))
}

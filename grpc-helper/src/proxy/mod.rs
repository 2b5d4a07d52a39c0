//! Proxied services: declared on a main server (no manager), served by a backend that registers
//! itself (`srv.proxy_register`). Calls are forwarded as raw HTTP/2 requests (no decode or
//! re-encode, all four RPC shapes), with the caller's metadata (client name suffixed
//! `(proxied)`), API version and deadline. One client per backend is reused, and dropped when
//! no registration points to it any more.

mod backends;
mod forward;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use tokio::sync::watch;

use crate::api::{Event, EventProperty, ResultCode, ServiceInfo};
use crate::events::EventQueues;
use crate::{ApiVersion, RpcError};

pub(crate) use backends::{Backends, ForwardOptions};
pub(crate) use forward::{config_via, with_via};

/// A service served by a backend server.
pub(crate) struct Proxied {
    pub name: &'static str,
    /// gRPC service name (`SampleService`): calls to `/SampleService/...` are forwarded.
    pub grpc: &'static str,
    supported: u32,
    current: u32,
    registration: RwLock<Registration>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Registration {
    pub(crate) version: String,
    pub(crate) host: String,
    /// 0 when not registered, else 1 to 65535.
    pub(crate) port: u32,
}

/// The registrations saved in `proxy.json` (its parsed JSON), for the services that `known`
/// accepts: entries of other services are skipped unchecked (a service may have been removed
/// since). `path` only names the file in errors.
pub(crate) fn parse_state(
    value: serde_json::Value,
    path: &Path,
    known: &dyn Fn(&str) -> bool,
) -> Result<Vec<(String, Registration)>, RpcError> {
    let invalid = |why: &str| {
        RpcError::new(ResultCode::ErrorModelInvalid, format!("Invalid proxy json file ({why}): {}", path.display()))
    };
    let serde_json::Value::Object(entries) = value else { return Err(invalid("expecting an object")) };
    let mut found = Vec::new();
    for (name, entry) in entries {
        if !known(&name) {
            continue;
        }
        let field = |key: &str| entry.get(key).ok_or_else(|| invalid(&format!("{name}: missing {key}")));
        let host = field("host")?.as_str().ok_or_else(|| invalid("host must be a string"))?.to_owned();
        let version = field("version")?.as_str().ok_or_else(|| invalid("version must be a string"))?.to_owned();
        // As `register` checks: a larger number would be truncated to another port when forwarding.
        let port = field("port")?
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| invalid(&format!("{name}: port must be 0 to 65535")))?;
        let port = u32::from(port);
        found.push((name, Registration { version, host, port }));
    }
    Ok(found)
}

impl Proxied {
    pub(crate) fn new<V: ApiVersion>(name: &'static str, grpc: &'static str) -> Self {
        let version = format!("grpc-helper:{}", env!("CARGO_PKG_VERSION"));
        Self {
            name,
            grpc,
            supported: V::SUPPORTED,
            current: V::CURRENT,
            registration: RwLock::new(Registration { version, ..Registration::default() }),
        }
    }

    pub(crate) fn info(&self) -> ServiceInfo {
        let r = self.registration.read();
        ServiceInfo {
            name: self.name.to_owned(),
            version: r.version.clone(),
            current_api_version: self.current,
            supported_api_version: self.supported,
            is_proxy: true,
            proxy_host: r.host.clone(),
            proxy_port: r.port,
        }
    }
}

/// Every proxied service of a server, and the clients of their backends.
pub(crate) struct Proxies {
    services: Vec<Proxied>,
    backends: Backends,
    persisted: Option<PathBuf>,
    /// Held from the check of a registration change to its application: one write of
    /// `proxy.json` at a time, each from the state that the previous one left.
    writes: tokio::sync::Mutex<()>,
    changes: watch::Sender<u64>,
    events: Option<Arc<dyn EventQueues>>,
    health: tonic_health::server::HealthReporter,
}

impl Proxies {
    pub(crate) fn new(
        services: Vec<Proxied>,
        persisted: Option<PathBuf>,
        backends: Backends,
        events: Option<Arc<dyn EventQueues>>,
        health: tonic_health::server::HealthReporter,
    ) -> Result<Self, RpcError> {
        if let Some(path) = &persisted
            && let Some(value) = crate::persist::read_json(path)?
        {
            let known = |name: &str| services.iter().any(|s| s.name == name);
            for (name, registration) in parse_state(value, path, &known)? {
                if let Some(service) = services.iter().find(|s| s.name == name) {
                    *service.registration.write() = registration;
                }
            }
        }
        let (changes, _) = watch::channel(0);
        let writes = tokio::sync::Mutex::new(());
        Ok(Self { services, backends, persisted, writes, changes, events, health })
    }

    pub(crate) fn infos(&self) -> impl Iterator<Item = ServiceInfo> + '_ {
        self.services.iter().map(Proxied::info)
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.services.iter().map(|s| s.name)
    }

    pub(crate) fn grpc_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.services.iter().map(|s| s.grpc)
    }

    /// Health of the proxied services: SERVING while registered.
    pub(crate) async fn report_health(&self) {
        for service in &self.services {
            let status = if service.registration.read().port > 0 {
                tonic_health::ServingStatus::Serving
            } else {
                tonic_health::ServingStatus::NotServing
            };
            self.health.set_service_status(service.grpc, status).await;
        }
    }

    fn find(&self, name: &str) -> Option<&Proxied> {
        self.services.iter().find(|s| s.name == name)
    }

    /// The checks of `proxy_register` and `proxy_forget` on the names.
    fn check_names(&self, names: &[String], known: &(dyn Fn(&str) -> bool + Sync)) -> Result<Vec<&Proxied>, RpcError> {
        if names.is_empty() || names.iter().any(String::is_empty) {
            return Err(RpcError::new(ResultCode::ErrorParamMissing, "Missing input name in request"));
        }
        let mut found = Vec::with_capacity(names.len());
        for name in names {
            if !known(name) {
                return Err(RpcError::new(ResultCode::ErrorItemUnknown, format!("Unknown service: {name}")));
            }
        }
        for name in names {
            match self.find(name) {
                Some(service) => found.push(service),
                None => {
                    return Err(RpcError::new(
                        ResultCode::ErrorParamInvalid,
                        format!("At least one of the required services is not a proxy: {name}"),
                    ));
                }
            }
        }
        Ok(found)
    }

    /// `srv.proxy_register`. `known` tells whether a name is a service of the server at all.
    pub(crate) async fn register(
        &self,
        names: &[String],
        version: &str,
        host: &str,
        port: u32,
        known: &(dyn Fn(&str) -> bool + Sync),
    ) -> Result<(), RpcError> {
        let services = self.check_names(names, known)?;
        if version.is_empty() || port == 0 || port > u32::from(u16::MAX) {
            return Err(RpcError::new(
                ResultCode::ErrorParamMissing,
                "Missing input parameter in request (one of version or port; port must be 1 to 65535)",
            ));
        }
        self.backends.refuse_own_address(host, port as u16).await?;
        let registration = Registration { version: version.into(), host: host.into(), port };
        self.apply(&services, |_| registration.clone()).await?;
        self.event(
            "RPC_PROXY_REGISTER",
            &[
                ("names", names.join(",")),
                ("version", version.into()),
                ("port", port.to_string()),
                ("host", host.into()),
            ],
        );
        tracing::info!("proxy registered: {} -> {host}:{port} ({version})", names.join(","));
        Ok(())
    }

    /// `srv.proxy_forget`: clears host and port, keeps the version.
    pub(crate) async fn forget(&self, names: &[String], known: &(dyn Fn(&str) -> bool + Sync)) -> Result<(), RpcError> {
        let services = self.check_names(names, known)?;
        self.apply(&services, |old| Registration { version: old.version.clone(), ..Registration::default() }).await?;
        self.event("RPC_PROXY_FORGET", &[("names", names.join(","))]);
        tracing::info!("proxy forgotten: {}", names.join(","));
        Ok(())
    }

    /// Persists the registrations that `services` would have after `change`, and only once that
    /// is written applies them: a failed write changes nothing. Then drops the clients of
    /// backends no longer registered and wakes the calls waiting for a registration.
    async fn apply(
        &self,
        services: &[&Proxied],
        change: impl Fn(&Registration) -> Registration,
    ) -> Result<(), RpcError> {
        let _one_at_a_time = self.writes.lock().await;
        let next: Vec<(&str, Registration)> = self
            .services
            .iter()
            .map(|service| {
                let current = service.registration.read().clone();
                let changed = services.iter().any(|s| s.name == service.name);
                (service.name, if changed { change(&current) } else { current })
            })
            .collect();
        if let Some(path) = &self.persisted {
            let mut object = serde_json::Map::new();
            for (name, r) in next.iter().filter(|(_, r)| r.port > 0) {
                object.insert(
                    (*name).to_owned(),
                    serde_json::json!({"host": r.host, "port": r.port, "version": r.version}),
                );
            }
            let (path, value) = (path.clone(), serde_json::Value::Object(object));
            tokio::task::spawn_blocking(move || crate::persist::write_json(&path, &value)).await.map_err(|e| {
                RpcError::new(ResultCode::ErrorRequestFailed, format!("Cannot write proxy.json: {e}"))
            })??;
        }
        for (service, (_, registration)) in self.services.iter().zip(next) {
            *service.registration.write() = registration;
        }
        self.backends.keep_only(self.targets());
        self.changes.send_modify(|n| *n += 1);
        self.report_health().await;
        Ok(())
    }

    /// The `(host, port)` of every registered backend, each once, in service order (an empty
    /// host is the main host).
    pub(crate) fn targets(&self) -> Vec<(String, u16)> {
        let mut targets: Vec<(String, u16)> = Vec::new();
        for service in &self.services {
            let r = service.registration.read();
            if r.port > 0 {
                let target = (self.backends.host_of(&r.host), r.port as u16);
                if !targets.contains(&target) {
                    targets.push(target);
                }
            }
        }
        targets
    }

    /// Clients of every registered backend, for calls the main server fans out (config).
    /// Whether forwarded calls may carry the main's token (the router then asks whether the
    /// caller is an administrator).
    pub(crate) fn has_backend_token(&self) -> bool {
        self.backends.options.backend_token.is_some()
    }

    /// `authorization` with the main's token for its backends, if it has one.
    pub(crate) fn backend_authorization(&self) -> Option<http::HeaderValue> {
        self.backends.authorization()
    }

    pub(crate) fn backend_clients(&self) -> Result<Vec<crate::RpcClient>, RpcError> {
        self.targets().iter().map(|(host, port)| self.backends.client(host, *port)).collect()
    }

    fn event(&self, name: &str, properties: &[(&str, String)]) {
        if let Some(events) = &self.events {
            let properties =
                properties.iter().map(|(n, v)| EventProperty { name: (*n).into(), value: v.clone() }).collect();
            events.send(Event { name: name.into(), properties });
        }
    }

    /// The proxied service of a request path (`/SampleService/method4`), if any.
    pub(crate) fn route(&self, path: &str) -> Option<usize> {
        if self.services.is_empty() {
            return None;
        }
        let service = path.strip_prefix('/')?.split('/').next()?;
        self.services.iter().position(|s| s.grpc == service)
    }
}

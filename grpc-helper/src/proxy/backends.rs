//! The main server's side of its backends: one client per backend (kept while a registration
//! points to it), the forwarding options, and the refusal of the server's own address.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use parking_lot::Mutex;

use crate::api::ResultCode;
use crate::auth::BearerToken;
use crate::tls::ClientTls;
use crate::{RpcClient, RpcError};

/// How a main server forwards to its backends (set on the server builder).
#[derive(Clone)]
pub(crate) struct ForwardOptions {
    /// A call whose caller set no deadline is cut when its backend has not started answering
    /// within this long (`None`: never): the builder's, else `rpc-proxy-deadline` (set at start).
    pub(crate) deadline: Option<Duration>,
    /// What the builder said (`forward_deadline`), which wins over the config item.
    pub(crate) deadline_given: Option<Option<Duration>>,
    /// Whether the caller's `authorization` goes to the backend.
    pub(crate) forward_authorization: bool,
    /// The main server's own credentials for its backends: sent with the calls it fans out
    /// (config), and with the forwarded calls of callers it admits as administrators.
    pub(crate) backend_token: Option<BearerToken>,
    pub(crate) backend_tls: Option<ClientTls>,
}

impl Default for ForwardOptions {
    fn default() -> Self {
        Self {
            deadline: Some(Duration::from_secs(60)),
            deadline_given: None,
            forward_authorization: false,
            backend_token: None,
            backend_tls: None,
        }
    }
}

/// The backends of a main server.
pub(crate) struct Backends {
    /// `rpc-main-host`: where a registration without a host is served.
    main_host: String,
    /// This server's address: registering it would loop.
    local_addr: SocketAddr,
    /// `rpc-client-timeout`: how long an unreachable backend is retried.
    retry_window: Duration,
    pub(crate) options: ForwardOptions,
    /// Marks the calls this server forwarded (`rpc-proxy-via`), to find loops.
    pub(crate) hop_id: String,
    clients: Mutex<HashMap<(String, u16), RpcClient>>,
}

impl Backends {
    pub(crate) fn new(
        main_host: String,
        local_addr: SocketAddr,
        retry_window: Duration,
        options: ForwardOptions,
    ) -> Self {
        Self {
            main_host,
            local_addr,
            retry_window,
            options,
            hop_id: format!("{:016x}", crate::random::u64()),
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// `rpc-client-timeout`: the wait for a registration, and the retries of an unreachable backend.
    pub(crate) fn retry_window(&self) -> Duration {
        self.retry_window
    }

    /// The host to call for a registered host (empty: `rpc-main-host`).
    pub(crate) fn host_of(&self, registered: &str) -> String {
        if registered.is_empty() { self.main_host.clone() } else { registered.to_owned() }
    }

    /// The client of a backend, made on first use.
    pub(crate) fn client(&self, host: &str, port: u16) -> Result<RpcClient, RpcError> {
        let key = (host.to_owned(), port);
        if let Some(client) = self.clients.lock().get(&key) {
            return Ok(client.clone());
        }
        // No token of the client's own: it goes per call (`authorization`), not with every call.
        let mut builder = RpcClient::builder(host, port).name("proxy").timeout(self.retry_window);
        if let Some(tls) = &self.options.backend_tls {
            builder = builder.tls(tls.clone());
        }
        let client = builder.connect_lazy()?;
        Ok(self.clients.lock().entry(key).or_insert(client).clone())
    }

    /// `authorization: Bearer <backend token>`, if the main server has one for its backends.
    pub(crate) fn authorization(&self) -> Option<http::HeaderValue> {
        let token = self.options.backend_token.as_ref()?;
        let mut value = http::HeaderValue::try_from(format!("Bearer {}", token.secret())).ok()?;
        value.set_sensitive(true);
        Some(value)
    }

    /// Drops the clients of backends not in `targets` (their connections close once the calls
    /// still running on them end).
    pub(crate) fn keep_only(&self, targets: Vec<(String, u16)>) {
        self.clients.lock().retain(|key, _| targets.contains(key));
    }

    /// How many backend clients are open (for tests and the dump).
    #[cfg(test)]
    pub(crate) fn open(&self) -> usize {
        self.clients.lock().len()
    }

    /// Refuses a registration of this very server: each call would come back to it.
    pub(crate) async fn refuse_own_address(&self, host: &str, port: u16) -> Result<(), RpcError> {
        if port != self.local_addr.port() {
            return Ok(());
        }
        let host = self.host_of(host);
        let resolved =
            tokio::time::timeout(Duration::from_secs(2), tokio::net::lookup_host((host.as_str(), port))).await;
        // Unresolvable here: the hop marker still stops a loop at the first call.
        let Ok(Ok(addresses)) = resolved else { return Ok(()) };
        for address in addresses {
            if self.is_own_ip(address.ip()) {
                return Err(RpcError::new(
                    ResultCode::ErrorParamInvalid,
                    format!(
                        "Invalid proxy registration: {host}:{port} is this main server's own address ({}), so every \
                         call would come back here; register the backend's own host and port",
                        self.local_addr
                    ),
                ));
            }
        }
        Ok(())
    }

    fn is_own_ip(&self, ip: IpAddr) -> bool {
        let local = self.local_addr.ip();
        let ip = canonical(ip);
        if canonical(local) == ip {
            return true;
        }
        // Bound to every address: any address of this machine reaches it.
        local.is_unspecified()
            && (ip.is_loopback() || ip.is_unspecified() || std::net::UdpSocket::bind((ip, 0)).is_ok())
    }
}

/// IPv4-mapped IPv6 addresses as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backends(local: &str) -> Backends {
        Backends::new("localhost".into(), local.parse().unwrap(), Duration::from_secs(1), ForwardOptions::default())
    }

    #[tokio::test]
    async fn own_address_is_refused_in_every_spelling() {
        let any = backends("[::]:4000");
        for host in ["", "localhost", "127.0.0.1", "::1", "0.0.0.0", "::ffff:127.0.0.1"] {
            let error = any.refuse_own_address(host, 4000).await.unwrap_err();
            assert_eq!(error.result_code(), Some(ResultCode::ErrorParamInvalid), "{host:?}");
            assert!(error.message().contains("own address"), "{error}");
        }
        assert!(any.refuse_own_address("127.0.0.1", 4001).await.is_ok(), "another port is another server");
        let loopback = backends("127.0.0.1:4000");
        assert!(loopback.refuse_own_address("127.0.0.1", 4000).await.is_err());
        assert!(loopback.refuse_own_address("192.0.2.1", 4000).await.is_ok(), "another machine");
    }

    #[tokio::test]
    async fn clients_are_kept_only_for_registered_backends() {
        let backends = backends("127.0.0.1:4000");
        backends.client("127.0.0.1", 5000).unwrap();
        backends.client("127.0.0.1", 5000).unwrap();
        backends.client("127.0.0.1", 5001).unwrap();
        assert_eq!(backends.open(), 2);
        backends.keep_only(vec![("127.0.0.1".into(), 5001)]);
        assert_eq!(backends.open(), 1);
        backends.keep_only(Vec::new());
        assert_eq!(backends.open(), 0);
    }
}

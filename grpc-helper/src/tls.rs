//! TLS (rustls) for servers and clients, from PEM certificates and keys.
//!
//! ```no_run
//! use grpc_helper::tls::{ClientTls, ServerTls};
//! use grpc_helper::{RpcClient, RpcServer};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let server = RpcServer::builder().tls(ServerTls::from_files("server.pem", "server.key", None::<&str>)?).start().await?;
//! let tls = ClientTls::new(std::fs::read("server.pem")?); // a self-signed server: trust its certificate
//! let client = RpcClient::builder("localhost", 54321).tls(tls).connect_lazy()?;
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::RpcError;
use crate::api::ResultCode;

/// A server's TLS settings.
///
/// ```no_run
/// # async fn demo() -> Result<(), grpc_helper::RpcError> {
/// use grpc_helper::{RpcServer, tls::ServerTls};
///
/// let tls = ServerTls::from_files("server.pem", "server.key", Some("ca.pem"))?;
/// let server = RpcServer::builder().tls(tls).start().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ServerTls {
    pub(crate) cert: Vec<u8>,
    pub(crate) key: Vec<u8>,
    pub(crate) ca: Option<Vec<u8>>,
    pub(crate) verify_clients: bool,
    pub(crate) domain: String,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").field("verify_clients", &self.verify_clients).finish_non_exhaustive()
    }
}

impl ServerTls {
    /// The server's certificate (chain) and private key, in PEM.
    ///
    /// ```no_run
    /// use grpc_helper::tls::ServerTls;
    ///
    /// let tls = ServerTls::new(std::fs::read("server.pem")?, std::fs::read("server.key")?);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new(cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        Self { cert: cert_pem.into(), key: key_pem.into(), ca: None, verify_clients: false, domain: "localhost".into() }
    }

    /// The deployment's CA (PEM) that signed the server's certificate: the managers'
    /// auto-clients trust it (without one, they trust the certificate itself, fine when it is
    /// self-signed).
    ///
    /// ```no_run
    /// # let (cert, key, ca) = (Vec::<u8>::new(), Vec::<u8>::new(), Vec::<u8>::new());
    /// let tls = grpc_helper::tls::ServerTls::new(cert, key).ca(ca);
    /// ```
    pub fn ca(mut self, ca_pem: impl Into<Vec<u8>>) -> Self {
        self.ca = Some(ca_pem.into());
        self
    }

    /// Mutual TLS: clients must present a certificate signed by the [`ca`](Self::ca); without
    /// a CA, the server refuses to start.
    ///
    /// ```no_run
    /// # let (cert, key, ca) = (Vec::<u8>::new(), Vec::<u8>::new(), Vec::<u8>::new());
    /// let tls = grpc_helper::tls::ServerTls::new(cert, key).ca(ca).verify_clients();
    /// ```
    pub fn verify_clients(mut self) -> Self {
        self.verify_clients = true;
        self
    }

    /// The name the server's certificate is valid for, used by the auto-clients on loopback
    /// (default `localhost`).
    ///
    /// ```no_run
    /// # let (cert, key) = (Vec::<u8>::new(), Vec::<u8>::new());
    /// let tls = grpc_helper::tls::ServerTls::new(cert, key).domain("rpc.example.org");
    /// ```
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = domain.into();
        self
    }

    /// Reads the PEM files; with a CA, clients must present a certificate it signed.
    ///
    /// # Errors
    /// [`ResultCode::ErrorParamInvalid`] naming a file that cannot be read.
    ///
    /// ```
    /// use grpc_helper::ResultCode;
    /// use grpc_helper::tls::ServerTls;
    ///
    /// let missing = ServerTls::from_files("/no/such/cert.pem", "/no/such/key.pem", None::<&str>).unwrap_err();
    /// assert_eq!(missing.result_code(), Some(ResultCode::ErrorParamInvalid));
    /// assert!(missing.message().contains("/no/such/cert.pem"));
    /// ```
    pub fn from_files(
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
        ca: Option<impl AsRef<Path>>,
    ) -> Result<Self, RpcError> {
        let tls = Self::new(read(cert.as_ref(), "certificate")?, read(key.as_ref(), "private key")?);
        Ok(match ca {
            Some(ca) => tls.ca(read(ca.as_ref(), "CA certificate")?).verify_clients(),
            None => tls,
        })
    }

    /// Settings that cannot work: `verify_clients` without a CA would accept any client.
    pub(crate) fn check(&self) -> Result<(), RpcError> {
        if self.verify_clients && self.ca.is_none() {
            return Err(RpcError::new(
                ResultCode::ErrorParamMissing,
                "ServerTls::verify_clients needs the CA that signs the client certificates: add ServerTls::ca (or --tls-ca)",
            ));
        }
        Ok(())
    }

    /// The server's TLS: its identity, the clients' CA when they must present a certificate,
    /// and HTTP/2 as the only protocol (ALPN `h2`).
    pub(crate) fn acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, RpcError> {
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        use tokio_rustls::rustls::{RootCertStore, ServerConfig, crypto::ring, server::WebPkiClientVerifier};

        let invalid = |e: &dyn std::fmt::Display| {
            RpcError::new(ResultCode::ErrorParamInvalid, format!("Invalid TLS certificate or key: {e}"))
        };
        let certs = |pem: &[u8]| CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>();
        let chain = certs(&self.cert).map_err(|e| invalid(&e))?;
        let key = PrivateKeyDer::from_pem_slice(&self.key).map_err(|e| invalid(&e))?;
        let provider = Arc::new(ring::default_provider());
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(&e))?;
        let builder = match (&self.ca, self.verify_clients) {
            (Some(ca), true) => {
                let mut roots = RootCertStore::empty();
                for cert in certs(ca).map_err(|e| invalid(&e))? {
                    roots.add(cert).map_err(|e| invalid(&e))?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| invalid(&e))?;
                builder.with_client_cert_verifier(verifier)
            }
            _ => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(chain, key).map_err(|e| invalid(&e))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }

    /// TLS of the auto-clients: trust the CA (or the certificate itself, when self-signed), and
    /// present the server's identity when client certificates are required.
    pub(crate) fn auto_client(&self) -> ClientTls {
        let trust = ClientTls::new(self.ca.clone().unwrap_or_else(|| self.cert.clone())).domain(self.domain.clone());
        if self.verify_clients { trust.identity(self.cert.clone(), self.key.clone()) } else { trust }
    }
}

/// A client's TLS settings.
///
/// ```no_run
/// use grpc_helper::{RpcClient, tls::ClientTls};
///
/// # fn demo(ca: Vec<u8>) -> Result<(), grpc_helper::RpcError> {
/// let client = RpcClient::builder("server.example", 54321).tls(ClientTls::new(ca)).connect_lazy()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ClientTls {
    ca: Vec<u8>,
    domain: Option<String>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").field("domain", &self.domain).finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Trusts servers whose certificate this CA (PEM) signed.
    ///
    /// ```no_run
    /// let tls = grpc_helper::tls::ClientTls::new(std::fs::read("ca.pem")?);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn new(ca_pem: impl Into<Vec<u8>>) -> Self {
        Self { ca: ca_pem.into(), domain: None, identity: None }
    }

    /// The name to check the server's certificate against (default: the host given).
    ///
    /// ```no_run
    /// # fn demo(ca: Vec<u8>) -> Result<(), grpc_helper::RpcError> {
    /// use grpc_helper::tls::ClientTls;
    ///
    /// // Reached by IP address, with a certificate issued for the name.
    /// let tls = ClientTls::new(ca).domain("rpc.example.org");
    /// let client = grpc_helper::RpcClient::builder("10.0.0.7", 54321).tls(tls).connect_lazy()?;
    /// # Ok(()) }
    /// ```
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.domain = Some(domain.into());
        self
    }

    /// The client's certificate and key (PEM), for servers requiring mutual TLS.
    ///
    /// ```no_run
    /// let tls = grpc_helper::tls::ClientTls::new(std::fs::read("ca.pem")?)
    ///     .identity(std::fs::read("client.pem")?, std::fs::read("client.key")?);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn identity(mut self, cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        self.identity = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// The tonic settings of a connection to `host` (the name checked unless `domain` was set).
    pub(crate) fn client_config(&self, host: &str) -> tonic::transport::ClientTlsConfig {
        let domain =
            self.domain.clone().unwrap_or_else(|| host.trim_start_matches('[').trim_end_matches(']').to_owned());
        let mut config = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&self.ca))
            .domain_name(domain);
        if let Some((cert, key)) = &self.identity {
            config = config.identity(tonic::transport::Identity::from_pem(cert, key));
        }
        config
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, RpcError> {
    std::fs::read(path).map_err(|e| {
        RpcError::new(ResultCode::ErrorParamInvalid, format!("Cannot read the TLS {what} {}: {e}", path.display()))
    })
}

/// TLS file paths as given on the command line.
#[derive(Debug, Clone, Default)]
pub(crate) struct TlsFiles {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub ca: Option<PathBuf>,
}

impl TlsFiles {
    /// `None` without a certificate; an error when only one of certificate and key is given.
    pub(crate) fn load(&self) -> Result<Option<ServerTls>, RpcError> {
        match (&self.cert, &self.key) {
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => ServerTls::from_files(cert, key, self.ca.as_ref()).map(Some),
            _ => Err(RpcError::new(ResultCode::ErrorParamMissing, "TLS needs both --tls-cert and --tls-key")),
        }
    }
}

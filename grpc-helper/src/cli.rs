//! Command-line options every grpc-helper server shares, as a clap `Args` struct to flatten
//! into a program's own parser.
//!
//! ```no_run
//! use clap::Parser;
//! use grpc_helper::{RpcServer, cli::ServerArgs};
//!
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(flatten)]
//!     server: ServerArgs,
//! }
//!
//! # async fn demo() -> Result<(), grpc_helper::RpcError> {
//! let server = RpcServer::builder().args(&Cli::parse().server).start().await?;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::valid_name;
use crate::{Folders, RpcServerBuilder};

/// `--system`, `--user`, `-w/--workspace`, `-p/--port`, `--bind`, `--auth-token-file`,
/// repeatable `-c/--config NAME=VALUE`, `--tls-cert`, `--tls-key`, `--tls-ca`, and the connection limits (`--max-concurrent-streams`,
/// `--handshake-timeout`, `--idle-timeout`, `--tcp-keepalive`, `--http2-keepalive`; seconds;
/// `0` turns one off; absent keeps the builder's default).
///
/// ```
/// use clap::Parser;
/// use grpc_helper::cli::ServerArgs;
///
/// #[derive(Parser)]
/// #[command(version)] // -V/--version
/// struct Cli {
///     #[command(flatten)]
///     server: ServerArgs,
/// }
///
/// let cli = Cli::try_parse_from(["my-server", "-p", "1234", "-w", "/tmp/ws", "-c", "my-item=5"]).unwrap();
/// assert_eq!(cli.server.port, 1234);
/// assert_eq!(cli.server.cli_config()["my-item"], "5");
/// assert!(Cli::try_parse_from(["my-server", "-c", "Bad_Name=1"]).is_err());
///
/// let cli = Cli::try_parse_from(["my-server", "--idle-timeout", "0", "--handshake-timeout", "2.5"]).unwrap();
/// assert_eq!(cli.server.idle_timeout, Some(std::time::Duration::ZERO)); // 0: never
/// assert_eq!(cli.server.handshake_timeout, Some(std::time::Duration::from_millis(2500)));
/// assert!(Cli::try_parse_from(["my-server", "--idle-timeout", "soon"]).is_err());
///
/// let cli = Cli::try_parse_from(["my-server", "--bind", "127.0.0.1", "--auth-token-file", "/run/token"]).unwrap();
/// assert_eq!(cli.server.bind, Some(std::net::Ipv4Addr::LOCALHOST.into()));
/// assert!(Cli::try_parse_from(["my-server", "--bind", "localhost"]).is_err()); // an address, not a name
/// ```
#[derive(Debug, Clone, clap::Args)]
// Flattened into a program's own parser: its doc comment must not become that program's help.
#[command(about = None, long_about = None)]
pub struct ServerArgs {
    /// System configuration folder (read only).
    #[arg(long, value_name = "PATH", default_value = "/etc/grpc_helper")]
    pub system: PathBuf,
    /// User configuration folder.
    #[arg(long, value_name = "PATH", default_value = "~/.config/grpc_helper")]
    pub user: PathBuf,
    /// Workspace folder (state and logs).
    #[arg(short, long, value_name = "PATH", default_value = "./grpc_helper")]
    pub workspace: PathBuf,
    /// TCP port to listen on.
    #[arg(short, long, default_value_t = 54321)]
    pub port: u16,
    /// Address to listen on (e.g. 127.0.0.1) [default: every address, IPv6 and IPv4].
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<std::net::IpAddr>,
    /// Guards the admin RPCs with the bearer token in this file (else they are accepted from
    /// loopback only).
    #[arg(long, value_name = "PATH")]
    pub auth_token_file: Option<PathBuf>,
    /// Overrides the default of a configuration item (repeatable).
    #[arg(short = 'c', long = "config", value_name = "NAME=VALUE", value_parser = parse_config_pair)]
    pub config: Vec<(String, String)>,
    /// TLS: the server's certificate (PEM).
    #[arg(long, value_name = "PATH", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS: the server's private key (PEM).
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// TLS: the CA (PEM) whose certificates clients must present (mutual TLS).
    #[arg(long, value_name = "PATH", requires = "tls_cert")]
    pub tls_ca: Option<PathBuf>,
    /// Calls at once per connection; 0: no limit [default: 256].
    #[arg(long, value_name = "N")]
    pub max_concurrent_streams: Option<u32>,
    /// Seconds a new connection has to send its HTTP/2 preface or TLS hello; 0: no limit
    /// [default: 10].
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub handshake_timeout: Option<Duration>,
    /// Seconds a connection without a call in progress stays open; 0: no limit [default: 300].
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub idle_timeout: Option<Duration>,
    /// Serves the server's metrics as Prometheus text on this port, at /metrics (feature `otel`).
    #[cfg(feature = "otel")]
    #[cfg_attr(docsrs, doc(cfg(feature = "otel")))]
    #[arg(long, value_name = "PORT")]
    pub metrics_port: Option<u16>,
    /// Seconds of silence before TCP keep-alive probes; 0: off [default: 60].
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub tcp_keepalive: Option<Duration>,
    /// Seconds of silence before an HTTP/2 ping to the client; 0: off [default: 0].
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub http2_keepalive: Option<Duration>,
}

impl ServerArgs {
    /// The folders, with `~` expanded to `$HOME` in each of the three (as the original does).
    ///
    /// ```
    /// use clap::Parser;
    ///
    /// #[derive(Parser)]
    /// struct Cli {
    ///     #[command(flatten)]
    ///     server: grpc_helper::cli::ServerArgs,
    /// }
    ///
    /// let cli = Cli::try_parse_from(["my-server", "-w", "/tmp/ws"]).unwrap();
    /// assert_eq!(cli.server.folders().workspace_dir(), Some(std::path::Path::new("/tmp/ws")));
    /// ```
    pub fn folders(&self) -> Folders {
        let (system, user, workspace) =
            (expand_home(&self.system), expand_home(&self.user), expand_home(&self.workspace));
        Folders::default().system(system).user(user).workspace(workspace)
    }

    pub(crate) fn tls_files(&self) -> crate::tls::TlsFiles {
        crate::tls::TlsFiles { cert: self.tls_cert.clone(), key: self.tls_key.clone(), ca: self.tls_ca.clone() }
    }

    /// The `-c` values (the last one wins for a repeated name).
    ///
    /// ```
    /// use clap::Parser;
    ///
    /// #[derive(Parser)]
    /// struct Cli {
    ///     #[command(flatten)]
    ///     server: grpc_helper::cli::ServerArgs,
    /// }
    ///
    /// let cli = Cli::try_parse_from(["my-server", "-c", "my-item=1", "-c", "my-item=2"]).unwrap();
    /// assert_eq!(cli.server.cli_config()["my-item"], "2");
    /// ```
    pub fn cli_config(&self) -> BTreeMap<String, String> {
        self.config.iter().cloned().collect()
    }
}

impl RpcServerBuilder {
    /// Port, address, token file, folders, `-c` values, TLS files and connection limits from
    /// the shared command-line options.
    ///
    /// ```no_run
    /// use clap::Parser;
    ///
    /// #[derive(Parser)]
    /// struct Cli {
    ///     #[command(flatten)]
    ///     server: grpc_helper::cli::ServerArgs,
    /// }
    ///
    /// # async fn demo() -> Result<(), grpc_helper::RpcError> {
    /// let cli = Cli::parse();
    /// let server = grpc_helper::RpcServer::builder().args(&cli.server).start().await?;
    /// server.wait_shutdown().await;
    /// # Ok(()) }
    /// ```
    pub fn args(self, args: &ServerArgs) -> Self {
        // On the command line 0 means off (no limit); absent keeps the builder's default.
        let set = |value: Duration| Some(value).filter(|v| !v.is_zero());
        let mut builder = self.tls_files(args.tls_files());
        if let Some(max) = args.max_concurrent_streams {
            builder = builder.max_concurrent_streams(Some(max).filter(|&m| m > 0));
        }
        if let Some(timeout) = args.handshake_timeout {
            builder = builder.handshake_timeout(set(timeout));
        }
        if let Some(timeout) = args.idle_timeout {
            builder = builder.idle_timeout(set(timeout));
        }
        if let Some(idle) = args.tcp_keepalive {
            builder = builder.tcp_keepalive(set(idle));
        }
        if let Some(interval) = args.http2_keepalive {
            builder = builder.http2_keepalive_interval(set(interval));
        }
        if let Some(ip) = args.bind {
            builder = builder.ip(ip);
        }
        #[cfg(feature = "otel")]
        if let Some(port) = args.metrics_port {
            builder = builder.metrics_port(port);
        }
        if let Some(path) = &args.auth_token_file {
            builder = builder.auth_token_file(path);
        }
        builder.port(args.port).folders(args.folders()).cli_config(args.cli_config())
    }
}

fn expand_home(path: &std::path::Path) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path.to_path_buf(),
    }
}

/// Seconds (decimals allowed, at most a day); `0` (off) is `Duration::ZERO`.
fn parse_seconds(text: &str) -> Result<Duration, String> {
    match text.trim().parse::<f64>() {
        Ok(0.0) => Ok(Duration::ZERO),
        Ok(s) if (0.001..=86_400.0).contains(&s) => Ok(Duration::from_secs_f64(s)),
        _ => Err(format!("expected seconds between 0.001 and 86400, or 0 for off; got {text:?}")),
    }
}

/// `NAME=VALUE`; the error starts with the original's message, then says what is expected.
fn parse_config_pair(text: &str) -> Result<(String, String), String> {
    let invalid = |why: &str| format!("Invalid syntax for config item definition: {text} ({why})");
    let (name, value) = text.split_once('=').ok_or_else(|| invalid("expected NAME=VALUE"))?;
    if !valid_name(name) {
        return Err(invalid("the NAME must be lowercase letters, digits and dashes, starting with a letter"));
    }
    Ok((name.to_owned(), value.to_owned()))
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    /// A program of a user's, with its own about text.
    #[derive(Parser)]
    #[command(about = "inventory server")]
    struct Program {
        #[command(flatten)]
        server: super::ServerArgs,
    }

    #[test]
    fn a_tilde_is_the_home_folder_in_each_of_the_three_folders() {
        let Some(home) = std::env::var_os("HOME").map(std::path::PathBuf::from) else { return };
        let args = ["my-server", "--system", "~/s", "--user", "~/u", "-w", "~/w"];
        let folders = Program::try_parse_from(args).unwrap().server.folders();
        assert_eq!(folders.workspace_dir(), Some(home.join("w").as_path()));
        assert_eq!(format!("{folders:?}").matches(&*home.to_string_lossy()).count(), 3, "{folders:?}");
    }

    #[test]
    fn help_shows_the_programs_about_text_and_the_options_only() {
        for help in [Program::command().render_help(), Program::command().render_long_help()] {
            let help = help.to_string();
            assert!(help.starts_with("inventory server\n"), "{help}");
            assert!(help.contains("--workspace <PATH>"), "{help}");
            assert!(!help.contains("```") && !help.contains("use clap::Parser"), "ServerArgs' rustdoc leaked: {help}");
        }
    }
}

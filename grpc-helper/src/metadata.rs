//! Caller metadata: the keys `client`, `user`, `host`, `ip` and `api_version` that clients send
//! and servers read (plain ASCII values; empty ones are not sent).

use std::fmt;
use std::sync::OnceLock;

use http::{HeaderMap, HeaderValue};

use crate::RpcError;
use crate::wire::key;

/// Who is calling: the metadata a grpc-helper client (Rust or Python) sends with every call.
///
/// Missing keys read as empty strings.
///
/// ```
/// use grpc_helper::CallerMetadata;
///
/// let mut headers = http::HeaderMap::new();
/// headers.insert("client", "demo".parse().unwrap());
/// headers.insert("api_version", "2".parse().unwrap());
/// let caller = CallerMetadata::from_headers(&headers);
/// assert_eq!(caller.client(), "demo");
/// assert_eq!(caller.api_version(), "2");
/// assert_eq!(caller.to_string(), "[demo]unknown@unknown(unknown) api:2");
/// ```
#[derive(Clone, Default)]
pub struct CallerMetadata {
    // Header values share the request's buffers: reading them costs no copy.
    client: Option<HeaderValue>,
    user: Option<HeaderValue>,
    host: Option<HeaderValue>,
    ip: Option<HeaderValue>,
    api_version: Option<HeaderValue>,
}

fn text(value: &Option<HeaderValue>) -> &str {
    value.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("")
}

impl CallerMetadata {
    /// Reads the five keys from request headers (the first value of a repeated key).
    ///
    /// ```
    /// let mut headers = http::HeaderMap::new();
    /// headers.append("user", "alice".parse().unwrap());
    /// headers.append("user", "bob".parse().unwrap());
    /// assert_eq!(grpc_helper::CallerMetadata::from_headers(&headers).user(), "alice");
    /// ```
    pub fn from_headers(headers: &HeaderMap) -> Self {
        // One pass over the few headers of a call costs less than five hashed lookups.
        let mut caller = Self::default();
        for (name, value) in headers {
            let slot = match name.as_str() {
                key::CLIENT => &mut caller.client,
                key::USER => &mut caller.user,
                key::HOST => &mut caller.host,
                key::IP => &mut caller.ip,
                key::API_VERSION => &mut caller.api_version,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(value.clone());
            }
        }
        caller
    }

    /// The client's name (e.g. `srv-client`).
    ///
    /// ```
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert("client", "srv-client".parse().unwrap());
    /// assert_eq!(grpc_helper::CallerMetadata::from_headers(&headers).client(), "srv-client");
    /// ```
    pub fn client(&self) -> &str {
        text(&self.client)
    }

    /// The OS user running the client.
    ///
    /// ```
    /// let caller = grpc_helper::CallerMetadata::default();
    /// assert_eq!(caller.user(), ""); // not sent
    /// ```
    pub fn user(&self) -> &str {
        text(&self.user)
    }

    /// The client's host name.
    ///
    /// ```
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert("host", "build-01".parse().unwrap());
    /// assert_eq!(grpc_helper::CallerMetadata::from_headers(&headers).host(), "build-01");
    /// ```
    pub fn host(&self) -> &str {
        text(&self.host)
    }

    /// The client's outbound IP address.
    ///
    /// ```
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert("ip", "10.0.0.7".parse().unwrap());
    /// let ip: std::net::IpAddr = grpc_helper::CallerMetadata::from_headers(&headers).ip().parse().unwrap();
    /// assert!(ip.is_ipv4());
    /// ```
    pub fn ip(&self) -> &str {
        text(&self.ip)
    }

    /// The API version the client was built against, as sent (decimal text, may be empty).
    ///
    /// ```
    /// let mut headers = http::HeaderMap::new();
    /// headers.insert("api_version", "3".parse().unwrap());
    /// let version: u32 = grpc_helper::CallerMetadata::from_headers(&headers).api_version().parse().unwrap();
    /// assert_eq!(version, 3);
    /// ```
    pub fn api_version(&self) -> &str {
        text(&self.api_version)
    }

    pub(crate) fn api_version_bytes(&self) -> Option<&[u8]> {
        self.api_version.as_ref().map(HeaderValue::as_bytes)
    }

    /// The caller check of every call, hosted or proxied: is the caller's API version within
    /// `supported..=current` of the service?
    pub(crate) fn check_api_version(&self, supported: u32, current: u32) -> Result<(), RpcError> {
        crate::version::check(self.api_version_bytes(), supported, current)
    }
}

impl fmt::Display for CallerMetadata {
    /// `[client]user@host(ip) api:N`, with `unknown` (and `0`) for missing parts; the parts
    /// are the caller's own words, so control characters are escaped (no forged log lines).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::logs::Escaped;
        fn or<'a>(missing: &'static str, value: &'a str) -> Escaped<'a> {
            Escaped(if value.is_empty() { missing } else { value })
        }
        write!(
            f,
            "[{}]{}@{}({}) api:{}",
            or("unknown", self.client()),
            or("unknown", self.user()),
            or("unknown", self.host()),
            or("unknown", self.ip()),
            or("0", self.api_version()),
        )
    }
}

impl fmt::Debug for CallerMetadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// This process's identity (user, host, ip), computed once.
pub(crate) struct Identity {
    pub user: Option<HeaderValue>,
    pub host: Option<HeaderValue>,
    pub ip: Option<HeaderValue>,
}

pub(crate) fn identity() -> &'static Identity {
    static IDENTITY: OnceLock<Identity> = OnceLock::new();
    IDENTITY.get_or_init(|| Identity {
        user: header(&user_name()),
        host: header(&host_name()),
        ip: header(&outbound_ip()),
    })
}

/// A metadata value, or `None` when empty or not plain ASCII (such keys are not sent).
///
/// Values sent with every call (a client's name, the user, the host) are static when they can
/// be: cloning one into each request then touches no reference count, where a shared one is a
/// cache line that every thread's calls write to.
pub(crate) fn header(value: &str) -> Option<HeaderValue> {
    if value.is_empty() {
        return None;
    }
    match interned(value) {
        Some(value) => Some(HeaderValue::from_static(value)),
        None => HeaderValue::from_str(value).ok(),
    }
}

/// `value` as a static string, when it is visible ASCII (what `HeaderValue::from_static`
/// takes) and the process has interned fewer than [`INTERNED_MAX`] distinct values: programs
/// that name each client differently leak nothing past that bound.
fn interned(value: &str) -> Option<&'static str> {
    static INTERNED: OnceLock<parking_lot::Mutex<std::collections::HashSet<&'static str>>> = OnceLock::new();
    if !value.bytes().all(|b| (0x20..0x7f).contains(&b) || b == b'\t') {
        return None;
    }
    let mut interned = INTERNED.get_or_init(Default::default).lock();
    if let Some(&known) = interned.get(value) {
        return Some(known);
    }
    if interned.len() >= INTERNED_MAX {
        return None;
    }
    let leaked: &'static str = Box::leak(value.to_owned().into_boxed_str());
    interned.insert(leaked);
    Some(leaked)
}

/// Distinct metadata values made static at most (a few KiB in all).
const INTERNED_MAX: usize = 256;

fn user_name() -> String {
    // SAFETY: getuid has no preconditions; getpwuid_r writes into the buffers we own.
    let uid = unsafe { libc::getuid() };
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 4096];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc == 0 && !result.is_null() && !pwd.pw_name.is_null() {
        // SAFETY: pw_name points into `buf`, NUL-terminated by getpwuid_r.
        let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
        if let Ok(name) = name.to_str() {
            return name.to_owned();
        }
    }
    uid.to_string()
}

fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The first IPv4 address of an interface that is running and not loopback, read from the
/// interface list (no network traffic); loopback when there is none.
fn outbound_ip() -> String {
    let interfaces = if_addrs::get_if_addrs().unwrap_or_default();
    let up = interfaces.iter().filter(|i| i.is_oper_up() && !i.is_loopback());
    up.map(if_addrs::Interface::ip)
        .find(std::net::IpAddr::is_ipv4)
        .map_or_else(|| "127.0.0.1".to_owned(), |ip| ip.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{API_VERSION, CLIENT, IP};

    #[test]
    fn header_values_are_the_text_given_past_the_interning_bound_and_beyond_ascii() {
        for i in 0..INTERNED_MAX + 50 {
            let text = format!("client-{i}");
            assert_eq!(header(&text).unwrap(), text.as_str());
            assert_eq!(header(&text).unwrap(), text.as_str(), "interned once, same value");
        }
        assert_eq!(header("caf\u{e9}").unwrap().as_bytes(), "caf\u{e9}".as_bytes());
        assert_eq!(header("a\tb").unwrap(), "a\tb");
        assert!(header("").is_none());
        assert!(header("line\nbreak").is_none(), "control characters are not sent");
    }

    #[test]
    fn identity_is_plain_ascii() {
        let id = identity();
        assert!(id.user.is_some(), "a user name or uid is always known");
        assert!(id.ip.is_some());
    }

    #[test]
    fn the_first_value_of_each_key_is_read_as_a_lookup_would() {
        let mut headers = HeaderMap::new();
        headers.insert("content-type", HeaderValue::from_static("application/grpc"));
        headers.append(API_VERSION, HeaderValue::from_static("2"));
        headers.append(API_VERSION, HeaderValue::from_static("7"));
        headers.insert(CLIENT, HeaderValue::from_static("tool"));
        headers.insert("x-other", HeaderValue::from_static("ip"));
        headers.append(IP, HeaderValue::from_static("10.0.0.1"));
        let caller = CallerMetadata::from_headers(&headers);
        assert_eq!(caller.api_version(), "2");
        assert_eq!(caller.api_version_bytes(), headers.get(API_VERSION).map(HeaderValue::as_bytes));
        assert_eq!((caller.client(), caller.ip(), caller.user(), caller.host()), ("tool", "10.0.0.1", "", ""));
    }

    #[test]
    fn display_marks_missing_parts() {
        assert_eq!(CallerMetadata::default().to_string(), "[unknown]unknown@unknown(unknown) api:0");
    }
}

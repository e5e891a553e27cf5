//! Why an endpoint could not be reached, layer by layer (DNS → TCP → TLS → HTTP).

use std::error::Error as _;
use std::time::Duration;

use reqwest::Url;

use crate::fetch::EndpointError;

/// Diagnose a transport failure on `url`: which layer failed, what was seen, what to try.
pub async fn unreachable(url: &Url, error: &reqwest::Error, _budget: Duration) -> EndpointError {
    classify(url, error)
}

/// Name the layer from the error the HTTP client returned.
fn classify(url: &Url, error: &reqwest::Error) -> EndpointError {
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or_default();
    let chain = smoketest_core::error::error_chain(error);
    let mut io_kind = None;
    let mut tls = None;
    let mut source = error.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            io_kind.get_or_insert(io.kind());
        }
        if let Some(t) = s.downcast_ref::<rustls::Error>() {
            tls.get_or_insert(t.to_string());
        }
        source = s.source();
    }
    let (kind, message, suggestion): (&str, String, &str) = if let Some(tls) = tls {
        (
            "tls_error",
            format!("TLS handshake with {host}:{port} failed: {tls}"),
            "Check the server's certificate (expiry, issuer, the names it covers) and that this host trusts its CA.",
        )
    } else if chain.contains("dns error") || chain.contains("failed to lookup address") {
        (
            "dns_failure",
            format!("DNS resolution failed for `{host}`: {chain}"),
            "Check the host name for typos and that this host uses the resolver that knows it (internal DNS, VPN, /etc/resolv.conf).",
        )
    } else if io_kind == Some(std::io::ErrorKind::ConnectionRefused) {
        (
            "tcp_refused",
            format!("TCP connection to {host}:{port} refused"),
            "Nothing listens on that port: check that the service is running and the port is right.",
        )
    } else if error.is_connect()
        && (error.is_timeout() || io_kind == Some(std::io::ErrorKind::TimedOut))
    {
        (
            "tcp_timeout",
            format!("TCP connection to {host}:{port} not answered in time"),
            "The connection was never answered: check firewalls, security groups and routing between this host and the service.",
        )
    } else if error.is_connect() {
        (
            "connect_error",
            format!("could not connect to {host}:{port}: {chain}"),
            "Check that the service is running and reachable from this host.",
        )
    } else {
        (
            "http_error",
            format!("the connection to {host}:{port} failed during the HTTP exchange: {chain}"),
            "The service (or a proxy in front of it) closed the connection: see its logs; it may be restarting or crashing.",
        )
    };
    EndpointError {
        kind: kind.into(),
        message,
        suggestion: Some(suggestion.into()),
        http_status: None,
    }
}

//! Why an endpoint could not be reached, layer by layer (DNS → TCP → TLS → HTTP), with
//! the same probe the built-in HTTP check uses ([`smoketest_checks::http::probe`]), so the
//! CLI and a service's own checks describe one failure in the same words.

use std::error::Error as _;
use std::time::Duration;

use reqwest::Url;
use smoketest_checks::http::{ProbeOptions, probe};

use crate::fetch::{EndpointError, LayerTimes};

/// Diagnose a transport failure on `url`: probe it layer by layer, and say which layer
/// failed, what was seen and what to try. When the probe gets through (the fault was
/// intermittent), the client's own error is described instead.
pub async fn unreachable(
    url: &Url,
    error: &reqwest::Error,
    budget: Duration,
    root_certificates: &[Vec<u8>],
) -> EndpointError {
    let mut options = ProbeOptions::new()
        .timeout(budget)
        .connect_timeout(budget)
        // Any status is an answer here: only whether the layers work is in question.
        .expect_status(100..=599);
    for der in root_certificates {
        options = options.root_certificate(der.clone());
    }
    let result = probe(url.as_str(), &options).await;
    let ms = |d: Option<Duration>| d.map(smoketest_core::report::millis);
    let phases = LayerTimes {
        dns_ms: ms(result.phases.dns),
        connect_ms: ms(result.phases.connect),
        tls_ms: ms(result.phases.tls),
        first_byte_ms: ms(result.phases.first_byte),
    };
    match result.diagnosis {
        Some(diagnosis) => EndpointError {
            kind: diagnosis.kind.as_str().to_string(),
            message: diagnosis.message,
            suggestion: Some(diagnosis.suggestion.into_owned()),
            http_status: None,
            layer: Some(diagnosis.layer.as_str()),
            phases,
            age_ms: None,
        },
        None => {
            let mut fallback = classify(url, error);
            fallback.message.push_str(
                "; a diagnosis probe right after got through every layer, so the fault is intermittent",
            );
            fallback.phases = phases;
            fallback
        }
    }
}

/// Name the layer from the error the HTTP client returned (when the probe got through, or
/// when a replica is reached by address and a fresh probe could reach another one).
pub fn classify(url: &Url, error: &reqwest::Error) -> EndpointError {
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or_default();
    let chain = smoketest_core::error::error_chain(error);
    let mut io_kind = None;
    let mut tls = None;
    let mut source: Option<&(dyn std::error::Error + 'static)> = error.source();
    while let Some(s) = source {
        if let Some(e) = s.downcast_ref::<rustls::Error>() {
            tls.get_or_insert_with(|| e.to_string());
        }
        source = match s.downcast_ref::<std::io::Error>() {
            Some(io) => {
                io_kind.get_or_insert(io.kind());
                // `io::Error::source` skips the error it wraps: look inside.
                io.get_ref().map(|inner| inner as _)
            }
            None => s.source(),
        };
    }
    let (kind, layer, message, suggestion) = if let Some(tls) = tls {
        (
            "tls_error",
            "tls",
            format!("TLS handshake with `{host}` on port {port} failed: {tls}"),
            "Check the server's certificate (expiry, issuer, the names it covers) and that this host trusts its CA (--ca-cert).",
        )
    } else if error.is_connect() {
        (
            if io_kind == Some(std::io::ErrorKind::ConnectionRefused) {
                "tcp_refused"
            } else {
                "connect_error"
            },
            "tcp",
            format!("could not connect to {host}:{port}: {chain}"),
            "Check that the service is running and reachable from this host; it may be restarting.",
        )
    } else {
        (
            "http_error",
            "http",
            format!("the connection to {host}:{port} failed during the HTTP exchange: {chain}"),
            "The service (or a proxy in front of it) closed the connection: see its logs; it may be restarting or crashing.",
        )
    };
    EndpointError {
        kind: kind.into(),
        message,
        suggestion: Some(suggestion.into()),
        http_status: None,
        layer: Some(layer),
        phases: LayerTimes::default(),
        age_ms: None,
    }
}

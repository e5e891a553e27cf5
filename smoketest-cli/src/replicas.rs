//! `--all-replicas`: every address a URL's host resolves to, each checked directly.
//!
//! Through a load balancer the gate sees whichever replica answered that request; with
//! `--all-replicas` it resolves the host itself (A and AAAA records, through the system
//! resolver: a Kubernetes headless service or a round-robin name lists every pod) and asks
//! each address with a client pinned to it, so the Host header and the TLS name (SNI and
//! certificate check) stay those of the URL.
//!
//! Tests cannot add names to the system resolver, so `SMOKETEST_TEST_RESOLVE` maps names
//! to loopback addresses (`orders.test=127.0.0.2,127.0.0.3;other.test=::1`). It is for
//! tests only: it accepts loopback addresses only, so it can never send production
//! traffic elsewhere.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use reqwest::Url;

use crate::fetch::{EndpointError, LayerTimes};

/// The test-only resolver override's environment variable.
pub const TEST_RESOLVE_ENV: &str = "SMOKETEST_TEST_RESOLVE";

/// Names mapped to loopback addresses by `SMOKETEST_TEST_RESOLVE` (tests only).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Overrides(Vec<(String, Vec<SocketAddr>)>);

impl Overrides {
    /// The overrides in the environment, if any.
    pub fn from_env() -> Result<Overrides, String> {
        match std::env::var(TEST_RESOLVE_ENV) {
            Ok(text) if !text.trim().is_empty() => Overrides::parse(&text),
            _ => Ok(Overrides::default()),
        }
    }

    /// `name=addr,addr;name=addr`, loopback addresses only.
    pub fn parse(text: &str) -> Result<Overrides, String> {
        let mut entries = Vec::new();
        for entry in text.split(';').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = || {
                format!(
                    "{TEST_RESOLVE_ENV}: `{entry}` is not `name=address,address` (a test-only setting)"
                )
            };
            let (name, addresses) = entry.split_once('=').ok_or_else(bad)?;
            let mut parsed = Vec::new();
            for address in addresses.split(',').map(str::trim) {
                let ip: IpAddr = address.parse().map_err(|_| bad())?;
                if !ip.is_loopback() {
                    return Err(format!(
                        "{TEST_RESOLVE_ENV}: {ip} is not a loopback address; this setting is for tests only"
                    ));
                }
                // Port 0: the URL's port is used.
                parsed.push(SocketAddr::new(ip, 0));
            }
            entries.push((name.trim().to_ascii_lowercase(), parsed));
        }
        Ok(Overrides(entries))
    }

    /// `(name, addresses)` pairs.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &[SocketAddr])> {
        self.0.iter().map(|(n, a)| (n.as_str(), a.as_slice()))
    }

    fn get(&self, host: &str) -> Option<&[SocketAddr]> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(host))
            .map(|(_, a)| a.as_slice())
    }
}

/// Every address of `url`'s host with the URL's port, sorted and without duplicates; a
/// resolution failure is diagnosed (`dns_failure`) as the layered probe does.
pub async fn addresses(
    url: &Url,
    overrides: &Overrides,
    timeout: Duration,
) -> Result<Vec<SocketAddr>, EndpointError> {
    let port = url.port_or_known_default().unwrap_or(80);
    let host = url.host_str().unwrap_or_default();
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let mut found: Vec<SocketAddr> = match overrides.get(host) {
        Some(fixed) => fixed
            .iter()
            .map(|a| SocketAddr::new(a.ip(), port))
            .collect(),
        None => match smoketest_checks::dns::resolve(host, port, timeout).await {
            Ok(resolution) => resolution.addresses,
            Err(diagnosis) => {
                return Err(EndpointError {
                    kind: diagnosis.kind.as_str().to_string(),
                    message: format!(
                        "{} (resolving every replica of `{host}` for --all-replicas)",
                        diagnosis.message
                    ),
                    suggestion: Some(diagnosis.suggestion.into_owned()),
                    http_status: None,
                    layer: Some(diagnosis.layer.as_str()),
                    phases: LayerTimes::default(),
                    age_ms: None,
                });
            }
        },
    };
    found.sort();
    found.dedup();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_take_loopback_addresses_only() {
        let o = Overrides::parse("Orders.test=127.0.0.2, 127.0.0.3; v6.test=::1").unwrap();
        assert_eq!(o.get("orders.test").unwrap().len(), 2);
        assert_eq!(o.get("v6.test").unwrap()[0].ip().to_string(), "::1");
        assert!(o.get("other.test").is_none());
        assert!(
            Overrides::parse("orders.test=10.0.0.1")
                .unwrap_err()
                .contains("tests only")
        );
        assert!(Overrides::parse("orders.test").is_err());
        assert_eq!(Overrides::parse("").unwrap(), Overrides::default());
    }

    #[tokio::test]
    async fn replicas_are_every_address_sorted_with_the_urls_port() {
        let o = Overrides::parse("orders.test=127.0.0.3,127.0.0.2,127.0.0.3").unwrap();
        let url = Url::parse("http://orders.test:8080/smoketest").unwrap();
        let found = addresses(&url, &o, Duration::from_secs(1)).await.unwrap();
        let shown: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["127.0.0.2:8080", "127.0.0.3:8080"]);
        let url = Url::parse("https://[::1]/smoketest").unwrap();
        let found = addresses(&url, &o, Duration::from_secs(1)).await.unwrap();
        assert_eq!(found[0].to_string(), "[::1]:443");
    }
}

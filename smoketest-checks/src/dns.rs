//! [`DnsCheck`]: a host name resolves, asked both of the system resolver the service really
//! uses and of the DNS servers directly, so a failure says *why* it failed.
//!
//! The system resolver (`getaddrinfo`, through [`tokio::net::lookup_host`]) decides pass or
//! fail: it is what the service's own clients use, `/etc/hosts` and `nsswitch.conf`
//! included. At the same time [hickory](https://docs.rs/hickory-resolver) queries the
//! servers of `/etc/resolv.conf` itself, which tells a name that does not exist
//! (NXDOMAIN) from one without addresses, from DNS servers that do not answer, and spots
//! the case where DNS knows the name but the system resolver does not.
//!
//! Failure kind: `dns_failure` (never shared with a TCP failure).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use smoketest_checks::dns::DnsCheck;
//! use smoketest_core::{Context, Outcome, SmokeCheck};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let check = DnsCheck::new("localhost").name("dns::localhost");
//! let mut ctx = Context::detached("dns::localhost", Duration::from_secs(5));
//! assert_eq!(check.run(&mut ctx).await.unwrap(), Outcome::Pass);
//! assert!(ctx.observed().contains_key("addresses"));
//!
//! // A reserved name that never resolves (RFC 6761).
//! let error = smoketest_checks::dns::resolve("no-such-host.invalid", 443, Duration::from_secs(5))
//!     .await
//!     .unwrap_err();
//! assert_eq!(error.kind, smoketest_core::ErrorKind::DnsFailure);
//! # }
//! ```

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use smoketest_core::{Context, ErrorKind, Outcome, SmokeCheck};
use tokio::time::Instant;

use crate::diagnosis::{Diagnosis, Layer};
use crate::meta::{Meta, budget, human, ms, name_part};

/// What a successful resolution found.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Resolution {
    /// The addresses the system resolver returned, in its order, with the port.
    pub addresses: Vec<SocketAddr>,
    /// How long the system resolver took.
    pub elapsed: Duration,
}

/// Resolve `host` as the service's own clients would, diagnosing a failure with a direct
/// DNS query. An IP address literal resolves to itself at once.
pub async fn resolve(host: &str, port: u16, timeout: Duration) -> Result<Resolution, Diagnosis> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(Resolution {
            addresses: vec![SocketAddr::new(ip, port)],
            elapsed: Duration::ZERO,
        });
    }
    let started = Instant::now();
    let system = async {
        let result = tokio::time::timeout(timeout, tokio::net::lookup_host((host, port))).await;
        (result, started.elapsed())
    };
    // The direct query runs alongside, but only matters when the system resolver fails:
    // on success it is dropped (cancelled) at once, so it adds no latency.
    let direct = direct_lookup(host, timeout);
    tokio::pin!(system, direct);
    let mut direct_result = None;
    let system = loop {
        tokio::select! {
            result = &mut system => break result,
            found = &mut direct, if direct_result.is_none() => direct_result = Some(found),
        }
    };
    let failed = |error: Option<String>| async move {
        let direct = match direct_result {
            Some(found) => found,
            None => direct.await,
        };
        failure(host, error, direct, timeout)
    };
    match system {
        (Ok(Ok(addresses)), elapsed) => {
            let addresses: Vec<SocketAddr> = addresses.collect();
            if addresses.is_empty() {
                return Err(failed(None).await);
            }
            Ok(Resolution { addresses, elapsed })
        }
        (Ok(Err(e)), _) => Err(failed(Some(e.to_string())).await),
        (Err(_elapsed), _) => {
            Err(failed(Some(format!("no answer within {}", human(timeout)))).await)
        }
    }
}

/// What querying the DNS servers directly found.
enum Direct {
    Found(Vec<IpAddr>),
    NxDomain,
    NoRecords,
    NoAnswer,
    Failed(String),
}

async fn direct_lookup(host: &str, timeout: Duration) -> Direct {
    let mut builder = match TokioResolver::builder_tokio() {
        Ok(builder) => builder,
        Err(e) => return Direct::Failed(format!("cannot read the resolver configuration: {e}")),
    };
    builder.options_mut().timeout = timeout;
    builder.options_mut().attempts = 1;
    let resolver = match builder.build() {
        Ok(resolver) => resolver,
        Err(e) => return Direct::Failed(e.to_string()),
    };
    match tokio::time::timeout(timeout, resolver.lookup_ip(host)).await {
        Err(_) => Direct::NoAnswer,
        Ok(Ok(found)) => Direct::Found(found.iter().collect()),
        Ok(Err(e)) if e.is_nx_domain() => Direct::NxDomain,
        Ok(Err(e)) if e.is_no_records_found() => Direct::NoRecords,
        Ok(Err(hickory_resolver::net::NetError::Timeout)) => Direct::NoAnswer,
        Ok(Err(e)) => Direct::Failed(e.to_string()),
    }
}

fn failure(host: &str, system: Option<String>, direct: Direct, timeout: Duration) -> Diagnosis {
    let seen = system
        .map(|e| format!(" (system resolver: {e})"))
        .unwrap_or_default();
    let (message, suggestion) = match direct {
        Direct::NxDomain => (
            format!("DNS resolution failed for `{host}`: the name does not exist (NXDOMAIN){seen}"),
            "Check the host name for typos, and that this host uses the DNS servers that know it (internal DNS, VPN, search domains in /etc/resolv.conf).",
        ),
        Direct::NoRecords => (
            format!(
                "DNS resolution failed for `{host}`: the name exists but has no address (A or AAAA) records{seen}"
            ),
            "Add the A/AAAA record (or the CNAME target's), or check that the name is not only defined for another record type.",
        ),
        Direct::NoAnswer => (
            format!(
                "DNS resolution failed for `{host}`: no DNS server answered within {}{seen}",
                human(timeout)
            ),
            "Check that the DNS servers in /etc/resolv.conf are reachable from this host (firewall on port 53, VPN down) and responding.",
        ),
        Direct::Failed(e) => (
            format!(
                "DNS resolution failed for `{host}`: the DNS servers could not be queried: {e}{seen}"
            ),
            "Check /etc/resolv.conf and that its DNS servers are reachable from this host.",
        ),
        Direct::Found(ips) => (
            format!(
                "DNS resolution failed for `{host}` in the system resolver{seen}, although the DNS servers answer {}",
                ips.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "The system resolver disagrees with DNS: check /etc/nsswitch.conf, /etc/hosts and any local caching resolver (nscd, systemd-resolved).",
        ),
    };
    Diagnosis::new(Layer::Dns, ErrorKind::DnsFailure, message, suggestion)
}

/// Passes when a host name resolves to at least one address. See the
/// [module documentation](self).
#[derive(Debug, Clone)]
pub struct DnsCheck {
    meta: Meta,
    host: String,
}

impl DnsCheck {
    /// Check that `host` resolves. Named `dns::{host}`, tagged `dns`.
    pub fn new(host: impl Into<String>) -> Self {
        let host = host.into();
        DnsCheck {
            meta: Meta::external(format!("dns::{}", name_part(&host)), "dns"),
            host,
        }
    }
}

meta_builders!(DnsCheck);

#[async_trait::async_trait]
impl SmokeCheck for DnsCheck {
    meta_methods!();

    async fn run(&self, ctx: &mut Context) -> smoketest_core::Result {
        let resolution = resolve(&self.host, 0, budget(ctx)).await?;
        ctx.observe("dns_ms", ms(resolution.elapsed));
        let addresses: Vec<String> = resolution
            .addresses
            .iter()
            .map(|a| a.ip().to_string())
            .collect();
        ctx.observe("addresses", addresses);
        Ok(Outcome::Pass)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diagnose(direct: Direct) -> Diagnosis {
        failure(
            "payments.internal",
            Some("failed to lookup address information".into()),
            direct,
            Duration::from_secs(2),
        )
    }

    #[test]
    fn each_dns_failure_has_its_own_diagnosis() {
        let cases = [
            (
                Direct::NxDomain,
                "the name does not exist (NXDOMAIN)",
                "typos",
            ),
            (
                Direct::NoRecords,
                "has no address (A or AAAA) records",
                "A/AAAA record",
            ),
            (
                Direct::NoAnswer,
                "no DNS server answered within 2s",
                "reachable",
            ),
            (
                Direct::Failed("no connections available".into()),
                "could not be queried: no connections available",
                "/etc/resolv.conf",
            ),
            (
                Direct::Found(vec!["10.0.0.7".parse().unwrap()]),
                "in the system resolver (system resolver: failed to lookup address information), although the DNS servers answer 10.0.0.7",
                "nsswitch.conf",
            ),
        ];
        for (direct, message, suggestion) in cases {
            let d = diagnose(direct);
            assert_eq!(d.kind, ErrorKind::DnsFailure);
            assert_eq!(d.layer, Layer::Dns);
            assert!(
                d.message
                    .starts_with("DNS resolution failed for `payments.internal`"),
                "{}",
                d.message
            );
            assert!(d.message.contains(message), "{}", d.message);
            assert!(d.suggestion.contains(suggestion), "{}", d.suggestion);
        }
    }
}

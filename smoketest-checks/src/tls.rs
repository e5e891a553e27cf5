//! [`TlsCheck`]: a server's TLS certificate is trusted, covers its name, and does not expire
//! soon — a warning `N` days before (default 14), a failure after.
//!
//! The check resolves the host, connects, and completes a real TLS handshake (rustls) with
//! the trust the service's own HTTP client has: the system's CA certificates, plus any
//! added with [`TlsCheck::root_certificate`]. When verification fails, the certificate
//! the server presented is read anyway, so the failure tells the cases apart:
//!
//! - expired: "TLS certificate of `api.internal` expired on 2026-11-01T00:00:00Z (21 days ago)",
//! - untrusted issuer: "… is issued by `CN=corp CA`, which this host does not trust (it is
//!   self-signed)",
//! - name mismatch: "… does not cover that name: it is valid for `www.example.com`".
//!
//! All three have kind `tls_error`, each with its own suggestion. The certificate that
//! expires first in the presented chain decides the warning; its date and the days left
//! are observed (`not_after`, `days_left`).
//!
//! # Example
//!
//! ```no_run
//! use smoketest_checks::tls::TlsCheck;
//! use smoketest_core::Smoketest;
//!
//! let smoke = Smoketest::builder()
//!     .check(TlsCheck::new("payments.internal:443").warn_days(21).tag("payments"))
//!     .build()
//!     .unwrap();
//! # let _ = smoke;
//! ```

use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use smoketest_core::{CheckError, Context, ErrorKind, Outcome, SmokeCheck};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::diagnosis::{Diagnosis, Layer, split_host_port};
use crate::meta::{Meta, budget, human, ms, name_part};

/// What a certificate says about itself, read from the one the server presented.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CertificateInfo {
    /// The subject's distinguished name (`CN=api.internal`).
    pub subject: String,
    /// The issuer's distinguished name.
    pub issuer: String,
    /// DNS names and IP addresses from the subject alternative names.
    pub names: Vec<String>,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
}

impl CertificateInfo {
    /// Read a DER-encoded X.509 certificate; `None` if it does not parse.
    pub fn from_der(der: &[u8]) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let time = |t: i64| {
            if t >= 0 {
                UNIX_EPOCH + Duration::from_secs(t as u64)
            } else {
                UNIX_EPOCH - Duration::from_secs(t.unsigned_abs())
            }
        };
        let mut names = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    x509_parser::extensions::GeneralName::DNSName(n) => names.push(n.to_string()),
                    x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                        if let Ok(v4) = <[u8; 4]>::try_from(*bytes) {
                            names.push(std::net::IpAddr::from(v4).to_string());
                        } else if let Ok(v6) = <[u8; 16]>::try_from(*bytes) {
                            names.push(std::net::IpAddr::from(v6).to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        Some(CertificateInfo {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            names,
            not_before: time(cert.validity().not_before.timestamp()),
            not_after: time(cert.validity().not_after.timestamp()),
        })
    }

    /// Whether subject and issuer are the same: a self-signed certificate.
    pub fn is_self_signed(&self) -> bool {
        self.subject == self.issuer
    }
}

/// The CA certificates a TLS client trusts: the system's, plus extra roots.
#[derive(Clone, Default)]
pub(crate) struct Trust {
    extra_roots: Vec<CertificateDer<'static>>,
    verifier: Arc<OnceLock<Result<Arc<dyn ServerCertVerifier>, String>>>,
}

impl fmt::Debug for Trust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trust")
            .field("extra_roots", &self.extra_roots.len())
            .finish()
    }
}

/// The system trust is read once per process (it means reading every file of the CA
/// directory); trusts with extra roots keep their own.
static SYSTEM_VERIFIER: OnceLock<Result<Arc<dyn ServerCertVerifier>, String>> = OnceLock::new();

/// The crypto provider of every TLS configuration smoketest builds, always passed
/// explicitly: aws-lc-rs, the one reqwest's `rustls` feature brings and rustls' own default,
/// so that smoketest adds no second provider to the service's build (with two compiled in,
/// a plain `rustls::ClientConfig::builder()` elsewhere in the service could not pick one)
/// and never installs a process-wide default.
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

impl Trust {
    pub(crate) fn add_root(&mut self, der: Vec<u8>) {
        self.extra_roots.push(CertificateDer::from(der));
        self.verifier = Arc::default();
    }

    #[cfg_attr(not(feature = "http"), allow(dead_code))]
    pub(crate) fn is_system(&self) -> bool {
        self.extra_roots.is_empty()
    }

    pub(crate) fn verifier(&self) -> Result<Arc<dyn ServerCertVerifier>, Diagnosis> {
        let build = || {
            rustls_platform_verifier::Verifier::new_with_extra_roots(
                self.extra_roots.iter().cloned(),
                provider(),
            )
            .map(|v| Arc::new(v) as Arc<dyn ServerCertVerifier>)
            .map_err(|e| e.to_string())
        };
        let cell = if self.extra_roots.is_empty() {
            &SYSTEM_VERIFIER
        } else {
            &*self.verifier
        };
        cell.get_or_init(build).clone().map_err(|e| {
            Diagnosis::new(
                Layer::Tls,
                ErrorKind::Config,
                format!("no TLS trust could be set up: {e}"),
                "Install the system's CA certificates (the ca-certificates package) or add root certificates to the check.",
            )
        })
    }

    /// A client configuration trusting these roots, for reqwest and for handshakes.
    pub(crate) fn client_config(&self, verifier: Arc<dyn ServerCertVerifier>) -> ClientConfig {
        ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("the aws-lc-rs provider supports the default TLS versions")
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth()
    }
}

/// Delegates verification, keeping the presented chain so a failure can say what it was.
#[derive(Debug)]
struct Capturing {
    inner: Arc<dyn ServerCertVerifier>,
    chain: Mutex<Vec<CertificateDer<'static>>>,
}

impl ServerCertVerifier for Capturing {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut chain) = self.chain.lock() {
            *chain = std::iter::once(end_entity)
                .chain(intermediates)
                .map(|c| c.clone().into_owned())
                .collect();
        }
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A completed handshake.
pub(crate) struct Handshake {
    #[allow(dead_code)]
    pub(crate) stream: TlsStream<TcpStream>,
    pub(crate) elapsed: Duration,
    pub(crate) chain: Vec<CertificateInfo>,
}

/// Complete a TLS handshake for `host` over `stream`, verifying with `trust`.
pub(crate) async fn handshake(
    stream: TcpStream,
    host: &str,
    trust: &Trust,
    timeout: Duration,
) -> Result<Handshake, Diagnosis> {
    let capturing = Arc::new(Capturing {
        inner: trust.verifier()?,
        chain: Mutex::new(Vec::new()),
    });
    let config = trust.client_config(capturing.clone());
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let server_name = ServerName::try_from(bare.to_string()).map_err(|_| {
        Diagnosis::new(
            Layer::Tls,
            ErrorKind::Config,
            format!("`{host}` is not a name TLS can verify"),
            "Use a DNS name or an IP address as the host.",
        )
    })?;
    let started = Instant::now();
    let connecting = TlsConnector::from(Arc::new(config)).connect(server_name, stream);
    let result = tokio::time::timeout(timeout, connecting).await;
    let chain: Vec<CertificateInfo> = capturing
        .chain
        .lock()
        .map(|c| {
            c.iter()
                .filter_map(|der| CertificateInfo::from_der(der))
                .collect()
        })
        .unwrap_or_default();
    match result {
        Ok(Ok(stream)) => Ok(Handshake {
            stream,
            elapsed: started.elapsed(),
            chain,
        }),
        Ok(Err(e)) => Err(diagnose_io(host, &e, &chain)),
        Err(_) => Err(Diagnosis::new(
            Layer::Tls,
            ErrorKind::TlsError,
            format!(
                "TLS handshake with `{host}` did not complete within {}: the server accepted the TCP connection but did not answer the TLS hello",
                human(timeout)
            ),
            "Check that this port serves TLS (not plain HTTP or another protocol) and that nothing in between holds the connection.",
        )),
    }
}

/// Diagnose a handshake error: the rustls error inside it, else the I/O failure.
pub(crate) fn diagnose_io(host: &str, error: &io::Error, chain: &[CertificateInfo]) -> Diagnosis {
    if let Some(tls) = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        return diagnose(host, tls, chain);
    }
    Diagnosis::new(
        Layer::Tls,
        ErrorKind::TlsError,
        format!("TLS handshake with `{host}` failed: the server closed the connection ({error})"),
        "Check that this port serves TLS and that no proxy in between cuts TLS connections; the server's log says why it hung up.",
    )
}

const UNTRUSTED: &str = "Serve a certificate from a CA this host trusts, or add the issuing CA to this host's trust store (or to the check's root certificates); if the CA is trusted, make the server send its intermediate certificates.";

fn date(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn days_between(earlier: SystemTime, later: SystemTime) -> u64 {
    later
        .duration_since(earlier)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0)
}

/// Tell the TLS failures apart, using the presented chain for the details.
pub(crate) fn diagnose(host: &str, error: &rustls::Error, chain: &[CertificateInfo]) -> Diagnosis {
    let leaf = chain.first();
    let tls = |message: String, suggestion: &'static str| {
        Diagnosis::new(Layer::Tls, ErrorKind::TlsError, message, suggestion)
    };
    let rustls::Error::InvalidCertificate(cert_error) = error else {
        return match error {
            rustls::Error::AlertReceived(alert) => tls(
                format!(
                    "TLS handshake with `{host}` failed: the server aborted it with the alert `{alert:?}`"
                ),
                "The server rejected this client's TLS offer: check the TLS versions and ciphers it accepts, SNI, and whether it requires a client certificate.",
            ),
            rustls::Error::InvalidMessage(_)
            | rustls::Error::InappropriateMessage { .. }
            | rustls::Error::InappropriateHandshakeMessage { .. } => tls(
                format!(
                    "TLS handshake with `{host}` failed: the server did not answer with TLS ({error})"
                ),
                "Check the URL's scheme and port: this port probably serves plain HTTP or another protocol.",
            ),
            other => tls(
                format!("TLS handshake with `{host}` failed: {other}"),
                "Check the server's TLS configuration (versions, ciphers, certificate chain).",
            ),
        };
    };
    let now = SystemTime::now();
    // A self-signed leaf is only ever trusted as itself; whatever webpki tripped over
    // while looking for an issuer (a system root with the same name, say), it is untrusted.
    #[allow(deprecated)]
    let untrusted_self_signed = leaf.is_some_and(|c| c.is_self_signed())
        && matches!(
            cert_error,
            CertificateError::UnknownIssuer
                | CertificateError::BadSignature
                | CertificateError::UnsupportedSignatureAlgorithm
                | CertificateError::UnsupportedSignatureAlgorithmContext { .. }
                | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. }
        );
    match cert_error {
        _ if untrusted_self_signed => tls(
            format!(
                "TLS certificate of `{host}` is not trusted: it is self-signed (`{}`), and this host does not trust it",
                leaf.map(|c| c.subject.as_str()).unwrap_or_default()
            ),
            UNTRUSTED,
        ),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            let expired = chain
                .iter()
                .filter(|c| c.not_after < now)
                .min_by_key(|c| c.not_after);
            let message = match expired {
                Some(c) if leaf == Some(c) => format!(
                    "TLS certificate of `{host}` expired on {} ({} days ago)",
                    date(c.not_after),
                    days_between(c.not_after, now)
                ),
                Some(c) => format!(
                    "TLS certificate chain of `{host}` has expired: `{}` expired on {} ({} days ago)",
                    c.subject,
                    date(c.not_after),
                    days_between(c.not_after, now)
                ),
                None => format!("TLS certificate of `{host}` has expired"),
            };
            tls(
                message,
                "Renew the certificate on the server and reload it, and find out why automatic renewal (certbot, cert-manager, the load balancer's) did not happen.",
            )
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => tls(
            match leaf {
                Some(c) => format!(
                    "TLS certificate of `{host}` is not valid before {}",
                    date(c.not_before)
                ),
                None => format!("TLS certificate of `{host}` is not valid yet"),
            },
            "Check the clock of this host and of the server (NTP); if both are right, the certificate was deployed before its start date.",
        ),
        CertificateError::UnknownIssuer => tls(
            match leaf {
                Some(c) if c.is_self_signed() => format!(
                    "TLS certificate of `{host}` is not trusted: it is self-signed (`{}`), and this host does not trust it",
                    c.subject
                ),
                Some(c) => format!(
                    "TLS certificate of `{host}` is not trusted: its issuer `{}` is not a CA this host trusts",
                    c.issuer
                ),
                None => format!("TLS certificate of `{host}` is not trusted: unknown issuer"),
            },
            UNTRUSTED,
        ),
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            let names = match (leaf, cert_error) {
                (Some(c), _) => c.names.clone(),
                (None, CertificateError::NotValidForNameContext { presented, .. }) => {
                    presented.clone()
                }
                (None, _) => Vec::new(),
            };
            let covered = if names.is_empty() {
                "it names no host".to_string()
            } else {
                format!(
                    "it is valid for {}",
                    names
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            tls(
                format!(
                    "TLS certificate presented for `{host}` does not cover that name: {covered}"
                ),
                "Connect with a name the certificate covers, or reissue the certificate with this host name in its subject alternative names (and check the server picks the right certificate for this name, SNI).",
            )
        }
        CertificateError::Revoked => tls(
            format!("TLS certificate of `{host}` has been revoked by its issuer"),
            "Install a newly issued certificate on the server.",
        ),
        CertificateError::Other(e) if format!("{e:?}").contains("CaUsedAsEndEntity") => tls(
            format!(
                "TLS certificate of `{host}` is a CA certificate (basicConstraints CA:TRUE), which cannot serve as a server's own certificate"
            ),
            "Issue a server certificate (CA:FALSE) signed by that CA; `openssl req -x509` makes a CA certificate unless given `-addext basicConstraints=critical,CA:FALSE`.",
        ),
        other => tls(
            format!("TLS certificate of `{host}` was rejected: {other}"),
            "Check the server's certificate (expiry, issuer, names it covers, key usage) and that this host trusts its CA.",
        ),
    }
}

/// Passes while a server's certificate is valid for more than the warning period. See the
/// [module documentation](self).
#[derive(Debug, Clone)]
pub struct TlsCheck {
    meta: Meta,
    target: String,
    warn_days: u32,
    connect_timeout: Duration,
    trust: Trust,
}

impl TlsCheck {
    /// Check the certificate served at `host:port` (port 443 if none is given). Named
    /// `tls::{target}`, tagged `tls`.
    pub fn new(target: impl Into<String>) -> Self {
        let target = target.into();
        TlsCheck {
            meta: Meta::external(format!("tls::{}", name_part(&target)), "tls"),
            target,
            warn_days: 14,
            connect_timeout: Duration::from_secs(5),
            trust: Trust::default(),
        }
    }

    /// Warn when the certificate expires within this many days (default 14).
    pub fn warn_days(mut self, days: u32) -> Self {
        self.warn_days = days;
        self
    }

    /// Trust this CA certificate (DER) besides the system's, e.g. a private CA.
    pub fn root_certificate(mut self, der: impl Into<Vec<u8>>) -> Self {
        self.trust.add_root(der.into());
        self
    }

    /// How long resolution, connect and handshake may each take (default 5 s, never past
    /// the check's deadline).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
}

meta_builders!(TlsCheck);

#[async_trait::async_trait]
impl SmokeCheck for TlsCheck {
    meta_methods!();

    async fn run(&self, ctx: &mut Context) -> smoketest_core::Result {
        let (host, port) = split_host_port(&self.target, Some(443))?;
        let timeout = self.connect_timeout.min(budget(ctx));
        let resolution = crate::dns::resolve(&host, port, timeout).await?;
        let timeout = self.connect_timeout.min(budget(ctx));
        let connection = crate::tcp::connect(&host, &resolution.addresses, timeout).await?;
        let timeout = self.connect_timeout.min(budget(ctx));
        let handshake = handshake(connection.stream, &host, &self.trust, timeout)
            .await
            .map_err(CheckError::from)?;
        ctx.observe("tls_ms", ms(handshake.elapsed));
        let Some(first) = handshake.chain.iter().min_by_key(|c| c.not_after) else {
            return Ok(Outcome::Pass);
        };
        let now = SystemTime::now();
        let days_left = days_between(now, first.not_after);
        ctx.observe("not_after", date(first.not_after));
        ctx.observe("days_left", days_left);
        if let Some(leaf) = handshake.chain.first() {
            ctx.observe("subject", &leaf.subject);
            ctx.observe("issuer", &leaf.issuer);
        }
        let warn_at = first.not_after - Duration::from_secs(u64::from(self.warn_days) * 86_400);
        if now >= warn_at {
            let whose = if handshake.chain.first() == Some(first) {
                "certificate".to_string()
            } else {
                format!("chain certificate `{}`", first.subject)
            };
            return Ok(Outcome::warn(format!(
                "TLS {whose} of `{host}` expires in {days_left} days, on {}: renew it before then",
                date(first.not_after)
            )));
        }
        Ok(Outcome::Pass)
    }
}

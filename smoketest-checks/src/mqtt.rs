//! [`MqttCheck`]: an MQTT broker delivers a QoS 1 message to a subscriber.
//!
//! The check resolves and connects first (so DNS, refused and unanswered connections get
//! their own kinds), then speaks MQTT 3.1.1 with [rumqttc](https://docs.rs/rumqttc): it
//! connects with a clean session and a fresh client id, subscribes to a topic no one else
//! uses (`smoketest/{client id}`), publishes one message to it at QoS 1 (not retained),
//! waits for the broker's `PUBACK` and for the message to come back, then disconnects.
//! A clean session and an unretained message leave nothing behind on the broker. rumqttc's
//! event loop is driven inside the check itself (no task is spawned), so nothing outlives
//! the check, not even when it is cut off.
//!
//! | failure | kind |
//! | --- | --- |
//! | the host does not resolve / nothing listens / no answer | `dns_failure` / `tcp_refused` / `tcp_timeout` |
//! | the broker refused the user name and password, or the client | `auth` (the password is never shown) |
//! | the broker refused the subscription, or the message did not come back | `broker` |
//! | the broker did not complete a step in time | `timeout` |
//! | a malformed or `mqtts://` URL (TLS is not built in yet) | `config` |
//!
//! # Example
//!
//! ```no_run
//! use smoketest_checks::mqtt::MqttCheck;
//! use smoketest_core::Smoketest;
//!
//! let smoke = Smoketest::builder()
//!     .check(MqttCheck::new("mqtt://sensors:secret@mqtt.internal:1883"))
//!     .build()
//!     .unwrap();
//! # let _ = smoke;
//! ```

use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Outgoing,
    Packet, QoS, SubscribeReasonCode,
};
use smoketest_core::{CheckError, Context, ErrorKind, Outcome, SmokeCheck};
use tokio::time::Instant;

use crate::broker::{reach, redact};
use crate::meta::{Meta, budget, human, ms};

/// Passes when an MQTT broker delivers a QoS 1 message back to its subscriber. See the
/// [module documentation](self).
#[derive(Clone)]
pub struct MqttCheck {
    meta: Meta,
    url: String,
    connect_timeout: Duration,
}

impl std::fmt::Debug for MqttCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MqttCheck")
            .field("meta", &self.meta)
            .field("url", &redact(&self.url))
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl MqttCheck {
    /// Check the broker at `url` (`mqtt://[user:password@]host[:port]`, port 1883 by
    /// default; `tcp://` is accepted too). Named `mqtt::round_trip`, tagged `mqtt`.
    pub fn new(url: impl Into<String>) -> Self {
        MqttCheck {
            meta: Meta::new("mqtt::round_trip", "mqtt"),
            url: url.into(),
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// How long resolving, connecting and the MQTT handshake may each take (default 5 s,
    /// never past the check's deadline).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
}

meta_builders!(MqttCheck);

/// The parts of an `mqtt://` URL.
struct Target {
    host: String,
    port: u16,
    credentials: Option<(String, String)>,
}

fn parse(url: &str, shown: &str) -> Result<Target, CheckError> {
    let bad = |why: &str| {
        CheckError::new(
            ErrorKind::Config,
            format!("`{shown}` is not a usable MQTT URL: {why}"),
        )
        .with_suggestion("Write the URL as mqtt://[user:password@]host[:port].")
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
    match scheme {
        "mqtt" | "tcp" => {}
        "mqtts" | "ssl" | "tls" => {
            return Err(CheckError::new(
                ErrorKind::Config,
                format!("`{shown}` asks for MQTT over TLS, which this check does not speak yet"),
            )
            .with_suggestion("Check the broker's plain listener from inside the network, and its certificate with a `tls::TlsCheck`."));
        }
        other => return Err(bad(&format!("the scheme `{other}` is not mqtt"))),
    }
    let authority = rest.split('/').next().unwrap_or_default();
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => (Some(userinfo), hostport),
        None => (None, authority),
    };
    let credentials = userinfo.map(|u| match u.split_once(':') {
        Some((user, password)) => (user.to_string(), password.to_string()),
        None => (u.to_string(), String::new()),
    });
    let (host, port) = crate::diagnosis::split_host_port(hostport, Some(1883))
        .map_err(|_| bad("no host, or a malformed port"))?;
    Ok(Target {
        host,
        port,
        credentials,
    })
}

/// A client id that MQTT 3.1.1 brokers must accept (at most 23 letters and digits) and
/// that no other run uses.
fn client_id() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("smoke{:x}{nanos:08x}{n:x}", std::process::id())
        .chars()
        .take(23)
        .collect()
}

const TIMEOUT_SUGGESTION: &str = "The broker accepted the connection but is slow or stuck: check its load, its message queues and its log.";

#[async_trait::async_trait]
impl SmokeCheck for MqttCheck {
    meta_methods!();

    async fn run(&self, ctx: &mut Context) -> smoketest_core::Result {
        let shown = redact(&self.url);
        let target = parse(&self.url, &shown)?;
        let connect_ms = reach(
            "MQTT broker",
            &shown,
            &target.host,
            target.port,
            self.connect_timeout.min(budget(ctx)),
        )
        .await?;
        ctx.observe("connect_ms", ms(connect_ms));

        let id = client_id();
        let mut options = MqttOptions::new(id.clone(), target.host.clone(), target.port);
        options.set_clean_session(true);
        options.set_keep_alive(Duration::from_secs(30));
        if let Some((user, password)) = &target.credentials {
            options.set_credentials(user.clone(), password.clone());
        }
        let (client, mut events) = AsyncClient::new(options, 10);
        let user = target.credentials.as_ref().map(|(u, _)| u.as_str());
        let result = self
            .exchange(&client, &mut events, &shown, user, &id, ctx)
            .await;
        // Say goodbye (the broker then drops the clean session), briefly.
        if client.disconnect().await.is_ok() {
            let goodbye = async {
                while let Ok(event) = events.poll().await {
                    if let Event::Outgoing(Outgoing::Disconnect) = event {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(budget(ctx).min(Duration::from_secs(1)), goodbye).await;
        }
        result?;
        Ok(Outcome::Pass)
    }
}

impl MqttCheck {
    async fn exchange(
        &self,
        client: &AsyncClient,
        events: &mut EventLoop,
        shown: &str,
        user: Option<&str>,
        id: &str,
        ctx: &mut Context,
    ) -> Result<(), CheckError> {
        let started = Instant::now();
        let handshake = crate::broker::Limit::new(self.connect_timeout.min(budget(ctx)));
        let round_trip = crate::broker::Limit::new(budget(ctx));
        let topic = format!("smoketest/{id}");
        let payload = crate::broker::unique("smoketest");
        let mut connected = false;
        let (mut acked, mut received) = (false, false);
        let broker = |message: String, suggestion: &'static str| {
            CheckError::new(ErrorKind::Broker, message).with_suggestion(suggestion)
        };
        let client_error = |e: rumqttc::ClientError| {
            CheckError::error(format!("MQTT client for {shown} stopped: {e}"))
        };
        while !(acked && received) {
            let (limit, step) = if connected {
                (round_trip, "the subscribe/publish round trip")
            } else {
                (handshake, "the MQTT handshake")
            };
            let allowed = limit.allowed;
            let event = match tokio::time::timeout_at(limit.deadline, events.poll()).await {
                Err(_) => {
                    return Err(CheckError::new(
                        ErrorKind::Timeout,
                        format!(
                            "MQTT broker at {shown} did not finish {step} within {}",
                            human(allowed)
                        ),
                    )
                    .with_suggestion(TIMEOUT_SUGGESTION));
                }
                Ok(Err(ConnectionError::ConnectionRefused(code))) => {
                    return Err(refused(shown, user, code));
                }
                Ok(Err(e)) if !connected => {
                    return Err(broker(
                        format!(
                            "MQTT broker at {shown} accepted the TCP connection but the MQTT handshake failed: {e}"
                        ),
                        "Check that the port is the broker's plain MQTT listener (not TLS, WebSocket or another protocol) and see the broker's log.",
                    ));
                }
                Ok(Err(e)) => {
                    return Err(broker(
                        format!(
                            "MQTT broker at {shown} dropped the connection during the round trip: {e}"
                        ),
                        "See the broker's log: an ACL may forbid the topic, or the broker may be shedding load.",
                    ));
                }
                Ok(Ok(event)) => event,
            };
            match event {
                Event::Incoming(Packet::ConnAck(_)) => {
                    connected = true;
                    ctx.observe("handshake_ms", ms(started.elapsed()));
                    client
                        .subscribe(topic.clone(), QoS::AtLeastOnce)
                        .await
                        .map_err(client_error)?;
                }
                Event::Incoming(Packet::SubAck(ack)) => {
                    if ack.return_codes.contains(&SubscribeReasonCode::Failure) {
                        return Err(broker(
                            format!("MQTT broker at {shown} refused a subscription to `{topic}`"),
                            "Allow the user to subscribe and publish to `smoketest/#` in the broker's ACL.",
                        ));
                    }
                    client
                        .publish(topic.clone(), QoS::AtLeastOnce, false, payload.clone())
                        .await
                        .map_err(client_error)?;
                }
                Event::Incoming(Packet::PubAck(_)) => acked = true,
                Event::Incoming(Packet::Publish(message))
                    if message.topic == topic && message.payload == payload.as_bytes() =>
                {
                    received = true;
                }
                _ => {}
            }
        }
        ctx.observe("round_trip_ms", ms(started.elapsed()));
        Ok(())
    }
}

fn refused(shown: &str, user: Option<&str>, code: ConnectReturnCode) -> CheckError {
    let who = match user {
        Some(user) => format!("user `{user}`"),
        None => "an anonymous client".to_string(),
    };
    match code {
        ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized => {
            CheckError::new(
                ErrorKind::Auth,
                format!("MQTT broker at {shown} refused {who} ({code:?})"),
            )
            .with_suggestion("Check the user name and password in the MQTT URL against the broker's password file or auth plugin; an anonymous client needs `allow_anonymous true`.")
        }
        ConnectReturnCode::ServiceUnavailable => CheckError::new(
            ErrorKind::Broker,
            format!("MQTT broker at {shown} answered that it is unavailable"),
        )
        .with_suggestion("See the broker's log: it may be starting, shutting down or out of resources."),
        _ => CheckError::new(
            ErrorKind::Broker,
            format!("MQTT broker at {shown} refused the connection ({code:?})"),
        )
        .with_suggestion("The broker does not accept this client: check that it speaks MQTT 3.1.1 and accepts the client id."),
    }
}

#[cfg(test)]
mod tests {
    use super::{client_id, parse};

    #[test]
    fn urls_split_into_host_port_and_credentials() {
        let t = parse("mqtt://u:p@broker.internal:1884/x", "shown").unwrap();
        assert_eq!((t.host.as_str(), t.port), ("broker.internal", 1884));
        assert_eq!(t.credentials, Some(("u".into(), "p".into())));
        let t = parse("tcp://127.0.0.1", "shown").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.credentials),
            ("127.0.0.1", 1883, None)
        );
        assert!(parse("http://x", "shown").is_err());
        assert!(parse("mqtts://x", "shown").is_err());
    }

    #[test]
    fn client_ids_fit_mqtt_3_1_1() {
        let (a, b) = (client_id(), client_id());
        assert_ne!(a, b);
        assert!(
            a.len() <= 23 && a.chars().all(|c| c.is_ascii_alphanumeric()),
            "{a}"
        );
    }
}

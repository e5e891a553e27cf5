//! [`NatsCheck`]: a NATS server routes a request to a responder and the reply back, and,
//! optionally, JetStream has the streams the service needs.
//!
//! The check resolves and connects first (so DNS, refused and unanswered connections get
//! their own kinds), connects with [async-nats](https://docs.rs/async-nats), subscribes to
//! a fresh inbox subject, sends a request to it and answers that request itself: the
//! payload has gone client → server → subscriber → server → requester, which is what the
//! service's own request/reply traffic needs. With
//! [`stream_exists`](NatsCheck::stream_exists) it also asks JetStream for each named
//! stream. Nothing is created on the server beyond the subscription, which goes with the
//! connection: the connection is drained and closed before the check returns, and its
//! background task ends with it.
//!
//! | failure | kind |
//! | --- | --- |
//! | the host does not resolve / nothing listens / no answer | `dns_failure` / `tcp_refused` / `tcp_timeout` |
//! | the server refused the user, password or token | `auth` (the password is never shown) |
//! | the reply did not come back, JetStream is off, a stream does not exist | `broker` |
//! | the server did not complete a step in time | `timeout` |
//! | a malformed or `tls://` URL (TLS is not built in yet) | `config` |
//!
//! # Example
//!
//! ```no_run
//! use smoketest_checks::nats::NatsCheck;
//! use smoketest_core::Smoketest;
//!
//! let smoke = Smoketest::builder()
//!     .check(NatsCheck::new("nats://127.0.0.1:4222").stream_exists("ORDERS"))
//!     .build()
//!     .unwrap();
//! # let _ = smoke;
//! ```

use std::time::Duration;

use async_nats::{ConnectErrorKind, ConnectOptions, ServerAddr};
use futures_util::StreamExt;
use smoketest_core::{CheckError, Context, ErrorKind, Outcome, SmokeCheck};
use tokio::time::Instant;

use crate::broker::{Limit, reach, redact, unique};
use crate::meta::{Meta, budget, human, ms};

/// Passes when a NATS server routes a request and its reply (and has the required
/// JetStream streams). See the [module documentation](self).
#[derive(Clone)]
pub struct NatsCheck {
    meta: Meta,
    url: String,
    connect_timeout: Duration,
    streams: Vec<String>,
}

impl std::fmt::Debug for NatsCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsCheck")
            .field("meta", &self.meta)
            .field("url", &redact(&self.url))
            .field("connect_timeout", &self.connect_timeout)
            .field("streams", &self.streams)
            .finish()
    }
}

impl NatsCheck {
    /// Check the server at `url` (`nats://[user:password@]host[:port]`, or `nats://token@host`). Named
    /// `nats::round_trip`, tagged `nats`.
    pub fn new(url: impl Into<String>) -> Self {
        NatsCheck {
            meta: Meta::new("nats::round_trip", "nats"),
            url: url.into(),
            connect_timeout: Duration::from_secs(5),
            streams: Vec::new(),
        }
    }

    /// Also require the JetStream stream `name` to exist (may be given several times).
    pub fn stream_exists(mut self, name: impl Into<String>) -> Self {
        self.streams.push(name.into());
        self
    }

    /// How long resolving, connecting and the handshake may each take (default 5 s, never
    /// past the check's deadline).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
}

meta_builders!(NatsCheck);

fn timed_out(shown: &str, step: &str, allowed: Duration) -> CheckError {
    CheckError::new(
        ErrorKind::Timeout,
        format!(
            "NATS at {shown} did not finish {step} within {}",
            human(allowed)
        ),
    )
    .with_suggestion("The server accepted the connection but is slow: check its load (`nats server report`), slow consumers and its logs.")
}

/// Run `future` (step `step`) within `limit`.
async fn within<T>(
    shown: &str,
    step: &str,
    limit: Limit,
    future: impl std::future::Future<Output = T>,
) -> Result<T, CheckError> {
    tokio::time::timeout_at(limit.deadline, future)
        .await
        .map_err(|_| timed_out(shown, step, limit.allowed))
}

fn broker(message: String, suggestion: &'static str) -> CheckError {
    CheckError::new(ErrorKind::Broker, message).with_suggestion(suggestion)
}

#[async_trait::async_trait]
impl SmokeCheck for NatsCheck {
    meta_methods!();

    async fn run(&self, ctx: &mut Context) -> smoketest_core::Result {
        let shown = redact(&self.url);
        let address: ServerAddr = self.url.parse().map_err(|e| {
            CheckError::new(
                ErrorKind::Config,
                format!("`{shown}` is not a usable NATS URL: {e}"),
            )
            .with_suggestion("Write the URL as nats://[user:password@]host[:port].")
        })?;
        if address.tls_required() {
            return Err(CheckError::new(
                ErrorKind::Config,
                format!("`{shown}` asks for NATS over TLS, which this check does not speak yet"),
            )
            .with_suggestion("Check the server's plain listener from inside the network, and its certificate with a `tls::TlsCheck`."));
        }
        let user = address.username().unwrap_or_default().to_string();
        let connect_ms = reach(
            "NATS",
            &shown,
            address.host(),
            address.port(),
            self.connect_timeout.min(budget(ctx)),
        )
        .await?;
        ctx.observe("connect_ms", ms(connect_ms));

        let started = Instant::now();
        let timeout = self.connect_timeout.min(budget(ctx));
        // The URL's credentials are passed explicitly: the client does not read them itself.
        let options = match (address.username(), address.password()) {
            (Some(user), Some(password)) => {
                ConnectOptions::with_user_and_password(user.into(), password.into())
            }
            (Some(token), None) => ConnectOptions::with_token(token.into()),
            _ => ConnectOptions::new(),
        };
        let options = options
            .name(format!("smoketest {}", self.meta.name))
            .connection_timeout(timeout)
            .ignore_discovered_servers()
            .max_reconnects(0);
        let connecting = options.connect(address);
        let client = match within(&shown, "the handshake", Limit::new(timeout), connecting).await? {
            Ok(client) => client,
            Err(e) => {
                let detail = smoketest_core::error::error_chain(&e);
                return Err(match e.kind() {
                    ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
                        let who = if user.is_empty() {
                            "the connection's credentials".to_string()
                        } else {
                            format!("user `{user}`")
                        };
                        CheckError::new(
                            ErrorKind::Auth,
                            format!("NATS at {shown} refused {who}: {detail}"),
                        )
                        .with_suggestion("Check the user and password (or token) in the NATS URL against the server's authorization block or account; were they rotated?")
                    }
                    ConnectErrorKind::TimedOut => timed_out(&shown, "the handshake", timeout),
                    _ => broker(
                        format!(
                            "NATS at {shown} accepted the TCP connection but the NATS handshake failed: {detail}"
                        ),
                        "Check that the port is a NATS client port (not the cluster or monitoring port) and see the server's log.",
                    ),
                });
            }
        };
        ctx.observe("handshake_ms", ms(started.elapsed()));
        let result = self.exchange(&client, &shown, ctx).await;
        // Drain closes the subscription and the connection; dropping the last handle ends
        // the client's background task.
        let _ = client.drain().await;
        drop(client);
        result?;
        Ok(Outcome::Pass)
    }
}

impl NatsCheck {
    async fn exchange(
        &self,
        client: &async_nats::Client,
        shown: &str,
        ctx: &mut Context,
    ) -> Result<(), CheckError> {
        let deadline = Limit::new(budget(ctx));
        let started = Instant::now();
        let subject = client.new_inbox();
        let mut subscriber = within(
            shown,
            "subscribing",
            deadline,
            client.subscribe(subject.clone()),
        )
        .await?
        .map_err(|e| {
            broker(
                format!("NATS at {shown} refused a subscription to an inbox subject: {e}"),
                "Check the user's subscribe permissions (`_INBOX.>`).",
            )
        })?;
        let payload = unique("smoketest");
        // The responder runs in this task, beside the request: nothing outlives the check.
        let respond = async {
            while let Some(message) = subscriber.next().await {
                if let Some(reply) = message.reply {
                    let _ = client.publish(reply, message.payload).await;
                }
            }
            std::future::pending::<std::convert::Infallible>().await
        };
        let request = client.request(subject, payload.clone().into());
        let step = "the request/reply round trip";
        let reply = tokio::select! {
            reply = within(shown, step, deadline, request) => reply?,
            never = respond => match never {},
        };
        let reply = reply.map_err(|e| {
            broker(
                format!("NATS at {shown} did not route a request on an inbox subject back: {e}"),
                "Check the user's publish and subscribe permissions (`_INBOX.>`) and the server's log (slow consumer, max payload).",
            )
        })?;
        if reply.payload != payload.as_bytes() {
            return Err(broker(
                format!("NATS at {shown} answered the request with another payload than was sent"),
                "Something else answers on this inbox subject: see the server's connections (`nats server report connections`).",
            ));
        }
        ctx.observe("round_trip_ms", ms(started.elapsed()));
        if self.streams.is_empty() {
            return Ok(());
        }
        let jetstream = async_nats::jetstream::new(client.clone());
        for name in &self.streams {
            let asking = jetstream.get_stream(name);
            match within(shown, "asking JetStream for a stream", deadline, asking).await? {
                Ok(_) => {}
                Err(e) => {
                    use async_nats::jetstream::context::GetStreamErrorKind;
                    return Err(match e.kind() {
                        GetStreamErrorKind::JetStream(js)
                            if js.error_code()
                                == async_nats::jetstream::ErrorCode::STREAM_NOT_FOUND =>
                        {
                            broker(
                                format!("NATS at {shown} has no JetStream stream `{name}`"),
                                "Create the stream (`nats stream add`), or check the stream name and the account the service connects as.",
                            )
                        }
                        GetStreamErrorKind::Request => broker(
                            format!(
                                "NATS at {shown} did not answer a JetStream request for stream `{name}`: {e}: is JetStream enabled for this account?"
                            ),
                            "Enable JetStream on the server (`-js` / `jetstream {}` in its configuration) and for the account.",
                        ),
                        _ => broker(
                            format!(
                                "NATS at {shown} could not look up JetStream stream `{name}`: {e}"
                            ),
                            "See the server's log and the account's JetStream limits.",
                        ),
                    });
                }
            }
        }
        ctx.observe("streams", self.streams.len());
        Ok(())
    }
}

//! [`AmqpCheck`]: a RabbitMQ (AMQP 0-9-1) broker takes a message and gives it back.
//!
//! A TCP port that accepts proves little about a broker: the check does what the service's
//! own producers and consumers do, with the [lapin](https://docs.rs/lapin) client. It
//! resolves and connects first (so DNS, refused and unanswered connections get their own
//! kinds), logs in, declares a **server-named, exclusive, auto-delete** queue, publishes
//! one message to it through the default exchange with publisher confirms, consumes it
//! back and compares the payload, then deletes the queue and closes the connection (observed:
//! `connect_ms`, `login_ms`, `round_trip_ms`, and the `queue`'s server-given name). The
//! queue belongs to the check's connection alone and goes with it even when the check is
//! cut off, so the check leaves nothing behind on the broker.
//!
//! | failure | kind |
//! | --- | --- |
//! | the host does not resolve / nothing listens / no answer | `dns_failure` / `tcp_refused` / `tcp_timeout` |
//! | the user or password is wrong, or the user may not use the virtual host | `auth` (the password is never shown) |
//! | the virtual host does not exist | `broker` |
//! | the queue cannot be declared, the publish is not confirmed, the message does not come back | `broker` |
//! | the broker does not complete a step in time | `timeout` |
//! | a malformed or `amqps://` URL (TLS is not built in yet) | `config` |
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use smoketest_checks::amqp::AmqpCheck;
//! use smoketest_core::Smoketest;
//!
//! let url = std::env::var("AMQP_URL")
//!     .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
//! let smoke = Smoketest::builder()
//!     .check(AmqpCheck::new(url).name("orders::rabbitmq").timeout(Duration::from_secs(5)))
//!     .build()
//!     .unwrap();
//! # let _ = smoke;
//! ```

use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::types::FieldTable;
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use smoketest_core::{CheckError, Context, ErrorKind, Outcome, SmokeCheck};
use tokio::time::Instant;

use crate::broker::{Limit, reach, redact, unique};
use crate::meta::{Meta, budget, human, ms};

/// Passes when a RabbitMQ broker takes a message into a temporary queue and gives it back.
/// See the [module documentation](self).
#[derive(Clone)]
pub struct AmqpCheck {
    meta: Meta,
    url: String,
    connect_timeout: Duration,
}

impl std::fmt::Debug for AmqpCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpCheck")
            .field("meta", &self.meta)
            .field("url", &redact(&self.url))
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl AmqpCheck {
    /// Check the broker at `url` (`amqp://user:password@host[:port]/vhost`, the virtual host
    /// percent-encoded: `/%2f` is `/`). Named `amqp::round_trip`, tagged `amqp`.
    pub fn new(url: impl Into<String>) -> Self {
        AmqpCheck {
            meta: Meta::new("amqp::round_trip", "amqp"),
            url: url.into(),
            connect_timeout: Duration::from_secs(5),
        }
    }

    /// How long resolving, connecting and logging in may each take (default 5 s, never past
    /// the check's deadline).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }
}

meta_builders!(AmqpCheck);

const TIMEOUT_SUGGESTION: &str = "The broker accepted the connection but is slow or blocked: check its resource alarms (memory, disk: `rabbitmqctl status`), its load and its logs.";

/// A one-thread tokio runtime for lapin's background tasks (its RPC loop, heartbeats),
/// shut down when the check ends — also when it is cut off — so that none of them outlives
/// the check. (lapin keeps its RPC task alive for a while after the connection closed.)
struct PrivateRuntime(Option<tokio::runtime::Runtime>);

impl PrivateRuntime {
    fn new() -> Result<Self, CheckError> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("smoketest-amqp")
            .enable_all()
            .build()
            .map(|rt| PrivateRuntime(Some(rt)))
            .map_err(|e| {
                CheckError::error(format!("could not start the AMQP client's runtime: {e}"))
            })
    }

    fn runtime(&self) -> async_rs::Runtime<async_rs::Tokio> {
        let handle = self.0.as_ref().map(|rt| rt.handle().clone());
        async_rs::Runtime::tokio_with_handle(handle.expect("the runtime lives until dropped"))
    }
}

impl Drop for PrivateRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            // Aborts every task left on it; allowed inside async code, unlike a plain drop.
            rt.shutdown_background();
        }
    }
}

/// Turn a lapin error at step `step` into the report's kind and message.
fn diagnose(shown: &str, vhost: &str, user: &str, step: &str, error: &lapin::Error) -> CheckError {
    if let lapin::ErrorKind::ProtocolError(amqp) = error.kind() {
        let text = amqp.get_message().as_str();
        return match amqp.kind() {
            AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED) if step == "logging in" => {
                CheckError::new(
                    ErrorKind::Auth,
                    format!("RabbitMQ at {shown} refused the login of user `{user}`: {text}"),
                )
                .with_suggestion("Check the user name and password in the AMQP URL against the broker's users (`rabbitmqctl list_users`); were they rotated?")
            }
            AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED) => CheckError::new(
                ErrorKind::Auth,
                format!("RabbitMQ at {shown} refused {step} to user `{user}`: {text}"),
            )
            .with_suggestion("Grant the user configure, write and read permissions on the virtual host (`rabbitmqctl set_permissions`); the check declares a temporary server-named queue."),
            AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED) if text.contains("not found") => {
                CheckError::new(
                    ErrorKind::Broker,
                    format!("RabbitMQ at {shown} has no virtual host `{vhost}`: {text}"),
                )
                .with_suggestion("Check the virtual host in the URL's path (percent-encoded: `/%2f` is the default `/`) against `rabbitmqctl list_vhosts`.")
            }
            AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED) => CheckError::new(
                ErrorKind::Auth,
                format!("RabbitMQ at {shown} does not let user `{user}` use virtual host `{vhost}`: {text}"),
            )
            .with_suggestion("Grant the user access to the virtual host (`rabbitmqctl set_permissions -p <vhost> <user> …`)."),
            _ => CheckError::new(
                ErrorKind::Broker,
                format!("RabbitMQ at {shown} failed while {step}: {amqp}"),
            )
            .with_suggestion("See the broker's logs and its resource alarms (`rabbitmqctl status`)."),
        };
    }
    let detail = smoketest_core::error::error_chain(error);
    if step == "logging in" && error.is_io_error() {
        // Older brokers, and the ones without `authentication_failure_close`, drop the
        // connection without a reason when the login fails.
        return CheckError::new(
            ErrorKind::Auth,
            format!("RabbitMQ at {shown} closed the connection while user `{user}` was logging in ({detail}): most often a refused login or an unknown virtual host `{vhost}`"),
        )
        .with_suggestion("Check the user name, password and virtual host in the AMQP URL; the broker's log says which was refused.");
    }
    CheckError::new(
        ErrorKind::Broker,
        format!("RabbitMQ at {shown} failed while {step}: {detail}"),
    )
    .with_suggestion("See the broker's logs and its resource alarms (`rabbitmqctl status`).")
}

/// Run `future` (step `step` of the round trip) within `limit`.
async fn within<T>(
    shown: &str,
    step: &str,
    limit: Limit,
    future: impl std::future::Future<Output = T>,
) -> Result<T, CheckError> {
    let allowed = limit.allowed;
    tokio::time::timeout_at(limit.deadline, future)
        .await
        .map_err(|_| {
            CheckError::new(
                ErrorKind::Timeout,
                format!(
                    "RabbitMQ at {shown} did not finish {step} within {}",
                    human(allowed)
                ),
            )
            .with_suggestion(TIMEOUT_SUGGESTION)
        })
}

#[async_trait::async_trait]
impl SmokeCheck for AmqpCheck {
    meta_methods!();

    async fn run(&self, ctx: &mut Context) -> smoketest_core::Result {
        let shown = redact(&self.url);
        let mut uri: AMQPUri = self.url.parse().map_err(|e: String| {
            CheckError::new(
                ErrorKind::Config,
                format!("`{shown}` is not a usable AMQP URL: {e}"),
            )
            .with_suggestion("Write the URL as amqp://user:password@host[:port]/vhost, with the virtual host percent-encoded (`/%2f` for `/`).")
        })?;
        if uri.scheme == AMQPScheme::AMQPS {
            return Err(CheckError::new(
                ErrorKind::Config,
                format!("`{shown}` asks for AMQP over TLS, which this check does not speak yet"),
            )
            .with_suggestion("Check the broker's plain AMQP listener (amqp://, port 5672) from inside the network, and its certificate with a `tls::TlsCheck` on the amqps port."));
        }
        let host = uri.authority.host.clone();
        let port = uri.authority.port;
        let user = uri.authority.userinfo.username.clone();
        let vhost = uri.vhost.clone();
        let fail = |step: &str, e: &lapin::Error| diagnose(&shown, &vhost, &user, step, e);

        let connect_ms = reach(
            "RabbitMQ",
            &shown,
            &host,
            port,
            self.connect_timeout.min(budget(ctx)),
        )
        .await?;
        ctx.observe("connect_ms", ms(connect_ms));

        let started = Instant::now();
        let login = Limit::new(self.connect_timeout.min(budget(ctx)));
        let properties = ConnectionProperties::default()
            .with_connection_name(format!("smoketest {}", self.meta.name).into());
        // No heartbeats: the connection lives for seconds.
        uri.query.heartbeat = Some(0);
        let private = PrivateRuntime::new()?;
        let connecting = Connection::connect_uri_with_runtime(uri, properties, private.runtime());
        let connection = within(&shown, "the login", login, connecting)
            .await?
            .map_err(|e| fail("logging in", &e))?;
        ctx.observe("login_ms", ms(started.elapsed()));

        let started = Instant::now();
        let result = round_trip(&connection, &shown, Limit::new(budget(ctx)), &fail).await;
        // Closing ends lapin's I/O thread and, with the connection, the exclusive queue.
        // Dropping the connection (the check cut off) closes it too.
        let _ = tokio::time::timeout(
            budget(ctx).min(Duration::from_secs(1)),
            connection.close(200, "smoketest done".into()),
        )
        .await;
        drop(connection);
        drop(private);
        let queue = result?;
        ctx.observe("round_trip_ms", ms(started.elapsed()));
        ctx.observe("queue", queue);
        Ok(Outcome::Pass)
    }
}

/// Declare the temporary queue, publish to it, consume the message back, delete the queue.
async fn round_trip(
    connection: &Connection,
    shown: &str,
    deadline: Limit,
    fail: &(dyn Fn(&str, &lapin::Error) -> CheckError + Sync),
) -> Result<String, CheckError> {
    let step = |what: &'static str| move |e: lapin::Error| fail(what, &e);
    let channel = within(
        shown,
        "opening a channel",
        deadline,
        connection.create_channel(),
    )
    .await?
    .map_err(step("opening a channel"))?;
    let options = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..QueueDeclareOptions::default()
    };
    let declaring = channel.queue_declare("".into(), options, FieldTable::default());
    let queue = within(shown, "declaring a temporary queue", deadline, declaring)
        .await?
        .map_err(step("declaring a temporary queue"))?;
    let queue_name = queue.name().clone();
    within(
        shown,
        "enabling publisher confirms",
        deadline,
        channel.confirm_select(ConfirmSelectOptions::default()),
    )
    .await?
    .map_err(step("enabling publisher confirms"))?;
    let consuming = channel.basic_consume(
        queue_name.clone(),
        "smoketest".into(),
        BasicConsumeOptions {
            no_ack: true,
            exclusive: true,
            ..BasicConsumeOptions::default()
        },
        FieldTable::default(),
    );
    let mut consumer = within(shown, "starting a consumer", deadline, consuming)
        .await?
        .map_err(step("starting a consumer"))?;
    let payload = unique("smoketest");
    let publishing = async {
        channel
            .basic_publish(
                "".into(),
                queue_name.clone(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                payload.as_bytes(),
                BasicProperties::default(),
            )
            .await?
            .await
    };
    let confirm = within(shown, "publishing a message", deadline, publishing)
        .await?
        .map_err(step("publishing a message"))?;
    if !matches!(confirm, lapin::Confirmation::Ack(None)) {
        return Err(CheckError::new(
            ErrorKind::Broker,
            format!("RabbitMQ at {shown} did not confirm the message published to its temporary queue ({confirm:?})"),
        )
        .with_suggestion("The broker refused the message: see its logs and resource alarms (`rabbitmqctl status`)."));
    }
    loop {
        let delivery = within(
            shown,
            "delivering the message back",
            deadline,
            consumer.next(),
        )
        .await?;
        match delivery {
            None => {
                return Err(CheckError::new(
                    ErrorKind::Broker,
                    format!(
                        "RabbitMQ at {shown} ended the consumer before delivering the message back"
                    ),
                ));
            }
            Some(Err(e)) => return Err(fail("delivering the message back", &e)),
            Some(Ok(delivery)) if delivery.data == payload.as_bytes() => break,
            // Not ours: the queue is server-named and exclusive, so this cannot happen.
            Some(Ok(_)) => {}
        }
    }
    drop(consumer);
    let deleting = channel.queue_delete(queue_name.clone(), QueueDeleteOptions::default());
    within(shown, "deleting the temporary queue", deadline, deleting)
        .await?
        .map_err(step("deleting the temporary queue"))?;
    Ok(queue_name.to_string())
}

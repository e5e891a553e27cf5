//! Built-in smoke checks for [smoketest](https://docs.rs/smoketest): the checks every
//! service ends up writing by hand, with failures that say *which layer* failed and what to
//! do about it.
//!
//! | check | module | feature |
//! | --- | --- | --- |
//! | an HTTP upstream answers, probed DNS → TCP → TLS → HTTP | [`http`] | `http` |
//! | a host name resolves | [`dns`] | `dns` (implied by `tls`, `http`) |
//! | a TCP port accepts connections | [`tcp`] | `dns` |
//! | a TLS certificate is valid and not about to expire | [`tls`] | `tls` |
//! | free disk, available memory, a writable directory | [`system`] | `system` |
//! | required environment variables are set | [`env`] | — |
//! | a program is on `PATH`, at a minimum version | [`exec`] | — |
//! | Redis answers `PING` | [`redis`] | `redis` |
//! | RabbitMQ takes a message into a temporary queue and gives it back | [`amqp`] | `amqp` |
//! | NATS routes a request and its reply; JetStream streams exist | [`nats`] | `nats` |
//! | an MQTT broker delivers a QoS 1 message back | [`mqtt`] | `mqtt` |
//!
//! Every check is a type with a builder: `new(…)` takes what the check needs, then
//! `.name(…)`, `.tag(…)`, `.timeout(…)` and `.warn_after(…)` adjust how it is registered,
//! and the check-specific options follow. The checks of other systems (`http`, `dns`,
//! `tcp`, `tls`, `redis`) always carry the tag `external` as well, so a liveness group
//! refuses them at build time (`Group::allow_external_dependencies` to insist). Register it with
//! [`SmoketestBuilder::check`](smoketest_core::SmoketestBuilder::check).
//!
//! Failures use the kinds of [`ErrorKind`](smoketest_core::ErrorKind) (`dns_failure`,
//! `tcp_refused`, `tcp_timeout`, `tls_error`, `timeout`, `http_status`, `body_mismatch`,
//! `resource`, `config`, `auth`, `broker`, `error`), each with a one-sentence diagnosis and
//! a suggestion.
//!
//! # Example
//!
//! ```
//! use smoketest_checks::env::EnvCheck;
//! use smoketest_checks::exec::ExecutableCheck;
//! use smoketest_core::Smoketest;
//!
//! let smoke = Smoketest::builder()
//!     .without_discovery()
//!     .check(EnvCheck::new(["DATABASE_URL", "PAYMENTS_API_KEY"]).name("config::env"))
//!     .check(ExecutableCheck::new("ffmpeg").min_version("6.0").tag("media"))
//!     .build()
//!     .unwrap();
//! assert_eq!(smoke.check_names().count(), 2);
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[macro_use]
mod meta;

#[cfg(feature = "amqp")]
pub mod amqp;
#[cfg(any(feature = "amqp", feature = "nats", feature = "mqtt"))]
mod broker;
#[cfg(feature = "dns")]
pub mod diagnosis;
#[cfg(feature = "dns")]
pub mod dns;
pub mod env;
pub mod exec;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "mqtt")]
pub mod mqtt;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "system")]
pub mod system;
#[cfg(feature = "dns")]
pub mod tcp;
#[cfg(feature = "tls")]
pub mod tls;

#[cfg(feature = "dns")]
pub use diagnosis::{Diagnosis, Layer};

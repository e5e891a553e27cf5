//! The core of [smoketest](https://docs.rs/smoketest): the [`SmokeCheck`] trait, the
//! registry ([`Smoketest`]), the runner, the [`Report`] and its formats, and the HTTP
//! contract every adapter serves.
//!
//! Use it through the `smoketest` crate, which re-exports all of this and adds the
//! `#[smoketest::check]` attribute and the axum and actix-web adapters.
//!
//! # Example
//!
//! ```
//! use smoketest_core::{ensure_eq, from_fn, Outcome, Selection, Smoketest, Status};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let smoke = Smoketest::builder()
//!     .service("orders-api")
//!     .without_discovery()
//!     .check(from_fn("math::works", |_ctx| Box::pin(async {
//!         ensure_eq!(1 + 1, 2);
//!         Ok(Outcome::Pass)
//!     })))
//!     .build()
//!     .unwrap();
//! let report = smoke.run(&Selection::all()).await.unwrap();
//! assert_eq!(report.status, Status::Pass);
//! assert_eq!(report.summary.passed, 1);
//! # }
//! ```
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod check;
pub mod context;
pub mod db;
pub mod engine;
pub mod error;
pub mod format;
pub mod group;
pub mod history;
pub mod http;
#[cfg(feature = "metrics")]
mod metrics;
pub mod redact;
pub mod registry;
pub mod report;
pub mod request;
pub mod runner;
pub mod scenario;

pub use async_trait::async_trait;
pub use auth::{Caller, Verdict};
pub use check::{CheckFuture, FnCheck, SmokeCheck, from_fn};
pub use context::Context;
pub use error::{CheckError, ErrorKind, Outcome, Result, ResultExt};
pub use group::{Group, Probe, StatusChange};
pub use registry::{BuildError, Origin, Smoketest, SmoketestBuilder};
pub use report::{Detail, Report, Status};
pub use runner::{Selection, UnknownCheck};
pub use scenario::Persona;

/// Items the `#[smoketest::check]` expansion refers to. Not public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::check::Registration;
    pub use inventory;
}

//! # smoketest
//!
//! Smoke checks for production web services. Declare checks in any module, mount one
//! endpoint, and every deploy pipeline, monitor, probe and person gets the answer to *does
//! this service really work right now?*: 200 with timings, or 500 with what failed and why.
//!
//! This crate is the facade: it re-exports [`smoketest_core`] (the trait, registry,
//! runner, report and HTTP contract), the [`check`] attribute, and, behind features, the
//! adapters: `smoketest::axum` (feature `axum`) and `smoketest::actix` (feature `actix`).
//!
//! # Example
//!
//! ```
//! use smoketest::{ensure_eq, Context, Outcome};
//!
//! mod orders {
//!     use super::*;
//!
//!     #[smoketest::check(tags = ["db"], timeout = "2s")]
//!     async fn arithmetic(ctx: &mut Context) -> smoketest::Result {
//!         let rows = 1;
//!         ctx.observe("rows", rows);
//!         ensure_eq!(rows, 1, "rows inserted");
//!         Ok(Outcome::Pass)
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let smoke = smoketest::Smoketest::builder().service("orders-api").build().unwrap();
//! // The name is the module path (without the crate name) plus the fn name.
//! assert!(smoke.check_names().any(|n| n.ends_with("orders::arithmetic")));
//! # }
//! ```
//!
//! # Registration and the linker
//!
//! `#[smoketest::check]` registers through [`inventory`](https://docs.rs/inventory): each
//! check adds itself to a list the linker assembles. The linker only includes crates the
//! binary references, so checks declared in a library crate that the binary never names
//! are silently missing. The remedy: name the crate once in the binary,
//!
//! ```text
//! use my_service_checks as _; // link the crate so its #[smoketest::check]s register
//! ```
//!
//! and assert at start-up that the checks you expect are there
//! (`smoke.check_names()`), or register such checks explicitly with
//! [`SmoketestBuilder::check`].
#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub use smoketest_core::*;

/// Every Rust snippet of the README, compiled (and run, unless marked `no_run`) as a
/// doc-test, so the README cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// Register an `async fn(&mut Context) -> smoketest::Result` as a smoke check, collected
/// by every [`Smoketest::builder`] in the binary.
///
/// Arguments, all optional:
/// - `name = "orders::db_write"`: default is the module path without the crate name, plus
///   the fn name.
/// - `tags = ["db", "write"]` (or `tag = "db"`): for `?tag=` selection and groups.
/// - `timeout = "5s"`: this check's timeout (`500ms`, `2s`, `1m`); default: the builder's.
/// - `personas = ["admin", "clerk"]`: a scenario run once per persona (registered with
///   [`SmoketestBuilder::persona`]), each its own check named `name[persona]`; see
///   [`scenario`].
/// - `crate = "my::reexport::smoketest"`: when `smoketest` is renamed or re-exported.
///
/// The fn may return `smoketest::Result` (ending with `Ok(Outcome::Pass)`) or
/// `smoketest::Result<()>` (ending with `Ok(())`).
///
/// ```
/// use smoketest::{Context, Outcome};
///
/// #[smoketest::check(name = "payments::configured", tags = ["config"])]
/// async fn payments_configured(_ctx: &mut Context) -> smoketest::Result<()> {
///     smoketest::ensure!(std::env::var_os("PATH").is_some(), "PATH is not set");
///     Ok(())
/// }
///
/// let smoke = smoketest::Smoketest::builder().build().unwrap();
/// assert_eq!(smoke.check_tags("payments::configured"), Some(&["config".to_string()][..]));
/// ```
pub use smoketest_macros::check;

/// The axum / tower adapter ([`smoketest_axum`]).
#[cfg(feature = "axum")]
pub use smoketest_axum as axum;

/// gRPC health checking over the same checks ([`smoketest_tonic`]).
#[cfg(feature = "tonic")]
pub use smoketest_tonic as tonic;

/// The actix-web adapter ([`smoketest_actix`]).
#[cfg(feature = "actix")]
pub use smoketest_actix as actix;

/// The built-in checks ([`smoketest_checks`]): HTTP upstreams probed layer by layer (feature
/// `net`), disk, memory and writable directories (`system`), Redis (`redis`), environment
/// variables and executables (any of these features, or `checks`).
#[cfg(feature = "checks")]
pub use smoketest_checks as checks;

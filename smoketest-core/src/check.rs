//! The [`SmokeCheck`] trait: one thing to verify about the running service.
//!
//! Implement it for checks that need configuration (a URL, a path, a threshold) and register
//! them with [`SmoketestBuilder::check`](crate::SmoketestBuilder::check). For a check that
//! needs none, an `async fn` with `#[smoketest::check]` is shorter: it implements this trait
//! for you and registers itself wherever it is declared.
//!
//! The trait is object safe (`Arc<dyn SmokeCheck>`). The runner calls [`SmokeCheck::run`]
//! with a fresh [`Context`] each time, inside its own task, under its own timeout and with
//! panics caught, so a check is ordinary async code.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use smoketest_core::{async_trait, ensure, Context, Outcome, SmokeCheck, Smoketest};
//!
//! /// Passes while the queue holds fewer than `max` jobs.
//! struct QueueDepth {
//!     max: usize,
//! }
//!
//! #[async_trait]
//! impl SmokeCheck for QueueDepth {
//!     fn name(&self) -> &str {
//!         "jobs::queue_depth"
//!     }
//!     fn tags(&self) -> Vec<String> {
//!         vec!["queue".into()]
//!     }
//!     fn timeout(&self) -> Option<Duration> {
//!         Some(Duration::from_secs(2))
//!     }
//!     async fn run(&self, ctx: &mut Context) -> smoketest_core::Result {
//!         let depth = 12; // ask the queue here
//!         ctx.observe("depth", depth);
//!         ensure!(depth < self.max, "{depth} jobs queued, limit {}", self.max);
//!         Ok(Outcome::Pass)
//!     }
//! }
//!
//! let smoke = Smoketest::builder()
//!     .without_discovery()
//!     .check(QueueDepth { max: 1000 })
//!     .build()
//!     .unwrap();
//! assert_eq!(smoke.check_names().collect::<Vec<_>>(), ["jobs::queue_depth"]);
//! ```

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::{Context, Result};

/// A boxed future returned by a check, borrowing its context.
pub type CheckFuture<'a> = Pin<Box<dyn Future<Output = Result> + Send + 'a>>;

/// One smoke check. See the [module documentation](self).
#[async_trait::async_trait]
pub trait SmokeCheck: Send + Sync + 'static {
    /// The unique name, shown in reports and used in `/smoketest/{name}` and `?check=`.
    /// Module-path style (`orders::db_write`) reads well and cannot clash across modules.
    fn name(&self) -> &str;

    /// Tags for selection (`?tag=db`) and groups. Called once, when the registry is built.
    fn tags(&self) -> Vec<String> {
        Vec::new()
    }

    /// This check's own timeout, overriding the registry's default (10 s unless configured).
    fn timeout(&self) -> Option<Duration> {
        None
    }

    /// This check's latency budget: a run that passes but takes longer is reported as
    /// `warn` with kind `slow` (default: the builder's
    /// [`warn_after`](crate::SmoketestBuilder::warn_after), none unless set).
    fn warn_after(&self) -> Option<Duration> {
        None
    }

    /// Run the check once. Return `Ok(Outcome::Pass)` (or `Warn`/`Skip`), or fail with a
    /// [`CheckError`](crate::CheckError).
    async fn run(&self, ctx: &mut Context) -> Result;
}

/// A check declared with `#[smoketest::check]`, collected by `inventory`.
///
/// Not for direct use: the attribute macro builds these. Public only because the macro's
/// expansion lives in the user's crate.
#[doc(hidden)]
#[derive(Debug)]
pub struct Registration {
    /// The name given with `name = "…"`, if any.
    pub name: Option<&'static str>,
    /// `module_path!()` where the fn is declared.
    pub module: &'static str,
    /// The fn's name.
    pub function: &'static str,
    /// Tags.
    pub tags: &'static [&'static str],
    /// Per-check timeout in milliseconds, if the attribute gave one.
    pub timeout_ms: Option<u64>,
    /// Latency budget in milliseconds (`warn_after = "300ms"`), if the attribute gave one.
    pub warn_after_ms: Option<u64>,
    /// `personas = [...]`: the check runs once per persona, as `name[persona]`.
    pub personas: &'static [&'static str],
    /// Where the fn was declared, for duplicate-name errors.
    pub file: &'static str,
    /// Line of the declaration.
    pub line: u32,
    /// Calls the fn.
    pub run: for<'a> fn(&'a mut Context) -> CheckFuture<'a>,
}

inventory::collect!(Registration);

/// Every check registered with `#[smoketest::check]` in the binary.
pub(crate) fn discovered() -> impl Iterator<Item = &'static Registration> {
    inventory::iter::<Registration>.into_iter()
}

impl Registration {
    /// The check's name: the one given, else the module path without the crate name, plus
    /// the fn name (`orders::db_write`).
    pub fn check_name(&self) -> String {
        if let Some(name) = self.name {
            return name.to_string();
        }
        match self.module.split_once("::") {
            Some((_crate, module)) => format!("{module}::{}", self.function),
            None => self.function.to_string(),
        }
    }
}

/// Adapts a [`Registration`] to the trait.
pub(crate) struct RegisteredFn {
    pub(crate) name: String,
    pub(crate) registration: &'static Registration,
    /// The persona this copy runs as (`personas = [...]`).
    pub(crate) persona: Option<std::sync::Arc<str>>,
}

#[async_trait::async_trait]
impl SmokeCheck for RegisteredFn {
    fn name(&self) -> &str {
        &self.name
    }

    fn tags(&self) -> Vec<String> {
        self.registration
            .tags
            .iter()
            .map(|t| t.to_string())
            .collect()
    }

    fn timeout(&self) -> Option<Duration> {
        self.registration.timeout_ms.map(Duration::from_millis)
    }

    fn warn_after(&self) -> Option<Duration> {
        self.registration.warn_after_ms.map(Duration::from_millis)
    }

    // Written out rather than `async fn`: the fn's own boxed future is returned as it is,
    // not boxed a second time inside the trait's.
    fn run<'s, 'c, 'f>(&'s self, ctx: &'c mut Context) -> CheckFuture<'f>
    where
        's: 'f,
        'c: 'f,
        Self: 'f,
    {
        if let Some(persona) = &self.persona {
            ctx.set_persona(Some(persona.clone()));
        }
        (self.registration.run)(ctx)
    }
}

/// A check made from a name and an async closure, for checks that capture configuration
/// without a type of their own.
///
/// ```
/// use smoketest_core::{from_fn, Outcome, Smoketest};
///
/// let url = String::from("https://payments.internal");
/// let smoke = Smoketest::builder()
///     .without_discovery()
///     .check(from_fn("payments::configured", move |_ctx| {
///         let url = url.clone();
///         Box::pin(async move {
///             smoketest_core::ensure!(url.starts_with("https://"), "{url} is not https");
///             Ok(Outcome::Pass)
///         })
///     }))
///     .build()
///     .unwrap();
/// # let _ = smoke;
/// ```
pub fn from_fn<F>(name: impl Into<String>, f: F) -> FnCheck<F>
where
    F: for<'a> Fn(&'a mut Context) -> CheckFuture<'a> + Send + Sync + 'static,
{
    FnCheck {
        name: name.into(),
        tags: Vec::new(),
        timeout: None,
        warn_after: None,
        f,
    }
}

/// A check made with [`from_fn`].
pub struct FnCheck<F> {
    name: String,
    tags: Vec<String>,
    timeout: Option<Duration>,
    warn_after: Option<Duration>,
    f: F,
}

impl<F> FnCheck<F> {
    /// Add a tag.
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// Set this check's timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Set this check's latency budget: a pass slower than `budget` is a `warn` of kind
    /// `slow` ([`SmokeCheck::warn_after`]).
    pub fn warn_after(mut self, budget: Duration) -> Self {
        self.warn_after = Some(budget);
        self
    }
}

#[async_trait::async_trait]
impl<F> SmokeCheck for FnCheck<F>
where
    F: for<'a> Fn(&'a mut Context) -> CheckFuture<'a> + Send + Sync + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn tags(&self) -> Vec<String> {
        self.tags.clone()
    }

    fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    fn warn_after(&self) -> Option<Duration> {
        self.warn_after
    }

    // Written out rather than `async fn`: the closure's boxed future is returned as it is,
    // not boxed a second time inside the trait's.
    fn run<'s, 'c, 'f>(&'s self, ctx: &'c mut Context) -> CheckFuture<'f>
    where
        's: 'f,
        'c: 'f,
        Self: 'f,
    {
        (self.f)(ctx)
    }
}

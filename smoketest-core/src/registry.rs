//! The [`Smoketest`]: the checks of one service and how to run and serve them, built once
//! at start-up with [`SmoketestBuilder`].
//!
//! The builder collects every `#[smoketest::check]` in the binary (unless told
//! [`without_discovery`](SmoketestBuilder::without_discovery)), adds the checks registered
//! explicitly with [`check`](SmoketestBuilder::check), and rejects duplicate names,
//! naming where each was declared. A built `Smoketest` is cheap to clone (an `Arc`) and is
//! what the axum and actix adapters mount.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use smoketest_core::{from_fn, Outcome, Smoketest};
//!
//! let smoke = Smoketest::builder()
//!     .service("orders-api")
//!     .version("1.4.2")
//!     .release_id("9f2c1ab")
//!     .default_timeout(Duration::from_secs(5))
//!     .check(from_fn("cache::ping", |_ctx| Box::pin(async { Ok(Outcome::Pass) })).tag("cache"))
//!     .build()
//!     .expect("check names are unique");
//! assert!(smoke.check_names().any(|n| n == "cache::ping"));
//!
//! // Two checks with one name: the error names both places.
//! let err = Smoketest::builder()
//!     .without_discovery()
//!     .check(from_fn("twice", |_ctx| Box::pin(async { Ok(Outcome::Pass) })))
//!     .check(from_fn("twice", |_ctx| Box::pin(async { Ok(Outcome::Pass) })))
//!     .build()
//!     .unwrap_err();
//! assert!(err.to_string().starts_with("two checks are named `twice`"));
//! ```

use std::collections::HashMap;
use std::fmt;
use std::panic::Location;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

use crate::SmokeCheck;
use crate::check::{RegisteredFn, discovered};
use crate::report::Detail;

/// Where a check was declared: a source location, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Source file.
    pub file: &'static str,
    /// Line.
    pub line: u32,
    /// `#[smoketest::check]` or `builder.check(…)`.
    pub how: &'static str,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}:{}", self.how, self.file, self.line)
    }
}

/// A registered check with the metadata read from it once at build time.
pub(crate) struct Entry {
    pub(crate) name: Arc<str>,
    pub(crate) tags: Vec<String>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) warn_after: Option<Duration>,
    pub(crate) check: Arc<dyn SmokeCheck>,
    pub(crate) origin: Origin,
    /// Instances still running after their run answered (runner.rs).
    pub(crate) overrunning: std::sync::atomic::AtomicUsize,
}

/// Why a [`Smoketest`] could not be built.
///
/// Its `Debug` form is the same sentence as its `Display`, so `main() -> Result<(), Box<dyn
/// Error>>` (and `anyhow`, `eyre`) print what to fix rather than a struct dump.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// Two checks share a name.
    #[error(
        "two checks are named `{name}`: {first} and {second}; rename one (`#[smoketest::check(name = \"…\")]` or the check's `name()`)"
    )]
    DuplicateName {
        /// The shared name.
        name: String,
        /// The first declaration.
        first: Origin,
        /// The second declaration.
        second: Origin,
    },
    /// A check's name cannot be used.
    #[error("the check name `{name}` ({origin}) is not usable: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Where it was declared.
        origin: Origin,
        /// Why.
        reason: &'static str,
    },
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A [`Group`](crate::Group) names a check or tag that no registered check has.
    #[error(
        "group `{group}` names {member}, but no registered check has it ({known}); fix the spelling or register the check"
    )]
    UnknownGroupMember {
        /// The group.
        group: String,
        /// What it named: "the check `…`" or "the tag `…`".
        member: String,
        /// The checks or tags there are.
        known: String,
    },
    /// A liveness group includes a check of an external system: an outage of it would make
    /// Kubernetes restart every pod at once. See [`Group::allow_external_dependencies`](crate::Group::allow_external_dependencies).
    #[error(
        "group `{group}` is a liveness probe but includes `{check}`, which depends on an external system (tag `{tag}`): a database outage would restart every pod: move it to Group::ready(), or call .allow_external_dependencies() on the group if a restart really fixes it"
    )]
    UnsafeProbe {
        /// The liveness group.
        group: String,
        /// The check of an external system.
        check: String,
        /// The tag that marks it external (`external`, `db`).
        tag: String,
    },
}

impl fmt::Debug for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Settings shared by every run.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) service: Option<String>,
    pub(crate) version: Option<String>,
    pub(crate) release_id: Option<String>,
    pub(crate) default_timeout: Duration,
    pub(crate) deadline: Duration,
    pub(crate) concurrency: usize,
    pub(crate) failure_status: StatusCode,
    pub(crate) path: String,
    pub(crate) anonymous_detail: Detail,
    /// The longest one `ctx.defer` cleanup may run (runner.rs).
    pub(crate) cleanup_timeout: Duration,
    pub(crate) warn_after: Option<Duration>,
    pub(crate) history_len: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            service: None,
            version: None,
            release_id: None,
            default_timeout: Duration::from_secs(10),
            deadline: Duration::from_secs(25),
            concurrency: 16,
            failure_status: StatusCode::INTERNAL_SERVER_ERROR,
            path: "/smoketest".to_string(),
            anonymous_detail: Detail::Checks,
            cleanup_timeout: crate::runner::DEFAULT_CLEANUP_TIMEOUT,
            warn_after: None,
            history_len: crate::history::DEFAULT_HISTORY_LEN,
        }
    }
}

pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) entries: Vec<Arc<Entry>>,
    pub(crate) by_name: HashMap<Arc<str>, usize>,
    // The pipeline's stages: access (auth.rs), the engine and its scopes (engine.rs, one
    // per path: the mount path, then the groups), redaction (redact.rs).
    pub(crate) access: crate::auth::Access,
    pub(crate) redactor: crate::redact::Redactor,
    pub(crate) engine: crate::engine::Engine,
    pub(crate) databases: Arc<crate::db::Databases>,
    /// The service's own API and personas, for scenario checks (scenario.rs, api.rs).
    pub(crate) scenarios: Arc<crate::scenario::ScenarioOptions>,
}

/// A service's smoke checks, ready to run and serve. See the [module documentation](self).
#[derive(Clone)]
pub struct Smoketest {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Smoketest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Smoketest")
            .field("path", &self.inner.config.path)
            .field("checks", &self.check_names().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Smoketest {
    /// Start building. Every `#[smoketest::check]` in the binary is included unless you call
    /// [`SmoketestBuilder::without_discovery`].
    pub fn builder() -> SmoketestBuilder {
        SmoketestBuilder {
            config: Config::default(),
            discover: true,
            explicit: Vec::new(),
            groups: Vec::new(),
            access: Default::default(),
            redaction: Default::default(),
            limits: Default::default(),
            databases: crate::db::Databases::default(),
            database_errors: Vec::new(),
            scenarios: Default::default(),
        }
    }

    /// The names of all checks, in run order.
    pub fn check_names(&self) -> impl Iterator<Item = &str> {
        self.inner.entries.iter().map(|e| &*e.name)
    }

    /// The tags of the check called `name`, if there is one.
    pub fn check_tags(&self, name: &str) -> Option<&[String]> {
        self.inner
            .by_name
            .get(name)
            .map(|&i| self.inner.entries[i].tags.as_slice())
    }

    /// The mount path (default `/smoketest`).
    pub fn path(&self) -> &str {
        &self.inner.config.path
    }

    /// The service name, if configured.
    pub fn service(&self) -> Option<&str> {
        self.inner.config.service.as_deref()
    }
}

/// Builds a [`Smoketest`]. See the [module documentation](self).
#[must_use]
pub struct SmoketestBuilder {
    pub(crate) config: Config,
    discover: bool,
    explicit: Vec<(Arc<dyn SmokeCheck>, Origin)>,
    groups: Vec<crate::group::Group>,
    // Safety settings; their builder methods live in auth.rs, redact.rs and engine.rs.
    pub(crate) access: crate::auth::AccessOptions,
    pub(crate) redaction: crate::redact::RedactOptions,
    pub(crate) limits: crate::engine::Limits,
    databases: crate::db::Databases,
    database_errors: Vec<String>,
    // The API and personas of scenario checks; their builder methods live in scenario.rs
    // and api.rs.
    pub(crate) scenarios: crate::scenario::ScenarioOptions,
}

impl SmoketestBuilder {
    /// The service's name, shown in every report.
    pub fn service(mut self, name: impl Into<String>) -> Self {
        self.config.service = Some(name.into());
        self
    }

    /// The service's version (e.g. `env!("CARGO_PKG_VERSION")`).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.config.version = Some(version.into());
        self
    }

    /// The release the service runs (commit hash, image tag); lets a deploy gate tell a new
    /// pod from an old one.
    pub fn release_id(mut self, release_id: impl Into<String>) -> Self {
        self.config.release_id = Some(release_id.into());
        self
    }

    /// Timeout for checks that set none themselves. Default 10 s.
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.config.default_timeout = timeout;
        self
    }

    /// The longest a whole run may take; checks still running then are reported as timed
    /// out and the response goes out. Default 25 s (under common load-balancer timeouts).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.config.deadline = deadline;
        self
    }

    /// How many checks of one run may execute at once. Default 16.
    pub fn concurrency(mut self, limit: usize) -> Self {
        self.config.concurrency = limit;
        self
    }

    /// The HTTP status for a failing run. Default 500; 503 suits load balancers that treat
    /// it as "take out of rotation".
    pub fn failure_status(mut self, status: StatusCode) -> Self {
        self.config.failure_status = status;
        self
    }

    /// Where the endpoint is mounted. Default `/smoketest`.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.config.path = path.into();
        self
    }

    /// What anonymous callers may see. Default [`Detail::Checks`]: names, statuses,
    /// durations and error kinds, no messages.
    pub fn anonymous_detail(mut self, detail: Detail) -> Self {
        self.config.anonymous_detail = detail;
        self
    }

    /// The latency budget of checks that set none themselves
    /// ([`SmokeCheck::warn_after`]): a check that passes but takes longer is reported as
    /// `warn` with kind `slow` and its duration. Default: none.
    pub fn warn_after(mut self, budget: Duration) -> Self {
        self.config.warn_after = Some(budget);
        self
    }

    /// How many past runs of each check the engine keeps for the report's `history`, the
    /// HTML page's strip and the metrics (default 20; 0 keeps none). Memory is bounded:
    /// 32 bytes per run kept and check plus 168 per check, see [`history`](crate::history).
    pub fn history_len(mut self, runs: usize) -> Self {
        self.config.history_len = runs;
        self
    }

    /// Do not collect `#[smoketest::check]` functions; run only checks added with
    /// [`check`](Self::check).
    pub fn without_discovery(mut self) -> Self {
        self.discover = false;
        self
    }

    /// Register a check explicitly (for checks that need configuration).
    #[track_caller]
    pub fn check(mut self, check: impl SmokeCheck) -> Self {
        let location = Location::caller();
        self.explicit.push((
            Arc::new(check),
            Origin {
                file: location.file(),
                line: location.line(),
                how: "builder.check(…)",
            },
        ));
        self
    }

    /// Add a [`Group`](crate::Group): a named selection served on its own path (`/livez`,
    /// `/readyz`), optionally run in the background. Its members are checked at build.
    pub fn group(mut self, group: crate::group::Group) -> Self {
        self.groups.push(group);
        self
    }

    /// Register the Postgres pool that `ctx.postgres()` takes its per-check transactions
    /// from (always rolled back; see [`db`](crate::db)).
    #[cfg(feature = "postgres")]
    pub fn postgres(self, pool: sqlx::PgPool) -> Self {
        self.postgres_named(crate::db::DEFAULT_POOL, pool)
    }

    /// Register a further Postgres pool under a name, for `ctx.postgres_named(name)`.
    #[cfg(feature = "postgres")]
    pub fn postgres_named(self, name: impl AsRef<str>, pool: sqlx::PgPool) -> Self {
        self.add_pool::<crate::db::postgres::Pg>(name.as_ref(), pool)
    }

    /// Register the MySQL / MariaDB pool that `ctx.mysql()` takes its per-check
    /// transactions from.
    #[cfg(feature = "mysql")]
    pub fn mysql(self, pool: sqlx::MySqlPool) -> Self {
        self.mysql_named(crate::db::DEFAULT_POOL, pool)
    }

    /// Register a further MySQL / MariaDB pool under a name, for `ctx.mysql_named(name)`.
    #[cfg(feature = "mysql")]
    pub fn mysql_named(self, name: impl AsRef<str>, pool: sqlx::MySqlPool) -> Self {
        self.add_pool::<crate::db::mysql::My>(name.as_ref(), pool)
    }

    /// Register the SQLite pool that `ctx.sqlite()` takes its per-check transactions from.
    #[cfg(feature = "sqlite")]
    pub fn sqlite(self, pool: sqlx::SqlitePool) -> Self {
        self.sqlite_named(crate::db::DEFAULT_POOL, pool)
    }

    /// Register a further SQLite pool under a name, for `ctx.sqlite_named(name)`.
    #[cfg(feature = "sqlite")]
    pub fn sqlite_named(self, name: impl AsRef<str>, pool: sqlx::SqlitePool) -> Self {
        self.add_pool::<crate::db::sqlite::Lite>(name.as_ref(), pool)
    }

    /// The longest a check waits for a database connection before it fails with kind
    /// `db_unavailable` (never longer than three quarters of the check's own timeout).
    /// Default 3 s.
    #[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
    pub fn database_acquire_timeout(mut self, timeout: Duration) -> Self {
        self.databases.acquire_timeout = timeout;
        self
    }

    #[cfg(any(feature = "postgres", feature = "mysql", feature = "sqlite"))]
    fn add_pool<D: crate::db::Dialect>(mut self, name: &str, pool: sqlx::Pool<D::Db>) -> Self {
        if let Err(e) = self.databases.add::<D>(name, pool) {
            self.database_errors.push(e);
        }
        self
    }

    /// Build, rejecting duplicate or unusable names and out-of-range settings.
    pub fn build(self) -> Result<Smoketest, BuildError> {
        if let Some(error) = self.database_errors.into_iter().next() {
            return Err(BuildError::Config(error));
        }
        let config = self.config;
        let access = self.access.build()?;
        let redactor = self.redaction.build();
        if config.concurrency == 0 {
            return Err(BuildError::Config("concurrency must be at least 1".into()));
        }
        if config.deadline.is_zero() || config.default_timeout.is_zero() {
            return Err(BuildError::Config(
                "deadline and default timeout must be longer than zero".into(),
            ));
        }
        if !config.path.starts_with('/') || (config.path.len() > 1 && config.path.ends_with('/')) {
            return Err(BuildError::Config(format!(
                "mount path `{}` must start with `/` and not end with one",
                config.path
            )));
        }

        let mut candidates: Vec<(Arc<dyn SmokeCheck>, Origin)> = Vec::new();
        let mut persona_uses: Vec<(String, &'static str)> = Vec::new();
        if self.discover {
            let mut found: Vec<_> = discovered().map(|r| (r.check_name(), r)).collect();
            // inventory's order depends on link order; sort for a stable run order.
            found.sort_by(|(a, ra), (b, rb)| (a, ra.file, ra.line).cmp(&(b, rb.file, rb.line)));
            for (name, reg) in found {
                let origin = Origin {
                    file: reg.file,
                    line: reg.line,
                    how: "#[smoketest::check]",
                };
                // `personas = [...]`: one check per persona, `name[persona]`.
                let personas: Vec<Option<&'static str>> = if reg.personas.is_empty() {
                    vec![None]
                } else {
                    reg.personas.iter().copied().map(Some).collect()
                };
                for persona in personas {
                    let name = match persona {
                        Some(persona) => {
                            persona_uses.push((name.clone(), persona));
                            format!("{name}[{persona}]")
                        }
                        None => name.clone(),
                    };
                    candidates.push((
                        Arc::new(RegisteredFn {
                            name,
                            registration: reg,
                            persona: persona.map(Arc::from),
                        }),
                        origin.clone(),
                    ));
                }
            }
        }
        self.scenarios.validate(&persona_uses)?;
        candidates.extend(self.explicit);

        let mut entries: Vec<Arc<Entry>> = Vec::with_capacity(candidates.len());
        let mut by_name: HashMap<Arc<str>, usize> = HashMap::new();
        for (check, origin) in candidates {
            let name: Arc<str> = Arc::from(check.name());
            validate_name(&name).map_err(|reason| BuildError::InvalidName {
                name: name.to_string(),
                origin: origin.clone(),
                reason,
            })?;
            if let Some(&i) = by_name.get(&name) {
                return Err(BuildError::DuplicateName {
                    name: name.to_string(),
                    first: entries[i].origin.clone(),
                    second: origin,
                });
            }
            by_name.insert(name.clone(), entries.len());
            entries.push(Arc::new(Entry {
                name,
                tags: check.tags(),
                timeout: check.timeout(),
                warn_after: check.warn_after().or(config.warn_after),
                check,
                origin,
                overrunning: Default::default(),
            }));
        }

        let groups = crate::group::resolve(
            self.groups,
            &entries,
            &config.path,
            config.failure_status,
            config.anonymous_detail,
            access.requires_authorization(),
        )?;
        let history =
            crate::history::History::new(config.history_len, entries.iter().map(|e| &e.name));
        let engine = crate::engine::Engine::new(
            self.limits,
            history,
            (config.failure_status, config.anonymous_detail),
            groups,
        )?;
        let smoke = Smoketest {
            inner: Arc::new(Inner {
                config,
                entries,
                by_name,
                access,
                redactor,
                engine,
                databases: Arc::new(self.databases),
                scenarios: Arc::new(self.scenarios),
            }),
        };
        smoke.start_background();
        crate::runner::install_panic_hook();
        Ok(smoke)
    }
}

fn validate_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("it contains white space or control characters");
    }
    if name.contains('/') || name.contains('?') || name.contains('#') {
        return Err("`/`, `?` and `#` cannot appear in a name served as `/smoketest/{name}`");
    }
    Ok(())
}

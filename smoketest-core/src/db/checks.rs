//! The built-in database checks: ping, write probe, migrations applied.

use std::sync::Arc;
use std::time::Duration;

use crate::{Context, SmokeCheck};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    #[cfg(feature = "postgres")]
    Postgres,
    #[cfg(feature = "mysql")]
    MySql,
    #[cfg(feature = "sqlite")]
    Sqlite,
}

impl Backend {
    fn slug(self) -> &'static str {
        match self {
            #[cfg(feature = "postgres")]
            Backend::Postgres => "postgres",
            #[cfg(feature = "mysql")]
            Backend::MySql => "mysql",
            #[cfg(feature = "sqlite")]
            Backend::Sqlite => "sqlite",
        }
    }
}

#[derive(Clone)]
pub(crate) enum Probe {
    Ping,
    Write,
    #[cfg(feature = "migrate")]
    Migrations(Arc<sqlx::migrate::Migrator>),
}

impl Probe {
    fn slug(&self) -> &'static str {
        match self {
            Probe::Ping => "ping",
            Probe::Write => "write",
            #[cfg(feature = "migrate")]
            Probe::Migrations(_) => "migrations",
        }
    }
}

/// A built-in database check: [`postgres::ping`](crate::db::postgres::ping),
/// `write_probe`, `migrations_applied` and their MySQL and SQLite siblings.
///
/// Runs in the check's own transaction like any other check, so whatever it writes is
/// rolled back. Named `db::{backend}::{probe}` for the default pool and
/// `db::{backend}::{pool}::{probe}` for a named one; tagged `db`.
#[derive(Clone)]
pub struct DbCheck {
    backend: Backend,
    probe: Probe,
    pool: Arc<str>,
    name: Option<String>,
    default_name: String,
    tags: Vec<String>,
    timeout: Option<Duration>,
    migrations_table: String,
}

impl DbCheck {
    pub(crate) fn new(backend: Backend, probe: Probe) -> Self {
        let mut check = DbCheck {
            backend,
            probe,
            pool: Arc::from(super::DEFAULT_POOL),
            name: None,
            default_name: String::new(),
            tags: vec!["db".to_string()],
            timeout: None,
            migrations_table: "_sqlx_migrations".to_string(),
        };
        check.default_name = check.derive_name();
        check
    }

    fn derive_name(&self) -> String {
        if &*self.pool == super::DEFAULT_POOL {
            format!("db::{}::{}", self.backend.slug(), self.probe.slug())
        } else {
            format!(
                "db::{}::{}::{}",
                self.backend.slug(),
                self.pool,
                self.probe.slug()
            )
        }
    }

    /// Run against the pool registered under this name (`.postgres_named(name, pool)`).
    pub fn pool(mut self, name: impl Into<Arc<str>>) -> Self {
        self.pool = name.into();
        self.default_name = self.derive_name();
        self
    }

    /// Use this name instead of the derived one.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Add a tag (`db` is always there).
    pub fn tag(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }

    /// This check's timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// For the migrations check: the table sqlx records migrations in, when not the
    /// default `_sqlx_migrations`.
    pub fn migrations_table(mut self, table: impl Into<String>) -> Self {
        self.migrations_table = table.into();
        self
    }
}

impl std::fmt::Debug for DbCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbCheck")
            .field("name", &self.name())
            .field("pool", &self.pool)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl SmokeCheck for DbCheck {
    fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.default_name)
    }

    fn tags(&self) -> Vec<String> {
        self.tags.clone()
    }

    fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    async fn run(&self, ctx: &mut Context) -> crate::Result {
        let pool = &*self.pool;
        match (&self.probe, self.backend) {
            #[cfg(feature = "postgres")]
            (Probe::Ping, Backend::Postgres) => super::postgres::ping_check(ctx, pool).await,
            #[cfg(feature = "postgres")]
            (Probe::Write, Backend::Postgres) => super::postgres::write_check(ctx, pool).await,
            #[cfg(all(feature = "postgres", feature = "migrate"))]
            (Probe::Migrations(m), Backend::Postgres) => {
                let conn = ctx.postgres_named(pool).await?;
                migrations_check(conn, m, &self.migrations_table, pool).await
            }
            #[cfg(feature = "mysql")]
            (Probe::Ping, Backend::MySql) => super::mysql::ping_check(ctx, pool).await,
            #[cfg(feature = "mysql")]
            (Probe::Write, Backend::MySql) => super::mysql::write_check(ctx, pool).await,
            #[cfg(all(feature = "mysql", feature = "migrate"))]
            (Probe::Migrations(m), Backend::MySql) => {
                let conn = ctx.mysql_named(pool).await?;
                migrations_check(conn, m, &self.migrations_table, pool).await
            }
            #[cfg(feature = "sqlite")]
            (Probe::Ping, Backend::Sqlite) => super::sqlite::ping_check(ctx, pool).await,
            #[cfg(feature = "sqlite")]
            (Probe::Write, Backend::Sqlite) => super::sqlite::write_check(ctx, pool).await,
            #[cfg(all(feature = "sqlite", feature = "migrate"))]
            (Probe::Migrations(m), Backend::Sqlite) => {
                let conn = ctx.sqlite_named(pool).await?;
                migrations_check(conn, m, &self.migrations_table, pool).await
            }
        }
    }
}

/// Compare the migrations compiled into the service with those recorded in the database.
#[cfg(feature = "migrate")]
async fn migrations_check<C: sqlx::migrate::Migrate>(
    conn: &mut C,
    migrator: &sqlx::migrate::Migrator,
    table: &str,
    pool: &str,
) -> crate::Result {
    use std::collections::HashMap;

    use crate::{CheckError, ErrorKind, Outcome, fail};

    let unreadable = |e: sqlx::migrate::MigrateError| {
        CheckError::new(
            ErrorKind::Error,
            format!(
                "cannot read the migrations table `{table}` on pool `{pool}`: {}",
                crate::error::error_chain(&e)
            ),
        )
        .with_suggestion(
            "Have the migrations ever run against this database? Run them at start-up (`migrator.run(&pool)`) or with `sqlx migrate run`, and check that the pool points at the right database.",
        )
    };
    if let Some(version) = conn.dirty_version(table).await.map_err(unreadable)? {
        fail!(
            "migration {version} on pool `{pool}` is dirty: it started but did not finish; fix it by hand and delete its row from `{table}`"
        );
    }
    let applied: HashMap<i64, Vec<u8>> = conn
        .list_applied_migrations(table)
        .await
        .map_err(unreadable)?
        .into_iter()
        .map(|m| (m.version, m.checksum.into_owned()))
        .collect();

    let mut pending = Vec::new();
    let mut changed = Vec::new();
    let mut known = std::collections::HashSet::new();
    for migration in migrator.iter() {
        if migration.migration_type.is_down_migration() {
            continue;
        }
        known.insert(migration.version);
        match applied.get(&migration.version) {
            None => pending.push(format!("{} ({})", migration.version, migration.description)),
            Some(checksum) if **checksum != *migration.checksum => {
                changed.push(format!("{} ({})", migration.version, migration.description))
            }
            Some(_) => {}
        }
    }
    if !pending.is_empty() {
        fail!(
            "{} migration(s) not applied on pool `{pool}`: {}; run the migrations before (or when) this release starts",
            pending.len(),
            pending.join(", ")
        );
    }
    if !changed.is_empty() {
        fail!(
            "migration(s) changed after they were applied on pool `{pool}`: {}; a migration must never be edited once applied, add a new one",
            changed.join(", ")
        );
    }
    let mut unknown: Vec<i64> = applied
        .keys()
        .filter(|v| !known.contains(v))
        .copied()
        .collect();
    if !unknown.is_empty() {
        unknown.sort_unstable();
        return Ok(Outcome::warn(format!(
            "the database on pool `{pool}` has migration(s) this release does not know: {unknown:?} (a newer release migrated it; is this an old release or a rollback?)"
        )));
    }
    Ok(Outcome::Pass)
}

//! Scenario checks: the service's own API, end to end, as each persona, in named steps,
//! with teardown that always happens.
//!
//! A scenario is an ordinary check that calls [`Context::step`] for each thing it does and
//! [`Context::api`] to reach the service's own API (see [`api`](crate::api)). Unlike a
//! check that reports one verdict, a scenario's report lists every step with its status,
//! duration and — for an HTTP step — the method, path and status code, so "create worked,
//! read-back returned 500, list and delete never ran" is visible in every format:
//!
//! - The first failing step fails the check, and the check's error names it
//!   (`step 3/5 "list orders": …`). Steps declared with [`Context::declare_steps`] that did
//!   not run are reported `skip`. A step cut off by the check's timeout, or that panicked, is
//!   reported `fail` with that kind.
//! - Cleanups registered with [`Context::defer`] (or [`Context::defer_request`]) run after
//!   the check whatever happened — failure, panic, timeout — newest first, and in a check with
//!   steps each is reported as a `teardown` step of its own. A failing teardown never hides
//!   the check's own failure: both are in the report.
//! - A [`Persona`] is a named credential registered once on the builder
//!   ([`SmoketestBuilder::persona`]); a request runs as one with
//!   [`ApiRequest::as_`](crate::api::ApiRequest::as_). Minted tokens are cached, and minted
//!   again once when the API answers 401. `#[smoketest::check(personas = ["admin",
//!   "clerk"])]` runs one scenario once per persona, each its own check in the report
//!   (`orders::lifecycle[clerk]`); requests default to the check's persona.
//!
//! What a scenario's requests write goes to the real database, outside the check's
//! transaction (that one covers only the check's own `ctx.postgres()` etc.): register the
//! teardown as soon as a resource exists, inside the step that created it.
//!
//! # Example
//!
//! ```
//! use smoketest_core::{api::ApiService, from_fn, Outcome, Persona, Selection, Smoketest, Status};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // The service's API; with axum: `smoketest::axum::api(router.clone())`.
//! let api = ApiService::from_fn(|request| async move {
//!     let status = match (request.method().as_str(), request.uri().path()) {
//!         ("POST", "/orders") => 201,
//!         ("DELETE", _) => 204,
//!         _ => 404,
//!     };
//!     Ok(http::Response::builder().status(status).body(bytes::Bytes::from_static(b"{}")).unwrap())
//! });
//! let smoke = Smoketest::builder()
//!     .without_discovery()
//!     .api(api)
//!     .persona("clerk", Persona::bearer("clerk-token"))
//!     .check(from_fn("orders::create", |ctx| Box::pin(async move {
//!         ctx.declare_steps(["create order", "read it back"]);
//!         let api = ctx.api().as_("clerk");
//!         ctx.step("create order", async {
//!             api.post("/orders").json(&serde_json::json!({"item": "smoke"})).expect_status(201).await?;
//!             ctx.defer_request(api.delete("/orders/1").expect_status(204));
//!             Ok(())
//!         }).await?;
//!         ctx.step("read it back", async { api.get("/orders/1").await }).await?;
//!         Ok(Outcome::Pass)
//!     })))
//!     .build()
//!     .unwrap();
//! let report = smoke.run(&Selection::all()).await.unwrap();
//! let check = &report.checks[0];
//! assert_eq!(check.status, Status::Fail);
//! let statuses: Vec<_> = check.steps.iter().map(|s| (s.name.as_str(), s.status)).collect();
//! assert_eq!(statuses, [
//!     ("create order", Status::Pass),
//!     ("read it back", Status::Fail),
//!     ("teardown: DELETE /orders/1", Status::Pass),
//! ]);
//! assert_eq!(check.steps[1].status_code, Some(404));
//! # }
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use crate::report::{ErrorReport, StepReport, millis};
use crate::{CheckError, Context, ErrorKind, SmokeCheck, SmoketestBuilder, Status};

type Mint =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<String, CheckError>> + Send>> + Send + Sync>;

/// A named credential requests to the service's API run as. See the
/// [module documentation](self).
#[derive(Clone)]
pub struct Persona {
    credential: Credential,
}

#[derive(Clone)]
enum Credential {
    Anonymous,
    Bearer(String),
    Minted(Mint),
}

impl Persona {
    /// Requests carry no credential: what an anonymous caller gets.
    pub fn anonymous() -> Self {
        Persona {
            credential: Credential::Anonymous,
        }
    }

    /// Requests carry `Authorization: Bearer {token}`.
    pub fn bearer(token: impl Into<String>) -> Self {
        Persona {
            credential: Credential::Bearer(token.into()),
        }
    }

    /// Requests carry `Authorization: Bearer {token}` with a token `mint` makes (asking the
    /// identity provider, signing a JWT). The token is cached across runs and minted again
    /// when the API answers 401 (once per request); a failing `mint` fails the step with a
    /// message naming the persona.
    pub fn bearer_from<F, Fut, E>(mint: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, E>> + Send + 'static,
        E: Into<CheckError>,
    {
        let mint: Mint = Arc::new(move || {
            let token = mint();
            Box::pin(async move { token.await.map_err(Into::into) })
        });
        Persona {
            credential: Credential::Minted(mint),
        }
    }
}

impl fmt::Debug for Persona {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the token.
        f.write_str(match self.credential {
            Credential::Anonymous => "Persona::anonymous()",
            Credential::Bearer(_) => "Persona::bearer(…)",
            Credential::Minted(_) => "Persona::bearer_from(…)",
        })
    }
}

/// A persona as the service holds it: its credential and the token last minted for it.
pub(crate) struct PersonaState {
    persona: Persona,
    token: tokio::sync::Mutex<Option<String>>,
}

impl PersonaState {
    /// The `Authorization` header value for this persona, minting a token when none is
    /// cached (or `refresh`, after a 401). `None` for an anonymous persona.
    pub(crate) async fn authorization(
        &self,
        name: &str,
        refresh: bool,
    ) -> Result<Option<String>, CheckError> {
        match &self.persona.credential {
            Credential::Anonymous => Ok(None),
            Credential::Bearer(token) => Ok(Some(format!("Bearer {token}"))),
            Credential::Minted(mint) => {
                let mut cached = self.token.lock().await;
                if refresh || cached.is_none() {
                    *cached = None;
                    let token = mint().await.map_err(|e| {
                        CheckError::new(
                            e.kind(),
                            format!(
                                "could not get a token for persona `{name}`: {}",
                                e.message()
                            ),
                        )
                        .with_suggestion(
                            "The persona's token minting (Persona::bearer_from) failed: check the identity provider it calls and the credentials it uses.",
                        )
                    })?;
                    *cached = Some(token);
                }
                Ok(cached.as_ref().map(|t| format!("Bearer {t}")))
            }
        }
    }

    /// Whether a 401 may be cured by minting again.
    pub(crate) fn refreshable(&self) -> bool {
        matches!(self.persona.credential, Credential::Minted(_))
    }
}

/// What the builder collects for scenarios: the API and the personas.
#[derive(Default)]
pub(crate) struct ScenarioOptions {
    pub(crate) api: Option<crate::api::ApiService>,
    pub(crate) personas: BTreeMap<String, Arc<PersonaState>>,
    pub(crate) errors: Vec<String>,
}

impl ScenarioOptions {
    /// Check that every persona a check runs as is registered — when an API is: a
    /// `Smoketest` without one (a second one in the same binary, a test) runs no scenario
    /// and need not name their personas; its scenario checks fail with kind `config`.
    pub(crate) fn validate(&self, uses: &[(String, &str)]) -> Result<(), crate::BuildError> {
        if let Some(error) = self.errors.first() {
            return Err(crate::BuildError::Config(error.clone()));
        }
        if self.api.is_none() {
            return Ok(());
        }
        for (check, persona) in uses {
            if !self.personas.contains_key(*persona) {
                let known: Vec<&str> = self.personas.keys().map(String::as_str).collect();
                return Err(crate::BuildError::Config(format!(
                    "the check `{check}` runs as persona `{persona}`, but no persona of that name is registered ({}); register it with SmoketestBuilder::persona",
                    if known.is_empty() {
                        "none is".to_string()
                    } else {
                        format!("registered: {}", known.join(", "))
                    }
                )));
            }
        }
        Ok(())
    }
}

/// Why a persona name cannot be used, if it cannot.
pub(crate) fn invalid_persona_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("it is empty")
    } else if name
        .chars()
        .any(|c| c.is_control() || c.is_whitespace() || "[]/?#".contains(c))
    {
        Some("it contains white space, a control character or one of `[ ] / ? #`")
    } else {
        None
    }
}

impl SmoketestBuilder {
    /// Register a [`Persona`]: a named credential that scenario requests run as
    /// ([`ApiRequest::as_`](crate::api::ApiRequest::as_)), and that
    /// `#[smoketest::check(personas = [...])]` runs a scenario once for.
    pub fn persona(mut self, name: impl Into<String>, persona: Persona) -> Self {
        let name = name.into();
        if let Some(reason) = invalid_persona_name(&name) {
            self.scenarios
                .errors
                .push(format!("the persona name `{name}` is not usable: {reason}"));
        } else if self.scenarios.personas.contains_key(&name) {
            self.scenarios
                .errors
                .push(format!("two personas are named `{name}`"));
        }
        self.scenarios.personas.insert(
            name,
            Arc::new(PersonaState {
                persona,
                token: tokio::sync::Mutex::new(None),
            }),
        );
        self
    }
}

/// A check run as one persona: named `{name}[{persona}]`, its requests made as that persona
/// unless a request says otherwise. What `#[smoketest::check(personas = [...])]` does, for a
/// [`SmokeCheck`] registered with [`SmoketestBuilder::check`]:
///
/// ```
/// use smoketest_core::{from_fn, scenario::as_persona, Outcome, Persona, Smoketest};
///
/// let smoke = Smoketest::builder()
///     .without_discovery()
///     .persona("clerk", Persona::bearer("t"))
///     .check(as_persona("clerk", from_fn("orders::lifecycle", |ctx| Box::pin(async move {
///         assert_eq!(ctx.persona(), Some("clerk"));
///         Ok(Outcome::Pass)
///     }))))
///     .build()
///     .unwrap();
/// assert_eq!(smoke.check_names().collect::<Vec<_>>(), ["orders::lifecycle[clerk]"]);
/// ```
pub fn as_persona<C: SmokeCheck>(persona: impl Into<String>, check: C) -> AsPersona<C> {
    let persona: Arc<str> = Arc::from(persona.into());
    AsPersona {
        name: format!("{}[{persona}]", check.name()),
        persona,
        check,
    }
}

/// A check made with [`as_persona`].
pub struct AsPersona<C> {
    name: String,
    persona: Arc<str>,
    check: C,
}

impl<C> AsPersona<C> {
    /// The persona it runs as.
    pub fn persona(&self) -> &str {
        &self.persona
    }
}

#[async_trait::async_trait]
impl<C: SmokeCheck> SmokeCheck for AsPersona<C> {
    fn name(&self) -> &str {
        &self.name
    }

    fn tags(&self) -> Vec<String> {
        self.check.tags()
    }

    fn timeout(&self) -> Option<std::time::Duration> {
        self.check.timeout()
    }

    async fn run(&self, ctx: &mut Context) -> crate::Result {
        ctx.set_persona(Some(self.persona.clone()));
        self.check.run(ctx).await
    }
}

/// The steps of one check, shared by its context, its API client and the step futures.
#[derive(Default)]
pub(crate) struct StepLog {
    declared: Vec<String>,
    steps: Vec<StepReport>,
    /// The step running now: its index in `steps` and when it started.
    running: Option<(usize, Instant)>,
}

pub(crate) type SharedLog = Arc<Mutex<StepLog>>;

pub(crate) fn lock(log: &SharedLog) -> std::sync::MutexGuard<'_, StepLog> {
    log.lock().unwrap_or_else(|e| e.into_inner())
}

impl StepLog {
    /// The number of steps the check has: declared, or run when more.
    fn total(&self) -> usize {
        self.declared.len().max(self.steps.len())
    }

    /// Record an HTTP exchange on the step running now, if one is.
    pub(crate) fn exchange(
        &mut self,
        method: &str,
        path: &str,
        status_code: Option<u16>,
        persona: Option<&str>,
    ) {
        if let Some((i, _)) = self.running {
            let step = &mut self.steps[i];
            step.method = Some(method.to_string());
            step.path = Some(path.to_string());
            step.status_code = status_code;
            step.persona = persona.map(str::to_string);
        }
    }

    pub(crate) fn has_steps(&self) -> bool {
        !self.steps.is_empty() || !self.declared.is_empty()
    }

    /// A teardown starts: its step, running, so that its request is recorded on it.
    pub(crate) fn start_teardown(&mut self, label: &str) -> usize {
        self.steps.push(StepReport {
            teardown: true,
            ..skeleton(format!("teardown: {label}"), Status::Pass)
        });
        let index = self.steps.len() - 1;
        self.running = Some((index, Instant::now()));
        index
    }

    /// A teardown ended, failed with `error` or not.
    pub(crate) fn end_teardown(&mut self, index: usize, error: Option<&CheckError>) {
        if let Some((_, started)) = self.running.take() {
            self.steps[index].duration_ms = millis(started.elapsed());
        }
        if let Some(e) = error {
            self.steps[index].status = Status::Fail;
            self.steps[index].error = Some(error_report(e));
        }
    }

    /// After the check: the step still running was cut off by `result`'s failure (timeout,
    /// panic); declared steps that never ran are skipped. Returns the check's result, failed
    /// by its first failed step if the check ignored that failure.
    pub(crate) fn settle(&mut self, result: crate::Result) -> crate::Result {
        if self.running.is_none() && !self.has_steps() {
            // A check without steps (most checks): nothing to settle.
            return result;
        }
        let total = self.total();
        let result = match (self.running.take(), result) {
            (Some((i, started)), Err(e)) => {
                let step = &mut self.steps[i];
                step.status = Status::Fail;
                step.duration_ms = millis(started.elapsed());
                step.error = Some(error_report(&e));
                Err(e.context(format!("during step {}/{total} \"{}\"", i + 1, step.name)))
            }
            (Some((i, started)), Ok(outcome)) => {
                // Only a step future dropped unfinished by the check itself gets here.
                let step = &mut self.steps[i];
                step.duration_ms = millis(started.elapsed());
                step.status = Status::Skip;
                step.message = Some("abandoned by the check before it finished".into());
                Ok(outcome)
            }
            (None, result) => result,
        };
        let failed = self.steps.iter().position(|s| s.status == Status::Fail);
        let reason = match (failed, &result) {
            (Some(i), _) => format!("not run: step {} \"{}\" failed", i + 1, self.steps[i].name),
            (None, Err(_)) => "not run: the check failed before this step".to_string(),
            (None, Ok(_)) => "not run: the check ended before this step".to_string(),
        };
        let run = self.steps.len();
        for name in self.declared.iter().skip(run) {
            self.steps.push(StepReport {
                message: Some(reason.clone()),
                ..skeleton(name.clone(), Status::Skip)
            });
        }
        match (result, failed) {
            (Ok(_), Some(i)) => {
                let step = &self.steps[i];
                let error = step.error.clone().unwrap_or(ErrorReport {
                    kind: "error".into(),
                    message: None,
                    suggestion: None,
                });
                let kind = serde_json::from_value(serde_json::Value::String(error.kind))
                    .unwrap_or(ErrorKind::Error);
                Err(CheckError::new(
                    kind,
                    format!(
                        "step {}/{total} \"{}\": {}",
                        i + 1,
                        step.name,
                        error.message.unwrap_or_default()
                    ),
                ))
            }
            (result, _) => result,
        }
    }

    pub(crate) fn snapshot(&self) -> Vec<StepReport> {
        self.steps.clone()
    }

    pub(crate) fn take(&mut self) -> Vec<StepReport> {
        std::mem::take(&mut self.steps)
    }
}

fn skeleton(name: String, status: Status) -> StepReport {
    StepReport {
        name,
        status,
        duration_ms: 0.0,
        teardown: false,
        persona: None,
        method: None,
        path: None,
        status_code: None,
        error: None,
        message: None,
    }
}

pub(crate) fn error_report(e: &CheckError) -> ErrorReport {
    ErrorReport {
        kind: e.kind().as_str().to_string(),
        message: Some(e.message().to_string()),
        suggestion: e.suggestion().map(str::to_string),
    }
}

impl Context {
    /// Name the steps this check will take, in order, before taking them, so that the ones a
    /// failure prevents are reported as skipped (`steps 4–5 skipped`) rather than missing.
    /// Steps run with [`Context::step`] are matched to these by position.
    pub fn declare_steps<I, S>(&self, names: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        lock(self.step_log()).declared = names.into_iter().map(Into::into).collect();
    }

    /// Run `step` as the next step of this check, named `name`, and record its status,
    /// duration and (for a request to [`Context::api`]) its method, path and status code.
    ///
    /// A failing step returns its error prefixed with the step (`step 3/5 "list orders":
    /// …`): pass it on with `?` and the check fails naming it. Even if the check goes on,
    /// the first failed step fails the check. The future may borrow the context (to
    /// [`defer`](Context::defer) a teardown as soon as a resource exists) and the API
    /// client. Steps run one after another: requests made while two steps run at once are
    /// recorded on the one that started last.
    pub fn step<T, F>(
        &self,
        name: impl Into<String>,
        step: F,
    ) -> impl Future<Output = Result<T, CheckError>> + Send
    where
        F: Future<Output = Result<T, CheckError>> + Send,
    {
        let log = self.step_log().clone();
        let name = name.into();
        async move {
            let started = Instant::now();
            let (index, outer) = {
                let mut log = lock(&log);
                log.steps.push(skeleton(name.clone(), Status::Pass));
                let index = log.steps.len() - 1;
                // A step inside a step: the outer one records again once this one ends.
                let outer = log.running.replace((index, started));
                (index, outer)
            };
            let result = step.await;
            let mut log = lock(&log);
            log.running = outer;
            let total = log.total();
            let report = &mut log.steps[index];
            report.duration_ms = millis(started.elapsed());
            match result {
                Ok(value) => Ok(value),
                Err(e) => {
                    report.status = Status::Fail;
                    report.error = Some(error_report(&e));
                    Err(e.context(format!("step {}/{total} \"{name}\"", index + 1)))
                }
            }
        }
    }
}

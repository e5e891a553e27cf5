//! [`EnvCheck`]: the environment variables the service needs are present and non-empty.
//!
//! Missing or empty variables fail with kind `config`, naming every variable at fault in
//! one message. Values are never read into the report: only names appear, so the check is
//! safe for secrets (`DATABASE_URL`, `PAYMENTS_API_KEY`).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use smoketest_checks::env::EnvCheck;
//! use smoketest_core::{Context, ErrorKind, SmokeCheck};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let check = EnvCheck::new(["PATH"]).var("SMOKETEST_DOC_SURELY_UNSET");
//! let mut ctx = Context::detached("env", Duration::from_secs(1));
//! let error = check.run(&mut ctx).await.unwrap_err();
//! assert_eq!(error.kind(), ErrorKind::Config);
//! assert_eq!(
//!     error.message(),
//!     "required environment variable not set: `SMOKETEST_DOC_SURELY_UNSET` (1 of 2 checked)"
//! );
//! # }
//! ```

use smoketest_core::{CheckError, Context, ErrorKind, Outcome, SmokeCheck};

use crate::meta::Meta;

/// Passes when every listed variable is set to a non-blank value. See the
/// [module documentation](self).
#[derive(Debug, Clone)]
pub struct EnvCheck {
    meta: Meta,
    vars: Vec<String>,
}

impl EnvCheck {
    /// Require these variables. Named `env::required`, tagged `config`.
    pub fn new<I, T>(vars: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        EnvCheck {
            meta: Meta::new("env::required", "config"),
            vars: vars.into_iter().map(Into::into).collect(),
        }
    }

    /// Require one more variable.
    pub fn var(mut self, name: impl Into<String>) -> Self {
        self.vars.push(name.into());
        self
    }
}

meta_builders!(EnvCheck);

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[async_trait::async_trait]
impl SmokeCheck for EnvCheck {
    meta_methods!();

    async fn run(&self, ctx: &mut Context) -> smoketest_core::Result {
        let mut missing = Vec::new();
        let mut empty = Vec::new();
        for name in &self.vars {
            match std::env::var_os(name) {
                None => missing.push(name.as_str()),
                Some(value) if value.to_string_lossy().trim().is_empty() => {
                    empty.push(name.as_str())
                }
                Some(_) => {}
            }
        }
        ctx.observe("checked", self.vars.len());
        if missing.is_empty() && empty.is_empty() {
            return Ok(Outcome::Pass);
        }
        let mut parts = Vec::new();
        if !missing.is_empty() {
            let noun = if missing.len() == 1 {
                "variable"
            } else {
                "variables"
            };
            parts.push(format!(
                "required environment {noun} not set: {}",
                quoted(&missing)
            ));
        }
        if !empty.is_empty() {
            let noun = if empty.len() == 1 {
                "variable"
            } else {
                "variables"
            };
            parts.push(format!(
                "required environment {noun} set but empty: {}",
                quoted(&empty)
            ));
        }
        let message = format!(
            "{} ({} of {} checked)",
            parts.join("; "),
            missing.len() + empty.len(),
            self.vars.len()
        );
        Err(CheckError::new(ErrorKind::Config, message).with_suggestion(
            "Set them in the service's environment (deployment manifest, secret store, systemd unit or .env) and restart it; values are never shown here.",
        ))
    }
}

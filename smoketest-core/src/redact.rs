//! Secret redaction: removes credentials from every message a check produces, before any
//! report, format or log line sees it.
//!
//! Check failures quote the errors of the libraries they call, and those errors quote
//! connection strings, request headers and configuration. The runner passes every message,
//! suggestion and observed value of every check through the service's [`Redactor`] once,
//! where it builds the check's result, so no output format and no log line downstream can
//! show what was removed. The patterns are built in; what they cannot know — the values of
//! the service's own secrets — is named with
//! [`SmoketestBuilder::redact_env`](crate::SmoketestBuilder::redact_env) and
//! [`SmoketestBuilder::redact_value`](crate::SmoketestBuilder::redact_value).
//!
//! What is replaced, and by what:
//!
//! | found | becomes |
//! | --- | --- |
//! | the value of a named environment variable | `[redacted $NAME]` |
//! | a value given with `redact_value` | `[redacted]` |
//! | the password in a URL: `postgres://app:hunter2@db/orders` | `postgres://app:***@db/orders` |
//! | `password=…`, `pwd=…`, `secret=…`, `token=…`, `api_key=…`, `aws_secret_access_key = …`, `secret_key_base=…`, `"password": "…"`, `password: …` | `password=***` |
//! | `Authorization: Bearer …` / `Basic …` headers, and `Bearer …` anywhere | `Authorization: Bearer ***` |
//! | AWS access key ids (`AKIA…`, `ASIA…`) | `AKIA***` |
//! | 40-character AWS-style secret keys (mixed case and digits) | `***` |
//! | GitHub, Slack, Stripe and Google API tokens, JWTs | `***` |
//! | PEM private-key blocks, even truncated ones | `-----BEGIN PRIVATE KEY-----***-----END PRIVATE KEY-----` |
//!
//! Redaction errs on the side of removing too much: a word after `Bearer` or after
//! `token:` goes even if it was not a secret. MySQL's `(using password: YES)` is kept,
//! because it says whether a password was sent, not what it was.
//!
//! # Example
//!
//! ```
//! use smoketest_core::redact::Redactor;
//!
//! let redactor = Redactor::new().with_value("s3cr3t-signing-key", None);
//! let message = "error connecting to postgres://orders:hunter2@db.internal:5432/orders \
//!                (signing key s3cr3t-signing-key, header Authorization: Bearer eyJhbGciOi)";
//! assert_eq!(
//!     redactor.redact(message),
//!     "error connecting to postgres://orders:***@db.internal:5432/orders \
//!      (signing key [redacted], header Authorization: Bearer ***)"
//! );
//! ```

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Captures, Regex};

use crate::SmoketestBuilder;
use crate::report::CheckReport;

/// Values shorter than this are not redacted literally: replacing every `on` or `1` in
/// every message would destroy the messages and protect nothing.
pub const MIN_LITERAL_LEN: usize = 4;

/// Removes secrets from text. See the [module documentation](self).
///
/// A `Smoketest` owns one, built from the builder's `redact_env` and `redact_value`; it
/// is applied to every check result by the runner.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Literal secrets with their replacement, longest first (so a value that contains
    /// another is replaced whole).
    literals: Vec<(String, String)>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secrets themselves.
        f.debug_struct("Redactor")
            .field("literals", &self.literals.len())
            .finish()
    }
}

impl Redactor {
    /// A redactor with the built-in patterns only.
    pub fn new() -> Self {
        Redactor::default()
    }

    /// Also replace every occurrence of `value`, with `[redacted $label]` when a label
    /// (an environment variable's name) is given, else `[redacted]`.
    ///
    /// When `value` is a URL with a password, the password alone is replaced too (drivers
    /// often quote pieces of the URL). Values shorter than [`MIN_LITERAL_LEN`] bytes are
    /// ignored.
    pub fn with_value(mut self, value: impl Into<String>, label: Option<&str>) -> Self {
        let value = value.into();
        let replacement = match label {
            Some(label) => format!("[redacted ${label}]"),
            None => "[redacted]".to_string(),
        };
        if let Some(password) = url_password(&value) {
            self.push_literal(password.to_string(), replacement.clone());
        }
        self.push_literal(value, replacement);
        self
    }

    fn push_literal(&mut self, value: String, replacement: String) {
        let value = value.trim().to_string();
        if value.len() < MIN_LITERAL_LEN || self.literals.iter().any(|(v, _)| *v == value) {
            return;
        }
        self.literals.push((value, replacement));
        self.literals
            .sort_by_key(|(value, _)| std::cmp::Reverse(value.len()));
    }

    /// `text` with every secret replaced. Borrowed when nothing was found.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = Cow::Borrowed(text);
        for (value, replacement) in &self.literals {
            if out.contains(value.as_str()) {
                out = Cow::Owned(out.replace(value.as_str(), replacement));
            }
        }
        for rule in RULES.iter() {
            if let Cow::Owned(replaced) = rule(&out) {
                out = Cow::Owned(replaced);
            }
        }
        out
    }

    /// Redact every string inside a JSON value (observed values), keys included.
    pub fn redact_json(&self, value: &mut serde_json::Value) {
        match value {
            serde_json::Value::String(s) => {
                if let Cow::Owned(r) = self.redact(s) {
                    *s = r;
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|v| self.redact_json(v)),
            serde_json::Value::Object(map) => {
                let entries = std::mem::take(map);
                for (key, mut v) in entries {
                    self.redact_json(&mut v);
                    map.insert(self.redact(&key).into_owned(), v);
                }
            }
            _ => {}
        }
    }

    /// Redact everything a check's result carries: its message, its error's message and
    /// suggestion, and its observed values.
    pub fn redact_check(&self, check: &mut CheckReport) {
        let redact = |s: &mut Option<String>| {
            if let Some(text) = s
                && let Cow::Owned(r) = self.redact(text)
            {
                *text = r;
            }
        };
        redact(&mut check.message);
        if let Some(error) = &mut check.error {
            redact(&mut error.message);
            redact(&mut error.suggestion);
        }
        if !check.observed.is_empty() {
            let observed = std::mem::take(&mut check.observed);
            for (key, mut value) in observed {
                self.redact_json(&mut value);
                check.observed.insert(self.redact(&key).into_owned(), value);
            }
        }
    }
}

/// The password of `scheme://user:password@host…`, if `value` looks like one.
fn url_password(value: &str) -> Option<&str> {
    let (_, rest) = value.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then_some(password)
}

type Rule = fn(&str) -> Cow<'_, str>;

/// Applied in this order: whole blocks first, so later rules do not see half a key.
static RULES: LazyLock<[Rule; 8]> = LazyLock::new(|| {
    [
        private_key_blocks,
        url_passwords,
        authorization_headers,
        bearer_tokens,
        key_values,
        aws_access_key_ids,
        well_known_tokens,
        aws_secret_keys,
    ]
});

fn regex(pattern: &str) -> Regex {
    Regex::new(pattern).expect("built-in redaction patterns compile")
}

fn private_key_blocks(text: &str) -> Cow<'_, str> {
    static RE: LazyLock<Regex> = LazyLock::new(|| {
        regex(
            r"(?s)-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY( BLOCK)?-----.*?(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\z)",
        )
    });
    RE.replace_all(text, |c: &Captures| {
        let kind = format!(
            "{}PRIVATE KEY{}",
            &c[1],
            c.get(2).map_or("", |m| m.as_str())
        );
        format!("-----BEGIN {kind}-----***-----END {kind}-----")
    })
}

fn url_passwords(text: &str) -> Cow<'_, str> {
    // The password runs to the last `@` before white space or a quote: a raw `@` in a
    // password (which drivers accept) must not leave its tail behind.
    static RE: LazyLock<Regex> =
        LazyLock::new(|| regex(r#"(?i)\b([a-z][a-z0-9+.\-]*://[^\s:@/?#"'<>]*):[^\s"'<>]*@"#));
    RE.replace_all(text, "$1:***@")
}

fn authorization_headers(text: &str) -> Cow<'_, str> {
    static RE: LazyLock<Regex> = LazyLock::new(|| {
        regex(
            r#"(?i)\b((?:proxy-)?authorization["']?\s*[:=]\s*["']?)(?:([a-z][a-z0-9\-]*)\s+)?[^\s"',;)\]}>]+"#,
        )
    });
    RE.replace_all(text, |c: &Captures| match c.get(2) {
        Some(scheme) => format!("{}{} ***", &c[1], scheme.as_str()),
        None => format!("{}***", &c[1]),
    })
}

fn bearer_tokens(text: &str) -> Cow<'_, str> {
    static RE: LazyLock<Regex> = LazyLock::new(|| regex(r"(?i)\b(bearer)\s+[A-Za-z0-9\-._~+/]+=*"));
    RE.replace_all(text, "$1 ***")
}

fn key_values(text: &str) -> Cow<'_, str> {
    // With `=` (query strings, DSNs, env files) any key containing a secret word counts:
    // `secret_key_base=…`. With `:` the key must end with one, so `secrets: permission
    // denied` keeps its diagnosis while `"access_token": "…"` loses its value.
    static RE: LazyLock<Regex> = LazyLock::new(|| {
        regex(
            r#"(?i)\b([a-z0-9_.\-]*(?:password|passwd|pwd|passphrase|secret|token|api[_\-]?key|access[_\-]?key|private[_\-]?key|signature|credential|sig)([a-z0-9_\-]*)["']?\s*([=:])\s*)(Some\("[^"]*"\)|"[^"]*"|'[^']*'|[^\s&;,"'<>)}\]]+)"#,
        )
    });
    RE.replace_all(text, |c: &Captures| {
        if !c[2].is_empty() && &c[3] == ":" {
            return c[0].to_string();
        }
        let value = &c[4];
        // MySQL's "(using password: YES)" says whether one was sent, not what it was; a
        // value starting with *** was redacted already (`https://x-access-token:***@host`).
        if value.eq_ignore_ascii_case("yes")
            || value.eq_ignore_ascii_case("no")
            || value.starts_with("***")
        {
            return c[0].to_string();
        }
        let quoted = match value.as_bytes().first() {
            Some(b'"') => "\"***\"",
            Some(b'\'') => "'***'",
            Some(b'S') if value.starts_with("Some(") => "Some(\"***\")",
            _ => "***",
        };
        format!("{}{quoted}", &c[1])
    })
}

fn aws_access_key_ids(text: &str) -> Cow<'_, str> {
    static RE: LazyLock<Regex> = LazyLock::new(|| {
        regex(r"\b(AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA|ASCA)[A-Z0-9]{16}\b")
    });
    RE.replace_all(text, "$1***")
}

fn well_known_tokens(text: &str) -> Cow<'_, str> {
    static RE: LazyLock<Regex> = LazyLock::new(|| {
        regex(concat!(
            r"\bgh[pousr]_[A-Za-z0-9]{30,}\b",
            r"|\bgithub_pat_[A-Za-z0-9_]{30,}",
            r"|\bxox[abposr]-[A-Za-z0-9\-]{10,}",
            r"|\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}",
            r"|\bAIza[0-9A-Za-z_\-]{35}",
            r"|\beyJ[A-Za-z0-9_\-]{6,}\.eyJ[A-Za-z0-9_\-]{6,}\.[A-Za-z0-9_\-]*",
        ))
    });
    RE.replace_all(text, "***")
}

fn aws_secret_keys(text: &str) -> Cow<'_, str> {
    // A run of exactly 40 base64 characters mixing upper case, lower case and digits: the
    // shape of an AWS secret access key. Hex digests (lower case only) are left alone.
    static RE: LazyLock<Regex> = LazyLock::new(|| regex(r"[A-Za-z0-9/+=]{40,}"));
    RE.replace_all(text, |c: &Captures| {
        let run = &c[0];
        let body = run.trim_end_matches('=');
        let looks_secret = body.len() == 40
            && body.bytes().any(|b| b.is_ascii_uppercase())
            && body.bytes().any(|b| b.is_ascii_lowercase())
            && body.bytes().any(|b| b.is_ascii_digit());
        if looks_secret {
            "***".to_string()
        } else {
            run.to_string()
        }
    })
}

/// Redaction settings as the builder collects them.
#[derive(Clone, Default)]
pub(crate) struct RedactOptions {
    env: Vec<String>,
    values: Vec<String>,
}

impl RedactOptions {
    /// Read the named variables now, at start-up, when the service reads its own
    /// configuration: a variable set later is not known to the service either.
    pub(crate) fn build(self) -> Redactor {
        let mut redactor = Redactor::new();
        for name in &self.env {
            match std::env::var(name) {
                Ok(value) if value.trim().len() >= MIN_LITERAL_LEN => {
                    redactor = redactor.with_value(value, Some(name));
                }
                Ok(_) => tracing::debug!(
                    variable = %name,
                    "smoketest: not redacting ${name}: its value is shorter than {MIN_LITERAL_LEN} characters"
                ),
                Err(_) => {
                    tracing::debug!(variable = %name, "smoketest: not redacting ${name}: it is not set")
                }
            }
        }
        for value in self.values {
            redactor = redactor.with_value(value, None);
        }
        redactor
    }
}

/// Secret redaction. See the [`redact`](crate::redact) module.
impl SmoketestBuilder {
    /// Replace the value of the environment variable `name` (read when the `Smoketest` is
    /// built) with `[redacted $name]` wherever a check's message, suggestion or observed
    /// value quotes it, in every format and in logs. For a URL, its password alone is
    /// replaced too. Call once per variable: `.redact_env("DATABASE_URL")`.
    pub fn redact_env(mut self, name: impl Into<String>) -> Self {
        self.redaction.env.push(name.into());
        self
    }

    /// Replace `secret` with `[redacted]` wherever a check's output quotes it: for secrets
    /// that do not come from the environment (a file, a vault).
    pub fn redact_value(mut self, secret: impl Into<String>) -> Self {
        self.redaction.values.push(secret.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_without_secrets_is_borrowed_unchanged() {
        let text = "expected 1 row, found 0 (orders table, 3.2ms)";
        assert!(matches!(Redactor::new().redact(text), Cow::Borrowed(t) if t == text));
    }

    #[test]
    fn redaction_is_idempotent() {
        let r = Redactor::new().with_value("postgres://a:bbbb@h/db", Some("DATABASE_URL"));
        let once = r
            .redact("postgres://u:p@h password=x Bearer abc AKIAIOSFODNN7EXAMPLE postgres://a:bbbb@h/db")
            .into_owned();
        assert_eq!(r.redact(&once), once);
    }

    #[test]
    fn short_literals_are_ignored() {
        let r = Redactor::new().with_value("on", Some("FEATURE"));
        assert_eq!(r.redact("connection reset"), "connection reset");
    }

    #[test]
    fn url_password_is_found_in_configured_urls() {
        assert_eq!(url_password("postgres://u:pw@h:5432/db"), Some("pw"));
        assert_eq!(url_password("postgres://u@h/db"), None);
        assert_eq!(url_password("not a url"), None);
    }
}

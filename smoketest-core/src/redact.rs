//! Secret redaction: removes credentials from every message a check produces, before any
//! report, format or log line sees it.
//!
//! Check failures quote the errors of the libraries they call, and those errors quote
//! connection strings, request headers, cookies and whole configuration structs. The
//! runner passes every message, suggestion and observed value of every check through the
//! service's [`Redactor`] once, where it builds the check's result, so no output format and
//! no log line downstream can show what was removed. The rules are built in and work by
//! *meaning* — a value under a secret-bearing key, in whatever syntax the key is written —
//! rather than by a list of exact forms; what they cannot know — the values of the
//! service's own secrets — is named with
//! [`SmoketestBuilder::redact_env`](crate::SmoketestBuilder::redact_env) and
//! [`SmoketestBuilder::redact_value`](crate::SmoketestBuilder::redact_value).
//!
//! # What is replaced
//!
//! | found | example | becomes |
//! | --- | --- | --- |
//! | the value of a named environment variable | `hunter2` (from `$DB_PASSWORD`) | `[redacted $DB_PASSWORD]` |
//! | a value given with `redact_value` / [`Redactor::with_value`] | `s3cr3t-signing-key` | `[redacted]` |
//! | the password in a URL, any scheme | `mysql://root:pw@db/shop`, `redis://:pw@cache` | `mysql://root:***@db/shop`, `redis://:***@cache` |
//! | a token as a URL's user | `https://ghp_…@api.vendor.example/v1` | `https://***@api.vendor.example/v1` |
//! | `user:password@host` without a scheme | `root:pw@tcp(db:3306)/shop` | `root:***@tcp(db:3306)/shop` |
//! | `Cookie` values, `Set-Cookie`'s value | `Cookie: session=abc; theme=dark` | `Cookie: session=***; theme=***` |
//! | the value under a [secret-bearing key](is_secret_key), in any syntax | `secret_key: "…"`, `"clientSecret": "…"`, `API_TOKEN=…`, `x-api-key: …`, `:password => "…"`, `?access_token=…&`, `password: Some("…")`, `<password>…</password>`, `("cookie", "…")`, `\"token\":\"…\"` (JSON inside a `Debug`-printed string) | the value becomes `***`, quotes kept |
//! | an authorization scheme's credentials | `Authorization: Basic dXNl…`, `"authorization": "Bearer ey…"` | `Authorization: Basic ***` |
//! | `Bearer …` anywhere | `sent bearer 0a1b2c3d4e` | `sent bearer ***` |
//! | AWS access key ids | `AKIAIOSFODNN7EXAMPLE` | `AKIA***` |
//! | 40-character AWS-style secret keys (mixed case and digits) | `wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY` | `***` |
//! | GitHub, GitLab, Slack, Stripe, OpenAI-style, SendGrid, npm and Google API tokens, JWTs | `ghp_…`, `xoxb-…`, `sk_live_…`, `eyJ….eyJ….…` | `***` |
//! | PEM private-key blocks, even truncated ones | `-----BEGIN RSA PRIVATE KEY-----…` | `-----BEGIN RSA PRIVATE KEY-----***-----END RSA PRIVATE KEY-----` |
//!
//! Observed values ([`Context::observe`](crate::Context::observe)) are redacted by
//! structure first: in a JSON object, the value under a secret-bearing key is replaced by
//! `"***"` whatever its type (string, number, object, array; `null` and booleans carry no
//! secret and are kept). Then every remaining string is redacted as text.
//!
//! # Which keys are secret-bearing
//!
//! A key is split into lower-case components at separators (`_`, `-`, `.`, spaces) and at
//! camelCase boundaries (`clientSecret` → `client`, `secret`; `APIKey` → `api`, `key`);
//! trailing digits are ignored (`password2`). The key is secret-bearing when
//!
//! 1. some component is a **secret word**: one that *ends with* `password`, `passwd`,
//!    `passphrase`, `secret`, `token`, `credential`, `cookie`, `apikey`, `accesskey`,
//!    `privatekey`, `secretkey` or `sessionid` (so `PGPASSWORD` and `csrftoken` count;
//!    a plural `s` is allowed: `credentials`); or one that *is* `pwd`, `auth`, `authorization`,
//!    `session`, `sid`, `sig`, `signature`, `cred`, `creds`; or `pass` after another
//!    component (`DB_PASS`); or `key` right after `api`, `access`, `private`, `secret`,
//!    `signing`, `encryption`, `master`, `app`, `client` or `hmac` (`x-api-key`,
//!    `AWS_ACCESS_KEY_ID`);
//! 2. and **no** component is a **descriptor**, a word saying the value is *about* the
//!    secret rather than the secret itself: a quantity (`count`, `used`, `len`, `length`,
//!    `size`, `min`, `max`, `limit`, `total`, `num`, `remaining`, `per`, `rate`), a time
//!    (`expires`, `expiry`, `expiration`, `exp`, `ttl`, `age`, `lifetime`, `duration`,
//!    `timeout`, `at`, `rotation`), a kind (`type`, `kind`, `method`, `mode`, `scheme`,
//!    `format`, `algorithm`, `alg`, `strength`, `policy`, `provider`, `version`,
//!    `status`, `error`, `prefix`), a flag (`enabled`, `disabled`, `required`, `valid`), or
//!    a place (`file`, `path`, `dir`, `url`, `uri`, `endpoint`, `name`, `env`, `var`,
//!    `ref`, `arn`, `source`, `store`, `location`, and file extensions such as `yaml`,
//!    `json`, `pem`).
//!
//! The shell's working-directory variables `PWD` and `OLDPWD` are not secrets. A key
//! written right after `/` or `\` is part of a file path, not a key. A key's value is
//! kept when it is `null`, `None`, `nil`, `true`, `false`, or MySQL's `YES`/`NO` (as in
//! `(using password: YES)`, which says whether one was sent, not what it was).
//!
//! | key | secret-bearing | why |
//! | --- | --- | --- |
//! | `password`, `db_password`, `PGPASSWORD`, `MYSQL_PWD`, `DB_PASS` | yes | secret word |
//! | `secret_key`, `SECRET_KEY`, `secretKey`, `clientSecret`, `secret_key_base` | yes | `secret` |
//! | `api_key`, `apikey`, `x-api-key`, `APIKey`, `AWS_ACCESS_KEY_ID`, `private_key` | yes | qualified `key` |
//! | `access_token`, `X-Auth-Token`, `refresh_token`, `csrftoken`, `API_TOKEN` | yes | `token` |
//! | `auth`, `basic_auth`, `Authorization`, `Proxy-Authorization` | yes | `auth` |
//! | `session`, `session_id`, `JSESSIONID`, `Cookie`, `Set-Cookie`, `sid` | yes | session, cookie |
//! | `credentials`, `X-Amz-Credential`, `X-Amz-Signature`, `sig` | yes | secret word |
//! | `password_policy`, `password_min_length`, `password_file`, `password_url` | no | descriptor |
//! | `tokens_used`, `max_tokens`, `token_type`, `token_expires_at` | no | descriptor |
//! | `session_count`, `session_timeout`, `auth_method`, `secret_name` | no | descriptor |
//! | `author`, `oauth_provider`, `authentication`, `passwordless`, `tokenizer`, `key`, `monkey` | no | no secret word |
//!
//! Redaction errs on the side of removing too much where the rule cannot tell: `Invalid
//! token: expired` loses `expired`, and a URL's user that does not look like a user name
//! (longer than 15 characters, more than 2 digits, or other characters than letters,
//! digits, `.`, `_` and `-`) is taken for a token. An e-mail address (`ops@example.com`)
//! and `git@github.com:org/repo.git` are not URLs with a user and stay as they are.
//!
//! Redacting is idempotent (redacting a redacted text changes nothing), costs no
//! allocation when nothing is found, and every pattern is compiled once, on first use;
//! the regular expressions are linear-time (the `regex` crate), so a hostile message cannot
//! make it slow.
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
//!
//! // A Debug-printed config struct, a token as a URL's user, a cookie:
//! assert_eq!(
//!     redactor.redact(r#"UpstreamConfig { endpoint: "https://api.vendor.example", secret_key: "9f8e7d" }"#),
//!     r#"UpstreamConfig { endpoint: "https://api.vendor.example", secret_key: "***" }"#
//! );
//! assert_eq!(
//!     redactor.redact("GET https://ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789@api.vendor.example/v1/ping"),
//!     "GET https://***@api.vendor.example/v1/ping"
//! );
//! assert_eq!(
//!     redactor.redact("Cookie: session=8a7f3c; theme=dark"),
//!     "Cookie: session=***; theme=***"
//! );
//! // Look-alikes keep their meaning.
//! assert_eq!(redactor.redact("password_policy: strict, tokens_used: 17"), "password_policy: strict, tokens_used: 17");
//!
//! // Observed values, by structure:
//! let mut observed = serde_json::json!({"user": "app", "password": 1234, "pool": {"size": 5}});
//! redactor.redact_json(&mut observed);
//! assert_eq!(observed, serde_json::json!({"user": "app", "password": "***", "pool": {"size": 5}}));
//! ```
//!
//! # Redacting text outside a report
//!
//! A client (the `smoketest` CLI, a deploy script's wrapper) redacts what it prints with
//! the same rules plus its own secrets: `Redactor::new().with_value(token, None)`. Building
//! a `Redactor` is cheap (the patterns are shared statics); build it once and call
//! [`Redactor::redact`] per line.
//!
//! ```
//! use smoketest_core::redact::Redactor;
//!
//! let token = "cli-token-7f3a9b";
//! let redactor = Redactor::new().with_value(token, None);
//! let line = format!("GET /smoketest with token {token}: 500 (password=hunter2)");
//! assert_eq!(redactor.redact(&line), "GET /smoketest with token [redacted]: 500 (password=***)");
//! ```

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::Regex;

use crate::SmoketestBuilder;
use crate::report::CheckReport;

/// Values shorter than this are not redacted literally: replacing every `on` or `1` in
/// every message would destroy the messages and protect nothing.
pub const MIN_LITERAL_LEN: usize = 4;

/// What a secret is replaced with (configured values get `[redacted …]` instead).
const MASK: &str = "***";

/// Removes secrets from text and JSON. See the [module documentation](self).
///
/// A `Smoketest` owns one, built from the builder's `redact_env` and `redact_value`; it
/// is applied to every check result by the runner. Anything else that prints text which
/// may quote a secret (a client, a log line) can build its own with [`Redactor::new`].
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
    /// A redactor with the built-in rules only. Cheap: the patterns are compiled once per
    /// process and shared.
    pub fn new() -> Self {
        Redactor::default()
    }

    /// Also replace every occurrence of `value`, with `[redacted $label]` when a label
    /// (an environment variable's name) is given, else `[redacted]`.
    ///
    /// When `value` is a URL with a password (or with a token as its user), that part
    /// alone is replaced too: drivers often quote pieces of the URL. Values shorter than
    /// [`MIN_LITERAL_LEN`] bytes are ignored.
    ///
    /// This is also how a client redacts its own secret, e.g. the CLI its bearer token:
    ///
    /// ```
    /// use smoketest_core::redact::Redactor;
    ///
    /// let redactor = Redactor::new()
    ///     .with_value("tok-51f0e2a9", None)
    ///     .with_value("postgres://app:Tr0ub4dor@db/orders", Some("DATABASE_URL"));
    /// assert_eq!(
    ///     redactor.redact("401 for tok-51f0e2a9; pg said: bad password Tr0ub4dor"),
    ///     "401 for [redacted]; pg said: bad password [redacted $DATABASE_URL]"
    /// );
    /// ```
    pub fn with_value(mut self, value: impl Into<String>, label: Option<&str>) -> Self {
        let value = value.into();
        let replacement = match label {
            Some(label) => format!("[redacted ${label}]"),
            None => "[redacted]".to_string(),
        };
        if let Some(secret) = url_secret(&value) {
            self.push_literal(secret.to_string(), replacement.clone());
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
        for rule in RULES {
            if let Cow::Owned(replaced) = rule(&out) {
                out = Cow::Owned(replaced);
            }
        }
        out
    }

    /// Redact a JSON value (observed values) by structure, then as text: in every object,
    /// the value under a [secret-bearing key](is_secret_key) becomes `"***"` whatever its
    /// type (`null` and booleans are kept); every other string, keys included, is
    /// [redacted](Redactor::redact) as text.
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
                    self.redact_entry(&key, &mut v);
                    map.insert(self.redact(&key).into_owned(), v);
                }
            }
            _ => {}
        }
    }

    /// The value under `key`: masked whole when the key is secret-bearing, else redacted.
    fn redact_entry(&self, key: &str, value: &mut serde_json::Value) {
        if is_secret_key(key) {
            mask_json(value);
        } else {
            self.redact_json(value);
        }
    }

    /// Redact everything a check's result carries: its message, its error's message and
    /// suggestion, and its observed values (the value observed under a secret-bearing name
    /// is masked whole, as in [`Redactor::redact_json`]).
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
        // Scenario steps (scenario.rs): their messages, and the paths of their requests.
        for step in &mut check.steps {
            redact(&mut step.message);
            redact(&mut step.path);
            if let Some(error) = &mut step.error {
                redact(&mut error.message);
                redact(&mut error.suggestion);
            }
        }
        if !check.observed.is_empty() {
            let observed = std::mem::take(&mut check.observed);
            for (key, mut value) in observed {
                self.redact_entry(&key, &mut value);
                check.observed.insert(self.redact(&key).into_owned(), value);
            }
        }
    }
}

/// Replace a secret JSON value whatever its type; `null` and booleans carry no secret.
fn mask_json(value: &mut serde_json::Value) {
    if !matches!(value, serde_json::Value::Null | serde_json::Value::Bool(_)) {
        *value = serde_json::Value::String(MASK.to_string());
    }
}

/// The secret part of a configured URL: the password of `scheme://user:password@host…`,
/// or the user of `scheme://token@host…` when it looks like a token.
fn url_secret(value: &str) -> Option<&str> {
    let (_, rest) = value.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let (userinfo, _) = authority.rsplit_once('@')?;
    match userinfo.split_once(':') {
        Some((_, password)) => (!password.is_empty()).then_some(password),
        None => (!looks_like_user_name(userinfo)).then_some(userinfo),
    }
}

/// Whether `key` names a secret: whether the value written under it, in any syntax, is
/// replaced. See [which keys are secret-bearing](self#which-keys-are-secret-bearing).
///
/// ```
/// use smoketest_core::redact::is_secret_key;
///
/// for key in ["password", "secretKey", "SECRET_KEY", "x-api-key", "clientSecret", "db_password", "session_id"] {
///     assert!(is_secret_key(key), "{key}");
/// }
/// for key in ["password_policy", "tokens_used", "author", "auth_method", "session_count", "oauth_provider"] {
///     assert!(!is_secret_key(key), "{key}");
/// }
/// ```
pub fn is_secret_key(key: &str) -> bool {
    if matches!(key, "PWD" | "OLDPWD") {
        return false;
    }
    let parts = key_components(key);
    let mut secret = false;
    for (i, part) in parts.iter().enumerate() {
        let word = part.trim_end_matches(|c: char| c.is_ascii_digit());
        if DESCRIPTORS.contains(&word) {
            return false;
        }
        let previous = i.checked_sub(1).map(|p| parts[p].as_str());
        secret = secret || is_secret_word(word, previous);
    }
    secret
}

/// Components that make a secret word: the key names the secret itself. See the module
/// documentation for the rule.
const ENDS_WITH_SECRET: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "credential",
    "cookie",
    "apikey",
    "accesskey",
    "privatekey",
    "secretkey",
    "sessionid",
];
const SECRET_WORDS: &[&str] = &[
    "pwd",
    "auth",
    "authorization",
    "session",
    "sid",
    "sig",
    "signature",
    "cred",
    "creds",
];
const KEY_QUALIFIERS: &[&str] = &[
    "api",
    "access",
    "private",
    "secret",
    "signing",
    "encryption",
    "master",
    "app",
    "client",
    "hmac",
];
/// Components that say the value is about a secret, not the secret.
#[rustfmt::skip]
const DESCRIPTORS: &[&str] = &[
    // quantities
    "count", "used", "len", "length", "size", "min", "max", "limit", "total", "num",
    "remaining", "per", "rate",
    // times
    "expires", "expiry", "expiration", "exp", "ttl", "age", "lifetime", "duration", "timeout",
    "at", "rotation",
    // kinds
    "type", "kind", "method", "mode", "scheme", "format", "algorithm", "alg", "strength",
    "policy", "provider", "version", "status", "error", "prefix",
    // flags
    "enabled", "disabled", "required", "valid",
    // places, and file extensions (`secrets.yaml`)
    "file", "path", "dir", "url", "uri", "endpoint", "name", "env", "var", "ref", "arn",
    "source", "store", "location",
    "yaml", "yml", "json", "toml", "txt", "conf", "cfg", "ini", "properties", "pem", "crt",
];

fn is_secret_word(word: &str, previous: Option<&str>) -> bool {
    let singular = word.strip_suffix('s').unwrap_or(word);
    ENDS_WITH_SECRET
        .iter()
        .any(|w| word.ends_with(w) || singular.ends_with(w))
        || SECRET_WORDS.contains(&word)
        || SECRET_WORDS.contains(&singular)
        || (word == "pass" && previous.is_some())
        || (singular == "key" && previous.is_some_and(|p| KEY_QUALIFIERS.contains(&p)))
}

/// `clientSecret` → `client`, `secret`; `X-API-Key` → `x`, `api`, `key`; lower case.
fn key_components(key: &str) -> Vec<String> {
    let mut parts = Vec::new();
    for chunk in key
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|c| !c.is_empty())
    {
        let b = chunk.as_bytes();
        let mut start = 0;
        for i in 1..b.len() {
            let (prev, cur) = (b[i - 1], b[i]);
            let next_is_lower = b.get(i + 1).is_some_and(u8::is_ascii_lowercase);
            let boundary = cur.is_ascii_uppercase()
                && (prev.is_ascii_lowercase()
                    || prev.is_ascii_digit()
                    || (prev.is_ascii_uppercase() && next_is_lower));
            if boundary {
                parts.push(chunk[start..i].to_ascii_lowercase());
                start = i;
            }
        }
        parts.push(chunk[start..].to_ascii_lowercase());
    }
    parts
}

/// A URL's user part that is a name (`git`, `postgres`, `deploy-bot`), not a token.
fn looks_like_user_name(user: &str) -> bool {
    user.len() <= 15
        && user.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && user.bytes().filter(u8::is_ascii_digit).count() <= 2
}

/// Whether a value was redacted already, or carries no secret.
fn nothing_to_hide(value: &str) -> bool {
    value.is_empty()
        || value.contains(MASK)
        || value.starts_with("[redacted")
        || ["null", "None", "nil", "true", "false", "yes", "no"]
            .iter()
            .any(|v| value.eq_ignore_ascii_case(v))
}

/// Rebuilds a text from replaced byte ranges, in order; borrows it when nothing changed.
struct Edits<'a> {
    text: &'a str,
    out: Option<String>,
    copied: usize,
}

impl<'a> Edits<'a> {
    fn new(text: &'a str) -> Self {
        Edits {
            text,
            out: None,
            copied: 0,
        }
    }

    fn replace(&mut self, start: usize, end: usize, with: &str) {
        debug_assert!(self.copied <= start && start <= end);
        let out = self
            .out
            .get_or_insert_with(|| String::with_capacity(self.text.len()));
        out.push_str(&self.text[self.copied..start]);
        out.push_str(with);
        self.copied = end;
    }

    fn finish(self) -> Cow<'a, str> {
        match self.out {
            None => Cow::Borrowed(self.text),
            Some(mut out) => {
                out.push_str(&self.text[self.copied..]);
                Cow::Owned(out)
            }
        }
    }
}

type Rule = fn(&str) -> Cow<'_, str>;

/// Applied in this order: whole blocks first, so later rules do not see half a key; each
/// rule leaves what an earlier one masked alone.
const RULES: [Rule; 10] = [
    private_key_blocks,
    url_userinfo,
    bare_userinfo,
    cookies,
    key_values,
    xml_elements,
    bearer_tokens,
    aws_access_key_ids,
    well_known_tokens,
    aws_secret_keys,
];

fn regex(pattern: &str) -> Regex {
    Regex::new(pattern).expect("built-in redaction patterns compile")
}

fn private_key_blocks(text: &str) -> Cow<'_, str> {
    static RE: LazyLock<Regex> = LazyLock::new(|| {
        regex(
            r"(?s)-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY( BLOCK)?-----(.*?)(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|\z)",
        )
    });
    let mut edits = Edits::new(text);
    for c in RE.captures_iter(text) {
        if &c[3] == MASK {
            continue;
        }
        let kind = format!(
            "{}PRIVATE KEY{}",
            &c[1],
            c.get(2).map_or("", |m| m.as_str())
        );
        let whole = c.get(0).expect("group 0");
        edits.replace(
            whole.start(),
            whole.end(),
            &format!("-----BEGIN {kind}-----***-----END {kind}-----"),
        );
    }
    edits.finish()
}

/// `scheme://user:password@host` and `scheme://token@host`: the password, or a user that
/// is not a name, goes; the scheme, user name and host stay.
fn url_userinfo(text: &str) -> Cow<'_, str> {
    // The authority ends at `/`, `?` or `#` (a password cannot hold them raw: URL parsers
    // would not read it either) and the userinfo at its last `@`, so `p@ss` goes whole.
    static RE: LazyLock<Regex> =
        LazyLock::new(|| regex(r#"(?i)(?-u:\b)[a-z][a-z0-9+.\-]*://([^\s/?#"'<>\\]*)@"#));
    let mut edits = Edits::new(text);
    for c in RE.captures_iter(text) {
        let userinfo = c.get(1).expect("group 1");
        let info = userinfo.as_str();
        match info.find(':') {
            Some(colon) => {
                let password = &info[colon + 1..];
                if !password.is_empty() && password != MASK {
                    edits.replace(userinfo.start() + colon + 1, userinfo.end(), MASK);
                }
            }
            None => {
                if !info.is_empty() && info != MASK && !looks_like_user_name(info) {
                    edits.replace(userinfo.start(), userinfo.end(), MASK);
                }
            }
        }
    }
    edits.finish()
}

/// `user:password@host` without a scheme (Go-style DSNs, `amqp` hosts in log lines). An
/// e-mail address has no `:` before its `@`, and `mailto:`-like schemes are left alone.
fn bare_userinfo(text: &str) -> Cow<'_, str> {
    static RE: LazyLock<Regex> = LazyLock::new(|| {
        regex(r#"(?i)(?:^|[\s"'(\[=,;<>])([a-z][a-z0-9._~\-]*):([^\s/?#"'<>\\]+)@[a-z0-9\[(]"#)
    });
    let mut edits = Edits::new(text);
    for c in RE.captures_iter(text) {
        let user = &c[1];
        let password = c.get(2).expect("group 2");
        if password.as_str() == MASK
            || ["mailto", "sip", "sips", "xmpp", "tel", "acct", "urn", "im"]
                .iter()
                .any(|s| user.eq_ignore_ascii_case(s))
        {
            continue;
        }
        edits.replace(password.start(), password.end(), MASK);
    }
    edits.finish()
}

/// `Cookie: a=1; b=2` loses every value; `Set-Cookie: id=1; Path=/` its first (the rest
/// are attributes). Also as JSON or `Debug` header maps: `"cookie": "a=1"`.
fn cookies(text: &str) -> Cow<'_, str> {
    static RE: LazyLock<Regex> =
        LazyLock::new(|| regex(r#"(?i)(?-u:\b)(set-)?cookie2?["']?[ \t]*[:=,][ \t]*["']?"#));
    const NAME_END: &[u8] = b"=;, \t\r\n\"'<>";
    const VALUE_END: &[u8] = b";, \t\r\n\"'<>";
    let bytes = text.as_bytes();
    let mut edits = Edits::new(text);
    for c in RE.captures_iter(text) {
        let set_cookie = c.get(1).is_some();
        let mut pos = c.get(0).expect("group 0").end();
        if pos < edits.copied {
            continue;
        }
        loop {
            let name_start = pos;
            while pos < bytes.len() && !NAME_END.contains(&bytes[pos]) {
                pos += 1;
            }
            if pos == name_start || bytes.get(pos) != Some(&b'=') {
                break;
            }
            pos += 1;
            let value_start = pos;
            if bytes.get(pos) == Some(&b'"') {
                pos += 1 + text[pos + 1..]
                    .find('"')
                    .map_or(text.len() - pos - 1, |q| q + 1);
            } else {
                while pos < bytes.len() && !VALUE_END.contains(&bytes[pos]) {
                    pos += 1;
                }
            }
            let value = &text[value_start..pos];
            if !value.is_empty() && !value.contains(MASK) {
                edits.replace(value_start, pos, MASK);
            }
            if set_cookie || bytes.get(pos) != Some(&b';') {
                break;
            }
            pos += 1;
            while bytes.get(pos) == Some(&b' ') {
                pos += 1;
            }
        }
    }
    edits.finish()
}

/// The value under a secret-bearing key, in any syntax: `k=v`, `k: v`, `"k": "v"`,
/// `k: "v"`, `k: Some("v")`, `k => v`, `k := v`, headers, query strings, `("k", "v")`.
fn key_values(text: &str) -> Cow<'_, str> {
    // Keys are found by the stems of the secret words, then judged by `is_secret_key`; the
    // value is read by hand so that a skipped key's value is still searched for keys.
    static RE: LazyLock<Regex> = LazyLock::new(|| {
        regex(
            r#"(?i)(\\?["']?)(?-u:\b)([a-z0-9_.\-]*(?:pass|pwd|secret|token|key|cred|auth|session|sessid|sid|sig|cookie)[a-z0-9_.\-]*)(\\?["']?)[ \t]*(=>|:=|=|:|,)[ \t]*"#,
        )
    });
    let bytes = text.as_bytes();
    let mut edits = Edits::new(text);
    // The end of the last value read: a key inside it is part of that value, and skipping
    // it keeps the whole rule linear in the length of the text.
    let mut read_to = 0;
    for c in RE.captures_iter(text) {
        let whole = c.get(0).expect("group 0");
        let (open, key, close, sep) = (&c[1], c.get(2).expect("group 2"), &c[3], &c[4]);
        if whole.start() < read_to {
            continue;
        }
        // After `/` or `\` the "key" is a file name: `/run/secrets/db_password: not found`.
        let before_key = key.start().checked_sub(1).map(|i| bytes[i]);
        if matches!(before_key, Some(b'/' | b'\\')) {
            continue;
        }
        // `("cookie", "v")`: a comma separates a key from its value only in a quoted pair.
        if sep == ","
            && (open.is_empty()
                || open != close
                || whole.start().checked_sub(1).map(|i| bytes[i]) != Some(b'('))
        {
            continue;
        }
        if !is_secret_key(key.as_str().trim_end_matches(['.', '-'])) {
            continue;
        }
        if let Some((start, end, hide)) = value_span(text, whole.end(), sep == ",") {
            read_to = end;
            if hide {
                edits.replace(start, end, MASK);
            }
        }
    }
    edits.finish()
}

/// Authorization schemes whose credentials follow them: `Basic dXNl…` keeps `Basic`.
const AUTH_SCHEMES: &[&str] = &[
    "basic",
    "bearer",
    "digest",
    "negotiate",
    "ntlm",
    "token",
    "apikey",
    "dpop",
    "aws4-hmac-sha256",
];

/// The value starting at `pos`: the span read (the watermark for later keys) and whether
/// it holds something to hide there.
fn value_span(text: &str, pos: usize, quoted_only: bool) -> Option<(usize, usize, bool)> {
    let rest = &text[pos..];
    let inner = rest.strip_prefix("Some(");
    let unwrapped = inner.unwrap_or(rest);
    let offset = pos + (rest.len() - unwrapped.len());
    let (start, end, quoted) = match unwrapped.bytes().next() {
        // `"…"`, `'…'`, `Some("…")`: the inside of the quotes.
        Some(quote @ (b'"' | b'\'')) => (offset + 1, closing_quote(text, offset + 1, quote), true),
        // `\"…\"`: JSON inside a `Debug`-printed string, quotes escaped.
        Some(b'\\') if matches!(unwrapped.as_bytes().get(1), Some(b'"' | b'\'')) => {
            let quote = &unwrapped[..2];
            let line = unwrapped[2..].split('\n').next().unwrap_or("");
            let len = line.find(quote).unwrap_or(line.len());
            (offset + 2, offset + 2 + len, true)
        }
        _ if quoted_only => return None,
        // `["a", "b"]`: the inside of the brackets, at most to the end of the line.
        Some(b'[') => {
            let line = unwrapped.split('\n').next().unwrap_or(unwrapped);
            if line.starts_with("[redacted") {
                return None;
            }
            let close = line.find(']').unwrap_or(line.len());
            (offset + 1, offset + close, true)
        }
        // `auth::check`, `token://`: not a key and its value.
        Some(b':' | b'/') | None => return None,
        // A word; `Some(1234)`: the word inside the parentheses.
        Some(_) => {
            let len = unwrapped
                .find(|c: char| c.is_whitespace() || "&;,\"'<>(){}[]".contains(c))
                .unwrap_or(unwrapped.len());
            (offset, offset + len, false)
        }
    };
    let value = &text[start..end];
    // `Basic dXNl…`, `Bearer ey…`: the scheme stays, its credentials go.
    let word_len = value.find(char::is_whitespace).unwrap_or(value.len());
    let is_scheme = AUTH_SCHEMES
        .iter()
        .any(|s| value[..word_len].eq_ignore_ascii_case(s));
    let (start, end) = if !is_scheme {
        (start, end)
    } else if quoted {
        let after = value[word_len..].trim_start();
        (end - after.len(), end)
    } else {
        let after = &text[end..];
        let credentials = after.trim_start_matches([' ', '\t']);
        let cred_start = end + (after.len() - credentials.len());
        if cred_start == end {
            (start, end)
        } else {
            let len = credentials
                .find(|c: char| c.is_whitespace() || "\"',;)]}>".contains(c))
                .unwrap_or(credentials.len());
            (cred_start, cred_start + len)
        }
    };
    Some((
        start,
        end,
        end > start && !nothing_to_hide(&text[start..end]),
    ))
}

/// The end of a quoted value starting at `start` (after the opening `quote`): the next
/// unescaped `quote`, else the end of the line.
fn closing_quote(text: &str, start: usize, quote: u8) -> usize {
    let bytes = text.as_bytes();
    let mut i = start;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'\n' => return i,
            b if b == quote => return i,
            _ => i += 1,
        }
    }
    bytes.len()
}

/// `<password>…</password>`, `<ClientSecret>…</ClientSecret>` (SOAP faults, XML configs).
fn xml_elements(text: &str) -> Cow<'_, str> {
    static RE: LazyLock<Regex> =
        LazyLock::new(|| regex(r"<([A-Za-z][\w.\-:]*)>([^<]*)</([A-Za-z][\w.\-:]*)>"));
    if !text.contains("</") {
        return Cow::Borrowed(text);
    }
    let mut edits = Edits::new(text);
    for c in RE.captures_iter(text) {
        let value = c.get(2).expect("group 2");
        let name = &c[1];
        let local = name.rsplit(':').next().unwrap_or(name);
        if name == &c[3] && is_secret_key(local) && !nothing_to_hide(value.as_str()) {
            edits.replace(value.start(), value.end(), MASK);
        }
    }
    edits.finish()
}

fn bearer_tokens(text: &str) -> Cow<'_, str> {
    static RE: LazyLock<Regex> =
        LazyLock::new(|| regex(r"(?i)(?-u:\b)bearer[ \t]+([A-Za-z0-9\-._~+/]+=*)"));
    let mut edits = Edits::new(text);
    for c in RE.captures_iter(text) {
        let token = c.get(1).expect("group 1");
        // "the bearer token is missing": an English word is not a credential.
        if token.as_str().bytes().all(|b| b.is_ascii_lowercase()) {
            continue;
        }
        edits.replace(token.start(), token.end(), MASK);
    }
    edits.finish()
}

fn aws_access_key_ids(text: &str) -> Cow<'_, str> {
    static RE: LazyLock<Regex> = LazyLock::new(|| {
        regex(
            r"(?-u:\b)(AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA|ASCA)[A-Z0-9]{16}(?-u:\b)",
        )
    });
    RE.replace_all(text, "$1***")
}

fn well_known_tokens(text: &str) -> Cow<'_, str> {
    static RE: LazyLock<Regex> = LazyLock::new(|| {
        regex(concat!(
            r"(?-u:\b)gh[pousr]_[A-Za-z0-9]{30,}(?-u:\b)",
            r"|(?-u:\b)github_pat_[A-Za-z0-9_]{30,}",
            r"|(?-u:\b)glpat-[A-Za-z0-9_\-]{20,}",
            r"|(?-u:\b)xox[abposr]-[A-Za-z0-9\-]{10,}",
            r"|(?-u:\b)xapp-[A-Za-z0-9\-]{10,}",
            r"|(?-u:\b)[rs]k_(?:live|test)_[A-Za-z0-9]{16,}",
            r"|(?-u:\b)sk-(?:proj-|ant-)?[A-Za-z0-9_\-]{32,}",
            r"|(?-u:\b)SG\.[A-Za-z0-9_\-]{16,}\.[A-Za-z0-9_\-]{16,}",
            r"|(?-u:\b)npm_[A-Za-z0-9]{36}",
            r"|(?-u:\b)AIza[0-9A-Za-z_\-]{35}",
            r"|(?-u:\b)eyJ[A-Za-z0-9_\-]{6,}\.eyJ[A-Za-z0-9_\-]{6,}\.[A-Za-z0-9_\-]*",
        ))
    });
    RE.replace_all(text, MASK)
}

fn aws_secret_keys(text: &str) -> Cow<'_, str> {
    // A run of exactly 40 base64 characters mixing upper case, lower case and digits: the
    // shape of an AWS secret access key. Hex digests (lower case only) are left alone.
    static RE: LazyLock<Regex> = LazyLock::new(|| regex(r"[A-Za-z0-9/+=]{40,}"));
    let mut edits = Edits::new(text);
    for c in RE.find_iter(text) {
        let body = c.as_str().trim_end_matches('=');
        let looks_secret = body.len() == 40
            && body.bytes().any(|b| b.is_ascii_uppercase())
            && body.bytes().any(|b| b.is_ascii_lowercase())
            && body.bytes().any(|b| b.is_ascii_digit());
        if looks_secret {
            edits.replace(c.start(), c.end(), MASK);
        }
    }
    edits.finish()
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

    fn redact(text: &str) -> String {
        Redactor::new().redact(text).into_owned()
    }

    #[test]
    fn text_without_secrets_is_borrowed_unchanged() {
        let text = "expected 1 row, found 0 (orders table, 3.2ms)";
        assert!(matches!(Redactor::new().redact(text), Cow::Borrowed(t) if t == text));
    }

    #[test]
    fn redaction_is_idempotent() {
        let r = Redactor::new().with_value("postgres://a:bbbb@h/db", Some("DATABASE_URL"));
        let once = r
            .redact("postgres://u:p@h password=x Bearer abc1 AKIAIOSFODNN7EXAMPLE postgres://a:bbbb@h/db \
                     Cookie: a=1; b=2 https://ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789@h/ \"authorization\": \"Basic dXNl\" \
                     root:pw@tcp(db) <password>x</password> token: [redacted $X]")
            .into_owned();
        assert!(matches!(r.redact(&once), Cow::Borrowed(_)), "{once}");
    }

    #[test]
    fn short_literals_are_ignored() {
        let r = Redactor::new().with_value("on", Some("FEATURE"));
        assert_eq!(r.redact("connection reset"), "connection reset");
    }

    #[test]
    fn url_secret_is_found_in_configured_urls() {
        assert_eq!(url_secret("postgres://u:pw@h:5432/db"), Some("pw"));
        assert_eq!(url_secret("postgres://u@h/db"), None);
        assert_eq!(
            url_secret("https://ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789@h/"),
            Some("ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789")
        );
        assert_eq!(url_secret("not a url"), None);
    }

    #[test]
    fn keys_split_into_components_at_separators_and_camel_case() {
        assert_eq!(key_components("clientSecret"), ["client", "secret"]);
        assert_eq!(key_components("X-API-Key"), ["x", "api", "key"]);
        assert_eq!(key_components("APIKey"), ["api", "key"]);
        assert_eq!(key_components("SECRET_KEY_BASE"), ["secret", "key", "base"]);
        assert_eq!(
            key_components("spring.datasource.password"),
            ["spring", "datasource", "password"]
        );
        assert_eq!(key_components("oauth2Token"), ["oauth2", "token"]);
    }

    #[test]
    fn secret_bearing_keys_follow_the_documented_table() {
        for key in [
            "password",
            "db_password",
            "PGPASSWORD",
            "MYSQL_PWD",
            "DB_PASS",
            "passwd",
            "passphrase",
            "secret_key",
            "SECRET_KEY",
            "secretKey",
            "clientSecret",
            "client_secret",
            "secret_key_base",
            "api_key",
            "apikey",
            "x-api-key",
            "APIKey",
            "AWS_ACCESS_KEY_ID",
            "private_key",
            "signing_key",
            "access_token",
            "X-Auth-Token",
            "refresh_token",
            "csrftoken",
            "API_TOKEN",
            "id_token",
            "auth",
            "basic_auth",
            "Authorization",
            "Proxy-Authorization",
            "session",
            "session_id",
            "JSESSIONID",
            "Cookie",
            "Set-Cookie",
            "sid",
            "credentials",
            "X-Amz-Credential",
            "X-Amz-Signature",
            "sig",
            "password2",
            "aws_secret_access_key",
            "api_keys",
        ] {
            assert!(is_secret_key(key), "{key} should be secret-bearing");
        }
        for key in [
            "password_policy",
            "password_min_length",
            "password_file",
            "password_url",
            "tokens_used",
            "max_tokens",
            "token_type",
            "token_expires_at",
            "session_count",
            "session_timeout",
            "auth_method",
            "secret_name",
            "author",
            "oauth_provider",
            "authentication",
            "passwordless",
            "tokenizer",
            "key",
            "monkey",
            "pass",
            "PWD",
            "OLDPWD",
            "secrets.yaml",
            "user",
            "keyspace",
        ] {
            assert!(!is_secret_key(key), "{key} should not be secret-bearing");
        }
    }

    #[test]
    fn key_equals_value_forms_lose_their_value() {
        assert_eq!(redact("API_TOKEN=abc123 next"), "API_TOKEN=*** next");
        assert_eq!(redact("secret_key = 9f8e7d"), "secret_key = ***");
        assert_eq!(
            redact("export DB_PASSWORD=\"a b\""),
            "export DB_PASSWORD=\"***\""
        );
        assert_eq!(
            redact("host=db user=app password=hunter2 dbname=x"),
            "host=db user=app password=*** dbname=x"
        );
        assert_eq!(
            redact("Password=hunter2;Server=db"),
            "Password=***;Server=db"
        );
    }

    #[test]
    fn colon_forms_lose_their_value() {
        assert_eq!(redact("secret_key: 9f8e7d"), "secret_key: ***");
        assert_eq!(redact("db_password: hunter2"), "db_password: ***");
        assert_eq!(redact("x-api-key: 0123abcd"), "x-api-key: ***");
        assert_eq!(redact("session: 8a7f3c"), "session: ***");
    }

    #[test]
    fn json_forms_lose_their_value_whatever_its_type() {
        assert_eq!(
            redact(
                r#"{"user":"app","secretKey":"s e c","pin":12,"password":1234,"tokens":["a","b"]}"#
            ),
            r#"{"user":"app","secretKey":"***","pin":12,"password":***,"tokens":[***]}"#
        );
        assert_eq!(
            redact(r#"{"clientSecret": "a\"b"}"#),
            r#"{"clientSecret": "***"}"#
        );
    }

    #[test]
    fn rust_debug_forms_lose_their_value() {
        assert_eq!(
            redact(
                r#"UpstreamConfig { endpoint: "https://api.vendor.example/v1", secret_key: "sk-9f8e7d" }"#
            ),
            r#"UpstreamConfig { endpoint: "https://api.vendor.example/v1", secret_key: "***" }"#
        );
        assert_eq!(
            redact(
                r#"Opts { password: Some("hunter2"), pin: Some(12), token: Some(1234), port: 5432 }"#
            ),
            r#"Opts { password: Some("***"), pin: Some(12), token: Some(***), port: 5432 }"#
        );
        assert_eq!(redact("Opts { password: None }"), "Opts { password: None }");
        assert_eq!(
            redact(r#"[("cookie", "sid=abc"), ("x-api-key", "k1")]"#),
            r#"[("cookie", "sid=***"), ("x-api-key", "***")]"#
        );
    }

    #[test]
    fn json_inside_a_debug_printed_string_loses_its_value() {
        assert_eq!(
            redact(
                r#"ApiError { status: 400, body: "{\"client_secret\":\"abc\",\"error\":\"invalid\"}" }"#
            ),
            r#"ApiError { status: 400, body: "{\"client_secret\":\"***\",\"error\":\"invalid\"}" }"#
        );
    }

    #[test]
    fn go_maps_headers_and_flags_lose_their_value() {
        assert_eq!(
            redact("map[password:hunter2 user:app]"),
            "map[password:*** user:app]"
        );
        assert_eq!(
            redact(r#"http.Header{"Authorization": ["Bearer ey.x"], "Accept": ["*/*"]}"#),
            r#"http.Header{"Authorization": [***], "Accept": ["*/*"]}"#
        );
        assert_eq!(
            redact("run --db-password=hunter2 --port=1"),
            "run --db-password=*** --port=1"
        );
    }

    #[test]
    fn arrow_and_walrus_forms_lose_their_value() {
        assert_eq!(
            redact(r#"{:password => "hunter2", "api_key" => 'k1'}"#),
            r#"{:password => "***", "api_key" => '***'}"#
        );
        assert_eq!(redact("token := abc123"), "token := ***");
    }

    #[test]
    fn headers_keep_their_scheme_and_lose_their_credentials() {
        assert_eq!(
            redact("Authorization: Basic dXNlcjpwYXNz"),
            "Authorization: Basic ***"
        );
        assert_eq!(
            redact("authorization: bearer abc.def"),
            "authorization: bearer ***"
        );
        assert_eq!(
            redact(r#"{"authorization": "Bearer ey.x.y", "accept": "*/*"}"#),
            r#"{"authorization": "Bearer ***", "accept": "*/*"}"#
        );
        assert_eq!(
            redact("Proxy-Authorization: Negotiate YII="),
            "Proxy-Authorization: Negotiate ***"
        );
        assert_eq!(redact("X-Auth-Token: 1f2e3d"), "X-Auth-Token: ***");
        assert_eq!(
            redact("sent Bearer 0a1b2c3d4e upstream"),
            "sent Bearer *** upstream"
        );
        assert_eq!(
            redact("the bearer token is missing"),
            "the bearer token is missing"
        );
    }

    #[test]
    fn query_strings_lose_secret_parameters_only() {
        assert_eq!(
            redact("GET https://api.example/v1?api_key=abc&page=2&access_token=ya29.x next"),
            "GET https://api.example/v1?api_key=***&page=2&access_token=*** next"
        );
    }

    #[test]
    fn cookies_lose_their_values_and_set_cookie_keeps_its_attributes() {
        assert_eq!(
            redact("Cookie: session=8a7f3c; theme=dark"),
            "Cookie: session=***; theme=***"
        );
        assert_eq!(
            redact("Set-Cookie: id=a3fWa; Expires=Wed, 21 Oct 2026 07:28:00 GMT; HttpOnly"),
            "Set-Cookie: id=***; Expires=Wed, 21 Oct 2026 07:28:00 GMT; HttpOnly"
        );
        assert_eq!(
            redact(r#"{"cookie": "a=1; b=2", "host": "x"}"#),
            r#"{"cookie": "a=***; b=***", "host": "x"}"#
        );
        assert_eq!(redact("session_cookie=abc"), "session_cookie=***");
    }

    #[test]
    fn url_userinfo_loses_the_password_or_a_token_user() {
        assert_eq!(
            redact("mysql://root:p@ss@10.0.0.7/shop"),
            "mysql://root:***@10.0.0.7/shop"
        );
        assert_eq!(
            redact("redis://:pw12@cache:6379/0"),
            "redis://:***@cache:6379/0"
        );
        assert_eq!(
            redact("amqp://guest:guest@rabbit:5672/%2f"),
            "amqp://guest:***@rabbit:5672/%2f"
        );
        assert_eq!(
            redact("https://ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789@api.vendor.example/v1/ping"),
            "https://***@api.vendor.example/v1/ping"
        );
        assert_eq!(
            redact("https://4f9c2e81b7d4@o1.ingest.example/2"),
            "https://***@o1.ingest.example/2"
        );
        // User names stay; so do URLs whose `@` is in the path or query.
        assert_eq!(
            redact("ssh://git@github.com/org/repo.git"),
            "ssh://git@github.com/org/repo.git"
        );
        assert_eq!(
            redact("postgres://app@db/orders"),
            "postgres://app@db/orders"
        );
        assert_eq!(
            redact("https://host:8443/u?email=a@b.com"),
            "https://host:8443/u?email=a@b.com"
        );
    }

    #[test]
    fn userinfo_without_a_scheme_loses_the_password_but_emails_stay() {
        assert_eq!(
            redact("dsn root:pw@tcp(db:3306)/shop"),
            "dsn root:***@tcp(db:3306)/shop"
        );
        assert_eq!(
            redact("connecting to guest:guest@rabbit:5672"),
            "connecting to guest:***@rabbit:5672"
        );
        assert_eq!(
            redact("mail ops@example.com about it"),
            "mail ops@example.com about it"
        );
        assert_eq!(
            redact("git@github.com:org/repo.git"),
            "git@github.com:org/repo.git"
        );
        assert_eq!(
            redact("write to mailto:ops@example.com"),
            "write to mailto:ops@example.com"
        );
    }

    #[test]
    fn xml_elements_with_secret_names_lose_their_text() {
        assert_eq!(
            redact(
                "<user>app</user><password>hunter2</password><ns:ClientSecret>x1</ns:ClientSecret>"
            ),
            "<user>app</user><password>***</password><ns:ClientSecret>***</ns:ClientSecret>"
        );
    }

    #[test]
    fn well_known_token_shapes_are_masked_anywhere() {
        for token in [
            "ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789",
            "glpat-xxxxxxxxxxxxxxxxxxxx",
            "xoxb-1234567890-abcdefghij",
            "sk_live_51HabcdefghijklmnopQRST",
            "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.sig-nature_x",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ] {
            assert_eq!(
                redact(&format!("got {token} back")),
                "got *** back",
                "{token}"
            );
        }
        assert_eq!(redact("key AKIAIOSFODNN7EXAMPLE"), "key AKIA***");
    }

    #[test]
    fn unclosed_values_are_masked_to_the_end_of_the_line() {
        assert_eq!(
            redact("password=\"hunter2 and more\nnext"),
            "password=\"***\nnext"
        );
        assert_eq!(redact("tokens: [t1, t2\nnext"), "tokens: [***\nnext");
    }

    #[test]
    fn keys_inside_a_value_read_already_are_not_read_again() {
        // Quadratic if each key re-read the rest of the line; this one has 20 000 keys.
        let hostile = "token=\"*** ".repeat(20_000);
        assert_eq!(redact(&hostile), hostile);
        assert_eq!(redact("password=\"a token=b\" x"), "password=\"***\" x");
    }

    #[test]
    fn look_alikes_keep_their_meaning() {
        for text in [
            "password_policy: strict",
            "tokens_used: 17",
            "max_tokens: 4096",
            "session_count: 3",
            "auth_method: password",
            "author: alice",
            "oauth_provider: google",
            "token_type: Bearer",
            "(using password: YES)",
            "password authentication failed for user \"orders\"",
            "smoketest::auth::check failed",
            "/run/secrets/db_password: No such file or directory",
            "PWD=/srv/app",
            "GET https://api.example/v1/ping?page=2",
            "keyspace: orders",
        ] {
            assert_eq!(redact(text), text);
        }
    }

    #[test]
    fn observed_json_is_masked_by_key_whatever_the_type() {
        let mut value = serde_json::json!({
            "user": "app",
            "password": "hunter2",
            "api_key": 12345,
            "credentials": {"user": "a", "pin": 1},
            "tokens": ["t1", "t2"],
            "session": null,
            "auth": true,
            "tokens_used": 17,
            "dsn": "postgres://app:hunter2@db/x",
        });
        Redactor::new().redact_json(&mut value);
        assert_eq!(
            value,
            serde_json::json!({
                "user": "app",
                "password": "***",
                "api_key": "***",
                "credentials": "***",
                "tokens": "***",
                "session": null,
                "auth": true,
                "tokens_used": 17,
                "dsn": "postgres://app:***@db/x",
            })
        );
    }

    #[test]
    fn check_observed_under_a_secret_name_is_masked_whole() {
        let mut check = CheckReport {
            name: "c".into(),
            status: crate::Status::Pass,
            duration_ms: 1.0,
            tags: vec![],
            error: None,
            message: None,
            observed: [
                ("password".to_string(), serde_json::json!(42)),
                (
                    "config".to_string(),
                    serde_json::json!({"user": "app", "password": "x1"}),
                ),
            ]
            .into_iter()
            .collect(),
            steps: vec![],
        };
        Redactor::new().redact_check(&mut check);
        assert_eq!(check.observed["password"], "***");
        assert_eq!(
            check.observed["config"],
            serde_json::json!({"user": "app", "password": "***"})
        );
    }
}

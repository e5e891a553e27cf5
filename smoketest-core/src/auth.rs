//! Access control: who may call the endpoint, and how much of the report each caller sees.
//!
//! A smoke endpoint runs writes against production and explains every failure in detail,
//! so what it shows depends on who asks. Callers who present one of the service's bearer
//! tokens (several may be valid at once, for rotation) — or whom a custom authorizer
//! approves — are *authorized* and see the [`Detail::Full`] report. Everybody else is
//! *anonymous* and sees the level the service opts into with
//! [`anonymous_detail`](crate::SmoketestBuilder::anonymous_detail) (default
//! [`Detail::Checks`]: names, statuses, durations and error kinds, no messages), or is
//! turned away with `401` and `WWW-Authenticate: Bearer` when the service
//! [requires authorization](crate::SmoketestBuilder::require_authorization). The same
//! rule applies to every output format, because the report is restricted before any writer
//! runs.
//!
//! | request | tokens configured | answer |
//! | --- | --- | --- |
//! | no `Authorization` header | any | anonymous, or 401 when authorization is required |
//! | `Authorization: Bearer <a valid token>` | yes | authorized: full detail |
//! | `Authorization: Bearer <anything else>` | yes | **401**, `error="invalid_token"`, even when an authorizer is configured |
//! | another scheme (`Basic …`) | any | ignored: anonymous (it belongs to a proxy or the app) |
//! | any `Authorization` header | no tokens, no authorizer | ignored: anonymous |
//!
//! A wrong token is refused rather than silently downgraded to the anonymous view: a
//! deploy pipeline whose token was rotated out would otherwise keep getting answers with
//! no messages, and nobody would notice the token had stopped working. Refusing tells the
//! caller at once, and tells an attacker nothing the anonymous view does not.
//!
//! Tokens are compared in constant time ([`subtle`]) on their SHA-256 digests, against every
//! configured token without stopping at the first match, so neither the time taken nor the
//! tokens' lengths reveal how close a guess came.
//!
//! # Example
//!
//! ```
//! use smoketest_core::{auth::Verdict, from_fn, Detail, Outcome, Smoketest};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let smoke = Smoketest::builder()
//!     .without_discovery()
//!     .check(from_fn("ok", |_ctx| Box::pin(async { Ok(Outcome::Pass) })))
//!     // During a rotation both the new and the old token are accepted.
//!     .bearer_token("new-7c0b2f1e9d4a4c3b8e6f")
//!     .bearer_token("old-1a2b3c4d5e6f7a8b9c0d")
//!     .anonymous_detail(Detail::Status)
//!     .build()
//!     .unwrap();
//!
//! let get = |auth: Option<&str>| {
//!     let mut request = http::Request::get("/smoketest");
//!     if let Some(auth) = auth {
//!         request = request.header("authorization", auth);
//!     }
//!     request.body(()).unwrap().into_parts().0
//! };
//! let full = smoke.handle(&get(Some("Bearer old-1a2b3c4d5e6f7a8b9c0d"))).await;
//! assert!(std::str::from_utf8(full.body()).unwrap().contains("\"name\": \"ok\""));
//!
//! let anonymous = smoke.handle(&get(None)).await;
//! assert_eq!(anonymous.status(), 200);
//! assert!(!std::str::from_utf8(anonymous.body()).unwrap().contains("\"name\""));
//!
//! let wrong = smoke.handle(&get(Some("Bearer guess"))).await;
//! assert_eq!(wrong.status(), 401);
//! assert_eq!(wrong.headers()["www-authenticate"], r#"Bearer realm="smoketest", error="invalid_token""#);
//!
//! // Or decide yourself, from anything in the request.
//! let internal_only = Smoketest::builder()
//!     .without_discovery()
//!     .authorizer(|parts: &http::request::Parts| match parts.headers.get("x-internal") {
//!         Some(_) => Verdict::Authorized,
//!         None => Verdict::Anonymous,
//!     })
//!     .build()
//!     .unwrap();
//! # let _ = internal_only;
//! # }
//! ```

use std::fmt;
use std::sync::Arc;

use http::StatusCode;
use http::header;
use http::request::Parts;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use crate::registry::BuildError;
use crate::request::RequestError;
use crate::{Detail, Smoketest, SmoketestBuilder};

/// Tokens shorter than this are refused when the `Smoketest` is built: a short token can be
/// guessed by anyone who can reach the endpoint.
pub const MIN_TOKEN_LEN: usize = 16;

/// What a custom [authorizer](crate::SmoketestBuilder::authorizer) decides about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// The caller may see everything ([`Detail::Full`]) and ask for `?fresh=1`.
    Authorized,
    /// The caller is anonymous: the service's anonymous detail level, or 401 when
    /// authorization is required.
    Anonymous,
    /// The caller presented credentials that are wrong: 401 with `error="invalid_token"`.
    Denied,
}

/// Who is asking, once the request's credentials have been checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Caller {
    /// No (recognised) credentials.
    Anonymous,
    /// A valid bearer token, or approved by the authorizer.
    Authorized,
}

impl Caller {
    /// How much of a report this caller sees, given the service's anonymous level.
    pub fn detail(self, anonymous: Detail) -> Detail {
        match self {
            Caller::Authorized => Detail::Full,
            Caller::Anonymous => anonymous,
        }
    }
}

type Authorizer = Arc<dyn Fn(&Parts) -> Verdict + Send + Sync>;

/// Access settings as the builder collects them.
#[derive(Clone, Default)]
pub(crate) struct AccessOptions {
    tokens: Vec<String>,
    authorizer: Option<Authorizer>,
    required: bool,
}

/// Access settings of a built `Smoketest`: token digests only, never the tokens.
#[derive(Clone, Default)]
pub(crate) struct Access {
    digests: Vec<[u8; 32]>,
    authorizer: Option<Authorizer>,
    required: bool,
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Access")
            .field("tokens", &self.digests.len())
            .field("authorizer", &self.authorizer.is_some())
            .field("required", &self.required)
            .finish()
    }
}

impl AccessOptions {
    pub(crate) fn build(self) -> Result<Access, BuildError> {
        for (i, token) in self.tokens.iter().enumerate() {
            if token.len() < MIN_TOKEN_LEN {
                return Err(BuildError::Config(format!(
                    "bearer token #{} is {} characters long; use at least {MIN_TOKEN_LEN} random characters (e.g. the output of `openssl rand -hex 32`)",
                    i + 1,
                    token.len()
                )));
            }
            if !is_token68(token.as_bytes()) {
                return Err(BuildError::Config(format!(
                    "bearer token #{} contains characters a bearer token cannot carry; use letters, digits and `-._~+/` only",
                    i + 1
                )));
            }
        }
        if self.required && self.tokens.is_empty() && self.authorizer.is_none() {
            return Err(BuildError::Config(
                "require_authorization() without a bearer_token(…) or an authorizer(…) would lock every caller out; configure one"
                    .into(),
            ));
        }
        Ok(Access {
            digests: self.tokens.iter().map(|t| digest(t.as_bytes())).collect(),
            authorizer: self.authorizer,
            required: self.required,
        })
    }
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// RFC 6750 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_token68(bytes: &[u8]) -> bool {
    let body_len = bytes.len() - bytes.iter().rev().take_while(|&&b| b == b'=').count();
    body_len > 0
        && bytes[..body_len]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// What the `Authorization` header holds.
enum Presented<'a> {
    Nothing,
    OtherScheme,
    Bearer(&'a [u8]),
}

fn presented(parts: &Parts) -> Presented<'_> {
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
        return Presented::Nothing;
    };
    // Bytes, not `to_str`: a header that is not ASCII is still a (wrong) credential.
    let bytes = value.as_bytes().trim_ascii();
    let scheme_len = bytes
        .iter()
        .position(|b| *b == b' ' || *b == b'\t')
        .unwrap_or(bytes.len());
    if bytes[..scheme_len].eq_ignore_ascii_case(b"bearer") {
        Presented::Bearer(bytes[scheme_len..].trim_ascii())
    } else {
        Presented::OtherScheme
    }
}

impl Access {
    /// Whether anonymous callers are refused unless a path says otherwise.
    pub(crate) fn requires_authorization(&self) -> bool {
        self.required
    }

    fn accepts(&self, token: &[u8]) -> bool {
        let presented = digest(token);
        // Compare with every token, without stopping at a match.
        let matched = self
            .digests
            .iter()
            .fold(Choice::from(0), |acc, d| acc | d.ct_eq(&presented));
        bool::from(matched)
    }

    /// Who is asking. `required` is the path's own rule (a group's), `None` for the
    /// service's.
    pub(crate) fn authorize(
        &self,
        parts: &Parts,
        required: Option<bool>,
    ) -> Result<Caller, RequestError> {
        if self.digests.is_empty() && self.authorizer.is_none() {
            return Ok(Caller::Anonymous);
        }
        let presented = presented(parts);
        if let Presented::Bearer(token) = presented
            && !self.digests.is_empty()
        {
            // A bearer token that is not one of the service's is wrong, whatever else is
            // configured: refused, never downgraded to anonymous nor handed to the
            // authorizer (whose own credentials travel in other headers).
            return if self.accepts(token) {
                Ok(Caller::Authorized)
            } else {
                Err(invalid_token())
            };
        }
        match self.authorizer.as_ref().map(|authorize| authorize(parts)) {
            Some(Verdict::Authorized) => return Ok(Caller::Authorized),
            Some(Verdict::Denied) => return Err(invalid_token()),
            Some(Verdict::Anonymous) | None => {}
        }
        if required.unwrap_or(self.required) {
            Err(RequestError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                Some("Authorization"),
                "this endpoint requires authorization: send `Authorization: Bearer <token>` with one of the service's smoketest tokens",
            ))
        } else {
            Ok(Caller::Anonymous)
        }
    }
}

fn invalid_token() -> RequestError {
    RequestError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_token",
        Some("Authorization"),
        "the credentials in the Authorization header were not accepted (unknown token, or one that was rotated out); a request with wrong credentials is refused rather than treated as anonymous: fix the token, or send none for the anonymous view",
    )
}

/// The `WWW-Authenticate` header for a 401 of the given error kind (RFC 6750 §3).
impl Smoketest {
    /// Check a request's credentials: who is asking, or the 401 to answer. Called by
    /// [`Smoketest::handle`] before anything else; see the [module documentation](self).
    pub fn authorize(&self, parts: &Parts) -> Result<Caller, RequestError> {
        let rule = match self.route(parts.uri.path()) {
            Some(crate::request::Route::Group(index)) => self.inner.engine.scopes[index]
                .group
                .as_ref()
                .and_then(|g| g.requires_authorization),
            _ => None,
        };
        self.inner.access.authorize(parts, rule)
    }
}

/// Access control. See the [`auth`](crate::auth) module.
impl SmoketestBuilder {
    /// Accept `Authorization: Bearer <token>`: its callers see the full report and may ask
    /// for `?fresh=1`. Call once per token; during a rotation, configure the new and the
    /// old one, then drop the old. Tokens must be at least [`MIN_TOKEN_LEN`] characters
    /// of `A–Z a–z 0–9 -._~+/`.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.access.tokens.push(token.into());
        self
    }

    /// Decide about requests yourself (a header set by your ingress, a client certificate
    /// your proxy verified, a session). Asked for every request that carries no bearer
    /// token when [`bearer_token`](Self::bearer_token)s are configured (a bearer token that
    /// is not one of them is 401 whatever the authorizer would say), and for every request
    /// otherwise — so an authorizer that validates bearer tokens of its own (JWTs) is used
    /// without `bearer_token`. Its [`Verdict`] is final.
    pub fn authorizer<F>(mut self, authorizer: F) -> Self
    where
        F: Fn(&Parts) -> Verdict + Send + Sync + 'static,
    {
        self.access.authorizer = Some(Arc::new(authorizer));
        self
    }

    /// Refuse anonymous callers with 401 and `WWW-Authenticate: Bearer`, instead of showing
    /// them the anonymous detail level. Needs a [`bearer_token`](Self::bearer_token) or an
    /// [`authorizer`](Self::authorizer).
    pub fn require_authorization(mut self) -> Self {
        self.access.required = true;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token68_accepts_base64_and_hex_and_refuses_spaces() {
        assert!(is_token68(b"abcDEF0123-._~+/=="));
        assert!(!is_token68(b"has space"));
        assert!(!is_token68(b"==="));
        assert!(!is_token68(b""));
    }

    #[test]
    fn scheme_is_case_insensitive_and_whitespace_tolerant() {
        let parts = |v: &'static str| {
            http::Request::get("/")
                .header("authorization", v)
                .body(())
                .unwrap()
                .into_parts()
                .0
        };
        assert!(matches!(
            presented(&parts("bEaReR   tok")),
            Presented::Bearer(b"tok")
        ));
        assert!(matches!(
            presented(&parts("Bearer")),
            Presented::Bearer(b"")
        ));
        assert!(matches!(
            presented(&parts("Basic dXNlcg==")),
            Presented::OtherScheme
        ));
    }
}

//! Bearer tokens for the orders API, and the personas the smoke scenarios use.
//!
//! Two roles: `clerk` reads and writes orders, `viewer` only reads them. This service mints
//! its own tokens and keeps them in memory (a real one asks its identity provider). Scripts
//! and people get fixed tokens from `ORDERS_API_TOKENS` (`clerk:…,viewer:…`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use smoketest::{Persona, SmoketestBuilder};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Clerk,
    Viewer,
}

impl Role {
    fn parse(name: &str) -> Option<Role> {
        match name {
            "clerk" => Some(Role::Clerk),
            "viewer" => Some(Role::Viewer),
            _ => None,
        }
    }
}

/// The tokens this service accepts, by token.
#[derive(Clone, Default)]
pub struct Tokens(Arc<Mutex<HashMap<String, Role>>>);

impl Tokens {
    /// The fixed tokens of `ORDERS_API_TOKENS` (`clerk:…,viewer:…`), if set.
    pub fn from_env() -> Result<Tokens, String> {
        let tokens = Tokens::default();
        if let Ok(list) = std::env::var("ORDERS_API_TOKENS") {
            for entry in list.split(',').filter(|e| !e.trim().is_empty()) {
                let (role, token) = entry.trim().split_once(':').ok_or_else(|| {
                    "ORDERS_API_TOKENS must look like `clerk:TOKEN,viewer:TOKEN`".to_string()
                })?;
                let role = Role::parse(role)
                    .ok_or_else(|| format!("ORDERS_API_TOKENS: unknown role `{role}`"))?;
                if token.len() < 16 {
                    return Err("ORDERS_API_TOKENS: tokens need at least 16 characters".into());
                }
                tokens.lock().insert(token.to_string(), role);
            }
        }
        Ok(tokens)
    }

    /// A new token for `role`.
    pub fn mint(&self, role: Role) -> String {
        static MINTED: AtomicU64 = AtomicU64::new(0);
        // 128 bits from std's randomly keyed SipHash: unguessable without a crate for it.
        let n = MINTED.fetch_add(1, Ordering::Relaxed);
        let now = std::time::SystemTime::now();
        let token = format!(
            "{:016x}{:016x}",
            RandomState::new().hash_one((n, now)),
            RandomState::new().hash_one((now, n))
        );
        self.lock().insert(token.clone(), role);
        token
    }

    fn role(&self, token: &str) -> Option<Role> {
        self.lock().get(token).copied()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Role>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Middleware: no valid bearer token is 401; a viewer writing is 403.
pub async fn require(State(tokens): State<Tokens>, request: Request, next: Next) -> Response {
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(role) = token.and_then(|t| tokens.role(t)) else {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a valid bearer token is required",
        )
            .into_response();
    };
    let writes = !matches!(*request.method(), Method::GET | Method::HEAD);
    if writes && role != Role::Clerk {
        return (StatusCode::FORBIDDEN, "only clerks may change orders").into_response();
    }
    next.run(request).await
}

/// The personas of the smoke scenarios: a clerk and a viewer, each with a token minted by
/// this service (`orders::lifecycle[clerk]`, `orders::lifecycle[viewer]`).
pub fn personas(builder: SmoketestBuilder, tokens: &Tokens) -> SmoketestBuilder {
    let mint = |role: Role| {
        let tokens = tokens.clone();
        Persona::bearer_from(move || {
            let token = tokens.mint(role);
            async move { Ok::<_, Infallible>(token) }
        })
    };
    builder
        .persona("clerk", mint(Role::Clerk))
        .persona("viewer", mint(Role::Viewer))
}

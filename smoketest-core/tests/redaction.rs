//! Secret redaction: every pattern, a corpus of realistic driver and library error
//! messages, and the path from a check's error to every format and the log.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use smoketest_core::format::Format;
use smoketest_core::redact::Redactor;
use smoketest_core::{CheckError, Outcome, Smoketest, from_fn};

/// Each built-in pattern, on its own, with the exact result.
#[test]
fn every_pattern_replaces_exactly_the_secret() {
    let cases = [
        // Credentials in URLs, whatever the scheme; a raw `@` in the password goes too.
        (
            "connecting to postgres://orders:hunter2@db.internal:5432/orders",
            "connecting to postgres://orders:***@db.internal:5432/orders",
        ),
        (
            "mysql://root:p@ss@10.0.0.7/shop refused",
            "mysql://root:***@10.0.0.7/shop refused",
        ),
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        (
            "GET https://deploy:ghs_16C7e42F292c6912E7710c838347Ae178B4a@github.com/org/repo.git",
            "GET https://deploy:***@github.com/org/repo.git",
        ),
        // Key-value forms: DSNs, query strings, JSON, YAML, Debug output.
        (
            "host=db port=5432 user=orders password=hunter2 dbname=orders",
            "host=db port=5432 user=orders password=*** dbname=orders",
        ),
        ("?user=a&pwd=hunter2&db=x", "?user=a&pwd=***&db=x"),
        (
            r#"{"user":"a","password":"hunter 2"}"#,
            r#"{"user":"a","password":"***"}"#,
        ),
        ("db_password: hunter2", "db_password: ***"),
        (
            r#"PgConnectOptions { username: "orders", password: Some("hunter2"), port: 5432 }"#,
            r#"PgConnectOptions { username: "orders", password: Some("***"), port: 5432 }"#,
        ),
        ("client_secret='abc def'", "client_secret='***'"),
        ("?access_token=ya29.a0AfH6SMBx&x=1", "?access_token=***&x=1"),
        ("X-Api-Key: 0123456789abcdef", "X-Api-Key: ***"),
        ("SECRET_KEY_BASE=9f8e7d6c5b4a", "SECRET_KEY_BASE=***"),
        // A descriptor after the secret word: the value is where the secret is, not it.
        (
            "password_file=/run/secrets/db",
            "password_file=/run/secrets/db",
        ),
        // Authorization headers and bearer tokens.
        (
            "request headers: {\"authorization\": \"Basic dXNlcjpwYXNz\", \"accept\": \"*/*\"}",
            "request headers: {\"authorization\": \"Basic ***\", \"accept\": \"*/*\"}",
        ),
        (
            "Authorization: Bearer abc.def.ghi",
            "Authorization: Bearer ***",
        ),
        (
            "Proxy-Authorization: Negotiate YII=",
            "Proxy-Authorization: Negotiate ***",
        ),
        (
            "sent bearer 0a1b2c3d4e to upstream",
            "sent bearer *** to upstream",
        ),
        // AWS.
        (
            "credentials AKIAIOSFODNN7EXAMPLE rejected",
            "credentials AKIA*** rejected",
        ),
        (
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "aws_secret_access_key = ***",
        ),
        (
            "the key wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY is invalid",
            "the key *** is invalid",
        ),
        // Well-known token shapes.
        (
            "token ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789 expired",
            "token *** expired",
        ),
        (
            "stripe said sk_live_51HabcdefghijklmnopQRST",
            "stripe said ***",
        ),
        (
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.sig-nature_x rejected",
            "jwt *** rejected",
        ),
        // Private keys, whole or cut off.
        (
            "bad key: -----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA0Z3VS5\nq0Y=\n-----END RSA PRIVATE KEY----- (pem)",
            "bad key: -----BEGIN RSA PRIVATE KEY-----***-----END RSA PRIVATE KEY----- (pem)",
        ),
        (
            "read: -----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
            "read: -----BEGIN PRIVATE KEY-----***-----END PRIVATE KEY-----",
        ),
        (
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk=\n-----END OPENSSH PRIVATE KEY-----",
            "-----BEGIN OPENSSH PRIVATE KEY-----***-----END OPENSSH PRIVATE KEY-----",
        ),
    ];
    let redactor = Redactor::new();
    for (input, expected) in cases {
        assert_eq!(redactor.redact(input), expected, "input: {input}");
    }
}

#[test]
fn configured_values_are_replaced_with_their_label() {
    let redactor = Redactor::new()
        .with_value(
            "postgres://orders:Tr0ub4dor&3@db.internal:5432/orders",
            Some("DATABASE_URL"),
        )
        .with_value("signing-key-2f9a", None);
    assert_eq!(
        redactor.redact("cannot connect to postgres://orders:Tr0ub4dor&3@db.internal:5432/orders"),
        "cannot connect to [redacted $DATABASE_URL]"
    );
    // The URL's password alone, as a driver's Debug output would show it.
    assert_eq!(
        redactor.redact("auth with Tr0ub4dor&3 failed"),
        "auth with [redacted $DATABASE_URL] failed"
    );
    assert_eq!(
        redactor.redact("hmac(signing-key-2f9a) mismatch"),
        "hmac([redacted]) mismatch"
    );
}

/// Secrets in the corpus: none may survive.
const SECRETS: &[&str] = &[
    "hunter2",
    "Tr0ub4dor",
    "s3cr3tpass",
    "sk_live_51Habcdefghijklmnop",
    "ya29.a0AfH6SMBx",
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9",
    "AKIAIOSFODNN7EXAMPLE",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404",
    "MIIEpAIBAAKCAQEA",
    "MIIEvQIBADANBgkq",
    "dXNlcjpodW50ZXIy",
    "ghs_16C7e42F292c6912E7710c838347Ae178B4a",
];

/// Realistic messages as sqlx, reqwest, std::io and friends print them (and as checks wrap
/// them with context), each with the words that must survive redaction because they are
/// the diagnosis.
const CORPUS: &[(&str, &[&str])] = &[
    // sqlx
    (
        "connecting to postgres://orders:hunter2@db.internal:5432/orders: error communicating with database: Connection refused (os error 111)",
        &["db.internal:5432", "Connection refused", "os error 111"],
    ),
    (
        "error with configuration: invalid connection string `postgres://orders:Tr0ub4dor&3@db/orders?sslmode=verify-full`",
        &["invalid connection string", "sslmode=verify-full"],
    ),
    (
        "error returned from database: password authentication failed for user \"orders\"",
        &["password authentication failed for user \"orders\""],
    ),
    (
        "error returned from database: 1045 (28000): Access denied for user 'root'@'10.0.0.5' (using password: YES)",
        &["Access denied for user 'root'@'10.0.0.5' (using password: YES)"],
    ),
    (
        "pool options: PgConnectOptions { host: \"db.internal\", port: 5432, username: \"orders\", password: Some(\"hunter2\"), database: Some(\"orders\"), ssl_mode: Prefer }",
        &["host: \"db.internal\"", "database: Some(\"orders\")"],
    ),
    (
        "connecting with `host=db.internal user=orders password='hunter2' sslmode=require`: pool timed out while waiting for an open connection",
        &[
            "host=db.internal",
            "pool timed out while waiting for an open connection",
        ],
    ),
    // reqwest
    (
        "error sending request for url (https://api.payments.internal/v1/charges?api_key=sk_live_51Habcdefghijklmnop&limit=1): client error (Connect): tcp connect error: Connection refused (os error 111)",
        &[
            "api.payments.internal/v1/charges",
            "limit=1",
            "tcp connect error",
        ],
    ),
    (
        "HTTP status client error (401 Unauthorized) for url (https://oauth.example.com/v1/me?access_token=ya29.a0AfH6SMBx)",
        &["401 Unauthorized", "oauth.example.com/v1/me"],
    ),
    (
        "error following redirect for url (https://s3.amazonaws.com/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404)",
        &[
            "error following redirect",
            "s3.amazonaws.com/b/k",
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
        ],
    ),
    (
        "request to https://svc:s3cr3tpass@internal.example/health failed: headers {\"authorization\": \"Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIn0.x\", \"user-agent\": \"smoketest\"}",
        &[
            "internal.example/health failed",
            "\"user-agent\": \"smoketest\"",
        ],
    ),
    (
        "proxy refused: Proxy-Authorization: Basic dXNlcjpodW50ZXIy",
        &["proxy refused"],
    ),
    // std::io and configuration
    (
        "reading /etc/app/secrets.env: No such file or directory (os error 2)",
        &[
            "/etc/app/secrets.env",
            "No such file or directory (os error 2)",
        ],
    ),
    (
        "invalid line 3 in /etc/app/.env: AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        &["invalid line 3 in /etc/app/.env", "AWS_SECRET_ACCESS_KEY="],
    ),
    (
        "AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE has no permission s3:PutObject on arn:aws:s3:::orders",
        &["AWS_ACCESS_KEY_ID=", "s3:PutObject", "arn:aws:s3:::orders"],
    ),
    (
        "loading TLS key /etc/tls/key.pem: expected one key, found: -----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgHcTz6sE2I2yPB\naFDrBz9vFqU4yuplJmtnTGsfIhmCNP7EK6VZ7MfDSP2Ko3mgk9q5ruwVAe4K6g==\n-----END RSA PRIVATE KEY-----",
        &["loading TLS key /etc/tls/key.pem: expected one key"],
    ),
    (
        "short read on /run/secrets/tls.key after 32 bytes: -----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
        &["short read on /run/secrets/tls.key after 32 bytes"],
    ),
    (
        "git fetch https://x-access-token:ghs_16C7e42F292c6912E7710c838347Ae178B4a@github.com/org/repo.git: Permission denied (os error 13)",
        &["github.com/org/repo.git", "Permission denied (os error 13)"],
    ),
];

#[test]
fn the_corpus_keeps_its_diagnosis_and_loses_its_secrets() {
    let redactor = Redactor::new();
    for (message, kept) in CORPUS {
        let redacted = redactor.redact(message);
        for secret in SECRETS {
            assert!(
                !redacted.contains(secret),
                "`{secret}` survived in:\n{redacted}"
            );
        }
        for word in *kept {
            assert!(
                redacted.contains(word),
                "`{word}` was lost from:\n{redacted}"
            );
        }
    }
}

#[test]
fn messages_without_secrets_are_untouched() {
    let redactor = Redactor::new();
    for message in [
        "expected 1 row, found 0",
        "`status`: expected 200, found 503",
        "DNS resolution failed for `payments.internal`: no record",
        "release 9f2c1ab0c0ffee0123456789abcdef0123456789 is deployed",
        "only 12 MiB free under /var/lib/app, want more than 100",
        "3 checks passed: orders, payments, cache",
        "the secrets directory is not readable: permission denied",
        "basic authentication is not configured",
    ] {
        assert_eq!(redactor.redact(message), message);
    }
}

/// A `MakeWriter` collecting log output.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn nothing_downstream_of_the_runner_sees_a_secret() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .finish();
    // A current-thread runtime: every task logs on this thread.
    let _guard = tracing::subscriber::set_default(subscriber);

    let smoke = Smoketest::builder()
        .without_discovery()
        .bearer_token("redaction-test-token-000")
        .redact_value("signing-key-2f9a")
        .min_interval(Duration::ZERO)
        .check(from_fn("db::connect", |_ctx| {
            Box::pin(async {
                Err(CheckError::new(
                    smoketest_core::ErrorKind::DbUnavailable,
                    CORPUS[0].0,
                )
                .with_suggestion("check password=hunter2 in the vault"))
            })
        }))
        .check(from_fn("http::payments", |ctx| {
            Box::pin(async move {
                ctx.observe("url", "https://svc:s3cr3tpass@internal.example/health");
                ctx.observe("headers", serde_json::json!({"authorization": "Bearer eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"}));
                Ok(Outcome::warn("slow; key signing-key-2f9a, AKIAIOSFODNN7EXAMPLE"))
            })
        }))
        .check(from_fn("tls::key", |_ctx| {
            Box::pin(async { panic!("{}", CORPUS[14].0) })
        }))
        .check(from_fn("cleanup", |ctx| {
            Box::pin(async move {
                ctx.defer(async {
                    Err(CheckError::error(
                        "removing s3://bucket/tmp with aws_secret_access_key=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                    ))
                });
                Ok(Outcome::Pass)
            })
        }))
        .build()
        .unwrap();

    let mut outputs = Vec::new();
    for &format in Format::ALL {
        let request = http::Request::get(format!("/smoketest?format={}", format.param()))
            .header("authorization", "Bearer redaction-test-token-000")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let response = smoke.handle(&request).await;
        // Prometheus formats always answer 200: scrapers discard other statuses.
        let expected = if format.always_ok() { 200 } else { 500 };
        assert_eq!(response.status(), expected, "{format:?}");
        outputs.push((
            format!("{format:?}"),
            String::from_utf8(response.body().to_vec()).unwrap(),
        ));
    }
    let log = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains("smoke check failed"),
        "the failures were logged:\n{log}"
    );
    outputs.push(("log".to_string(), log));

    let json = &outputs[0].1;
    assert!(
        json.contains("Connection refused"),
        "diagnosis kept: {json}"
    );
    assert!(json.contains("postgres://orders:***@db.internal"), "{json}");
    for (output, text) in &outputs {
        for secret in SECRETS.iter().chain(&["signing-key-2f9a"]) {
            assert!(
                !text.contains(secret),
                "`{secret}` leaked into the {output}:\n{text}"
            );
        }
    }
}

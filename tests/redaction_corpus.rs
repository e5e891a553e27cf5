//! Redaction as a token holder on the network sees it: a service whose checks fail with a
//! secret inside real error text (driver errors, `Debug` of config structs, JSON bodies,
//! headers, cookies, env dumps, connection strings) and observe secret values, fetched
//! with full detail in every format over loopback HTTP through the axum adapter. No
//! format and no log line may show a secret; look-alikes must reach the report unchanged.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use smoketest::redact::Redactor;
use smoketest::{CheckError, ErrorKind, Outcome, Smoketest, from_fn};

const TOKEN: &str = "corpus-test-token-9e8d7c6b";

/// A message as a check reports it, the secret inside it, and a piece of the diagnosis
/// that must survive redaction.
struct Case {
    message: &'static str,
    secret: &'static str,
    kept: &'static str,
}

const fn case(message: &'static str, secret: &'static str, kept: &'static str) -> Case {
    Case {
        message,
        secret,
        kept,
    }
}

/// Secrets contain no `&<>"'\`, so that HTML, XML and JSON escaping cannot hide a leak
/// from `contains`.
const CORPUS: &[Case] = &[
    // sqlx, Postgres and MySQL
    case(
        "error connecting to postgres://orders:Hunt3rTwo@db.internal:5432/orders: error communicating with database: Connection refused (os error 111)",
        "Hunt3rTwo",
        "db.internal:5432/orders",
    ),
    case(
        "mysql://root:R00tPw9x@10.0.0.7:3306/shop: error returned from database: 1045 (28000): Access denied for user 'root'@'10.0.0.5' (using password: YES)",
        "R00tPw9x",
        "(using password: YES)",
    ),
    case(
        "pool timed out while waiting for an open connection to mysql://app:p@ssw0rdQ@mariadb.internal:3306/app",
        "ssw0rdQ",
        "mariadb.internal:3306/app",
    ),
    case(
        "error with configuration: invalid connection string `host=db user=app password=hunter2x dbname=orders sslmode=require`",
        "hunter2x",
        "sslmode=require",
    ),
    case(
        "pool options: PgConnectOptions { host: \"db.internal\", port: 5432, username: \"app\", password: Some(\"PgDebugPw77\"), database: Some(\"orders\") }",
        "PgDebugPw77",
        "database: Some(",
    ),
    case(
        "jdbc:postgresql://db:5432/orders?user=app&password=JdbcPw8282&ssl=true: connection attempt timed out",
        "JdbcPw8282",
        "ssl=true",
    ),
    case(
        "Server=tcp:sql.internal,1433;Database=shop;User Id=app;Password=AdoPw9393;Encrypt=true: login failed",
        "AdoPw9393",
        "Encrypt=true",
    ),
    case(
        "dial tcp: lookup mysql on 10.0.0.2:53: no such host (dsn app:GoDsnPw55@tcp(mysql:3306)/shop)",
        "GoDsnPw55",
        "no such host",
    ),
    case(
        "server selection timeout for mongodb+srv://app:MongoPw4242@cluster0.example.net/shop?retryWrites=true",
        "MongoPw4242",
        "cluster0.example.net/shop",
    ),
    // lapin (AMQP) and redis
    case(
        "amqp://guest:GuestPw5150@rabbit.internal:5672/%2f: IO error: Connection refused (os error 111)",
        "GuestPw5150",
        "rabbit.internal:5672",
    ),
    case(
        "connecting to AMQP broker at ops:RabbitPw31@rabbit.internal:5672 failed: protocol error: ACCESS_REFUSED",
        "RabbitPw31",
        "ACCESS_REFUSED",
    ),
    case(
        "redis://:RedisPw8080@cache.internal:6379/0: Connection refused (os error 111)",
        "RedisPw8080",
        "cache.internal:6379",
    ),
    case(
        "rediss://default:RedisPw2323@cache.example:6380: TLS handshake failed",
        "RedisPw2323",
        "TLS handshake failed",
    ),
    case(
        "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"app\" password=\"KafkaPw3434\"; broker said SASL authentication failed",
        "KafkaPw3434",
        "SASL authentication failed",
    ),
    // reqwest and HTTP APIs
    case(
        "error sending request for url (https://ghp_Zq8mN2pL5vR7tY1uI3oP9aS4dF6gH0jK2lXc@api.vendor.example/v1/ping): connection closed before message completed",
        "Zq8mN2pL5vR7tY1uI3oP9aS4dF6gH0jK2lXc",
        "api.vendor.example/v1/ping",
    ),
    case(
        "error sending request for url (https://8c1f4e7a9b2d4c6e8f0a1b3c5d7e9f21@api.vendor.example/v1/ping): operation timed out",
        "8c1f4e7a9b2d4c6e8f0a1b3c5d7e9f21",
        "api.vendor.example/v1/ping",
    ),
    case(
        "sentry: invalid DSN https://0f3c9a7e5b1d4f8a9c2e6b0d4a8f1c3e@o1234.ingest.sentry.io/567",
        "0f3c9a7e5b1d4f8a9c2e6b0d4a8f1c3e",
        "o1234.ingest.sentry.io/567",
    ),
    case(
        "HTTP status client error (401 Unauthorized) for url (https://api.payments.internal/v1/charges?api_key=PayKey0192&limit=1)",
        "PayKey0192",
        "limit=1",
    ),
    case(
        "HTTP status client error (403 Forbidden) for url (https://oauth.example.com/v1/me?access_token=ya29.A0ARrdaMx1y2z3)",
        "ya29.A0ARrdaMx1y2z3",
        "oauth.example.com/v1/me",
    ),
    case(
        "invalid upstream: UpstreamConfig { endpoint: \"https://api.vendor.example/v1\", secret_key: \"UpKey-7731-zz\", timeout: 5s }",
        "UpKey-7731-zz",
        "timeout: 5s",
    ),
    case(
        "token endpoint said 400: {\"error\":\"invalid_client\",\"clientSecret\":\"CliSec-4471\"}",
        "CliSec-4471",
        "invalid_client",
    ),
    case(
        "s3 config rejected: {\"accessKeyId\":\"AKIAZ7Q4N2XW5V8R3T6Y\",\"secretKey\":\"SecKeyAbc991\",\"region\":\"eu-west-1\"}",
        "SecKeyAbc991",
        "eu-west-1",
    ),
    case(
        "oauth token exchange failed: ApiError { status: 401, body: \"{\\\"error\\\":\\\"invalid_grant\\\",\\\"refresh_token\\\":\\\"DbgJsonSec5151\\\"}\" }",
        "DbgJsonSec5151",
        "invalid_grant",
    ),
    case(
        "{\"dbPassword\":\"CamelPw1313\",\"dbHost\":\"db.internal\"} is not a valid config",
        "CamelPw1313",
        "is not a valid config",
    ),
    case(
        "proxy answered 407 to Authorization: Basic YWRtaW46QmFzaWNQdzE=",
        "YWRtaW46QmFzaWNQdzE",
        "proxy answered 407",
    ),
    case(
        "upstream rejected Authorization: Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzdmMtb3JkZXJzIn0.c2lnbmF0dXJl",
        "eyJzdWIiOiJzdmMtb3JkZXJzIn0",
        "upstream rejected",
    ),
    case(
        "curl -H Authorization: Token TokAuth8787 https://api.vendor.example returned 401",
        "TokAuth8787",
        "returned 401",
    ),
    case(
        "GET /api/me with Cookie: session=SessVal0042; theme=dark returned 401",
        "SessVal0042",
        "returned 401",
    ),
    case(
        "login answered 302 with Set-Cookie: sid=SidVal8811; Path=/; HttpOnly; Secure",
        "SidVal8811",
        "Path=/; HttpOnly",
    ),
    // Cookie names need not say "session": every Cookie value goes.
    case(
        "GET /account sent Cookie: theme=dark; remember_me=RememberVal6464 and got 403",
        "RememberVal6464",
        "and got 403",
    ),
    case(
        "upstream answered Set-Cookie: __Host-app=HostCookie7575; Path=/; Secure; SameSite=Lax",
        "HostCookie7575",
        "SameSite=Lax",
    ),
    case(
        "request headers: {\"x-api-key\": \"XApiKey5566\", \"accept\": \"application/json\"}",
        "XApiKey5566",
        "application/json",
    ),
    case(
        "X-Auth-Token: AuthTok3141 rejected by the gateway",
        "AuthTok3141",
        "rejected by the gateway",
    ),
    case(
        "sent [(\"cookie\", \"csrftoken=CsrfTok9090\"), (\"host\", \"api.internal\")]",
        "CsrfTok9090",
        "api.internal",
    ),
    case(
        "openai: 401 Incorrect API key provided: sk-proj-OpenAiKey0123456789abcdefghijklmnop",
        "OpenAiKey0123456789abcdefghijklmnop",
        "Incorrect API key provided",
    ),
    case(
        "<soap:Fault><faultstring>bad credentials</faultstring><detail><ClientSecret>SoapSec7878</ClientSecret></detail></soap:Fault>",
        "SoapSec7878",
        "bad credentials",
    ),
    // Environment dumps and configuration files
    case(
        "API_TOKEN=ApiTok2718 is not accepted by api.vendor.example",
        "ApiTok2718",
        "is not accepted by api.vendor.example",
    ),
    case(
        "invalid line 3 in /etc/app/.env: AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "invalid line 3 in /etc/app/.env",
    ),
    case(
        "Django refuses to start: SECRET_KEY=DjSecret2424 is shorter than 50 characters",
        "DjSecret2424",
        "is shorter than 50 characters",
    ),
    case(
        "config.yaml line 12: db_password: YamlPw6060 (expected a string)",
        "YamlPw6060",
        "config.yaml line 12",
    ),
    case(
        "config.toml: smtp_password = \"TomlPw7070\" rejected by mail.internal",
        "TomlPw7070",
        "rejected by mail.internal",
    ),
    case(
        "params: {:password => \"RubyPw1212\", :user => \"app\"}",
        "RubyPw1212",
        ":user =>",
    ),
    case(
        "settings {'user': 'app', 'password': 'PyPw5656'} did not validate",
        "PyPw5656",
        "did not validate",
    ),
    case(
        "service account {\"type\": \"service_account\", \"private_key_id\": \"PkId0a1b2c\", \"private_key\": \"-----BEGIN PRIVATE KEY-----\\nGcpKeyBody123\\n-----END PRIVATE KEY-----\\n\", \"client_email\": \"svc@proj.iam.gserviceaccount.com\"} has no access",
        "GcpKeyBody123",
        "svc@proj.iam.gserviceaccount.com",
    ),
    // Cloud and SaaS token shapes
    case(
        "The AWS Access Key Id you provided does not exist in our records. (AKIAZ7Q4N2XW5V8R3T6Y)",
        "Z7Q4N2XW5V8R3T6Y",
        "does not exist in our records",
    ),
    case(
        "error following redirect for url (https://s3.amazonaws.com/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAZ7Q4N2XW5V8R3T6Y%2F20261202%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=5b0c9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d)",
        "5b0c9e0f1a2b3c4d5e6f7a8b9c0d1e2f",
        "X-Amz-Algorithm=AWS4-HMAC-SHA256",
    ),
    case(
        "git fetch https://x-access-token:ghs_Q1w2E3r4T5y6U7i8O9p0A1s2D3f4G5h6J7k8@github.com/org/repo.git: Permission denied (os error 13)",
        "Q1w2E3r4T5y6U7i8O9p0A1s2D3f4G5h6J7k8",
        "github.com/org/repo.git",
    ),
    case(
        "slack webhook failed (invalid_auth) with xoxb-2718281828-3141592653-SlackTokAbc",
        "SlackTokAbc",
        "slack webhook failed (invalid_auth)",
    ),
    case(
        "stripe: No such customer: 'cus_123'; request used sk_live_51StripeKey0123456789",
        "StripeKey0123456789",
        "No such customer",
    ),
    case(
        "loading TLS key /etc/tls/key.pem: expected one key, found: -----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n-----END RSA PRIVATE KEY-----",
        "MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu",
        "loading TLS key /etc/tls/key.pem",
    ),
];

/// Messages that look like secrets but are diagnosis: they must reach the report as they
/// are.
const LOOK_ALIKES: &[&str] = &[
    "password_policy: strict",
    "tokens_used: 17",
    "max_tokens: 4096 exceeded",
    "session_count: 3",
    "password_min_length: 12",
    "auth_method: password",
    "author: alice",
    "oauth_provider: google",
    "token_type: Bearer, expires_in: 3600",
    "secret_name: orders-db-credentials not found",
    "GET https://api.example.com/v1/ping?page=2 answered 503",
    "postgres://app@db.internal:5432/orders: Connection refused (os error 111)",
    "mail ops@example.com when this fails",
    "git@github.com:org/repo.git is not reachable",
    "ssh://git@github.com/org/repo.git: permission denied (publickey)",
    "password authentication failed for user \"orders\"",
    "Access denied for user 'root'@'10.0.0.5' (using password: YES)",
    "/run/secrets/db_password: No such file or directory (os error 2)",
    "release 9f2c1ab0c0ffee0123456789abcdef0123456789 is deployed",
    "the bearer token is missing",
    "smoketest::auth::verify failed",
    "expected 1 row, found 0",
];

/// Secrets that checks observe (structured values), with the name they observe them under.
fn observe_secrets(ctx: &mut smoketest::Context) {
    ctx.observe(
        "config",
        serde_json::json!({"user": "app", "password": "ObsPw1111"}),
    );
    ctx.observe(
        "pool",
        serde_json::json!({"db": {"password": 90817263, "size": 5}}),
    );
    ctx.observe("api_key", "ObsKey2222");
    ctx.observe(
        "headers",
        serde_json::json!({"Cookie": "session=ObsCookie3333", "accept": "*/*"}),
    );
    ctx.observe(
        "upstream",
        serde_json::json!({"secretKey": ["ObsArr4444"], "endpoint": "https://tok9ObsUrl5555xyz@api.vendor.example"}),
    );
}
const OBSERVED_SECRETS: &[&str] = &[
    "ObsPw1111",
    "90817263",
    "ObsKey2222",
    "ObsCookie3333",
    "ObsArr4444",
    "tok9ObsUrl5555xyz",
];

const FORMATS: &[&str] = &[
    "json",
    "text",
    "html",
    "health+json",
    "prometheus",
    "openmetrics",
    "junit",
];

/// A `MakeWriter` collecting every log line of this test binary.
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

/// The log of the whole binary: a global subscriber, so that the server's tasks log into
/// it whatever thread they run on.
fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            // The library's own logs, at every level; not the HTTP client's.
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "smoketest=trace,smoketest_core=trace,smoketest_axum=trace",
            ))
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        logs
    })
}

async fn serve(smoke: Smoketest) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = smoketest_axum::router(smoke);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn client() -> reqwest::Client {
    // With `--all-features`, reqwest's rustls backend is compiled in without a default
    // crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Fetch `format` as the token holder; the status and the body.
async fn fetch(addr: SocketAddr, format: &str) -> (u16, String) {
    let response = client()
        .get(format!(
            "http://{addr}/smoketest?format={}",
            format.replace('+', "%2B")
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// A check per corpus message, failing with it (every fourth warns with it instead), its
/// suggestion quoting the secret again.
fn corpus_service() -> Smoketest {
    let mut builder = Smoketest::builder()
        .without_discovery()
        .bearer_token(TOKEN)
        .min_interval(Duration::ZERO);
    for (i, case) in CORPUS.iter().enumerate() {
        let (message, secret) = (case.message, case.secret);
        builder = builder.check(from_fn(format!("corpus::{i:02}"), move |_ctx| {
            Box::pin(async move {
                if i % 4 == 3 {
                    Ok(Outcome::warn(message))
                } else {
                    Err(CheckError::new(ErrorKind::Error, message)
                        .with_suggestion(format!("Rotate the password={secret} and retry.")))
                }
            })
        }));
    }
    builder
        .check(from_fn("corpus::observed", |ctx| {
            observe_secrets(ctx);
            Box::pin(async { Ok(Outcome::Pass) })
        }))
        .build()
        .unwrap()
}

#[test]
fn the_corpus_covers_at_least_forty_messages() {
    assert!(CORPUS.len() >= 40, "{} messages", CORPUS.len());
    for case in CORPUS {
        assert!(
            case.message.contains(case.secret),
            "the secret is not in the message: {}",
            case.message
        );
    }
}

#[tokio::test]
async fn no_format_and_no_log_line_shows_a_secret_to_a_token_holder() {
    let logs = logs();
    let addr = serve(corpus_service()).await;

    let mut outputs = Vec::new();
    for &format in FORMATS {
        let (status, body) = fetch(addr, format).await;
        // Prometheus formats always answer 200: scrapers discard other statuses.
        let expected = if format.contains("metrics") || format == "prometheus" {
            200
        } else {
            500
        };
        assert_eq!(status, expected, "{format}: {body}");
        outputs.push((format.to_string(), body));
    }
    let log = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    outputs.push(("log".to_string(), log));

    for (output, text) in &outputs {
        for case in CORPUS {
            assert!(
                !text.contains(case.secret),
                "`{}` leaked into the {output}:\n{text}",
                case.secret
            );
        }
        for secret in OBSERVED_SECRETS.iter().chain([&TOKEN]) {
            assert!(
                !text.contains(secret),
                "`{secret}` leaked into the {output}:\n{text}"
            );
        }
    }

    // Not vacuous: the token holder got every message, with its diagnosis, and the
    // observed values, and the log has the failures.
    let report: serde_json::Value = serde_json::from_str(&outputs[0].1).unwrap();
    let checks = report["checks"].as_array().unwrap();
    for (i, case) in CORPUS.iter().enumerate() {
        let check = checks
            .iter()
            .find(|c| c["name"] == format!("corpus::{i:02}"))
            .unwrap();
        let message = check["error"]["message"]
            .as_str()
            .or(check["message"].as_str())
            .unwrap_or_else(|| panic!("no message in {check}"));
        assert!(
            message.contains(case.kept),
            "`{}` was lost from:\n{message}",
            case.kept
        );
        if let Some(suggestion) = check["error"]["suggestion"].as_str() {
            assert_eq!(suggestion, "Rotate the password=*** and retry.");
        }
    }
    let observed = &checks
        .iter()
        .find(|c| c["name"] == "corpus::observed")
        .unwrap()["observed"];
    assert_eq!(
        observed["config"],
        serde_json::json!({"user": "app", "password": "***"})
    );
    assert_eq!(observed["pool"]["db"]["size"], 5);
    assert_eq!(observed["api_key"], "***");
    assert_eq!(observed["headers"]["accept"], "*/*");
    assert_eq!(
        observed["upstream"]["endpoint"],
        "https://***@api.vendor.example"
    );
    let html = &outputs[2].1;
    assert!(html.contains("db.internal:5432/orders"), "{html}");
    let log = &outputs.last().unwrap().1;
    assert!(
        log.contains("smoke check failed") && log.contains("db.internal:5432/orders"),
        "the failures were logged with their diagnosis:\n{log}"
    );
}

#[tokio::test]
async fn look_alikes_reach_the_token_holder_unchanged() {
    let mut builder = Smoketest::builder()
        .without_discovery()
        .bearer_token(TOKEN)
        .min_interval(Duration::ZERO);
    for (i, message) in LOOK_ALIKES.iter().copied().enumerate() {
        builder = builder.check(from_fn(format!("lookalike::{i:02}"), move |ctx| {
            ctx.observe(
                "detail",
                serde_json::json!({"note": message, "tokens_used": 17}),
            );
            Box::pin(async move { Err(CheckError::new(ErrorKind::Assertion, message)) })
        }));
    }
    let addr = serve(builder.build().unwrap()).await;
    let (status, body) = fetch(addr, "json").await;
    assert_eq!(status, 500);
    let report: serde_json::Value = serde_json::from_str(&body).unwrap();
    let checks = report["checks"].as_array().unwrap();
    assert_eq!(checks.len(), LOOK_ALIKES.len());
    for (i, message) in LOOK_ALIKES.iter().enumerate() {
        let check = checks
            .iter()
            .find(|c| c["name"] == format!("lookalike::{i:02}"))
            .unwrap();
        assert_eq!(check["error"]["message"], *message);
        assert_eq!(
            check["observed"]["detail"],
            serde_json::json!({"note": message, "tokens_used": 17})
        );
    }
}

/// What the CLI does with its own output: the built-in rules plus its token.
#[test]
fn a_client_redacts_its_own_token_and_the_built_in_shapes() {
    let redactor = Redactor::new().with_value(TOKEN, None);
    for case in CORPUS {
        let line = format!("{} (sent with {TOKEN})", case.message);
        let redacted = redactor.redact(&line);
        assert!(!redacted.contains(case.secret), "{redacted}");
        assert!(!redacted.contains(TOKEN), "{redacted}");
        assert!(redacted.contains("(sent with [redacted])"), "{redacted}");
    }
    for message in LOOK_ALIKES {
        assert_eq!(redactor.redact(message), *message);
    }
}

//! The machinery of the conformance suite: the fixtures, one server per adapter on a
//! loopback port, the client, and the comparison. The cases live in `conformance.rs`.

use std::fmt::Write as _;
use std::time::Duration;

use actix_web::dev::{Service as _, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::{App, HttpResponse, HttpServer, web};
use http::StatusCode;
use serde_json::Value;
use smoketest::{CheckError, ErrorKind, Outcome, Smoketest, from_fn};

/// Which configured endpoint a case talks to. A new configuration to test (auth, detail
/// levels) is a new variant, its arm in [`smoketest`], and an entry in [`Fixture::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fixture {
    /// Mounted at `/smoketest`, failure status 500, checks that pass, warn, fail and skip.
    Default,
    /// Mounted at `/ops/smoke`, failure status 503.
    Custom,
    /// Mounted at `/quiet`: anonymous callers see the status only, so they may not select
    /// checks by name; a bearer token and an authorizer (`x-internal: yes`) side by side.
    Quiet,
    /// Mounted at `/guarded` with `require_authorization()`: the probe presets stay open, a
    /// deploy group at `/deployz` does not.
    Guarded,
}

impl Fixture {
    /// Every fixture; each is served by every adapter.
    pub const ALL: &'static [Fixture] = &[
        Fixture::Default,
        Fixture::Custom,
        Fixture::Quiet,
        Fixture::Guarded,
    ];
}

/// The bearer token of [`Fixture::Custom`].
pub const CUSTOM_TOKEN: &str = "conformance-token-0123456789";

/// The checks both adapters serve.
pub fn smoketest(fixture: Fixture) -> Smoketest {
    let builder = Smoketest::builder()
        .service("conformance")
        .without_discovery()
        // The suite sends hundreds of requests a second to one instance, which the default
        // rate limit (the engine) would rightly answer from the latest report or with 503.
        .min_interval(Duration::ZERO);
    match fixture {
        Fixture::Default => builder
            .check(from_fn("fast::ok", |_| Box::pin(async { Ok(Outcome::Pass) })).tag("fast"))
            .check(
                from_fn("fast::warn", |_| {
                    Box::pin(async { Ok(Outcome::Warn("replica lag 3s".into())) })
                })
                .tag("fast"),
            )
            .check(
                from_fn("db::fail", |_| {
                    Box::pin(async {
                        Err(CheckError::new(
                            ErrorKind::Assertion,
                            "expected 1 row, found 0",
                        ))
                    })
                })
                .tag("db"),
            )
            .check(
                from_fn("db::skip", |_| {
                    Box::pin(async { Ok(Outcome::Skip("no replica configured".into())) })
                })
                .tag("db"),
            )
            .check(from_fn("odd:näme", |_| Box::pin(async { Ok(Outcome::Pass) })).tag("odd"))
            .build(),
        Fixture::Custom => builder
            .path("/ops/smoke")
            .failure_status(StatusCode::SERVICE_UNAVAILABLE)
            .bearer_token(CUSTOM_TOKEN)
            .check(from_fn("ok", |_| Box::pin(async { Ok(Outcome::Pass) })))
            .check(from_fn("broken", |_| {
                Box::pin(async { Err(CheckError::new(ErrorKind::Error, "boom")) })
            }))
            // Groups on their own paths, outside the mount path: /livez passes (no
            // members), /readyz fails (it depends on `broken`).
            .group(smoketest::Group::live())
            .group(smoketest::Group::ready().check("ok").check("broken"))
            .build(),
        Fixture::Quiet => builder
            .path("/quiet")
            .bearer_token(CUSTOM_TOKEN)
            .authorizer(|parts: &http::request::Parts| {
                match parts.headers.get("x-internal").map(|v| v.as_bytes()) {
                    Some(b"yes") => smoketest::Verdict::Authorized,
                    _ => smoketest::Verdict::Anonymous,
                }
            })
            .anonymous_detail(smoketest::Detail::Status)
            .check(from_fn("ok", |_| Box::pin(async { Ok(Outcome::Pass) })).tag("fast"))
            .check(from_fn("broken", |_| {
                Box::pin(async { Err(CheckError::new(ErrorKind::Error, "boom")) })
            }))
            .build(),
        Fixture::Guarded => builder
            .path("/guarded")
            .bearer_token(CUSTOM_TOKEN)
            .require_authorization()
            .check(from_fn("ok", |_| Box::pin(async { Ok(Outcome::Pass) })))
            .group(smoketest::Group::live())
            .group(smoketest::Group::ready().check("ok"))
            .group(smoketest::Group::deploy().path("/deployz"))
            .build(),
    }
    .expect("fixture check names are unique")
}

/// One request and what its answer must be, on every adapter alike.
#[derive(Debug, Clone)]
pub struct Case {
    fixture: Fixture,
    method: &'static str,
    target: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    status: u16,
    expects: Vec<Expect>,
    endpoint: bool,
    /// `Some(version)`: sent over a plain socket with exactly the given headers (no
    /// client defaults such as `Accept: */*`), as `HTTP/1.0` or `HTTP/1.1`.
    raw: Option<&'static str>,
}

#[derive(Debug, Clone)]
enum Expect {
    Header(&'static str, &'static str),
    Json(&'static str, Value),
    JsonAbsent(&'static str),
    BodyStarts(&'static str),
    BodyIs(&'static str),
}

/// `GET target`, expecting `status`.
pub fn get(target: &'static str, status: u16) -> Case {
    request("GET", target, status)
}

/// `method target`, expecting `status`.
pub fn request(method: &'static str, target: &'static str, status: u16) -> Case {
    Case {
        fixture: Fixture::Default,
        method,
        target,
        headers: Vec::new(),
        status,
        expects: Vec::new(),
        endpoint: false,
        raw: None,
    }
}

impl Case {
    /// Ask the endpoint configured as `fixture` (default: [`Fixture::Default`]).
    pub fn on(mut self, fixture: Fixture) -> Self {
        self.fixture = fixture;
        self
    }

    /// Ask the [`Fixture::Custom`] endpoint.
    pub fn custom(self) -> Self {
        self.on(Fixture::Custom)
    }

    /// Send this request header.
    pub fn with(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The answer carries this header value (and `Cache-Control: no-store`, asserted by
    /// [`Case::endpoint`]).
    pub fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.expects.push(Expect::Header(name, value));
        self
    }

    /// An answer of the endpoint: `Cache-Control: no-store`; for a GET, HEAD must answer
    /// alike without a body.
    pub fn endpoint(mut self) -> Self {
        self.endpoint = true;
        self.header("cache-control", "no-store")
    }

    /// An endpoint answer in JSON.
    pub fn json(self) -> Self {
        self.endpoint().header("content-type", "application/json")
    }

    /// An endpoint answer in plain text.
    pub fn text(self) -> Self {
        self.endpoint()
            .header("content-type", "text/plain; charset=utf-8")
    }

    /// The JSON body has `value` at the JSON pointer `pointer`.
    pub fn at(mut self, pointer: &'static str, value: impl Into<Value>) -> Self {
        self.expects.push(Expect::Json(pointer, value.into()));
        self
    }

    /// The JSON body has nothing at the JSON pointer `pointer`.
    pub fn absent(mut self, pointer: &'static str) -> Self {
        self.expects.push(Expect::JsonAbsent(pointer));
        self
    }

    /// The body starts with `prefix`.
    pub fn starts(mut self, prefix: &'static str) -> Self {
        self.expects.push(Expect::BodyStarts(prefix));
        self
    }

    /// The body is exactly `body`, once timings are normalised (`3.1ms` reads `#ms`,
    /// `"duration_ms": 3.1` reads `"duration_ms": #`).
    pub fn body(mut self, body: &'static str) -> Self {
        self.expects.push(Expect::BodyIs(body));
        self
    }

    /// The same request as HEAD: same status and headers, empty body.
    fn head_twin(&self) -> Case {
        let mut head = self.clone();
        head.method = "HEAD";
        head.expects.retain(|e| matches!(e, Expect::Header(..)));
        head.expects.push(Expect::BodyIs(""));
        head
    }

    /// Send over a plain socket with only `Host` and the headers given (reqwest adds
    /// `Accept: */*`).
    pub fn raw(mut self) -> Self {
        self.raw = Some("HTTP/1.1");
        self
    }

    /// Send as HTTP/1.0 over a plain socket.
    pub fn http10(mut self) -> Self {
        self.raw = Some("HTTP/1.0");
        self
    }

    fn label(&self) -> String {
        let mut s = format!("{} {}", self.method, self.target);
        if let Some(version) = self.raw {
            let _ = write!(s, " {version} (raw)");
        }
        for (k, v) in &self.headers {
            let _ = write!(s, " [{k}: {v}]");
        }
        if self.fixture != Fixture::Default {
            let _ = write!(s, " ({:?} fixture)", self.fixture);
        }
        s
    }
}

/// An adapter serving a fixture on a loopback port.
#[derive(Debug, Clone)]
pub struct Server {
    /// Which adapter and mounting style.
    pub name: &'static str,
    /// `http://127.0.0.1:port`.
    pub base: String,
}

/// How the actix endpoint is mounted.
#[derive(Debug, Clone, Copy)]
pub enum ActixMount {
    /// `App::service(scope(smoke))`: checks on the shared runtime.
    Scope,
    /// `App::configure(configure(smoke))`.
    Configure,
    /// `App::service(scope(smoke).on_worker())`: checks on the actix worker.
    OnWorker,
}

/// A change a deliberately broken adapter makes to every response, to test the suite.
pub type Tamper = fn(&mut ServiceResponse);

/// Every adapter and mounting style serving every fixture.
pub async fn every_adapter_and_fixture() -> Vec<(Fixture, Vec<Server>)> {
    let mut all = Vec::new();
    for &fixture in Fixture::ALL {
        all.push((fixture, every_adapter(fixture).await));
    }
    all
}

/// Every adapter and mounting style, serving `fixture`. The first is the reference the
/// others are compared with.
pub async fn every_adapter(fixture: Fixture) -> Vec<Server> {
    vec![
        Server {
            name: "axum router",
            base: serve_axum(fixture, false).await,
        },
        Server {
            name: "axum layer",
            base: serve_axum(fixture, true).await,
        },
        Server {
            name: "actix scope",
            base: serve_actix(fixture, ActixMount::Scope, None),
        },
        Server {
            name: "actix configure",
            base: serve_actix(fixture, ActixMount::Configure, None),
        },
        Server {
            name: "actix on_worker",
            base: serve_actix(fixture, ActixMount::OnWorker, None),
        },
    ]
}

/// The app around the endpoint answers `/other` and has its own 404: pass-through requests
/// must reach them untouched.
const OTHER: &str = "other route";
const APP_NOT_FOUND: &str = "app fallback";
const TEXT: &str = "text/plain; charset=utf-8";

/// Serve `fixture` from axum (the router merged into an app, or the layer around it).
pub async fn serve_axum(fixture: Fixture, layer: bool) -> String {
    use axum::routing::get;
    let smoke = smoketest(fixture);
    let app = axum::Router::new()
        .route(
            "/other",
            get(|| async { ([("content-type", TEXT)], OTHER) }),
        )
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                [("content-type", TEXT)],
                APP_NOT_FOUND,
            )
        });
    let app = if layer {
        app.layer(smoketest::axum::SmoketestLayer::new(smoke))
    } else {
        app.merge(smoketest::axum::router(smoke))
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a loopback port for axum");
    let addr = listener.local_addr().expect("local address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// Serve `fixture` from actix-web with ONE worker, on a thread of its own; `tamper` makes
/// it a deliberately broken adapter.
pub fn serve_actix(fixture: Fixture, mount: ActixMount, tamper: Option<Tamper>) -> String {
    let smoke = smoketest(fixture);
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port for actix");
    let addr = listener.local_addr().expect("local address");
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = match tamper {
                None => HttpServer::new(move || mount_actix(App::new(), smoke.clone(), mount))
                    .workers(1)
                    .listen(listener)
                    .expect("listen")
                    .run(),
                Some(tamper) => HttpServer::new(move || {
                    let app = App::new().wrap_fn(move |request, service| {
                        let answer = service.call(request);
                        async move {
                            let mut response = answer.await?;
                            tamper(&mut response);
                            Ok(response)
                        }
                    });
                    mount_actix(app, smoke.clone(), mount)
                })
                .workers(1)
                .listen(listener)
                .expect("listen")
                .run(),
            };
            server.await.expect("the actix server runs");
        })
    });
    format!("http://{addr}")
}

fn mount_actix<T>(app: App<T>, smoke: Smoketest, mount: ActixMount) -> App<T>
where
    T: ServiceFactory<ServiceRequest, Config = (), Error = actix_web::Error, InitError = ()>,
{
    let app = app
        .route(
            "/other",
            web::get().to(|| async { HttpResponse::Ok().content_type(TEXT).body(OTHER) }),
        )
        .default_service(web::to(|| async {
            HttpResponse::NotFound()
                .content_type(TEXT)
                .body(APP_NOT_FOUND)
        }));
    match mount {
        ActixMount::Scope => app.service(smoketest::actix::scope(smoke)),
        ActixMount::Configure => app.configure(smoketest::actix::configure(smoke)),
        ActixMount::OnWorker => app.service(smoketest::actix::scope(smoke).on_worker()),
    }
}

/// What a server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Status code.
    pub status: u16,
    /// Headers, lower-case names, sorted; `date` left out.
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The answer with timings replaced, so two runs of the same checks compare equal.
    fn normalized(&self) -> Answer {
        let body = normalize_body(&self.body);
        let timed = body != self.body;
        Answer {
            status: self.status,
            // A report's length varies with its timings' digits; `Server-Timing` has timings.
            headers: self
                .headers
                .iter()
                .filter(|(n, _)| !(timed && n == "content-length"))
                .map(|(n, v)| (n.clone(), normalize_text(v)))
                .collect(),
            body,
        }
    }
}

/// One request, sent as is.
pub async fn send(client: &reqwest::Client, base: &str, case: &Case) -> Answer {
    if let Some(version) = case.raw {
        return send_raw(base, case, version).await;
    }
    let method = reqwest::Method::from_bytes(case.method.as_bytes()).expect("method");
    let mut request = client.request(method, format!("{base}{}", case.target));
    for (k, v) in &case.headers {
        request = request.header(*k, *v);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| panic!("{} {base}: {e}", case.label()));
    let status = response.status().as_u16();
    let mut headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .filter(|(n, _)| *n != "date")
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    headers.sort();
    let body = response.bytes().await.expect("read the body").to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

/// One request written byte for byte on a fresh connection, `Connection: close`.
async fn send_raw(base: &str, case: &Case, version: &str) -> Answer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.strip_prefix("http://").expect("an http:// base");
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("{} {base}: {e}", case.label()));
    let mut request = format!(
        "{} {} {version}\r\nHost: {addr}\r\n",
        case.method, case.target
    );
    for (k, v) in &case.headers {
        let _ = write!(request, "{k}: {v}\r\n");
    }
    request.push_str("Connection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write the request");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .expect("the server closed the connection in time")
        .expect("read the response");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of head in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {head:?}"));
    let mut headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .filter(|(n, _)| n != "date")
        .collect();
    headers.sort();
    Answer {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

/// Where the formats put a timing: the text right before its value. A format that writes
/// timings somewhere new adds its marker here (or a rule to [`normalize_text`]).
const TIMING_MARKERS: &[&str] = &[
    "\"duration_ms\": ",  // JSON report
    "\"started_at\": ",   // JSON report
    "\"age_ms\": ",       // JSON report, cached answers
    "\"last_success\": ", // group history
    "\"last_failure\": ",
    "\"at\": ",     // history runs
    "last passed ", // HTML: a failing check's last success
    "<title>",      // HTML history strip: each run's time
    " y=\"",        // HTML history strip: bar heights follow durations
    " height=\"",
    "\"observedValue\": ", // health+json
    "\"time\": ",          // health+json
    "time=\"",             // JUnit
    "timestamp=\"",        // JUnit
    "dur=",                // Server-Timing
];

/// A body with its timings replaced by `#`, so two runs of the same checks compare equal.
pub fn normalize_body(body: &[u8]) -> Vec<u8> {
    match std::str::from_utf8(body) {
        Ok(text) => normalize_text(text).into_bytes(),
        Err(_) => body.to_vec(),
    }
}

/// Replace timings: values after a [`TIMING_MARKERS`] entry, numbers followed by `ms`
/// (`3.1ms`, `3.1 ms`), and the values of Prometheus samples named for durations or times.
/// Counts and every other number stay, so the comparison still sees them.
pub fn normalize_text(text: &str) -> String {
    let lines: Vec<String> = text
        .split('\n')
        .map(|line| {
            let mut line = hide_time_since(line, "last failure ");
            for marker in TIMING_MARKERS {
                line = replace_values_after(&line, marker);
            }
            let words: Vec<&str> = line.split(' ').collect();
            let mut out: Vec<String> = Vec::with_capacity(words.len());
            for (i, word) in words.iter().enumerate() {
                let next_is_ms = words.get(i + 1).is_some_and(|n| n.starts_with("ms"));
                let replaced = match word.strip_suffix("ms") {
                    Some(before) => hide_trailing_number(before).map(|w| w + "ms"),
                    None if next_is_ms => hide_trailing_number(word),
                    None => None,
                };
                out.push(replaced.unwrap_or_else(|| word.to_string()));
            }
            let line = out.join(" ");
            let metric = line.split(['{', ' ']).next().unwrap_or("");
            let timed_metric = !line.starts_with('#')
                && ["duration", "seconds", "timestamp"]
                    .iter()
                    .any(|t| metric.contains(t));
            match line.rsplit_once(' ') {
                Some((name, value)) if timed_metric && number_like(value) => format!("{name} #"),
                _ => line,
            }
        })
        .collect();
    lines.join("\n")
}

/// The HTML history strip's `last failure 3s ago (2026-…Z)`: from `marker` to the closing
/// parenthesis, replaced by `#`.
fn hide_time_since(line: &str, marker: &str) -> String {
    match line.find(marker) {
        Some(at) => {
            let start = at + marker.len();
            let end = line[start..]
                .find(')')
                .map_or(line.len(), |i| start + i + 1);
            format!("{}#{}", &line[..start], &line[end..])
        }
        None => line.to_string(),
    }
}

fn number_like(s: &str) -> bool {
    s.parse::<f64>().is_ok()
}

/// `word` with the number it ends in replaced by `#` (`<span>3.25` → `<span>#`), if it ends
/// in one.
fn hide_trailing_number(word: &str) -> Option<String> {
    let start = word
        .rfind(|c: char| !(c.is_ascii_digit() || c == '.'))
        .map_or(0, |i| i + 1);
    let number = &word[start..];
    number_like(number).then(|| format!("{}#", &word[..start]))
}

/// Every value that follows `marker` in `line`, replaced by `#`: a quoted string whole, or
/// text up to the next delimiter.
fn replace_values_after(line: &str, marker: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find(marker) {
        let value_start = at + marker.len();
        out.push_str(&rest[..value_start]);
        let value = &rest[value_start..];
        let end = if let Some(quoted) = value.strip_prefix('"') {
            quoted.find('"').map(|q| q + 2).unwrap_or(value.len())
        } else {
            value
                .find(|c: char| matches!(c, ',' | '}' | '"' | ';' | '<') || c.is_whitespace())
                .unwrap_or(value.len())
        };
        out.push('#');
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}

/// Why the suite failed one case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// An adapter answered against the case's expectation.
    Expectation(String),
    /// Two adapters answered differently.
    Divergence(String),
}

/// Run every case against every server of its fixture; return what went wrong. Every GET
/// to the endpoint is also sent as HEAD, which must answer the same status and headers
/// with no body.
pub async fn run(cases: &[Case], adapters: &[(Fixture, Vec<Server>)]) -> Vec<Failure> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("reqwest client");
    let mut failures = Vec::new();
    for case in cases {
        let Some((_, servers)) = adapters.iter().find(|(f, _)| *f == case.fixture) else {
            panic!(
                "{}: no server serves the {:?} fixture",
                case.label(),
                case.fixture
            );
        };
        let gets = run_case(&client, case, servers, &mut failures).await;
        if case.method != "GET" || !case.endpoint {
            continue;
        }
        let head = case.head_twin();
        let heads = run_case(&client, &head, servers, &mut failures).await;
        for ((server, get), head_answer) in servers.iter().zip(&gets).zip(&heads) {
            // Timings (`Server-Timing`) differ between two runs: compare them normalised.
            let without_length = |a: &Answer| {
                a.headers
                    .iter()
                    .filter(|(n, _)| n != "content-length")
                    .map(|(n, v)| (n.clone(), normalize_text(v)))
                    .collect::<Vec<_>>()
            };
            if head_answer.status != get.status
                || without_length(head_answer) != without_length(get)
            {
                failures.push(Failure::Expectation(format!(
                    "{} on {}: HEAD answered {} where GET answered {}",
                    head.label(),
                    server.name,
                    show(head_answer),
                    show(get)
                )));
            }
        }
    }
    failures
}

/// Send `case` to every server; record unmet expectations and answers that differ from the
/// first server's. Returns the answers in server order.
async fn run_case(
    client: &reqwest::Client,
    case: &Case,
    servers: &[Server],
    failures: &mut Vec<Failure>,
) -> Vec<Answer> {
    let mut answers = Vec::new();
    for server in servers {
        let answer = send(client, &server.base, case).await;
        for problem in unmet(case, &answer) {
            failures.push(Failure::Expectation(format!(
                "{} on {}: {problem}",
                case.label(),
                server.name
            )));
        }
        answers.push(answer);
    }
    let first = answers[0].normalized();
    for (server, answer) in servers.iter().zip(&answers).skip(1) {
        let answer = answer.normalized();
        if answer != first {
            failures.push(Failure::Divergence(format!(
                "{}: {} and {} differ\n  {}: {}\n  {}: {}",
                case.label(),
                servers[0].name,
                server.name,
                servers[0].name,
                show(&first),
                server.name,
                show(&answer),
            )));
        }
    }
    answers
}

fn show(answer: &Answer) -> String {
    format!(
        "{} {:?} {:?}",
        answer.status,
        answer.headers,
        String::from_utf8_lossy(&answer.body)
    )
}

fn unmet(case: &Case, answer: &Answer) -> Vec<String> {
    let mut problems = Vec::new();
    if answer.status != case.status {
        problems.push(format!(
            "status {} instead of {}",
            answer.status, case.status
        ));
    }
    let body = String::from_utf8_lossy(&answer.body);
    for expect in &case.expects {
        match expect {
            Expect::Header(name, value) => {
                if answer.header(name) != Some(value) {
                    problems.push(format!(
                        "header {name}: {:?} instead of {value:?}",
                        answer.header(name)
                    ));
                }
            }
            Expect::Json(pointer, expected) => {
                let found = json(&answer.body, pointer);
                if found.as_ref() != Ok(&Some(expected.clone())) {
                    problems.push(format!("{pointer} is {found:?} instead of {expected}"));
                }
            }
            Expect::JsonAbsent(pointer) => {
                let found = json(&answer.body, pointer);
                if found != Ok(None) {
                    problems.push(format!("{pointer} is {found:?}; it should be absent"));
                }
            }
            Expect::BodyStarts(prefix) => {
                if !body.starts_with(prefix) {
                    problems.push(format!("body does not start with {prefix:?}: {body:?}"));
                }
            }
            Expect::BodyIs(expected) => {
                let normalized =
                    String::from_utf8_lossy(&normalize_body(&answer.body)).into_owned();
                if normalized != *expected {
                    problems.push(format!("body {normalized:?} instead of {expected:?}"));
                }
            }
        }
    }
    problems
}

/// The value at `pointer` in a JSON body.
fn json(body: &[u8], pointer: &str) -> Result<Option<Value>, String> {
    let json: Value = serde_json::from_slice(body).map_err(|e| {
        format!(
            "the body is not JSON ({e}): {:?}",
            String::from_utf8_lossy(body)
        )
    })?;
    Ok(json.pointer(pointer).cloned())
}

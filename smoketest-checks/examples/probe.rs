//! Probe URLs layer by layer and print what each layer took, or which failed and why.
//!
//! ```text
//! cargo run -p smoketest-checks --features http --example probe -- https://example.internal/health [more URLs]
//! ```
//!
//! Exits 1 when any probe failed. `PROBE_TIMEOUT_MS` bounds each probe (default 10000).

use std::time::Duration;

use smoketest_checks::http::{ProbeOptions, probe};

fn ms(d: Option<Duration>) -> String {
    d.map(|d| format!("{:.2}ms", d.as_secs_f64() * 1000.0))
        .unwrap_or_else(|| "-".into())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let urls: Vec<String> = std::env::args().skip(1).collect();
    if urls.is_empty() {
        eprintln!("usage: probe URL [URL…]");
        std::process::exit(2);
    }
    let timeout = std::env::var("PROBE_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_millis)
        .unwrap_or(Duration::from_secs(10));
    let options = ProbeOptions::new().timeout(timeout);
    let mut failed = false;
    for url in &urls {
        let result = probe(url, &options).await;
        let p = &result.phases;
        println!(
            "{}  dns {}  connect {}  tls {}  first_byte {}  total {}",
            result.url,
            ms(p.dns),
            ms(p.connect),
            ms(p.tls),
            ms(p.first_byte),
            ms(Some(p.total))
        );
        match &result.diagnosis {
            None => println!("  ok: status {}", result.status.unwrap_or_default()),
            Some(d) => {
                failed = true;
                println!("  {} failed ({}): {}", d.layer, d.kind, d.message);
                println!("  try: {}", d.suggestion);
            }
        }
    }
    std::process::exit(i32::from(failed));
}

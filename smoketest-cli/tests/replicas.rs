//! `--all-replicas`: several servers behind one name (127.0.0.2, .3, .4 — all loopback on
//! Linux), the name mapped to them with the test-only `SMOKETEST_TEST_RESOLVE`; each is
//! asked directly, with the URL's Host header and TLS name.

mod support;

use std::net::SocketAddr;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use support::*;

type Script = Box<dyn Fn(usize) -> Action + Send + Sync>;

/// One server per script, on 127.0.0.2, 127.0.0.3, … all on the same port.
fn replicas(scripts: Vec<Script>, tls: Option<(Vec<u8>, Vec<u8>)>) -> (u16, Vec<Server>) {
    'attempt: for _ in 0..50 {
        let port = free_on(2);
        let addrs: Vec<SocketAddr> = (0..scripts.len())
            .map(|i| SocketAddr::from(([127, 0, 0, 2 + i as u8], port)))
            .collect();
        for addr in &addrs {
            if std::net::TcpListener::bind(addr).is_err() {
                continue 'attempt;
            }
        }
        let servers = scripts
            .into_iter()
            .zip(addrs)
            .map(|(script, addr)| match &tls {
                None => Server::start_at(addr, script),
                Some((cert, key)) => {
                    Server::start_tls_at(addr, vec![cert.clone()], key.clone(), script)
                }
            })
            .collect();
        return (port, servers);
    }
    panic!("no port free on every loopback address");
}

/// A port nothing listens on at 127.0.0.`last`.
fn free_on(last: u8) -> u16 {
    std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, last], 0)))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn resolve(addresses: &str) -> (&'static str, String) {
    ("SMOKETEST_TEST_RESOLVE", format!("orders.test={addresses}"))
}

fn smoke(service: smoketest_core::Smoketest) -> Script {
    Box::new(move |_| Action::Smoke(service.clone()))
}

#[test]
fn one_failing_replica_fails_the_gate_and_every_replica_is_listed() {
    let (port, servers) = replicas(
        vec![
            smoke(healthy("r1")),
            smoke(failing("r1")),
            smoke(healthy("r1")),
        ],
        None,
    );
    let url = format!("http://orders.test:{port}/smoketest");
    let (name, value) = resolve("127.0.0.2,127.0.0.3,127.0.0.4");
    let env = [(name, value.as_str())];

    // Through the name alone (a load balancer), one request reaches one replica.
    let out = smoketest_with_env(&["check", &url], &env);
    let asked: usize = servers.iter().map(Server::requests).sum();
    assert_eq!(asked, 1, "{}", stdout(&out));

    let out = smoketest_with_env(&["check", &url, "--all-replicas"], &env);
    assert_eq!(code(&out), 1, "{}{}", stdout(&out), stderr(&out));
    let text = stdout(&out);
    for (last, label) in [(2, "PASS"), (3, "FAIL"), (4, "PASS")] {
        let line = format!("{label}   {url} [127.0.0.{last}:{port}]");
        assert!(text.contains(&line), "`{line}` in:\n{text}");
    }
    assert!(text.contains("[-]orders::db_write"), "{text}");
    for server in &servers {
        let seen = server.seen();
        let last = seen.last().unwrap();
        assert_eq!(
            last.headers["host"],
            format!("orders.test:{port}"),
            "the Host header is the URL's"
        );
    }

    let out = smoketest_with_env(&["check", &url, "--all-replicas", "--format", "json"], &env);
    assert_eq!(code(&out), 1);
    let json = json(&out);
    let endpoints = json["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 3, "{json}");
    let outcomes: Vec<(&str, &str)> = endpoints
        .iter()
        .map(|e| {
            (
                e["replica"].as_str().unwrap(),
                e["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    let (a, b, c) = (
        format!("127.0.0.2:{port}"),
        format!("127.0.0.3:{port}"),
        format!("127.0.0.4:{port}"),
    );
    assert_eq!(
        outcomes,
        [
            (a.as_str(), "pass"),
            (b.as_str(), "fail"),
            (c.as_str(), "pass")
        ]
    );

    let out = smoketest_with_env(
        &["check", &url, "--all-replicas", "--format", "junit"],
        &env,
    );
    let junit = quick_junit::Report::deserialize_from_str(&stdout(&out)).unwrap();
    assert_eq!(junit.test_suites.len(), 3);
    assert_eq!(junit.failures, 1);
    assert!(
        junit.test_suites[1].name.as_str().contains(&b),
        "{}",
        junit.test_suites[1].name.as_str()
    );
}

#[test]
fn all_healthy_replicas_pass_and_an_unreachable_one_is_named() {
    let (port, _servers) = replicas(vec![smoke(healthy("r1")), smoke(healthy("r1"))], None);
    let url = format!("http://orders.test:{port}/smoketest");
    let (name, value) = resolve("127.0.0.2,127.0.0.3");
    let out = smoketest_with_env(&["check", &url, "--all-replicas"], &[(name, &value)]);
    assert_eq!(code(&out), 0, "{}", stdout(&out));
    assert_eq!(
        stdout(&out).matches("PASS   ").count(),
        2,
        "{}",
        stdout(&out)
    );

    // A third address where nothing listens (a pod that died).
    let (name, value) = resolve("127.0.0.2,127.0.0.3,127.0.0.9");
    let mut args = vec![
        "check",
        url.as_str(),
        "--all-replicas",
        "--timeout",
        "500ms",
        "--format",
        "json",
    ];
    args.extend_from_slice(FAST);
    let out = smoketest_with_env(&args, &[(name, &value)]);
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    let json = json(&out);
    let gone = &json["endpoints"][2];
    assert_eq!(gone["replica"], format!("127.0.0.9:{port}"), "{json}");
    assert_eq!(gone["error"]["kind"], "tcp_refused", "{gone}");
    assert_eq!(gone["error"]["layer"], "tcp", "{gone}");
    assert_eq!(json["endpoints"][0]["outcome"], "pass");
}

#[test]
fn https_replicas_keep_the_urls_tls_name() {
    // The certificate names only `orders.test`: reaching a replica by its address with
    // that address as TLS name would fail verification.
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().unwrap();
    let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca_params, ca_key);
    let params = CertificateParams::new(vec!["orders.test".to_string()]).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let ca_file =
        std::env::temp_dir().join(format!("smoketest-cli-replicas-{}.pem", std::process::id()));
    std::fs::write(&ca_file, ca_pem).unwrap();

    let (port, servers) = replicas(
        vec![smoke(healthy("r2")), smoke(healthy("r1"))],
        Some((cert.der().to_vec(), key.serialize_der())),
    );
    let url = format!("https://orders.test:{port}/smoketest");
    let (name, value) = resolve("127.0.0.2,127.0.0.3");
    let out = smoketest_with_env(
        &[
            "check",
            &url,
            "--all-replicas",
            "--ca-cert",
            ca_file.to_str().unwrap(),
            "--require-release",
            "r2",
            "--format",
            "json",
        ],
        &[(name, &value)],
    );
    // The handshakes succeed on both; the old replica (r1) fails the gate.
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    let json = json(&out);
    assert_eq!(json["endpoints"][0]["outcome"], "pass", "{json}");
    assert_eq!(json["endpoints"][1]["release_matches"], false, "{json}");
    assert!(servers.iter().all(|s| s.requests() == 1));
    let _ = std::fs::remove_file(ca_file);
}

#[test]
fn a_name_that_does_not_resolve_is_a_dns_failure() {
    let mut args = vec![
        "check",
        "http://no-such-service.invalid/smoketest",
        "--all-replicas",
        "--format",
        "json",
    ];
    args.extend_from_slice(FAST);
    let out = smoketest(&args);
    assert_eq!(code(&out), 2, "{}", stdout(&out));
    let error = &json(&out)["endpoints"][0]["error"];
    assert_eq!(error["kind"], "dns_failure", "{error}");
    assert_eq!(error["layer"], "dns", "{error}");
}

#[test]
fn the_test_resolver_refuses_addresses_that_are_not_loopback() {
    let out = smoketest_with_env(
        &["check", "http://orders.test/smoketest", "--all-replicas"],
        &[("SMOKETEST_TEST_RESOLVE", "orders.test=192.0.2.1")],
    );
    assert_eq!(code(&out), 64, "{}", stderr(&out));
    assert!(stderr(&out).contains("tests only"), "{}", stderr(&out));
}

//! The built-in checks of other systems are tagged `external`, so a liveness group refuses
//! them at build time: a database or upstream outage must not restart every pod.
#![cfg(feature = "dns")]

use smoketest_checks::tcp::TcpCheck;
use smoketest_core::{BuildError, Group, SmokeCheck, Smoketest};

#[test]
fn network_checks_carry_the_external_tag_even_after_their_tags_are_replaced() {
    let plain = TcpCheck::new("db.internal:5432");
    assert_eq!(SmokeCheck::tags(&plain), ["tcp", "external"]);
    let retagged = TcpCheck::new("db.internal:5432").tags(["payments"]);
    assert_eq!(SmokeCheck::tags(&retagged), ["payments", "external"]);
}

#[test]
fn a_liveness_group_refuses_a_network_check_unless_told_otherwise() {
    let build = |live: Group| {
        Smoketest::builder()
            .without_discovery()
            .check(
                TcpCheck::new("db.internal:5432")
                    .name("db::port")
                    .tags(["core"]),
            )
            .group(live)
            .build()
    };
    let err = build(Group::live().tag("core")).unwrap_err();
    assert!(
        matches!(&err, BuildError::UnsafeProbe { group, check, tag }
            if group == "live" && check == "db::port" && tag == "external"),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("move it to Group::ready()"),
        "{err}"
    );

    build(Group::live().tag("core").allow_external_dependencies()).expect("allowed explicitly");
    build(Group::ready().tag("core")).expect("readiness may depend on the network");
    let err = build(
        Group::new("heartbeat")
            .path("/heartbeat")
            .tag("core")
            .liveness(),
    )
    .unwrap_err();
    assert!(matches!(err, BuildError::UnsafeProbe { .. }), "{err:?}");
}

//! The load generator, tiny, for its correctness checks only (never as a timed test): every
//! scenario against a real system must end with all its checks passing.
#![allow(clippy::unwrap_used)]

use e2e::System;

/// Runs promo-bench against `system`; asserts it exits 0 with every check PASS; its output.
async fn bench(system: &System, args: &[&str]) -> String {
    let output = tokio::process::Command::new(System::binary("promo-bench"))
        .args([
            "--command",
            &system.command,
            "--query",
            &system.query,
            "--database-url",
            &system.database_url(),
            "--auth-secret",
            e2e::SECRET,
        ])
        .args(args)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("PASS") && !stdout.contains("FAIL"),
        "{stdout}"
    );
    stdout.into_owned()
}

#[tokio::test]
async fn every_scenario_of_the_load_generator_passes_its_checks_at_small_scale() {
    let system = System::start().await;
    bench(
        &system,
        &[
            "--concurrency",
            "20",
            "flash-sale",
            "--stock",
            "150",
            "--requests",
            "200",
        ],
    )
    .await;
    bench(
        &system,
        &[
            "--concurrency",
            "20",
            "coupon-race",
            "--total",
            "80",
            "--requests",
            "120",
        ],
    )
    .await;
    bench(
        &system,
        &[
            "--concurrency",
            "20",
            "points",
            "--users",
            "15",
            "--requests",
            "200",
        ],
    )
    .await;
    bench(
        &system,
        &["--concurrency", "8", "reads", "--requests", "200"],
    )
    .await;
    // Open loop: oversold or lost orders would fail the same checks; the timeline is printed.
    let open = bench(
        &system,
        &[
            "--concurrency",
            "20",
            "--rate",
            "400",
            "--timeline",
            "flash-sale",
            "--stock",
            "100",
            "--requests",
            "150",
        ],
    )
    .await;
    assert!(open.contains("second   0:"), "{open}");
    assert!(open.contains("{201: 100, 422: 50}"), "{open}");
    system.stop().await;
}

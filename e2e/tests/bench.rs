//! The load generator, tiny, for its correctness checks only (never as a timed test): every
//! scenario against a real system must end with all its checks passing.
#![allow(clippy::unwrap_used)]

use e2e::System;

async fn bench(system: &System, args: &[&str]) {
    let output = tokio::process::Command::new(System::binary("promo-bench"))
        .args([
            "--command",
            &system.command,
            "--query",
            &system.query,
            "--database-url",
            &system.database_url(),
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
    system.stop().await;
}

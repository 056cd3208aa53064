//! End to end behind a real HAProxy under a steady load (`retries 0`: no failure can hide): the
//! platform announces that one of two instances goes away and its kiln leaves by itself. No
//! request fails, the queue workers finish the job in hand, the instance is out of the backend,
//! its services stop, and the platform is answered. Speed is not asserted here; the figures come
//! from `bench/lifecycle.sh`.

use std::time::Duration;
use testkit::emulator::metadata::Cloud;
use testkit::lifecycle_drill::{LifecycleDrillOptions, drill};

const KILN: &str = env!("CARGO_BIN_EXE_kiln");

fn leaves_without_failing_a_request(cloud: Cloud) {
    let mut opts = LifecycleDrillOptions::new(KILN, cloud);
    opts.poll_interval = Duration::from_secs(1);
    let report = drill(&opts);
    println!("{report}");
    assert_eq!(report.failed, 0, "{report}");
    assert!(report.jobs_started > 0, "no job was in hand: {report}");
    assert_eq!(report.jobs_started, report.jobs_finished, "{report}");
    assert!(report.workers_clean, "{report}");
    assert!(report.server_gone && report.survivor_up, "{report}");
    assert_eq!(report.to_leaving_after_out, 0, "{report}");
    assert!(
        report.served_by_leaving > 0 && report.served_by_survivor > 0,
        "{report}"
    );
    assert!(report.waiting_for_power_off, "{report}");
    assert!(
        report.kiln_out.is_some() && report.kiln_stopped.is_some(),
        "{report}"
    );
    assert!(report.passed(), "{report}");
}

#[test]
fn a_spot_interruption_leaves_without_failing_a_request() {
    leaves_without_failing_a_request(Cloud::Ec2);
}

#[test]
fn an_azure_preempt_leaves_without_failing_a_request_and_is_acknowledged_after_the_drain() {
    leaves_without_failing_a_request(Cloud::Azure);
}

#[test]
fn a_gce_preemption_leaves_without_failing_a_request() {
    leaves_without_failing_a_request(Cloud::Gce);
}

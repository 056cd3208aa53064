//! The fleet drill with a small setting (two instances, light load): rolls forward and back,
//! a tampered instance, a hard kill and a scale-out under load through a real HAProxy with
//! `retries 0`, with `kiln fleet` checked at every step. `bench/fleet.sh` runs it larger and
//! prints the figures. Needs root.

use testkit::fleet_drill::{FleetDrillOptions, fleet_drill};

#[test]
fn a_fleet_rolls_forward_and_back_loses_a_tampered_and_a_killed_instance_and_scales_out() {
    let opts = FleetDrillOptions::new(env!("CARGO_BIN_EXE_kiln"));
    let report = fleet_drill(&opts);
    eprintln!("{report}");
    assert_eq!(report.unmet(), Vec::<String>::new(), "{report}");
    // Every step happened, with traffic flowing through it.
    assert_eq!(report.roll_forward.replacements.len(), opts.instances);
    assert_eq!(report.roll_back.replacements.len(), opts.instances);
    for (step, sent) in [
        ("roll forward", report.roll_forward.window.sent),
        ("roll back", report.roll_back.window.sent),
        ("tamper", report.tamper.window.sent),
        ("hard kill, retries 0", report.hard_kill.no_retries.sent),
        ("hard kill, redispatch", report.hard_kill.redispatch.sent),
        ("scale out", report.scale_out.sent),
    ] {
        assert!(sent > 0, "{step}: no request sent\n{report}");
    }
    assert_eq!(report.joins.len(), opts.scale_out);
    // start, one per replacement and the end of each roll, tamper, kill, scale out.
    assert_eq!(report.looks.len(), 1 + 2 * (opts.instances + 1) + 3, "{report}");
}

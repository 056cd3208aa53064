//! kiln's integration tests, one crate (as ripgrep keeps them): linked once instead of once per
//! file. Each file is a module named for what it tests; `*_support` are helpers shared by a few.
//! Filter with nextest: `tests/run -E 'test(/^seal_watch::/)'`.

mod hostile_support;
mod lifecycle_support;
mod metrics_support;
mod seal_support;

mod architecture;
mod azure_checkin;
mod boot;
mod cgroup;
mod config_drive;
mod config_errors;
mod crash;
mod docs;
mod env_file;
mod env_user_data;
mod example_config;
mod example_symfony;
mod faults;
mod fleet;
mod fleet_cli;
mod fleet_drill;
mod fleet_elbv2;
mod fleet_hostile;
mod fleet_lb;
mod fuzz_corpus;
mod hostile_health;
mod hostile_logging;
mod hostile_metadata;
mod hostile_output;
mod lb_boot;
mod lb_consul;
mod lb_elbv2;
mod lb_haproxy;
mod lifecycle_config;
mod lifecycle_drill;
mod lifecycle_emulators;
mod lifecycle_hooks;
mod lifecycle_notices;
mod metadata_auto;
mod metadata_boot;
mod metadata_cloud_init;
mod metadata_ec2;
mod metadata_emulator;
mod metadata_netns;
mod metadata_providers;
mod metadata_round_trips;
mod metrics;
mod packaging_units;
mod phpfpm_pool;
mod pid1;
mod probes;
mod prometheus;
mod rust_version;
mod seal_boot;
mod seal_pin;
mod seal_readonly;
mod seal_verify;
mod seal_watch;
mod secrets_aws;
mod secrets_clouds;
mod secrets_retries;
mod state_dir;
mod stop;
mod wait;

/// With `autotests = false`, a file in `tests/` that no `mod` line names is never built: its tests
/// would silently not run.
#[test]
fn every_test_file_is_a_module_of_this_crate() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let main = std::fs::read_to_string(dir.join("main.rs")).unwrap();
    let declared: Vec<&str> = main
        .lines()
        .filter_map(|l| l.strip_prefix("mod ")?.strip_suffix(';'))
        .collect();
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let is_module = path.extension().is_some_and(|e| e == "rs") || path.join("mod.rs").exists();
        if is_module && name != "main" && !declared.contains(&name.as_str()) {
            missing.push(name);
        }
    }
    assert!(
        missing.is_empty(),
        "add `mod NAME;` to tests/main.rs for: {missing:?}"
    );
}

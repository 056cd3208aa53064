//! Shared by the lifecycle tests: the example app pointed at a metadata emulator with a
//! `[lifecycle]` section, and waits on what kiln says about its leave.

use serde_json::Value;
use std::time::Duration;
use testkit::control;
use testkit::emulator::metadata::MetadataEmulator;
use testkit::example::Example;
use testkit::wait::wait_until;

pub const KILN: &str = env!("CARGO_BIN_EXE_kiln");

/// How long a test waits for a leave (poll, drain, stop) on a loaded machine.
pub const LEAVE: Duration = Duration::from_secs(60);

/// The example with its `[metadata]` at `emulator` and `lifecycle` (TOML lines) as its
/// `[lifecycle]` section.
pub fn example_on(emulator: &MetadataEmulator, lifecycle: &str) -> Example {
    let ex = Example::render();
    use_emulator(&ex, emulator, lifecycle);
    ex
}

/// Points `ex` at `emulator` and sets its `[lifecycle]`.
pub fn use_emulator(ex: &Example, emulator: &MetadataEmulator, lifecycle: &str) {
    let lifecycle: toml::Table = lifecycle
        .parse()
        .unwrap_or_else(|e| panic!("[lifecycle] of the test is not TOML: {e}"));
    ex.edit_toml(|config| {
        let mut metadata = toml::Table::new();
        metadata.insert("provider".into(), emulator.cloud().name().into());
        metadata.insert("endpoint".into(), emulator.url().into());
        metadata.insert("deadline".into(), "20s".into());
        config.insert("metadata".into(), metadata.into());
        config.insert("lifecycle".into(), lifecycle.into());
    });
}

/// The `lifecycle` part of kiln's status (Null while kiln does not answer).
pub fn lifecycle(ex: &Example) -> Value {
    control::status(&ex.socket())
        .map(|s| s["lifecycle"].clone())
        .unwrap_or(Value::Null)
}

/// Waits until kiln's leave has reached `step`; returns the whole status.
pub fn wait_step(ex: &Example, step: &str, deadline: Duration) -> Value {
    wait_until(&format!("the leave's step {step:?}"), deadline, || {
        let status = control::status(&ex.socket())?;
        let steps = status["lifecycle"]["leave"]["steps"].as_array()?;
        steps.iter().any(|s| s["step"] == step).then_some(status)
    })
}

/// The names of the leave's steps, in order.
pub fn steps(status: &Value) -> Vec<String> {
    status["lifecycle"]["leave"]["steps"]
        .as_array()
        .map(|steps| {
            steps
                .iter()
                .map(|s| s["step"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

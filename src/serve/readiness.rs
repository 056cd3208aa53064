//! The readiness report: what `/readyz?verbose` answers and the control socket's `ready` verb
//! (so `kiln wait --json`) prints, built in one place so that the two never differ.

use crate::state::{Phase, Shared};
use serde_json::{Value, json};

/// The instance's readiness with what `kiln fleet` needs of every instance: which image (seal,
/// release) and which one the launch configuration pins (expected), which instance, how long
/// up, and whether the load balancer has it. `phase` is the one the caller read (and answers
/// with, as `/readyz`'s status code): the report never contradicts it.
pub fn report(shared: &Shared, phase: Phase) -> Value {
    let snapshot = shared.snapshot();
    let units: Vec<_> = snapshot
        .services
        .iter()
        .map(|u| json!({ "unit": u.unit, "state": u.state, "ready": u.ready }))
        .collect();
    let seal = snapshot.seal.as_ref();
    json!({
        "ready": phase == Phase::Ready,
        "phase": phase,
        "reason": snapshot.reason,
        "units": units,
        "seal": seal.and_then(|s| s.root_hash.clone()),
        "release": seal.and_then(|s| s.release.clone()),
        "expected": seal.and_then(|s| s.expected.clone()),
        "instance_id": snapshot.instance.as_ref().and_then(|i| i.instance_id.clone()),
        "uptime_ms": shared.elapsed().as_millis() as u64,
        "lb": snapshot.lb.as_ref().map(|lb| lb.state),
    })
}

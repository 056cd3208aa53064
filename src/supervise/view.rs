//! The units as `kiln status` shows them, described from the machine's state each time it
//! publishes. The machine decides; this only describes, and the executor adds what it keeps
//! itself (each unit's stderr tail, its dropped lines, its cgroup).

use super::machine::{Machine, TaskPlan};
use super::unit::{Ending, LastCheck, RanBy, Unit};
use crate::state::{ProbeReport, TaskStatus, UnitKind, UnitState, UnitStatus};

/// Every unit of the machine, in its order.
pub fn units(machine: &Machine) -> Vec<UnitStatus> {
    machine
        .units()
        .iter()
        .map(|u| {
            let waiting_for = match u.state {
                UnitState::Waiting => machine.not_ready_dependencies(u.service),
                _ => Vec::new(),
            };
            let mut status = unit(u, machine.service_name(u), waiting_for);
            if let Some(plan) = machine.task_plan(u) {
                status.kind = UnitKind::Task;
                status.ready = u.state == UnitState::Done;
                status.task = Some(task(u, plan));
            }
            status
        })
        .collect()
}

/// A task's attempts, outcome and lease.
fn task(u: &Unit, plan: TaskPlan) -> TaskStatus {
    let run = u.task.clone().unwrap_or_default();
    let (ran_here, by) = match run.by {
        Some(RanBy::Here) => (Some(true), None),
        Some(RanBy::Other(by)) => (Some(false), Some(by)),
        None => (None, None),
    };
    let took_us = match (run.began_ms, run.done_ms) {
        (Some(began), Some(done)) => Some(done.saturating_sub(began).saturating_mul(1000)),
        _ => None,
    };
    TaskStatus {
        once: plan.once.as_str().into(),
        attempts: run.attempts,
        attempts_max: plan.attempts,
        ran_here,
        by,
        lease: run.lease,
        took_us,
    }
}

/// One unit; what only the executor knows is left empty.
fn unit(u: &Unit, service: &str, waiting_for: Vec<String>) -> UnitStatus {
    UnitStatus {
        service: service.to_string(),
        unit: u.name.to_string(),
        state: u.state,
        ready: u.state == UnitState::Running && u.ready,
        pid: u.pid.map(|p| p.as_raw() as u32),
        since_ms: u.since_ms,
        restarts: u.restarts,
        failures_in_a_row: u.failures_in_a_row,
        crash_loop: u.crash_loop(),
        next_restart_ms: u.next_restart_ms,
        last_probe: u.last_check.as_ref().map(probe_report),
        last_exit: u.last_exit.as_ref().map(ToString::to_string),
        last_exit_code: u.last_exit.as_ref().and_then(Ending::code),
        stderr_tail: Vec::new(),
        dropped_lines: 0,
        cgroup: None,
        memory_bytes: None,
        cpu_usec: None,
        waiting_for,
        kind: UnitKind::Service,
        task: None,
    }
}

fn probe_report(check: &LastCheck) -> ProbeReport {
    let report = &check.report;
    ProbeReport {
        probe: report.role.as_str().into(),
        kind: report.kind.into(),
        ok: report.ok,
        latency_us: u64::try_from(report.latency.as_micros()).unwrap_or(u64::MAX),
        detail: report.detail.clone(),
        at_ms: check.at_ms,
    }
}

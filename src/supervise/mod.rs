//! Starting, watching and stopping services, in two parts:
//!
//! - `machine`: every decision, as a pure state machine. `Machine::step(event, now)` takes one
//!   fact (a process started or exited, a probe changed its mind, a timer fired, a stop was asked
//!   for) and returns effects (spawn, signal, kill the unit's process tree, start a timer, log an
//!   incident, publish where the instance stands, announce READY=1). Transitions, backoff, crash
//!   loops, readiness, the stop order and the stop timeouts all live there, and are tested as
//!   tables without a process.
//! - `executor`: performs the effects (the reaper, each unit's cgroup, signals, tokio timers,
//!   probe tasks, the shared snapshot, sd_notify) and feeds every fact back as an event, one at a
//!   time. An exit is fed back once the unit's cgroup is empty.
//! - `view`: the units as `kiln status` shows them, described from the machine when it
//!   publishes.
//!
//! Order: a service starts once every service in its `after` is ready; on stop, a service is
//! signalled once every service that waits for it has stopped (reverse dependency order). The
//! stop signal goes to the main process (`stop_signal_to = "group"`: to every process of the
//! unit); the SIGKILL after `stop_timeout`, after a failed liveness or startup probe, after a
//! second stop request, and for whatever is left once the main process exits, goes to the whole
//! unit: its cgroup, or its process group where kiln has no cgroups.
//!
//! One unit (one copy of a service) moves like this:
//!
//! ```text
//!             every `after` service ready
//!   Waiting ───────────────────────────────► Starting ◄──────────────────┐
//!                                               │ startup probe passed   │
//!                                               ▼                        │ restart timer
//!                                            Running                     │ (backoff: doubles
//!                                               │                        │  with each failure
//!        exit of Starting or Running (or kiln   │                        │  in a row, capped)
//!        killed it: startup or liveness failed) ▼                        │
//!                                         restart policy ── restart ──► Backoff
//!                                               │
//!                                               │ done: restart = never,
//!                                               ▼ or on-failure after exit 0
//!                                            Exited
//!
//!   Stop:  Waiting, Backoff ─────────────────────────────────────────► Stopped
//!          Starting, Running ── stop_signal ──► Stopping ── exit ────► Stopped
//!                                               (SIGKILL to the group after stop_timeout,
//!                                                or at once on a second stop request)
//! ```
//!
//! Readiness is a flag of a `Running` unit (its ready probe, or `ready_after` without one); a
//! unit with three failures in a row is crash-looping and not ready until one run lasts 10 s.

mod executor;
mod fleet;
mod machine;
mod unit;
mod view;

pub use executor::{Supervisor, SupervisorHandle, Units};
pub use fleet::{Coordination, Fleet, FleetTask, Lease};
pub use machine::Outcome;

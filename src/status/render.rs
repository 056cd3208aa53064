//! The human view of a snapshot: verdict first, then a table of units, then the boot timeline.
//! Everything a person paged at night needs, nothing they must decode. Text that came from
//! outside kiln (facts, service output, probe and load balancer answers) goes through
//! [`printable`]: it can neither drive the terminal nor forge a line.

use crate::state::{
    CheckInOutcome, CheckInStatus, Containment, ContainmentKind, ExpectedImage, HookState, HookStatus,
    HooksStatus, InstanceStatus, LbState, LbStatus, LeaveStatus, LeaveStep, LeaveStepKind, LifecycleStatus,
    NoticeStatus, OnNotice, Phase, PhpFpmPool, PhpFpmStatus, ProviderFound, ProviderStatus, SealStatus,
    SecretsStatus, Snapshot, UnitState, UnitStatus,
};
use crate::terminal::printable;
use std::fmt::Write;
use std::time::Duration;

/// Events shown at the end; `--json` has all of them.
const EVENTS_SHOWN: usize = 5;

/// The whole view, section by section: the verdict, what kiln knows of the instance, the units,
/// the boot timeline and the recent events. A section with nothing to say is left out.
pub fn render(s: &Snapshot, now_ms: u64) -> String {
    let mut out = String::new();
    verdict(&mut out, s, now_ms);
    for line in summary_lines(s, now_ms) {
        let _ = writeln!(out, "  {line}");
    }
    units_section(&mut out, &s.services, &s.php_fpm, now_ms);
    timeline_section(&mut out, s);
    events_section(&mut out, s, now_ms);
    out
}

/// One line (or a few) per part of the instance kiln knows something about, in a fixed order.
fn summary_lines(s: &Snapshot, now_ms: u64) -> Vec<String> {
    let mut lines: Vec<String> = [
        s.instance.as_ref().map(instance_line),
        s.provider.as_ref().map(provider_line),
        s.check_in.as_ref().map(|c| check_in_line(c, now_ms)),
        s.containment
            .as_ref()
            .map(|c| format!("services: {}", containment_line(c))),
        s.lb.as_ref().map(|lb| lb_line(lb, now_ms)),
    ]
    .into_iter()
    .flatten()
    .collect();
    lines.extend(s.seal.iter().flat_map(|seal| seal_lines(seal, now_ms)));
    lines.extend(
        [
            environment_line(s),
            log_line(s),
            shedding_line(s),
            s.secrets.as_ref().map(secrets_line),
        ]
        .into_iter()
        .flatten(),
    );
    lines.extend(s.lifecycle.iter().flat_map(|l| lifecycle_lines(l, now_ms)));
    if s.refused_mutations > 0 {
        lines.push(format!("refused mutation attempts: {}", s.refused_mutations));
    }
    lines
}

/// `kiln 0.1.0 (pid 4242, up 1m40s): DEGRADED`, why, and the warnings.
fn verdict(out: &mut String, s: &Snapshot, now_ms: u64) {
    let up = ago(s.started_at_ms, now_ms);
    let verdict = match s.phase {
        Phase::Ready => "READY".to_string(),
        p => format!("{p:?}").to_uppercase(),
    };
    let _ = writeln!(out, "kiln {} (pid {}, up {up}): {verdict}", s.version, s.pid);
    if let Some(reason) = &s.reason {
        // A reason may list several problems, one per line: keep them under "why".
        let lines: Vec<_> = reason.lines().map(printable).collect();
        let _ = writeln!(out, "  why: {}", lines.join("\n       "));
    }
    for warning in &s.warnings {
        let _ = writeln!(out, "  warning: {}", printable(warning));
    }
}

/// `instance: ec2, id i-0abc, zone eu-west-1a, region eu-west-1, ip 10.0.0.5`.
fn instance_line(i: &InstanceStatus) -> String {
    let facts: Vec<String> = [
        ("id", &i.instance_id),
        ("zone", &i.zone),
        ("region", &i.region),
        ("ip", &i.local_ipv4),
        ("host", &i.hostname),
    ]
    .iter()
    .filter_map(|(label, value)| value.as_ref().map(|v| format!("{label} {}", printable(v))))
    .collect();
    format!("instance: {}, {}", printable(&i.provider), facts.join(", "))
}

/// `provider: azure, told by DMI chassis_asset_tag "7783-…"`: the datasource and how kiln chose it.
fn provider_line(p: &ProviderStatus) -> String {
    let how = match &p.found {
        ProviderFound::Config => "named by [metadata] provider".to_string(),
        ProviderFound::Dmi { field, value } => {
            format!("told by DMI {} {:?}", printable(field), printable(value))
        }
        ProviderFound::HypervisorUuid => "told by /sys/hypervisor/uuid (ec2…)".to_string(),
        ProviderFound::ConfigDrive { device, filesystem } => format!(
            "from the config drive {} ({}, label config-2)",
            printable(device),
            printable(filesystem)
        ),
    };
    format!("provider: {}, {how}", printable(&p.name))
}

/// `azure check-in: Ready reported 1m37s ago (goal state incarnation 1)`, or how it goes.
fn check_in_line(c: &CheckInStatus, now_ms: u64) -> String {
    let detail = c.detail.as_deref().map(printable).unwrap_or_default();
    let attempts = match c.attempts {
        1 => "1 attempt".to_string(),
        n => format!("{n} attempts"),
    };
    let state = match c.outcome {
        CheckInOutcome::Sending if c.attempts == 0 => format!("sending {}", c.report),
        CheckInOutcome::Sending => format!(
            "sending {} for {} ({attempts}; last: {detail})",
            c.report,
            ago(c.since_ms, now_ms)
        ),
        CheckInOutcome::Accepted => format!(
            "{} reported {} ago (goal state incarnation {})",
            c.report,
            ago(c.since_ms, now_ms),
            printable(c.incarnation.as_deref().unwrap_or("?"))
        ),
        CheckInOutcome::Failed => format!(
            "FAILED {} ago, {} not reported ({attempts}): {detail}",
            ago(c.since_ms, now_ms),
            c.report
        ),
        CheckInOutcome::Off => format!("off ({detail})"),
    };
    format!("azure check-in: {state}")
}

/// `load balancer: haproxy app/i-0abc (10.0.0.5:8080): registered for 1m37s`.
fn lb_line(lb: &LbStatus, now_ms: u64) -> String {
    let state = match lb.state {
        LbState::Unregistered => format!(
            "unregistered: {}",
            printable(lb.reason.as_deref().unwrap_or("not yet"))
        ),
        LbState::Registered => "registered".into(),
        LbState::Draining => format!("draining ({})", lb.drain.as_deref().unwrap_or("")),
        LbState::Deregistered => "deregistered".into(),
    };
    // A registered instance can still carry a reason, e.g. a deregistration that failed.
    let state = match (&lb.state, &lb.reason) {
        (LbState::Registered | LbState::Deregistered, Some(reason)) => {
            format!("{state} ({})", printable(reason))
        }
        _ => state,
    };
    format!(
        "load balancer: {} {}: {state} for {}",
        lb.kind,
        lb.target,
        ago(lb.since_ms, now_ms)
    )
}

/// The seal, what the launch configuration expects, and the first differences.
fn seal_lines(seal: &SealStatus, now_ms: u64) -> Vec<String> {
    let mut lines = vec![format!("seal: {}", seal_line(seal, now_ms))];
    if let Some(expected) = &seal.expected {
        lines.push(format!("expected: {}", expected_line(expected, seal)));
    }
    lines.extend(seal.drift.iter().take(10).map(|d| format!("  drift: {d}")));
    lines
}

fn environment_line(s: &Snapshot) -> Option<String> {
    (!s.env.is_empty()).then(|| {
        format!(
            "environment: {} variables (`kiln env` lists names and sources)",
            s.env.len()
        )
    })
}

/// Only when kiln's log lost lines.
fn log_line(s: &Snapshot) -> Option<String> {
    (s.log.dropped_lines > 0).then(|| {
        format!(
            "log: {} lines dropped ({} did not keep up)",
            s.log.dropped_lines, s.log.sink
        )
    })
}

/// The listeners that closed connections at their cap, if any did.
fn shedding_line(s: &Snapshot) -> Option<String> {
    let shedding: Vec<String> = s
        .listeners
        .iter()
        .filter(|l| l.shed > 0)
        .map(|l| format!("{} {} ({} open of {})", l.name, l.shed, l.open, l.cap))
        .collect();
    (!shedding.is_empty()).then(|| {
        format!(
            "connections closed at the cap to make room: {}",
            shedding.join(", ")
        )
    })
}

/// `secrets: 3 resolved in 880.0ms (1 request), 1 changed since boot`.
fn secrets_line(secrets: &SecretsStatus) -> String {
    format!(
        "secrets: {} resolved in {} ({} request{}){}",
        secrets.resolved,
        micros(secrets.took_us),
        secrets.requests,
        if secrets.requests == 1 { "" } else { "s" },
        match secrets.changed.len() {
            0 => String::new(),
            n => format!(", {n} changed since boot"),
        }
    )
}

/// The table of units, each followed by its dropped output, its php-fpm pool and, when it is not
/// ready, the last lines of its stderr.
fn units_section(out: &mut String, units: &[UnitStatus], pools: &[PhpFpmStatus], now_ms: u64) {
    if units.is_empty() {
        return;
    }
    out.push('\n');
    let header = [
        "UNIT",
        "STATE",
        "READY",
        "PID",
        "UPTIME",
        "RESTARTS",
        "MEM",
        "CPU",
        "LAST PROBE",
        "LAST EXIT",
    ];
    let rows: Vec<[String; 10]> = units.iter().map(|u| unit_row(u, now_ms)).collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let _ = writeln!(out, "{}", table_line(&header.map(String::from), &widths));
    for (row, u) in rows.iter().zip(units) {
        let _ = writeln!(out, "{}", table_line(row, &widths));
        for pool in pools.iter().filter(|p| p.unit == u.unit) {
            let _ = writeln!(out, "    {}", pool_line(pool));
        }
        unit_notes(out, u);
    }
}

/// `php-fpm pool app (dynamic, up 1h02m): 2 active, 0 idle, …`, or why the page was not read.
fn pool_line(p: &PhpFpmStatus) -> String {
    let Some(pool) = &p.pool else {
        let why = p.problem.as_deref().unwrap_or("no answer");
        return format!("php-fpm pool: status page not read: {}", printable(why));
    };
    format!(
        "php-fpm pool {} ({}, up {}): {}",
        printable(&pool.pool),
        printable(&pool.process_manager),
        human(Duration::from_secs(pool.start_since)),
        pool_figures(pool)
    )
}

/// The figures, php-fpm's words; the listen queue only where php-fpm measures it (TCP).
fn pool_figures(pool: &PhpFpmPool) -> String {
    let queue = match pool.listen_queue_len {
        0 => String::new(),
        len => format!(
            ", listen queue {} (max {} of {len})",
            pool.listen_queue, pool.max_listen_queue
        ),
    };
    format!(
        "{} active (max {}), {} idle{queue}, max children reached {}, slow requests {}, {} accepted",
        pool.active_processes,
        pool.max_active_processes,
        pool.idle_processes,
        pool.max_children_reached,
        pool.slow_requests,
        pool.accepted_conn
    )
}

/// Cells padded to the column widths; the last one as it is.
fn table_line(cells: &[String], widths: &[usize]) -> String {
    let mut l = String::new();
    for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
        if i + 1 == cells.len() {
            l.push_str(cell);
        } else {
            let _ = write!(l, "{cell:<w$}  ");
        }
    }
    l.trim_end().to_string()
}

/// Under a unit's row: the output it lost, and the last lines of stderr of a unit not ready.
fn unit_notes(out: &mut String, u: &UnitStatus) {
    if u.dropped_lines > 0 {
        let _ = writeln!(
            out,
            "    output: {} lines dropped (more than {} a second)",
            u.dropped_lines,
            crate::process::output::RATE
        );
    }
    if !u.ready && u.state != UnitState::Stopped {
        for l in u.stderr_tail.iter().rev().take(3).rev() {
            let _ = writeln!(out, "    stderr| {}", printable(l));
        }
    }
}

fn timeline_section(out: &mut String, s: &Snapshot) {
    if s.timeline.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nBOOT TIMELINE");
    for e in &s.timeline {
        let duration = e.duration_us.map(micros).unwrap_or_else(|| "…".into());
        let _ = writeln!(out, "  +{:<10} {:>10}  {}", micros(e.start_us), duration, e.phase);
    }
}

/// The last few events; `--json` has them all.
fn events_section(out: &mut String, s: &Snapshot, now_ms: u64) {
    if s.events.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nRECENT EVENTS");
    for e in s.events.iter().rev().take(EVENTS_SHOWN).rev() {
        let _ = writeln!(
            out,
            "  {} ago  {:<5} {}",
            ago(e.at_ms, now_ms),
            e.level,
            printable(&e.message)
        );
    }
}

/// `2cd48efa9c7643f8 release v42 verified 5.4s ago, read-only: /srv/app`.
fn seal_line(seal: &SealStatus, now_ms: u64) -> String {
    let release = seal
        .release
        .as_deref()
        .map(|r| format!(" release {r}"))
        .unwrap_or_default();
    let verified = match (&seal.root_hash, seal.last_verified_ms) {
        (Some(hash), Some(t)) => format!("{}{release} verified {} ago", short(hash), ago(t, now_ms)),
        (Some(hash), None) => format!("{}{release} not verified yet", short(hash)),
        (None, _) if !seal.drift.is_empty() => {
            let n = seal.drift.len();
            format!(
                "{n} difference{} from the manifest",
                if n == 1 { "" } else { "s" }
            )
        }
        (None, _) => "not verified yet".into(),
    };
    let readonly = seal
        .readonly
        .as_deref()
        .map(|r| format!(", {r}"))
        .unwrap_or_default();
    format!("{verified}{readonly}")
}

/// What the launch configuration pins, each beside what runs:
/// `release v43 (running v42), seal 2cd48efa9c7643f8 (matches)`.
fn expected_line(expected: &ExpectedImage, seal: &SealStatus) -> String {
    let side = |want: &str, running: Option<&str>, shown: fn(&str) -> &str| match running {
        Some(r) if r == want => format!("{} (matches)", shown(want)),
        Some(r) => format!("{} (running {})", shown(want), shown(r)),
        None => format!("{} (running: none)", shown(want)),
    };
    let mut parts = Vec::new();
    if let Some(want) = &expected.release {
        parts.push(format!("release {}", side(want, seal.release.as_deref(), |r| r)));
    }
    if let Some(want) = &expected.root_hash {
        parts.push(format!("seal {}", side(want, seal.root_hash.as_deref(), short)));
    }
    parts.join(", ")
}

/// `[lifecycle]`: where notices come from, the hooks, each notice with the time left, and the
/// leave step by step, timed from the notice.
fn lifecycle_lines(l: &LifecycleStatus, now_ms: u64) -> Vec<String> {
    let source = l.source.as_deref().unwrap_or("notices not watched");
    let target = l
        .target_state
        .as_deref()
        .map(|t| format!(" (auto scaling target state {})", printable(t)))
        .unwrap_or_default();
    let mut lines = vec![format!("lifecycle: {}{target}", printable(source))];
    if let Some(problem) = &l.problem {
        lines.push(format!("  problem: {}", printable(problem)));
    }
    if let Some(hooks) = &l.hooks {
        lines.extend(hooks_lines(hooks, now_ms));
    }
    lines.extend(l.notices.iter().map(|n| notice_line(n, now_ms)));
    if let Some(leave) = &l.leave {
        lines.extend(leave_lines(leave));
    }
    lines
}

/// The Auto Scaling group, why the hooks cannot be answered, and each hook.
fn hooks_lines(hooks: &HooksStatus, now_ms: u64) -> Vec<String> {
    let mut lines = vec![match &hooks.group {
        Some(group) => format!("  auto scaling group {}", printable(group)),
        None => "  auto scaling group unknown".into(),
    }];
    if let Some(problem) = &hooks.problem {
        lines.push(format!("  hooks: {}", printable(problem)));
    }
    for (transition, hook) in [("launch", &hooks.launch), ("terminate", &hooks.terminate)] {
        if let Some(hook) = hook {
            lines.push(format!("  {}", hook_line(transition, hook, now_ms)));
        }
    }
    lines
}

/// `notice: spot interruption: terminate at … (seen 10s ago, 2m00s left): leave`.
fn notice_line(n: &NoticeStatus, now_ms: u64) -> String {
    let left = match n.due_ms {
        Some(due) if due > now_ms => format!(", {} left", human(Duration::from_millis(due - now_ms))),
        Some(_) => ", due".into(),
        None => String::new(),
    };
    let action = match (n.action, n.deferred) {
        (OnNotice::Leave, true) => "leave when due".to_string(),
        (action, _) => action.to_string(),
    };
    format!(
        "  notice: {}: {} (seen {} ago{left}): {action}",
        n.kind.describe(),
        printable(&n.detail),
        ago(n.seen_ms, now_ms)
    )
}

/// `left: <reason>; after the notice: out of the load balancer 4.21s, …`, then every step.
fn leave_lines(leave: &LeaveStatus) -> [String; 2] {
    let since_notice = |s: &LeaveStep| micros(s.at_ms.saturating_sub(leave.noticed_ms) * 1000);
    let at = |step: LeaveStepKind| {
        let reached = leave.steps.iter().find(|s| s.step == step)?;
        Some(format!("{step} {}", since_notice(reached)))
    };
    let timing: Vec<String> = [
        LeaveStepKind::OutOfTheLoadBalancer,
        LeaveStepKind::AllServicesStopped,
    ]
    .into_iter()
    .filter_map(at)
    .collect();
    let timing = match timing.is_empty() {
        true => String::new(),
        false => format!("; after the notice: {}", timing.join(", ")),
    };
    let steps: Vec<String> = leave
        .steps
        .iter()
        .map(|s| format!("+{} {}", since_notice(s), printable(&s.step.to_string())))
        .collect();
    [
        format!("left: {}{timing}", printable(&leave.reason)),
        format!("  steps: {}", steps.join(", ")),
    ]
}

/// `launch hook kiln-launch: CONTINUE sent 2.1s ago (3 heartbeats)`.
fn hook_line(transition: &str, hook: &HookStatus, now_ms: u64) -> String {
    let since = ago(hook.since_ms, now_ms);
    let state = match hook.state {
        HookState::Idle => "idle".to_string(),
        HookState::Waiting => format!("waiting for {since}"),
        HookState::SendingContinue => format!("sending CONTINUE for {since}"),
        HookState::SendingAbandon => format!("sending ABANDON for {since}"),
        HookState::Continued => format!("CONTINUE sent {since} ago"),
        HookState::Abandoned => format!("ABANDON sent {since} ago"),
        HookState::GaveUp => format!("GAVE UP {since} ago"),
        HookState::Skipped => "not answered".into(),
    };
    let beats = match hook.heartbeats {
        0 => String::new(),
        1 => " (1 heartbeat)".into(),
        n => format!(" ({n} heartbeats)"),
    };
    // An answer says it all; otherwise the detail says what is awaited or what failed.
    let detail = match (hook.state, &hook.detail) {
        (HookState::Continued | HookState::Abandoned, _) | (_, None) => String::new(),
        (_, Some(detail)) => format!(": {}", printable(detail)),
    };
    format!(
        "{transition} hook {}: {state}{beats}{detail}",
        printable(&hook.name)
    )
}

/// The first 16 hex digits of a root hash: enough to tell images apart at a glance.
fn short(hash: &str) -> &str {
    &hash[..hash.len().min(16)]
}

/// `a cgroup each under …/services (controllers: memory pids)`, or process groups and why.
fn containment_line(c: &Containment) -> String {
    match c.kind {
        ContainmentKind::Cgroups => {
            let controllers = match c.controllers.is_empty() {
                true => "no controllers: no memory figures, no limits".to_string(),
                false => format!("controllers: {}", c.controllers.join(" ")),
            };
            format!(
                "a cgroup each under {} ({controllers})",
                printable(c.cgroup.as_deref().unwrap_or("?"))
            )
        }
        ContainmentKind::ProcessGroups => format!(
            "process groups only ({}): a process that leaves its group outlives its service's stop",
            printable(c.why.as_deref().unwrap_or("no cgroup"))
        ),
    }
}

/// `12.3M`, `1.5G`: memory as `systemctl status` shows it.
fn memory(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    let mib = bytes as f64 / MIB;
    if mib >= 1024.0 {
        format!("{:.1}G", mib / 1024.0)
    } else {
        format!("{mib:.1}M")
    }
}

fn unit_row(u: &UnitStatus, now_ms: u64) -> [String; 10] {
    let state = match u.state {
        UnitState::Backoff => match u.next_restart_ms {
            Some(t) if t > now_ms => format!("backoff ({} left)", human(Duration::from_millis(t - now_ms))),
            _ => "backoff".into(),
        },
        UnitState::Waiting if !u.waiting_for.is_empty() => {
            format!("waiting for {}", u.waiting_for.join(", "))
        }
        st => format!("{st:?}").to_lowercase(),
    };
    let state = if u.crash_loop {
        format!("{state}, crash loop")
    } else {
        state
    };
    let probe = match &u.last_probe {
        Some(p) => format!(
            "{} {} {} {} ({})",
            p.probe,
            p.kind,
            if p.ok { "ok" } else { "FAIL" },
            micros(p.latency_us),
            printable(&p.detail)
        ),
        None => "-".into(),
    };
    [
        u.unit.clone(),
        state,
        if u.ready { "yes".into() } else { "no".into() },
        u.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
        match (u.pid, u.since_ms) {
            (Some(_), Some(t)) => ago(t, now_ms),
            _ => "-".into(),
        },
        u.restarts.to_string(),
        u.memory_bytes.map(memory).unwrap_or_else(|| "-".into()),
        u.cpu_usec
            .map(|us| human(Duration::from_micros(us)))
            .unwrap_or_else(|| "-".into()),
        probe,
        u.last_exit.clone().unwrap_or_else(|| "-".into()),
    ]
}

fn ago(then_ms: u64, now_ms: u64) -> String {
    human(Duration::from_millis(now_ms.saturating_sub(then_ms)))
}

/// `2m13s`, `4.2s`, `310ms`: short and exact enough for a person.
fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 3600 {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    } else if secs >= 60 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else if secs >= 10 {
        format!("{secs}s")
    } else if d.as_millis() >= 1000 {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}ms", d.as_millis())
    }
}

fn micros(us: u64) -> String {
    if us >= 1_000_000 {
        format!("{:.2}s", us as f64 / 1e6)
    } else if us >= 1000 {
        format!("{:.1}ms", us as f64 / 1e3)
    } else {
        format!("{us}µs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hook_line_says_each_step() {
        let hook = |state: HookState, detail: Option<&str>| HookStatus {
            name: "kiln-launch".into(),
            state,
            detail: detail.map(String::from),
            heartbeats: 0,
            since_ms: 1_000,
        };
        let line = |state, detail| hook_line("launch", &hook(state, detail), 3_500);
        assert_eq!(
            line(HookState::SendingAbandon, Some("the boot was refused")),
            "launch hook kiln-launch: sending ABANDON for 2.5s: the boot was refused"
        );
        assert_eq!(
            line(
                HookState::SendingContinue,
                Some(
                    "CONTINUE not sent yet: autoscaling CompleteLifecycleAction: Throttling (HTTP 400): Rate exceeded (attempt 1, next in 1s)"
                )
            ),
            "launch hook kiln-launch: sending CONTINUE for 2.5s: CONTINUE not sent yet: autoscaling CompleteLifecycleAction: Throttling (HTTP 400): Rate exceeded (attempt 1, next in 1s)"
        );
        assert_eq!(
            line(HookState::Abandoned, Some("ABANDON sent")),
            "launch hook kiln-launch: ABANDON sent 2.5s ago"
        );
        assert_eq!(
            line(
                HookState::GaveUp,
                Some("ABANDON not sent: kiln stopped before AWS answered")
            ),
            "launch hook kiln-launch: GAVE UP 2.5s ago: ABANDON not sent: kiln stopped before AWS answered"
        );
    }

    #[test]
    fn the_seal_line_shows_release_and_what_the_launch_configuration_expects() {
        let hash = "2cd48efa9c7643f8".to_string() + &"0".repeat(48);
        let seal = SealStatus {
            root_hash: Some(hash.clone()),
            release: Some("v42".into()),
            expected: Some(ExpectedImage {
                release: Some("v43".into()),
                root_hash: Some(hash.clone()),
            }),
            last_verified_ms: Some(1_000),
            verify_us: None,
            readonly: Some("read-only: /srv/app".into()),
            drift: Vec::new(),
        };
        assert_eq!(
            seal_line(&seal, 6_400),
            "2cd48efa9c7643f8 release v42 verified 5.4s ago, read-only: /srv/app"
        );
        assert_eq!(
            expected_line(seal.expected.as_ref().unwrap(), &seal),
            "release v43 (running v42), seal 2cd48efa9c7643f8 (matches)"
        );
        let unsealed = SealStatus {
            expected: seal.expected.clone(),
            ..SealStatus::default()
        };
        assert_eq!(
            expected_line(unsealed.expected.as_ref().unwrap(), &unsealed),
            "release v43 (running: none), seal 2cd48efa9c7643f8 (running: none)"
        );
    }

    #[test]
    fn the_containment_line_says_what_holds_the_services() {
        let cgroups = Containment {
            kind: ContainmentKind::Cgroups,
            cgroup: Some("/sys/fs/cgroup/system.slice/kiln.service/services".into()),
            controllers: vec!["memory".into(), "pids".into()],
            why: None,
        };
        assert_eq!(
            containment_line(&cgroups),
            "a cgroup each under /sys/fs/cgroup/system.slice/kiln.service/services (controllers: memory pids)"
        );
        let bare = Containment {
            controllers: Vec::new(),
            ..cgroups
        };
        assert!(containment_line(&bare).ends_with("(no controllers: no memory figures, no limits)"));
        let groups = Containment {
            kind: ContainmentKind::ProcessGroups,
            cgroup: None,
            controllers: Vec::new(),
            why: Some("cgroup2 at /sys/fs/cgroup is mounted read-only".into()),
        };
        assert_eq!(
            containment_line(&groups),
            "process groups only (cgroup2 at /sys/fs/cgroup is mounted read-only): a process that leaves its group outlives its service's stop"
        );
        assert_eq!(memory(12_900_000), "12.3M");
        assert_eq!(memory(3 << 30), "3.0G");
    }

    /// A snapshot with every section (`golden/snapshot.json`): its status JSON and its text stay
    /// the same byte for byte (`golden/status.txt`).
    #[test]
    fn a_full_snapshot_reads_and_serializes_as_it_always_did() {
        let fixture: serde_json::Value = serde_json::from_str(include_str!("golden/snapshot.json")).unwrap();
        let snapshot: Snapshot = serde_json::from_value(fixture.clone()).unwrap();
        assert_eq!(serde_json::to_value(&snapshot).unwrap(), fixture);
        let text = render(&snapshot, 1_700_000_100_000);
        if std::env::var_os("KILN_GOLDEN_WRITE").is_some() {
            std::fs::write("src/status/golden/status.txt", &text).unwrap();
        }
        assert_eq!(text, include_str!("golden/status.txt"));
    }

    #[test]
    fn durations_read_like_a_person_writes_them() {
        assert_eq!(human(Duration::from_millis(310)), "310ms");
        assert_eq!(human(Duration::from_millis(4200)), "4.2s");
        assert_eq!(human(Duration::from_secs(133)), "2m13s");
        assert_eq!(micros(1234), "1.2ms");
    }
}

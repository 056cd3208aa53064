//! Checks serde cannot express: names, references, cycles, programs and directories that exist,
//! users that exist, durations whose products stay sane. Every problem is collected, each naming
//! its place (`[[service]] #2 "nginx": after: unknown service "php"`), so that one `kiln check`
//! lists everything to fix.

use super::read::{Step, dropped_under};
use super::{Config, LbConfig, ProbeConfig, ServiceConfig};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const FALLBACK_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Every problem of a parsed config, in file order; empty when it can be used. `lb`: `[lb]`
/// checked into its plan (by `Config::parse`, which keeps it). `dropped`: the keys the reading
/// left out (at their defaults), already listed with their problem.
pub(super) fn check(
    config: &Config,
    lb: &Result<LbConfig, Vec<String>>,
    dropped: &[Vec<Step>],
) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(agent) = config.health.agent_listen
        && super::metrics::same_port(agent, config.health.listen)
    {
        problems.push("[health] agent_listen must differ from listen".into());
    }
    problems.extend(config.control.problems());
    for (key, dir) in config.control.runtime_dirs() {
        if let Err(e) = config.seal.check_outside(dir) {
            problems.push(format!("[control] {key} {}: {e}", dir.display()));
        }
    }
    if let Some(metrics) = &config.metrics {
        let checked = metrics.check(config.health.listen, config.health.agent_listen);
        problems.extend(within("[metrics]", checked));
    }
    problems.extend(within("[metadata]", config.metadata.check()));
    problems.extend(within("[env]", config.env.check()));
    problems.extend(lb.as_ref().err().into_iter().flatten().cloned());
    problems.extend(config.seal.check().err().unwrap_or_default());
    if let Some(secrets) = &config.secrets {
        problems.extend(within("[secrets]", secrets.check()));
    }
    if let Some(lifecycle) = &config.lifecycle {
        problems.extend(within("[lifecycle]", lifecycle.check(&config.metadata)));
    }
    check_services(&config.services, dropped, &mut problems);
    problems
}

/// A section's problems, each prefixed with the section.
fn within(section: &str, checked: Result<(), Vec<String>>) -> impl Iterator<Item = String> + '_ {
    checked
        .err()
        .unwrap_or_default()
        .into_iter()
        .map(move |p| format!("{section} {p}"))
}

/// Where a service is in the file: `[[service]] #2 "nginx"` (1-based, as a person counts).
pub struct ServicePlace<'a> {
    number: usize,
    name: &'a str,
}

impl fmt::Display for ServicePlace<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[[service]] #{} {:?}", self.number, self.name)
    }
}

/// `index` is 0-based.
pub fn place(index: usize, service: &ServiceConfig) -> ServicePlace<'_> {
    ServicePlace {
        number: index.saturating_add(1),
        name: &service.name,
    }
}

fn check_services(services: &[ServiceConfig], dropped: &[Vec<Step>], problems: &mut Vec<String>) {
    let mut first: HashMap<&str, usize> = HashMap::new();
    for (i, service) in services.iter().enumerate() {
        first.entry(&service.name).or_insert(i);
    }
    for (i, service) in services.iter().enumerate() {
        let here = place(i, service);
        problems.extend(
            service_problems(service, &Dropped::service(dropped, i))
                .into_iter()
                .map(|p| format!("{here}: {p}")),
        );
        if let Some(&j) = first.get(service.name.as_str())
            && j != i
        {
            problems.push(format!("{here}: name: already the name of {}", place(j, service)));
        }
        for dep in &service.after {
            if dep == &service.name {
                problems.push(format!("{here}: after: a service cannot wait for itself"));
            } else if !first.contains_key(dep.as_str()) {
                problems.push(format!("{here}: after: unknown service {dep:?}"));
            }
        }
    }
    if let Some(cycle) = find_cycle(services) {
        problems.push(format!(
            "[[service]] dependency cycle in `after`: {}",
            cycle.join(" -> ")
        ));
    }
}

/// The keys of one service the reading left out (refused, and listed with their problem): the
/// defaults that stand in for them say nothing more, alone or beside another key.
struct Dropped<'a> {
    all: &'a [Vec<Step>],
    service: Vec<Step>,
}

impl<'a> Dropped<'a> {
    fn service(all: &'a [Vec<Step>], index: usize) -> Dropped<'a> {
        let service = vec![Step::Key("service".into()), Step::Index(index)];
        Dropped { all, service }
    }

    /// The service's own keys left out.
    fn keys(&self) -> Vec<&'a str> {
        dropped_under(self.all, &self.service)
    }

    /// The keys of its table `role` left out (a probe's, `phpfpm_status`).
    fn probe_keys(&self, role: &str) -> Vec<&'a str> {
        let mut probe = self.service.clone();
        probe.push(Step::Key(role.into()));
        dropped_under(self.all, &probe)
    }
}

/// A service's own problems, each starting with its key.
fn service_problems(s: &ServiceConfig, left_out: &Dropped<'_>) -> Vec<String> {
    let own = left_out.keys();
    let dropped = |key: &str| own.contains(&key);
    let mut problems = Vec::new();
    let name_ok = !s.name.is_empty()
        && s.name.len() <= 64
        && s.name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !name_ok && !dropped("name") {
        problems.push("name: use 1 to 64 letters, digits, '-', '_' or '.'".into());
    }
    let path = s.env.get("PATH").map(String::as_str);
    match s.command.first() {
        Some(program) if !program.is_empty() => {
            if let Err(e) = resolve_program(program, path) {
                problems.push(format!("command: {e}"));
            }
        }
        _ if dropped("command") => {}
        _ => problems.push("command: missing or empty: give a program and its arguments".into()),
    }
    problems.extend(s.env_allow_problems());
    problems.extend(s.limit_problems());
    if s.replicas == 0 || s.replicas > 256 {
        problems.push(format!("replicas = {}: must be between 1 and 256", s.replicas));
    }
    if let Some(dir) = &s.working_dir {
        problems.extend(check_working_dir(dir).err());
    }
    if let Some(user) = &s.user
        && !matches!(nix::unistd::User::from_name(user), Ok(Some(_)))
    {
        problems.push(format!("user = {user:?}: no such user on this system"));
    }
    if let Some(group) = &s.group
        && !matches!(nix::unistd::Group::from_name(group), Ok(Some(_)))
    {
        problems.push(format!("group = {group:?}: no such group on this system"));
    }
    let delays_read = !dropped("restart_delay") && !dropped("restart_delay_max");
    if delays_read && (s.restart_delay.get().is_zero() || s.restart_delay > s.restart_delay_max) {
        problems.push(format!(
            "restart_delay = \"{}\": must be above zero and at most restart_delay_max (\"{}\")",
            s.restart_delay, s.restart_delay_max
        ));
    }
    for (key, probe) in [("startup", &s.startup), ("ready", &s.ready), ("live", &s.live)] {
        if let Some(probe) = probe {
            let list = probe_problems(probe, path, &left_out.probe_keys(key));
            problems.extend(list.into_iter().map(|p| format!("[service.{key}] {p}")));
        }
    }
    problems.extend(phpfpm_status_problems(s, left_out));
    problems
}

/// `[service.phpfpm_status]`'s problems, but for the keys the reading left out (already listed).
fn phpfpm_status_problems(s: &ServiceConfig, left_out: &Dropped<'_>) -> Vec<String> {
    let Some(Err(list)) = s.phpfpm_status.as_ref().map(|p| p.page(s.replicas)) else {
        return Vec::new();
    };
    let dropped = left_out.probe_keys("phpfpm_status");
    list.into_iter()
        .filter(|p| !dropped.iter().any(|key| p.starts_with(key)))
        .map(|p| format!("[service.phpfpm_status] {p}"))
        .collect()
}

/// `working_dir` is where the service starts: it must be there, as a directory, before boot.
fn check_working_dir(dir: &Path) -> Result<(), String> {
    if !dir.is_absolute() {
        return Err(format!("working_dir = {dir:?}: must be an absolute path"));
    }
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!("working_dir = {dir:?}: is not a directory")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("working_dir = {dir:?}: does not exist"))
        }
        Err(e) => Err(format!("working_dir = {dir:?}: {e}")),
    }
}

fn probe_problems(p: &ProbeConfig, path: Option<&str>, dropped: &[&str]) -> Vec<String> {
    let mut problems = Vec::new();
    match p.target() {
        Ok(super::ProbeTarget::Exec { argv }) => {
            if let Some(program) = argv.first()
                && let Err(e) = resolve_program(program, path)
            {
                problems.push(format!("exec: {e}"));
            }
        }
        Ok(_) => {}
        Err(e) => problems.push(e),
    }
    problems.extend(p.timing_problems(dropped));
    problems
}

/// Finds the program the way exec will: a path is taken as is, a bare name is looked up in PATH.
pub fn resolve_program(program: &str, path: Option<&str>) -> Result<PathBuf, String> {
    let executable = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if program.contains('/') {
        let p = PathBuf::from(program);
        return if executable(&p) {
            Ok(p)
        } else if p.exists() {
            Err(format!("{program:?} is not an executable file"))
        } else {
            Err(format!("{program:?} does not exist"))
        };
    }
    let env_path = std::env::var("PATH").ok();
    let search = path.or(env_path.as_deref()).unwrap_or(FALLBACK_PATH);
    search
        .split(':')
        .filter(|dir| !dir.is_empty())
        .map(|dir| Path::new(dir).join(program))
        .find(|p| executable(p))
        .ok_or_else(|| format!("{program:?} not found in PATH ({search})"))
}

/// A cycle in the `after` graph as a list of names that starts and ends with the same service.
/// A service that names itself is reported on its own, not as a cycle. Iterative: a long chain
/// of services cannot overflow the stack.
fn find_cycle(services: &[ServiceConfig]) -> Option<Vec<String>> {
    // A name defined twice (a problem of its own) keeps its first definition.
    let mut graph: HashMap<&str, Vec<&str>> = HashMap::new();
    for s in services {
        let deps = s.after.iter().map(String::as_str).filter(|d| *d != s.name);
        graph.entry(&s.name).or_insert_with(|| deps.collect());
    }
    let deps_of = |name: &str| graph.get(name).map(|d| d.iter()).unwrap_or_default();
    let mut done: HashSet<&str> = HashSet::new();
    for service in services {
        let root = service.name.as_str();
        if done.contains(root) {
            continue;
        }
        // The path from `root`, each with the dependencies still to visit.
        let mut path = vec![(root, deps_of(root))];
        let mut on_path: HashSet<&str> = HashSet::from([root]);
        while let Some((node, deps)) = path.last_mut() {
            let node = *node;
            let Some(&dep) = deps.next() else {
                path.pop();
                on_path.remove(node);
                done.insert(node);
                continue;
            };
            if on_path.contains(dep) {
                let from = path.iter().position(|(n, _)| *n == dep).unwrap_or_default();
                let mut cycle: Vec<String> = path.iter().skip(from).map(|(n, _)| n.to_string()).collect();
                cycle.push(dep.to_string());
                return Some(cycle);
            }
            if !done.contains(dep) {
                on_path.insert(dep);
                path.push((dep, deps_of(dep)));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn service(name: &str, after: &[&str]) -> String {
        let after: Vec<String> = after.iter().map(|a| format!("{a:?}")).collect();
        format!(
            "[[service]]\nname = {name:?}\ncommand = [\"/bin/true\"]\nafter = [{}]\n",
            after.join(", ")
        )
    }

    /// The one problem of `text`.
    fn problem(text: &str) -> String {
        let mut problems = Config::parse(text).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:#?}");
        problems.remove(0)
    }

    #[test]
    fn a_cycle_is_named_with_its_path() {
        let text = [service("a", &["c"]), service("b", &["a"]), service("c", &["b"])].concat();
        assert_eq!(
            problem(&text),
            "[[service]] dependency cycle in `after`: a -> c -> b -> a"
        );
    }

    #[test]
    fn an_unknown_after_names_the_service_and_the_missing_name() {
        let text = [service("php-fpm", &[]), service("nginx", &["php"])].concat();
        assert_eq!(
            problem(&text),
            r#"[[service]] #2 "nginx": after: unknown service "php""#
        );
    }

    #[test]
    fn waiting_for_itself_is_not_also_a_cycle() {
        assert_eq!(
            problem(&service("a", &["a"])),
            r#"[[service]] #1 "a": after: a service cannot wait for itself"#
        );
    }

    #[test]
    fn every_problem_is_listed_in_file_order() {
        let text = format!(
            "[control]\nstate_dir = \"run\"\n[metadata]\ndeadline = \"0s\"\n{}{}replicas = 0\nworking_dir = \"/nonexistent-kiln\"\n{}",
            service("a", &["b"]),
            service("b", &["a", "c"]),
            service("a", &[]),
        );
        let problems = Config::parse(&text).unwrap_err();
        assert_eq!(
            problems,
            [
                r#"[control] state_dir = "run": must be an absolute path"#,
                r#"[metadata] deadline = "0s": give the fetch some time, like "60s""#,
                r#"[[service]] #2 "b": replicas = 0: must be between 1 and 256"#,
                r#"[[service]] #2 "b": working_dir = "/nonexistent-kiln": does not exist"#,
                r#"[[service]] #2 "b": after: unknown service "c""#,
                r#"[[service]] #3 "a": name: already the name of [[service]] #1 "a""#,
                "[[service]] dependency cycle in `after`: a -> b -> a",
            ]
        );
    }

    #[test]
    fn an_unknown_key_is_an_error_with_its_line() {
        let text = format!("{}colour = \"red\"\n", service("a", &[]));
        let err = problem(&text);
        assert!(err.contains("unknown field `colour`"), "{err}");
        assert!(err.contains("line 5"), "{err}");
    }

    #[test]
    fn a_missing_program_is_an_error() {
        let text = "[[service]]\nname = \"x\"\ncommand = [\"no-such-program-kiln\"]\n";
        let err = problem(text);
        assert!(
            err.starts_with("[[service]] #1 \"x\": command: \"no-such-program-kiln\" not found in PATH"),
            "{err}"
        );
    }

    #[test]
    fn a_probe_needs_exactly_one_target() {
        let text = format!("{}[service.ready]\nperiod = \"1s\"\n", service("a", &[]));
        assert_eq!(
            problem(&text),
            "[[service]] #1 \"a\": [service.ready] set one of http, tcp, exec or fastcgi"
        );
    }

    #[test]
    fn a_bad_duration_names_the_value() {
        let text = format!("{}stop_timeout = \"20 parsecs\"\n", service("a", &[]));
        let err = problem(&text);
        assert!(err.contains("invalid duration \"20 parsecs\""), "{err}");
        assert!(err.contains("line 5"), "{err}");
    }

    #[test]
    fn a_duration_over_ten_years_is_refused_where_it_is_written() {
        let text = format!(
            "{}[service.startup]\ntcp = \"127.0.0.1:1\"\nperiod = \"500000000000y\"\nfailure_threshold = 4000000000\n",
            service("a", &[])
        );
        let err = problem(&text);
        assert!(
            err.contains("invalid duration \"500000000000y\": at most \"10y\""),
            "{err}"
        );
        assert!(err.contains("line 7"), "{err}");
    }

    #[test]
    fn a_probe_whose_period_times_a_threshold_is_over_ten_years_is_refused() {
        let text = format!(
            "{}[service.startup]\ntcp = \"127.0.0.1:1\"\nperiod = \"1y\"\nfailure_threshold = 4000000000\nsuccess_threshold = 11\n",
            service("a", &[])
        );
        assert_eq!(
            Config::parse(&text).unwrap_err(),
            [
                "[[service]] #1 \"a\": [service.startup] period (\"1year\") × failure_threshold (4000000000) is over \"10y\": lower one of them",
                "[[service]] #1 \"a\": [service.startup] period (\"1year\") × success_threshold (11) is over \"10y\": lower one of them",
            ]
        );
    }

    #[test]
    fn a_working_dir_must_be_a_directory() {
        let text = format!("{}working_dir = \"/bin/sh\"\n", service("a", &[]));
        assert_eq!(
            problem(&text),
            "[[service]] #1 \"a\": working_dir = \"/bin/sh\": is not a directory"
        );
    }

    #[test]
    fn a_long_chain_of_services_is_checked_without_recursion() {
        let chain: String = (0..20_000)
            .map(|i| service(&format!("s{i}"), &[&format!("s{}", i + 1)]))
            .chain([service("s20000", &["s0"])])
            .collect();
        let err = problem(&chain);
        assert!(
            err.starts_with("[[service]] dependency cycle in `after`: s0 -> s1 -> "),
            "{}",
            &err[..80]
        );
    }
}

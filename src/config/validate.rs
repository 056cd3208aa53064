//! Checks serde cannot express: names, references, cycles, programs that exist, users that exist.
//! Every message names the service and the key, so the fix is one look away.

use super::{Config, ProbeConfig, ServiceConfig};
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

const FALLBACK_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

pub(super) fn check(config: &Config) -> Result<(), String> {
    if !config.control.state_dir.is_absolute() {
        return Err(format!(
            "[control] state_dir = {:?}: must be an absolute path",
            config.control.state_dir
        ));
    }
    if !config.control.socket.is_absolute() {
        return Err(format!(
            "[control] socket = {:?}: must be an absolute path",
            config.control.socket
        ));
    }
    config.metadata.check().map_err(|e| format!("[metadata] {e}"))?;
    config.env.check().map_err(|e| format!("[env] {e}"))?;
    config.lb.check()?;
    if let Some(secrets) = &config.secrets {
        secrets.check().map_err(|e| format!("[secrets] {e}"))?;
    }
    if config.health.agent_listen == Some(config.health.listen) {
        return Err("[health] agent_listen must differ from listen".into());
    }
    let mut seen = HashSet::new();
    for service in &config.services {
        check_service(service).map_err(|e| format!("service {:?}: {e}", service.name))?;
        service
            .check_env_allow()
            .map_err(|e| format!("service {:?}: {e}", service.name))?;
        if !seen.insert(service.name.as_str()) {
            return Err(format!("service {:?} is defined twice", service.name));
        }
    }
    for service in &config.services {
        for dep in &service.after {
            if dep == &service.name {
                return Err(format!(
                    "service {:?}: after: a service cannot wait for itself",
                    service.name
                ));
            }
            if !seen.contains(dep.as_str()) {
                return Err(format!(
                    "service {:?}: after: no service named {dep:?}",
                    service.name
                ));
            }
        }
    }
    if let Some(cycle) = find_cycle(&config.services) {
        return Err(format!("dependency cycle in `after`: {}", cycle.join(" -> ")));
    }
    Ok(())
}

fn check_service(s: &ServiceConfig) -> Result<(), String> {
    let name_ok = !s.name.is_empty()
        && s.name.len() <= 64
        && s.name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !name_ok {
        return Err("name: use 1 to 64 letters, digits, '-', '_' or '.'".into());
    }
    if s.command.is_empty() || s.command[0].is_empty() {
        return Err("command = []: give a program and its arguments".into());
    }
    let path = s.env.get("PATH").cloned();
    resolve_program(&s.command[0], path.as_deref()).map_err(|e| format!("command: {e}"))?;
    if s.replicas == 0 || s.replicas > 256 {
        return Err(format!("replicas = {}: must be between 1 and 256", s.replicas));
    }
    if let Some(dir) = &s.working_dir
        && !dir.is_absolute()
    {
        return Err(format!("working_dir = {dir:?}: must be an absolute path"));
    }
    if let Some(user) = &s.user {
        match nix::unistd::User::from_name(user) {
            Ok(Some(_)) => {}
            _ => return Err(format!("user = {user:?}: no such user on this system")),
        }
    }
    if let Some(group) = &s.group {
        match nix::unistd::Group::from_name(group) {
            Ok(Some(_)) => {}
            _ => return Err(format!("group = {group:?}: no such group on this system")),
        }
    }
    if s.restart_delay.get().is_zero() || s.restart_delay > s.restart_delay_max {
        return Err(format!(
            "restart_delay = \"{}\": must be above zero and at most restart_delay_max (\"{}\")",
            s.restart_delay, s.restart_delay_max
        ));
    }
    for (key, probe) in [("startup", &s.startup), ("ready", &s.ready), ("live", &s.live)] {
        if let Some(probe) = probe {
            check_probe(probe, path.as_deref()).map_err(|e| format!("[service.{key}] {e}"))?;
        }
    }
    Ok(())
}

fn check_probe(p: &ProbeConfig, path: Option<&str>) -> Result<(), String> {
    if let super::ProbeTarget::Exec { argv } = p.target()? {
        resolve_program(&argv[0], path).map_err(|e| format!("exec: {e}"))?;
    }
    if p.period.get().is_zero() || p.timeout.get().is_zero() {
        return Err("period and timeout must be above zero".into());
    }
    if p.failure_threshold == 0 || p.success_threshold == 0 {
        return Err("failure_threshold and success_threshold must be at least 1".into());
    }
    Ok(())
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
fn find_cycle(services: &[ServiceConfig]) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnStack,
        Done,
    }
    let index: HashMap<&str, usize> = services
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    let mut marks = vec![Mark::New; services.len()];
    let mut stack: Vec<usize> = Vec::new();

    fn visit(
        i: usize,
        services: &[ServiceConfig],
        index: &HashMap<&str, usize>,
        marks: &mut [Mark],
        stack: &mut Vec<usize>,
    ) -> Option<Vec<String>> {
        marks[i] = Mark::OnStack;
        stack.push(i);
        for dep in &services[i].after {
            let Some(&j) = index.get(dep.as_str()) else {
                continue;
            };
            match marks[j] {
                Mark::OnStack => {
                    let from = stack.iter().position(|&k| k == j).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        stack[from..].iter().map(|&k| services[k].name.clone()).collect();
                    cycle.push(services[j].name.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(j, services, index, marks, stack) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        stack.pop();
        marks[i] = Mark::Done;
        None
    }

    (0..services.len()).find_map(|i| {
        if marks[i] == Mark::New {
            visit(i, services, &index, &mut marks, &mut stack)
        } else {
            None
        }
    })
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

    #[test]
    fn a_cycle_is_named_with_its_path() {
        let text = [service("a", &["c"]), service("b", &["a"]), service("c", &["b"])].concat();
        let err = Config::parse(&text).unwrap_err();
        assert!(err.contains("dependency cycle"), "{err}");
        assert!(err.contains("a -> c -> b -> a"), "{err}");
    }

    #[test]
    fn an_unknown_after_names_the_service_and_the_missing_name() {
        let err = Config::parse(&service("nginx", &["php"])).unwrap_err();
        assert_eq!(err, r#"service "nginx": after: no service named "php""#);
    }

    #[test]
    fn an_unknown_key_is_an_error_with_its_line() {
        let text = format!("{}colour = \"red\"\n", service("a", &[]));
        let err = Config::parse(&text).unwrap_err();
        assert!(err.contains("unknown field `colour`"), "{err}");
        assert!(err.contains("line 5"), "{err}");
    }

    #[test]
    fn a_missing_program_is_an_error() {
        let text = "[[service]]\nname = \"x\"\ncommand = [\"no-such-program-kiln\"]\n";
        let err = Config::parse(text).unwrap_err();
        assert!(
            err.starts_with("service \"x\": command: \"no-such-program-kiln\" not found in PATH"),
            "{err}"
        );
    }

    #[test]
    fn a_probe_needs_exactly_one_target() {
        let text = format!("{}[service.ready]\nperiod = \"1s\"\n", service("a", &[]));
        let err = Config::parse(&text).unwrap_err();
        assert_eq!(
            err,
            "service \"a\": [service.ready] set one of http, tcp, exec or fastcgi"
        );
    }

    #[test]
    fn a_bad_duration_names_the_value() {
        let text = format!("{}stop_timeout = \"20 parsecs\"\n", service("a", &[]));
        let err = Config::parse(&text).unwrap_err();
        assert!(err.contains("invalid duration \"20 parsecs\""), "{err}");
        assert!(err.contains("line 5"), "{err}");
    }
}

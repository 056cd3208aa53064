//! What one exec can carry (execve(2)): each `NAME=value` string at most `MAX_ARG_STRLEN` (32
//! pages: 128 KiB on x86-64, NUL included), and all of argv and envp (strings plus one pointer
//! each) within a quarter of the stack limit, at least 128 KiB and at most 6 MiB. Past either,
//! every exec fails with E2BIG ("Argument list too long") and every service can only
//! crash-loop. So the frozen environment is measured against them, per service (its command and
//! its own `env` count too), before anything starts.

use super::{EnvError, FrozenEnv};
use crate::config::ServiceConfig;
use crate::metadata::Metadata;
use std::collections::BTreeMap;

/// `ARG_MAX` in the kernel's uapi headers: the total is never cut below this.
const ARG_MAX_FLOOR: u64 = 128 * 1024;
/// Three quarters of the kernel's `_STK_LIM` (8 MiB): the total is never above this.
const ARG_MAX_CEILING: u64 = 6 * 1024 * 1024;
/// What kiln adds at spawn besides the frozen environment and the service's `env`
/// (`KILN_SERVICE`, `KILN_REPLICA`, `HOME`, `USER`, `LOGNAME`) and the program path the kernel
/// copies first, generously.
const SPAWN_EXTRA: u64 = 8 * 1024;
/// How many of the largest variables an over-the-total error names.
const NAMED: usize = 3;

/// The two limits of this machine, as the kernel computes them for kiln's children (they inherit
/// kiln's stack limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecLimits {
    /// Longest `NAME=value` string, its NUL included.
    pub per_string: u64,
    /// argv and envp: every string with its NUL, plus a pointer per string.
    pub total: u64,
}

impl ExecLimits {
    pub fn of_this_machine() -> ExecLimits {
        let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .and_then(|p| u64::try_from(p).ok())
            .unwrap_or(4096);
        let stack = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_STACK)
            .map(|(soft, _)| soft)
            .unwrap_or(8 * 1024 * 1024);
        ExecLimits {
            per_string: page.saturating_mul(32),
            total: (stack / 4).clamp(ARG_MAX_FLOOR, ARG_MAX_CEILING),
        }
    }
}

/// Refuses an environment that no exec of some service could carry, naming the variable (and
/// where it came from) or the service, never a value.
pub fn check_exec_limits(
    env: &FrozenEnv,
    services: &[ServiceConfig],
    metadata: &Metadata,
    limits: ExecLimits,
) -> Result<(), EnvError> {
    let fail = |reason: String| EnvError {
        provider: metadata.facts.provider.clone(),
        endpoint: metadata.endpoint.clone(),
        step: "exec limits".into(),
        reason,
    };
    let too_long = |name: &str, bytes: u64, whose: &str| {
        fail(format!(
            "{name} ({whose}) is {bytes} bytes as NAME=value, over the {} bytes Linux passes per \
             variable (MAX_ARG_STRLEN): every exec would fail with \"Argument list too long\"",
            limits.per_string
        ))
    };
    let per_string = |vars: &mut dyn Iterator<Item = (&str, &str)>| {
        for (name, value) in vars {
            let bytes = string_bytes(name, value);
            if bytes > limits.per_string {
                let source = env.source(name).map_or("kiln", |s| s.as_str());
                return Err(too_long(name, bytes, source));
            }
        }
        Ok(())
    };
    if services.is_empty() {
        per_string(&mut env.vars())?;
    }
    for service in services {
        // What this service gets (`env_allow`), as spawn hands it over.
        let given = || env.for_service(service.env_allow.as_deref());
        per_string(&mut given())?;
        let mut vars: BTreeMap<&str, u64> = given().map(|(n, v)| (n, string_bytes(n, v))).collect();
        for (name, value) in &service.env {
            let bytes = string_bytes(name, value);
            if bytes > limits.per_string {
                return Err(too_long(
                    name,
                    bytes,
                    &format!("env of service {:?}", service.name),
                ));
            }
            vars.insert(name, bytes);
        }
        let argv: u64 = service.command.iter().map(|a| len(a).saturating_add(1)).sum();
        let strings = vars.values().fold(argv, |sum, b| sum.saturating_add(*b));
        let pointers = (vars.len().saturating_add(service.command.len()) as u64).saturating_mul(8);
        let total = strings.saturating_add(pointers).saturating_add(SPAWN_EXTRA);
        if total > limits.total {
            let mut largest: Vec<(&str, u64)> = vars.into_iter().collect();
            largest.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            let named: Vec<String> = largest
                .iter()
                .take(NAMED)
                .map(|(name, bytes)| {
                    let source = env.source(name).map_or("service env", |s| s.as_str());
                    format!("{name} ({source}, {bytes} bytes)")
                })
                .collect();
            return Err(fail(format!(
                "service {:?} would be exec'd with {total} bytes of arguments and environment, \
                 over the {} bytes Linux allows (a quarter of the stack limit, ulimit -s): \
                 every exec would fail with \"Argument list too long\"; largest: {}",
                service.name,
                limits.total,
                named.join(", ")
            )));
        }
    }
    Ok(())
}

/// `NAME=value` and its NUL.
fn string_bytes(name: &str, value: &str) -> u64 {
    len(name).saturating_add(len(value)).saturating_add(2)
}

fn len(s: &str) -> u64 {
    u64::try_from(s.len()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::Source;

    const LIMITS: ExecLimits = ExecLimits {
        per_string: 128 * 1024,
        total: 2 * 1024 * 1024,
    };

    fn service(name: &str, env: &[(&str, &str)]) -> ServiceConfig {
        let text = format!("name = {name:?}\ncommand = [\"/bin/true\", \"-x\"]\n");
        let mut s: ServiceConfig = toml::from_str(&text).unwrap();
        s.env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        s
    }

    fn env(vars: &[(&str, usize)]) -> FrozenEnv {
        let mut env = FrozenEnv::default();
        for (name, size) in vars {
            env.set(name, "v".repeat(*size), Source::UserData);
        }
        env
    }

    fn check(env: &FrozenEnv, services: &[ServiceConfig]) -> Result<(), String> {
        check_exec_limits(env, services, &Metadata::default(), LIMITS).map_err(|e| e.reason)
    }

    #[test]
    fn one_variable_over_max_arg_strlen_is_named_without_its_value() {
        let big = env(&[("SMALL", 10), ("BLOB", 200 * 1024)]);
        let err = check(&big, &[]).unwrap_err();
        assert!(
            err.starts_with("BLOB (user-data) is 204806 bytes as NAME=value, over the 131072 bytes"),
            "{err}"
        );
        assert!(!err.contains("vvv"), "{err}");
        // NAME=value plus its NUL must fit: one byte less than the limit is the most.
        let edge = env(&[("A", 128 * 1024 - 3)]);
        assert_eq!(check(&edge, &[]), Ok(()));
        assert!(check(&env(&[("A", 128 * 1024 - 2)]), &[]).is_err());
    }

    #[test]
    fn a_service_env_over_the_string_limit_names_the_service() {
        let value = "v".repeat(200 * 1024);
        let err = check(&env(&[]), &[service("php-fpm", &[("BIG", &value)])]).unwrap_err();
        assert!(
            err.starts_with("BIG (env of service \"php-fpm\") is 204805 bytes"),
            "{err}"
        );
    }

    #[test]
    fn the_total_is_per_service_and_names_the_largest() {
        let vars: Vec<(String, usize)> = (0..25).map(|i| (format!("V{i:02}"), 100 * 1024 + i)).collect();
        let vars: Vec<(&str, usize)> = vars.iter().map(|(n, s)| (n.as_str(), *s)).collect();
        let env = env(&vars);
        let err = check(&env, &[service("worker", &[])]).unwrap_err();
        assert!(
            err.starts_with("service \"worker\" would be exec'd with "),
            "{err}"
        );
        assert!(
            err.ends_with("largest: V24 (user-data, 102429 bytes), V23 (user-data, 102428 bytes), V22 (user-data, 102427 bytes)"),
            "{err}"
        );
        // Without a service, only the per-variable limit applies.
        assert_eq!(check(&env, &[]), Ok(()));
    }

    #[test]
    fn only_what_a_service_is_given_counts() {
        let big = env(&[("SMALL", 10), ("BLOB", 200 * 1024)]);
        let mut php = service("php-fpm", &[]);
        php.env_allow = Some(vec!["SMALL".into()]);
        assert_eq!(check(&big, std::slice::from_ref(&php)), Ok(()));
        assert!(check(&big, &[php, service("worker", &[])]).is_err());
    }

    #[test]
    fn the_machine_limits_are_the_kernels() {
        let limits = ExecLimits::of_this_machine();
        assert!(limits.per_string >= 128 * 1024);
        assert!((ARG_MAX_FLOOR..=ARG_MAX_CEILING).contains(&limits.total));
    }
}

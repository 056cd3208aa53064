//! `kiln check`: the config checks of `kiln boot`, without starting anything. With `[secrets]`
//! it also checks the references in `[env] defaults` and lists them (user-data and tags are only
//! known at boot: `kiln env` lists those). Every problem is listed at once.
//!
//! Warnings ([`warnings`]: settings accepted but not doing what they seem to here) print as
//! `kiln check: FILE: warning: ...` lines on stderr and leave the exit code 0; `--strict` makes
//! them errors (exit 78), for image bakes that want none.

use crate::config::{Config, ConfigError};
use crate::secrets::Reference;
use std::path::Path;
use std::process::ExitCode;

/// What `kiln check` warns about: the config's own warnings, then the cgroup limits this
/// machine could not hold. The boot logs the same list.
pub fn warnings(config: &Config) -> Vec<String> {
    let mut warnings = config.warnings();
    warnings.extend(crate::cgroup::warnings(config));
    warnings
}

pub fn run(path: &Path, strict: bool) -> ExitCode {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("kiln check: {e}");
            return ExitCode::from(crate::EXIT_CONFIG);
        }
    };
    // The runtime directories as they are on this machine (`kiln boot` refuses the same), and
    // the secret references.
    let (references, bad_references) = default_references(&config);
    let warnings = warnings(&config);
    let mut problems: Vec<String> = config
        .control
        .runtime_dir_problems()
        .into_iter()
        .chain(bad_references)
        .collect();
    if strict {
        problems.extend(warnings.iter().map(|w| format!("{w} (--strict)")));
    } else {
        for warning in &warnings {
            eprintln!("kiln check: {}: warning: {warning}", path.display());
        }
    }
    if !problems.is_empty() {
        let e = ConfigError {
            file: path.to_path_buf(),
            problems,
        };
        eprintln!("kiln check: {e}");
        return ExitCode::from(crate::EXIT_CONFIG);
    }
    let replicas: u64 = config.services.iter().map(|s| u64::from(s.replicas)).sum();
    let warned = match warnings.len() {
        0 => String::new(),
        1 => ", 1 warning".to_string(),
        n => format!(", {n} warnings"),
    };
    let tasks = match config.tasks.len() {
        0 => String::new(),
        1 => ", 1 task".to_string(),
        n => format!(", {n} tasks"),
    };
    println!(
        "{}: ok ({} services, {} processes{tasks}{warned})",
        path.display(),
        config.services.len(),
        replicas
    );
    if let Some(coordination) = &config.coordination {
        let fleet: Vec<&str> = config
            .tasks
            .iter()
            .filter(|t| t.once == crate::config::Once::Fleet)
            .map(|t| t.name.as_str())
            .collect();
        println!(
            "coordination: {} (lease {}): once per fleet: {}",
            coordination.describe(),
            humantime::format_duration(coordination.lease_ttl),
            if fleet.is_empty() {
                "no task".to_string()
            } else {
                fleet.join(", ")
            }
        );
    }
    if let Some(secrets) = &config.secrets {
        let schemes: Vec<&str> = secrets.schemes.iter().map(|s| s.as_str()).collect();
        println!("secrets: references on for {}", schemes.join(", "));
        for p in &secrets.ssm_paths {
            println!("  ssm path {p}: every parameter directly under it becomes a variable");
        }
        for line in references {
            println!("  {line}");
        }
    }
    ExitCode::SUCCESS
}

/// `NAME  secret (REFERENCE)` for each good reference in `[env] defaults`, and a problem for
/// each bad one.
fn default_references(config: &Config) -> (Vec<String>, Vec<String>) {
    let (mut lines, mut problems) = (Vec::new(), Vec::new());
    let Some(secrets) = &config.secrets else {
        return (lines, problems);
    };
    for (name, value) in &config.env.defaults {
        match Reference::parse(value, secrets) {
            None => {}
            Some(Ok(reference)) => lines.push(format!("{name}  secret ({reference})")),
            Some(Err(e)) => problems.push(format!("[env] defaults: {name}: {e}")),
        }
    }
    (lines, problems)
}

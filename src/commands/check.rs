//! `kiln check`: the config checks of `kiln boot`, without starting anything. With `[secrets]`
//! it also checks the references in `[env] defaults` and lists them (user-data and tags are only
//! known at boot: `kiln env` lists those). Every problem is listed at once.
//!
//! Warnings ([`warnings`]: settings accepted but not doing what they seem to here) print as
//! `kiln check: FILE: warning: ...` lines on stderr and leave the exit code 0; `--strict` makes
//! them errors (exit 78), for image bakes that want none. `--online` also asks the cloud what
//! only it knows (the ELBv2 target group's deregistration delay); a cloud out of reach is a
//! `note:` line, never a warning nor an error.

use crate::config::{Config, ConfigError};
use crate::secrets::Reference;
use std::path::Path;
use std::process::ExitCode;

/// What `kiln check` warns about: the config's own warnings, then what this machine would not
/// do as the config seems to say: the cgroup limits it could not hold, sealed paths that are not
/// there, a drain its systemd would cut. The boot logs the same list.
pub fn warnings(config: &Config) -> Vec<String> {
    let mut warnings = config.warnings();
    warnings.extend(crate::cgroup::warnings(config));
    warnings.extend(crate::seal::warnings(&config.seal));
    warnings.extend(crate::lb::warnings::warnings(config));
    warnings
}

/// What only the cloud knows (`kiln check --online`): the warnings, or why it could not say.
fn online_warnings(config: &Config) -> Result<Vec<String>, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let budget = crate::lb::warnings::ONLINE_BUDGET;
    runtime.block_on(async {
        match tokio::time::timeout(budget, crate::lb::warnings::online_warnings(config)).await {
            Ok(answer) => answer.map_err(|e| e.0),
            Err(_) => Err(format!("no answer within {}", humantime::format_duration(budget))),
        }
    })
}

pub fn run(path: &Path, strict: bool, online: bool) -> ExitCode {
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
    let mut warnings = warnings(&config);
    if online {
        match online_warnings(&config) {
            Ok(more) => warnings.extend(more),
            Err(e) => eprintln!(
                "kiln check: {}: note: [lb] drain_timeout was not compared with the target group's deregistration delay: {e}",
                path.display()
            ),
        }
    }
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
    print_summary(path, &config, warnings.len(), &references);
    ExitCode::SUCCESS
}

/// What a config that passed holds: `PATH: ok (...)`, the coordination store, the secrets.
fn print_summary(path: &Path, config: &Config, warnings: usize, references: &[String]) {
    let replicas: u64 = config.services.iter().map(|s| u64::from(s.replicas)).sum();
    let warned = match warnings {
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

//! `kiln check`: the config checks of `kiln boot`, without starting anything. With `[secrets]`
//! it also checks the references in `[env] defaults` and lists them (user-data and tags are only
//! known at boot: `kiln env` lists those).

use crate::config::Config;
use crate::secrets::Reference;
use std::path::Path;
use std::process::ExitCode;

pub fn run(path: &Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("kiln check: {e}");
            return ExitCode::from(crate::EXIT_CONFIG);
        }
    };
    let references = match default_references(&config) {
        Ok(lines) => lines,
        Err(e) => {
            eprintln!("kiln check: {}: {e}", path.display());
            return ExitCode::from(crate::EXIT_CONFIG);
        }
    };
    let replicas: u32 = config.services.iter().map(|s| s.replicas).sum();
    println!(
        "{}: ok ({} services, {} processes)",
        path.display(),
        config.services.len(),
        replicas
    );
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

/// `NAME  secret (REFERENCE)` for each reference in `[env] defaults`; the first bad one is an error.
fn default_references(config: &Config) -> Result<Vec<String>, String> {
    let Some(secrets) = &config.secrets else {
        return Ok(Vec::new());
    };
    let mut lines = Vec::new();
    for (name, value) in &config.env.defaults {
        match Reference::parse(value, secrets) {
            None => {}
            Some(Ok(reference)) => lines.push(format!("{name}  secret ({reference})")),
            Some(Err(e)) => return Err(format!("[env] defaults: {name}: {e}")),
        }
    }
    Ok(lines)
}

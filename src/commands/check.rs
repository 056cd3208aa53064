//! `kiln check`: the config checks of `kiln boot`, without starting anything.

use crate::config::{Config, ConfigError};
use std::path::Path;
use std::process::ExitCode;

pub fn run(path: &Path) -> ExitCode {
    // The runtime directories as they are on this machine: `kiln boot` refuses the same.
    let loaded = Config::load(path).and_then(|config| match config.control.runtime_dir_problems() {
        problems if problems.is_empty() => Ok(config),
        problems => Err(ConfigError {
            file: path.to_path_buf(),
            problems,
        }),
    });
    match loaded {
        Ok(config) => {
            let replicas: u64 = config.services.iter().map(|s| u64::from(s.replicas)).sum();
            println!(
                "{}: ok ({} services, {} processes)",
                path.display(),
                config.services.len(),
                replicas
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kiln check: {e}");
            ExitCode::from(crate::EXIT_CONFIG)
        }
    }
}

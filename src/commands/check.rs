//! `kiln check`: the config checks of `kiln boot`, without starting anything.

use crate::config::Config;
use std::path::Path;
use std::process::ExitCode;

pub fn run(path: &Path) -> ExitCode {
    match Config::load(path) {
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

//! `kiln seal`: the last step of an image bake. Records the `[seal]` paths into the manifest
//! that every boot verifies, labelled with the release: `--release` wins over `[seal] release`,
//! since the pipeline that bakes the image knows its version and the config is the same for every
//! bake.

use crate::config::{Config, Release};
use crate::seal;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

pub fn run(path: &Path, release: Option<&str>) -> ExitCode {
    let mut config = match Config::load(path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("kiln seal: {e}");
            return ExitCode::from(crate::EXIT_CONFIG);
        }
    };
    if !config.seal.is_enabled() {
        eprintln!(
            "kiln seal: {}: no [seal] section: add one with the paths to seal",
            path.display()
        );
        return ExitCode::from(crate::EXIT_CONFIG);
    }
    if let Some(label) = release {
        match label.parse::<Release>() {
            Ok(label) => config.seal.release = Some(label),
            Err(e) => {
                eprintln!("kiln seal: --release: {e}");
                return ExitCode::from(crate::EXIT_CONFIG);
            }
        }
    }
    let started = Instant::now();
    match seal::seal(&config.seal) {
        Ok(manifest) => {
            let (files, bytes) = manifest.file_totals();
            println!(
                "sealed {} path(s): {} entries, {files} files, {bytes} bytes in {:.2?}",
                manifest.roots.len(),
                manifest.entry_count(),
                started.elapsed()
            );
            if let Some(release) = &manifest.release {
                println!("release {release}");
            }
            println!("root {}", manifest.root_hash_hex());
            println!("manifest {}", config.seal.manifest.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("kiln seal: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Hidden `kiln remount-readonly`: the boot's read-only step alone, for tests (run it inside a
/// private mount namespace) and for trying a config by hand. Exit 0 only when read-only.
pub fn remount(path: &Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("kiln remount-readonly: {e}");
            return ExitCode::from(crate::EXIT_CONFIG);
        }
    };
    let outcome = seal::remount_readonly(&config.seal);
    println!("{outcome}");
    if outcome.is_read_only() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

//! `kiln verify`: compares the sealed paths with the manifest, as boot does, and lists every
//! difference. Exit 0: matches; 1: differs; 2: could not verify (no or bad manifest, unreadable
//! path); 78: bad config.

use crate::config::Config;
use crate::seal::{self, SealError};
use std::path::Path;
use std::process::ExitCode;

pub fn run(path: &Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("kiln verify: {e}");
            return ExitCode::from(crate::EXIT_CONFIG);
        }
    };
    match seal::verify(&config.seal) {
        Ok(v) if v.differences.is_empty() => {
            let release = v
                .manifest
                .release
                .as_ref()
                .map(|r| format!("release {r}, "))
                .unwrap_or_default();
            println!(
                "ok: the sealed paths match {} ({release}{} entries, root {})",
                config.seal.manifest.display(),
                v.manifest.entry_count(),
                v.manifest.root_hash_hex()
            );
            ExitCode::SUCCESS
        }
        Ok(v) => {
            for difference in &v.differences {
                println!("{difference}");
            }
            eprintln!(
                "kiln verify: {} difference(s) from {} (root {})",
                v.differences.len(),
                config.seal.manifest.display(),
                v.manifest.root_hash_hex()
            );
            ExitCode::from(1)
        }
        Err(SealError::NotConfigured) => {
            eprintln!(
                "kiln verify: {}: no [seal] section: nothing is sealed",
                path.display()
            );
            ExitCode::from(crate::EXIT_CONFIG)
        }
        Err(e) => {
            eprintln!("kiln verify: {e}");
            ExitCode::from(2)
        }
    }
}

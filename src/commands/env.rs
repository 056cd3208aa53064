//! `kiln env`: the metadata and env steps of `kiln boot`, without starting anything.
//!
//! Prints each variable's name and where it came from, never a value; fails with the error a
//! boot would fail with. For bake-time checks and for debugging an instance's user-data.

use crate::config::Config;
use crate::env::Source;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

/// `all`: also list the variables inherited from kiln's own environment.
/// `write_to`: also write `env` and `instance.json` there, as a boot writes them to `state_dir`.
pub fn run(path: &Path, all: bool, write_to: Option<&Path>) -> ExitCode {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("kiln env: {e}");
            return ExitCode::from(crate::EXIT_CONFIG);
        }
    };
    let _log = crate::systemd::log::init();
    let started = Instant::now();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("kiln env: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let metadata = match runtime.block_on(crate::metadata::fetch(&config.metadata)) {
        Ok(metadata) => metadata,
        Err(e) => {
            eprintln!("kiln env: {e}");
            return ExitCode::FAILURE;
        }
    };
    let took = started.elapsed();
    let frozen = match crate::env::freeze(&config.env, &config.metadata, &metadata) {
        Ok(frozen) => frozen,
        Err(e) => {
            eprintln!("kiln env: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(dir) = write_to
        && let Err(e) = crate::env::write_files(dir, &frozen, &metadata)
    {
        eprintln!("kiln env: cannot write {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }

    let facts = &metadata.facts;
    let known = [
        ("instance", &facts.instance_id),
        ("region", &facts.region),
        ("zone", &facts.zone),
    ];
    let described: Vec<String> = known
        .iter()
        .filter_map(|(what, v)| Some(format!("{what} {}", v.as_deref()?)))
        .chain([format!("fetched in {}ms", took.as_millis())])
        .collect();
    let mut out = format!(
        "{} at {} ({})\n",
        facts.provider,
        metadata.endpoint,
        described.join(", ")
    );
    let shown: Vec<(&str, Source)> = frozen
        .vars()
        .filter_map(|(name, _)| Some((name, frozen.source(name)?)))
        .filter(|(_, source)| all || *source != Source::Kiln)
        .collect();
    let width = shown.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    for (name, source) in &shown {
        out.push_str(&format!("{name:width$}  {}\n", source.as_str()));
    }
    let inherited = frozen
        .vars()
        .filter(|(n, _)| frozen.source(n) == Some(Source::Kiln))
        .count();
    if !all && inherited > 0 {
        out.push_str(&format!(
            "(+ {inherited} inherited from kiln's own environment; --all lists them)\n"
        ));
    }
    print!("{out}");
    ExitCode::SUCCESS
}

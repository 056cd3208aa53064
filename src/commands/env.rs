//! `kiln env`: the metadata and env steps of `kiln boot`, without starting anything.
//!
//! Prints each variable's name and where it came from (`secret (ssm:/app/prod/db)` for a
//! resolved reference), never a value; fails with the error a boot would fail with. Secrets are
//! resolved as a boot resolves them, so it also tells whether the instance may read them.

use crate::config::Config;
use crate::env::{FrozenEnv, Source};
use crate::metadata::Metadata;
use crate::terminal::printable;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

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
    let (metadata, frozen, took) = match fetch_and_freeze(&config) {
        Ok(fetched) => fetched,
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
    print!("{}", report(&metadata, &frozen, took, all));
    ExitCode::SUCCESS
}

/// The metadata and env steps of a boot, within the metadata deadline; how long the fetch took.
fn fetch_and_freeze(config: &Config) -> Result<(Metadata, FrozenEnv, Duration), String> {
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))?;
    let deadline = tokio::time::Instant::now() + config.metadata.deadline.get();
    let metadata = runtime
        .block_on(crate::metadata::fetch_by(&config.metadata, deadline))
        .map_err(|e| e.to_string())?;
    let took = started.elapsed();
    let (frozen, line) = runtime.block_on(freeze(config, &metadata, deadline))?;
    if let Some(line) = line {
        eprintln!("{line}");
    }
    Ok((metadata, frozen, took))
}

/// Where the metadata came from, then each variable's name and source (never a value).
fn report(metadata: &Metadata, frozen: &FrozenEnv, took: Duration, all: bool) -> String {
    let facts = &metadata.facts;
    let known = [
        ("instance", &facts.instance_id),
        ("region", &facts.region),
        ("zone", &facts.zone),
    ];
    let described: Vec<String> = known
        .iter()
        .filter_map(|(what, v)| Some(format!("{what} {}", printable(v.as_deref()?))))
        .chain([format!("fetched in {}ms", took.as_millis())])
        .collect();
    let mut out = format!(
        "{} at {} ({})\n",
        facts.provider,
        printable(&metadata.endpoint),
        described.join(", ")
    );
    let shown: Vec<(&str, String)> = frozen
        .vars()
        .filter(|(name, _)| all || frozen.source(name) != Some(Source::Kiln))
        .filter_map(|(name, _)| Some((name, frozen.describe_source(name)?)))
        .collect();
    let width = shown.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
    for (name, source) in &shown {
        out.push_str(&format!("{name:width$}  {source}\n"));
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
    out
}

/// The env step of a boot: layers, then the secrets when `[secrets]` is set, then freeze.
/// The line says how the secrets went.
async fn freeze(
    config: &Config,
    metadata: &crate::metadata::Metadata,
    deadline: tokio::time::Instant,
) -> Result<(crate::env::FrozenEnv, Option<String>), String> {
    let layered = crate::env::layer(&config.env, &config.metadata, metadata).map_err(|e| e.to_string())?;
    let Some(secrets) = &config.secrets else {
        let frozen = layered.freeze(Default::default()).map_err(|e| e.to_string())?;
        check_exec_limits(config, &frozen, metadata)?;
        return Ok((frozen, None));
    };
    let plan = crate::secrets::plan(secrets, &layered).map_err(|e| e.to_string())?;
    let stores = crate::secrets::Stores::new(secrets, &config.metadata, &metadata.facts)
        .map_err(|e| format!("secrets: {e}"))?;
    let resolution = plan.resolve(&stores, deadline).await.map_err(|e| e.to_string())?;
    let line = format!(
        "secrets: {} resolved in {}ms ({} requests)",
        resolution.secrets.references.len() + resolution.secrets.loaded.len(),
        resolution.took.as_millis(),
        resolution.requests
    );
    let frozen = layered.freeze(resolution.secrets).map_err(|e| e.to_string())?;
    check_exec_limits(config, &frozen, metadata)?;
    Ok((frozen, Some(line)))
}

/// As the boot does: an environment no exec of some service could carry is refused.
fn check_exec_limits(
    config: &Config,
    frozen: &crate::env::FrozenEnv,
    metadata: &crate::metadata::Metadata,
) -> Result<(), String> {
    let limits = crate::env::ExecLimits::of_this_machine();
    crate::env::check_exec_limits(frozen, &config.services, metadata, limits).map_err(|e| e.to_string())
}

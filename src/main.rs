//! The `kiln` command line. Each subcommand is a thin door into the library.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "kiln", version, about = "Boot runtime for immutable server images")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Boot the instance: fetch the environment, start the services, serve health, join the load balancer.
    Boot {
        #[arg(long, default_value = kiln::config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Validate a config without starting anything (for image bakes).
    Check {
        #[arg(long, default_value = kiln::config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Show what a running kiln is doing. Exit code: 0 ready, 1 failed, 2 starting or degraded, 3 unreachable.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
        /// Control socket (default: the one named by --config, else /run/kiln/control.sock).
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Read the control socket path from this config.
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // TLS (AWS, https metadata endpoints) goes through rustls with ring; the provider is chosen
    // once per process. An error only means it was already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    match cli.command {
        Command::Boot { config } => kiln::boot::run(&config),
        Command::Check { config } => kiln::commands::check::run(&config),
        Command::Status { json, socket, config } => kiln::status::run(json, socket, config),
    }
}

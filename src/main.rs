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
    /// Validate a config without starting anything (for image bakes). Exit code: 0 usable
    /// (warnings printed), 78 not.
    Check {
        #[arg(long, default_value = kiln::config::DEFAULT_PATH)]
        config: PathBuf,
        /// Refuse on warnings too (exit 78).
        #[arg(long)]
        strict: bool,
        /// Also ask the cloud what only it knows, with kiln's credentials: the ELBv2 target
        /// group's deregistration delay against [lb] drain_timeout. Out of reach: a note, not
        /// a failure.
        #[arg(long)]
        online: bool,
    },
    /// Fetch and check the environment without starting anything; print names and sources, never values.
    Env {
        #[arg(long, default_value = kiln::config::DEFAULT_PATH)]
        config: PathBuf,
        /// Also list the variables inherited from kiln's own environment.
        #[arg(long)]
        all: bool,
        /// Also write `env` and `instance.json` into this directory, as a boot does into state_dir.
        #[arg(long, value_name = "DIR")]
        write_to: Option<PathBuf>,
    },
    /// Record the [seal] paths into the integrity manifest (the last step of an image bake).
    Seal {
        #[arg(long, default_value = kiln::config::DEFAULT_PATH)]
        config: PathBuf,
        /// The image's label (e.g. v42), recorded in the manifest; wins over [seal] release.
        #[arg(long, value_name = "LABEL")]
        release: Option<String>,
    },
    /// Compare the [seal] paths with the manifest and list every difference. Exit code: 0 same, 1 differs, 2 cannot verify.
    Verify {
        #[arg(long, default_value = kiln::config::DEFAULT_PATH)]
        config: PathBuf,
    },
    /// Bind-remount the [seal] paths read-only, as boot does (for tests in a private mount namespace).
    #[command(hide = true)]
    RemountReadonly {
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
    /// Wait until the boot is over (for bakes, scripts, smoke tests). Exit code: 0 ready, 1 failed
    /// or stopping (it will not become ready), 2 not ready when --timeout ran out, 3 unreachable.
    Wait(kiln::status::wait::WaitArgs),
    /// Every instance behind the load balancer: its image and state, and a verdict. Read-only.
    /// Exit code: 0 uniform and ready, 2 rolling or degraded, 1 drift, empty or unreachable.
    Fleet(kiln::fleet::FleetArgs),
}

/// Exit code of a command line that cannot be used (sysexits' EX_USAGE). Not clap's 2, which
/// `kiln status`, `kiln wait` and `kiln fleet` use for "not ready yet".
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    // Before anything else, and so before a secret is read: kiln's memory (its environment from
    // the start) holds credentials that no core file and no other process of its user may see.
    // Through prctl(2) rather than systemd's LimitCORE= alone: that also covers `kiln env` from
    // a shell and /proc/PID/environ and mem, which no rlimit closes. Nothing is logged yet:
    // saying it failed is all kiln can do, and it goes on (the unit's LimitCORE=0 still holds).
    if let Err(e) = kiln::process::crash::no_core() {
        eprintln!("kiln: cannot mark itself non-dumpable (prctl PR_SET_DUMPABLE): {e}");
    }
    if let Err(e) = kiln::process::crash::crash_on_segv() {
        eprintln!("kiln: cannot make SIGSEGV and SIGBUS fatal: {e}");
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.use_stderr() {
                true => ExitCode::from(EXIT_USAGE),
                false => ExitCode::SUCCESS, // --help, --version
            };
        }
    };
    match cli.command {
        Command::Boot { config } => kiln::boot::run(&config),
        Command::Check {
            config,
            strict,
            online,
        } => kiln::commands::check::run(&config, strict, online),
        Command::Env {
            config,
            all,
            write_to,
        } => kiln::commands::env::run(&config, all, write_to.as_deref()),
        Command::Seal { config, release } => kiln::commands::seal::run(&config, release.as_deref()),
        Command::Verify { config } => kiln::commands::verify::run(&config),
        Command::RemountReadonly { config } => kiln::commands::seal::remount(&config),
        Command::Status { json, socket, config } => kiln::status::run(json, socket, config),
        Command::Wait(args) => kiln::status::wait::run(args),
        Command::Fleet(args) => kiln::fleet::run(args),
    }
}

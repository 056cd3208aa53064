//! `kiln wait`: blocks until the boot is over, for a bake pipeline, a script or a smoke test.
//!
//! It asks the control socket's `ready` (the report of `/readyz?verbose`) every [`POLL`] until
//! the phase settles or `--timeout` runs out. Asking again rather than holding one question open
//! until the phase changes: an answer takes microseconds and closes its connection, so a waiter
//! never holds one of the socket's few connections (2 to 16, `fd_budget`) and never stands, as
//! the stalest connection, in front of the next `kiln status` at the cap (`serve::slots`).
//!
//! The exit code is a contract, read as `kiln status`'s codes are, but as an outcome:
//!
//! | code | when |
//! | --- | --- |
//! | 0 | ready |
//! | 1 | the boot ended and it will not become ready by itself: refused (`failed`), stopping or stopped, or `kiln boot` refuses the config on disk |
//! | 2 | still not ready when `--timeout` ran out (booting, starting, degraded) |
//! | 3 | kiln could not be reached when `--timeout` ran out, or what answered is not a kiln |
//! | 64 | the command line cannot be used |

use super::{EXIT_UNREACHABLE, ask, find_socket, show_refused_config};
use crate::config::HumanDuration;
use crate::state::Phase;
use crate::terminal::printable;
use serde::Deserialize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// How often the phase is asked for: what kiln wait adds to the time from ready to its exit.
pub const POLL: Duration = Duration::from_millis(100);

/// After this long without an answer, a person is told once that kiln is still not reachable.
const UNREACHABLE_NOTE: Duration = Duration::from_secs(10);

/// Exit code: ready.
pub const EXIT_READY: u8 = 0;
/// Exit code: the boot ended and the instance will not become ready by itself.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: not ready yet when `--timeout` ran out.
pub const EXIT_TIMEOUT: u8 = 2;

#[derive(Debug, clap::Args)]
pub struct WaitArgs {
    /// Give up after this long (`90s`, `5m`): exit 2, or 3 when kiln was not reachable. Without
    /// it, wait as long as the boot takes.
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<HumanDuration>,
    /// Print the readiness report that ended the wait (the JSON of `/readyz?verbose`).
    #[arg(long)]
    pub json: bool,
    /// Control socket (default: the one named by --config, else /run/kiln/control.sock).
    #[arg(long)]
    pub socket: Option<PathBuf>,
    /// Read the control socket path from this config.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// What the `ready` answer says that decides the wait; the rest is printed as it came.
#[derive(Debug, Deserialize)]
struct Readiness {
    phase: Phase,
    reason: Option<String>,
}

/// The last thing the socket said.
enum Seen {
    Unreachable(String),
    Report { raw: String, readiness: Readiness },
}

pub fn run(args: WaitArgs) -> ExitCode {
    let started = Instant::now();
    let deadline = args.timeout.map(|t| started + t.get());
    let (socket, refused) = match (args.socket, args.config) {
        (Some(socket), _) => (socket, None),
        (None, config) => find_socket(config),
    };
    let mut seen;
    let mut noted = false;
    loop {
        match ask(&socket, "ready") {
            Ok(raw) => match serde_json::from_str::<Readiness>(&raw) {
                Ok(readiness) if settled(readiness.phase) => {
                    return finish(&raw, &readiness, started.elapsed(), args.json);
                }
                Ok(readiness) => seen = Seen::Report { raw, readiness },
                Err(e) => {
                    eprintln!(
                        "kiln wait: unexpected answer from {}: {e}: {}",
                        socket.display(),
                        printable(raw.trim())
                    );
                    return ExitCode::from(EXIT_UNREACHABLE);
                }
            },
            Err(e) => match &refused {
                // kiln boot refuses this config and binds nothing: no kiln is coming.
                Some(refused) => return show_refused_config(refused, args.json),
                None => seen = Seen::Unreachable(e.to_string()),
            },
        }
        if let Seen::Unreachable(e) = &seen
            && !noted
            && started.elapsed() >= UNREACHABLE_NOTE
        {
            noted = true;
            eprintln!(
                "kiln wait: kiln is not reachable at {} yet ({e}); still waiting",
                socket.display()
            );
        }
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left.is_some_and(|left| left.is_zero()) {
            return gave_up(&seen, &socket, args.timeout.unwrap_or_default(), args.json);
        }
        std::thread::sleep(left.map_or(POLL, |left| left.min(POLL)));
    }
}

/// Whether the boot is over for good: ready, or never ready without a new boot.
fn settled(phase: Phase) -> bool {
    match phase {
        Phase::Ready | Phase::Failed | Phase::Stopping | Phase::Stopped => true,
        Phase::Booting | Phase::Starting | Phase::Degraded => false,
    }
}

/// The end of a wait on a settled phase: ready (0), or why it will not be (1).
fn finish(raw: &str, readiness: &Readiness, waited: Duration, json: bool) -> ExitCode {
    if json {
        println!("{}", raw.trim_end());
    }
    let reason = reason_of(readiness);
    match readiness.phase {
        Phase::Ready => {
            if !json {
                println!("ready (waited {})", HumanDuration(round_ms(waited)));
            }
            ExitCode::from(EXIT_READY)
        }
        Phase::Failed => {
            eprintln!("kiln wait: the boot failed{reason}");
            ExitCode::from(EXIT_FAILED)
        }
        _ => {
            eprintln!("kiln wait: kiln is stopping and will not become ready{reason}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// `--timeout` ran out: still not ready (2), or kiln never answered (3).
fn gave_up(seen: &Seen, socket: &std::path::Path, waited: HumanDuration, json: bool) -> ExitCode {
    match seen {
        Seen::Report { raw, readiness } => {
            if json {
                println!("{}", raw.trim_end());
            }
            let phase = serde_json::to_value(readiness.phase).unwrap_or_default();
            let phase = phase.as_str().unwrap_or("not ready");
            eprintln!(
                "kiln wait: not ready after {waited}: {phase}{}",
                reason_of(readiness)
            );
            ExitCode::from(EXIT_TIMEOUT)
        }
        Seen::Unreachable(e) => {
            eprintln!(
                "kiln wait: kiln is not reachable at {} after {waited}: {e}",
                socket.display()
            );
            ExitCode::from(EXIT_UNREACHABLE)
        }
    }
}

/// `: <why>` when kiln says why, one line, printable.
fn reason_of(readiness: &Readiness) -> String {
    match &readiness.reason {
        Some(reason) => format!(": {}", printable(&reason.replace('\n', "; "))),
        None => String::new(),
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_ready_failed_and_stopping_end_the_wait() {
        let ending: Vec<Phase> = Phase::ALL.into_iter().filter(|&p| settled(p)).collect();
        assert_eq!(
            ending,
            [Phase::Ready, Phase::Failed, Phase::Stopping, Phase::Stopped]
        );
    }

    #[test]
    fn the_exit_codes_are_those_of_kiln_status_read_as_an_outcome() {
        assert_eq!(Phase::Ready.exit_code(), EXIT_READY);
        assert_eq!(Phase::Failed.exit_code(), EXIT_FAILED);
        assert_eq!(Phase::Starting.exit_code(), EXIT_TIMEOUT);
        assert_eq!(super::super::EXIT_UNREACHABLE, 3);
    }
}

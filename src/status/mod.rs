//! `kiln status`: asks the control socket for the snapshot and shows it to a person (or, with
//! `--json`, to a script). Exit code: 0 ready, 1 failed, 2 starting or degraded, 3 unreachable.
//! `kiln wait` (`wait`) asks the same socket until the boot is over.

mod render;
pub mod wait;

use crate::config::{Config, ConfigError, ControlConfig};
use crate::state::Snapshot;
use crate::terminal::printable_lines;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

pub const EXIT_UNREACHABLE: u8 = 3;

pub use render::render;

pub fn run(json: bool, socket: Option<PathBuf>, config: Option<PathBuf>) -> ExitCode {
    let (socket, refused) = match (socket, config) {
        (Some(socket), _) => (socket, None),
        (None, config) => find_socket(config),
    };
    let raw = match ask(&socket, "status") {
        Ok(raw) => raw,
        Err(e) => {
            if let Some(refused) = refused {
                return show_refused_config(&refused, json);
            }
            eprintln!("kiln status: kiln is not reachable at {}: {e}", socket.display());
            return ExitCode::from(EXIT_UNREACHABLE);
        }
    };
    if let Some(refused) = refused {
        eprintln!(
            "kiln status: warning: the config kiln answers for is not the one on disk now, which kiln boot refuses: {refused}"
        );
    }
    let snapshot: Snapshot = match serde_json::from_str(&raw) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("kiln status: unexpected answer from {}: {e}", socket.display());
            return ExitCode::from(EXIT_UNREACHABLE);
        }
    };
    if json {
        println!("{}", raw.trim_end());
    } else {
        // render escapes each outside field; this guards whatever a later field forgets.
        print!("{}", printable_lines(&render(&snapshot, crate::state::now_ms())));
    }
    ExitCode::from(snapshot.phase.exit_code())
}

/// The socket the config names, and the config's problems when `kiln boot` would refuse it. A
/// config with problems still names its socket when its `[control]` table is readable: a kiln
/// booted from an earlier version of the file may be running.
fn find_socket(config: Option<PathBuf>) -> (PathBuf, Option<ConfigError>) {
    let default_socket = || ControlConfig::default().socket;
    let (path, named) = match config {
        Some(path) => (path, true),
        None => (PathBuf::from(crate::config::DEFAULT_PATH), false),
    };
    if !named && !path.exists() {
        return (default_socket(), None);
    }
    match Config::load(&path) {
        Ok(c) => (c.control.socket, None),
        Err(e) => {
            let socket = std::fs::read_to_string(&path)
                .ok()
                .and_then(|text| text.parse::<toml::Table>().ok())
                .and_then(|t| Some(PathBuf::from(t.get("control")?.get("socket")?.as_str()?)))
                .unwrap_or_else(default_socket);
            (socket, Some(e))
        }
    }
}

/// `kiln boot` exits 78 on a config with problems and starts nothing, so no kiln answers: say
/// so, with every problem, as a refused boot's status would. Exit code 1, as for a refused boot.
fn show_refused_config(e: &ConfigError, json: bool) -> ExitCode {
    if json {
        let doc = serde_json::json!({
            "phase": crate::state::Phase::Failed,
            "reason": "config refused",
            "config": e.file,
            "config_errors": e.problems,
        });
        println!("{doc}");
    } else {
        println!("kiln is not running: kiln boot refuses its config (exit 78) and starts nothing");
        println!("  why: {}", e.to_string().replace('\n', "\n  "));
    }
    ExitCode::from(crate::state::Phase::Failed.exit_code())
}

/// Sends one request line and returns the whole answer.
/// A connection closed before the answer is asked again, twice at most: at its connection cap
/// kiln closes the stalest connections to make room, and under a flood of clients that connect
/// and send nothing that can be this one before it had time to send its line.
pub fn ask(socket: &Path, request: &str) -> std::io::Result<String> {
    let mut attempt = 1;
    loop {
        match ask_once(socket, request) {
            Ok(answer) if answer.is_empty() && attempt < 3 => {}
            Err(e) if closed_early(&e) && attempt < 3 => {}
            result => return result,
        }
        attempt += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn closed_early(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionReset, UnexpectedEof};
    matches!(e.kind(), BrokenPipe | ConnectionReset | UnexpectedEof)
}

fn ask_once(socket: &Path, request: &str) -> std::io::Result<String> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(format!("{request}\n").as_bytes())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer)
}

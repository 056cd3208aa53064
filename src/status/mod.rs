//! `kiln status`: asks the control socket for the snapshot and shows it to a person (or, with
//! `--json`, to a script). Exit code: 0 ready, 1 failed, 2 starting or degraded, 3 unreachable.

mod render;

use crate::config::Config;
use crate::state::Snapshot;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

pub const EXIT_UNREACHABLE: u8 = 3;

pub use render::render;

pub fn run(json: bool, socket: Option<PathBuf>, config: Option<PathBuf>) -> ExitCode {
    let socket = match (socket, config) {
        (Some(socket), _) => socket,
        (None, Some(config)) => match Config::load(&config) {
            Ok(c) => c.control.socket,
            Err(e) => {
                eprintln!("kiln status: {e}");
                return ExitCode::from(EXIT_UNREACHABLE);
            }
        },
        (None, None) => Config::load(Path::new(crate::config::DEFAULT_PATH))
            .map(|c| c.control.socket)
            .unwrap_or_else(|_| PathBuf::from("/run/kiln/control.sock")),
    };
    let raw = match ask(&socket, "status") {
        Ok(raw) => raw,
        Err(e) => {
            eprintln!("kiln status: kiln is not reachable at {}: {e}", socket.display());
            return ExitCode::from(EXIT_UNREACHABLE);
        }
    };
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
        print!("{}", render(&snapshot, crate::state::now_ms()));
    }
    ExitCode::from(snapshot.phase.exit_code())
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

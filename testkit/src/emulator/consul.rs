//! STUB: filled by its issue.

/// Entry point of `kiln-testkit consul ...`.
pub fn main(_args: &[String]) -> std::process::ExitCode {
    eprintln!("kiln-testkit consul: not implemented yet");
    std::process::ExitCode::FAILURE
}

//! STUB: filled by its issue.

/// Entry point of `kiln-testkit metadata ...`.
pub fn main(_args: &[String]) -> std::process::ExitCode {
    eprintln!("kiln-testkit metadata: not implemented yet");
    std::process::ExitCode::FAILURE
}

pub fn run(_c: &std::path::Path) -> std::process::ExitCode {
    std::process::ExitCode::SUCCESS
}

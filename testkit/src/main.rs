//! `kiln-testkit`: the emulators as a standalone program, for benchmarks and the VM test.
//!
//! Usage: `kiln-testkit metadata ...` or `kiln-testkit consul ...` (see each emulator's docs), and
//! `kiln-testkit example render [--app symfony] DIR` (renders examples/php-app or examples/symfony;
//! used by their run.sh), and
//! `kiln-testkit zero-loss --kiln PATH` (the load balancer drill; used by bench/zero_loss.sh), and
//! `kiln-testkit fleet-drill --kiln PATH` (the fleet drill; used by bench/fleet.sh), and
//! `kiln-testkit secrets-bench --kiln PATH` (20 secret references against moto; bench/secrets.sh), and
//! `kiln-testkit lifecycle-bench --kiln PATH` (notices behind HAProxy; bench/lifecycle.sh), and
//! `kiln-testkit warm-bench --kiln PATH` (a Symfony instance joining with and without `[warm]`;
//! bench/warm.sh).

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("metadata") => testkit::emulator::metadata::main(&args[1..]),
        Some("consul") => testkit::emulator::consul::main(&args[1..]),
        Some("example") => testkit::example::main(&args[1..]),
        Some("zero-loss") => testkit::drill::main(&args[1..]),
        Some("fleet-drill") => testkit::fleet_drill::main(&args[1..]),
        Some("secrets-bench") => testkit::secrets_bench::main(&args[1..]),
        Some("lifecycle-bench") => testkit::lifecycle_drill::main(&args[1..]),
        Some("warm-bench") => testkit::warm_bench::main(&args[1..]),
        _ => {
            eprintln!(
                "usage: kiln-testkit metadata|consul|example|zero-loss|fleet-drill|secrets-bench|lifecycle-bench|warm-bench [ARGS...]"
            );
            ExitCode::from(2)
        }
    }
}

//! `rust-version` in Cargo.toml is a promise: kiln builds with that Rust. Only one toolchain is at
//! hand, so the promise is checked from the parts that can be checked without an older compiler:
//! clippy's `incompatible_msrv` (in CI's clippy run) for the standard library, this test for the
//! dependencies, and the floor the language sets (let-chains in edition 2024: Rust 1.88).

use std::process::Command;

/// The oldest Rust with let-chains (`if a && let Some(x) = b`), which kiln uses.
const LANGUAGE_FLOOR: (u32, u32) = (1, 88);

fn parse(version: &str) -> (u32, u32) {
    let mut parts = version
        .split('.')
        .map(|p| p.parse::<u32>().expect("a numeric version"));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// The platform cargo builds for here (`host:` of `cargo -vV`).
fn host_triple(cargo: &str) -> String {
    let out = Command::new(cargo).arg("-vV").output().expect("run cargo -vV");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .unwrap_or_else(|| panic!("no host: line in cargo -vV: {text}"))
        .trim()
        .to_string()
}

#[test]
fn no_dependency_needs_a_newer_rust_than_kiln_claims() {
    let claimed = parse(env!("CARGO_PKG_RUST_VERSION"));
    assert!(
        claimed >= LANGUAGE_FLOOR,
        "rust-version {} is below {LANGUAGE_FLOOR:?}, the first Rust with let-chains",
        env!("CARGO_PKG_RUST_VERSION")
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Only this platform's dependencies: those are the ones a build here downloaded. Without the
    // filter, cargo resolves every platform's (Windows-only crates among them) and, offline, fails
    // on a machine whose cargo cache holds only what this build needed.
    let host = host_triple(&cargo);
    let out = Command::new(&cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .args(["--filter-platform", &host])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
    let too_new: Vec<String> = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .filter_map(|p| {
            let needs = p["rust_version"].as_str()?;
            (parse(needs) > claimed).then(|| format!("{} {} needs {needs}", p["name"], p["version"]))
        })
        .collect();
    assert!(
        too_new.is_empty(),
        "rust-version = {:?}, but: {}",
        env!("CARGO_PKG_RUST_VERSION"),
        too_new.join(", ")
    );
}

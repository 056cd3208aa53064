//! Every seed of `fuzz/corpus/<target>/` through its target's entry point in `kiln::fuzzing`, on
//! stable Rust, in the normal suite: the promises the fuzz targets check hold for the seeds, and a
//! crash the fuzzer once found (kept here as a seed) stays fixed.

use std::path::Path;

fn run(target: &str, check: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut seeds = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(
            outcome.is_ok(),
            "{target}: seed {} breaks a promise",
            path.display()
        );
        seeds += 1;
    }
    assert!(seeds > 0, "no seeds in {}", dir.display());
}

#[test]
fn user_data() {
    run("user_data", kiln::fuzzing::user_data);
}

#[test]
fn user_data_mime() {
    run("user_data_mime", kiln::fuzzing::user_data_mime);
}

#[test]
fn seal_manifest() {
    run("seal_manifest", kiln::fuzzing::seal_manifest);
}

#[test]
fn fastcgi_answer() {
    run("fastcgi_answer", kiln::fuzzing::fastcgi_answer);
}

#[test]
fn haproxy_stat() {
    run("haproxy_stat", kiln::fuzzing::haproxy_stat);
}

#[test]
fn metadata_document() {
    run("metadata_document", kiln::fuzzing::metadata_document);
}

#[test]
fn secret_reference() {
    run("secret_reference", kiln::fuzzing::secret_reference);
}

#[test]
fn aws_error() {
    run("aws_error", kiln::fuzzing::aws_error);
}

#[test]
fn config() {
    run("config", kiln::fuzzing::config);
}

/// The seeds reach past the first check: a config that loads, a manifest that decodes.
#[test]
fn the_seeds_are_accepted_where_they_should_be() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let config = std::fs::read_to_string(corpus.join("config/full")).unwrap();
    kiln::config::Config::parse(&config).unwrap_or_else(|e| panic!("config/full does not load: {e:?}"));
    let manifest = std::fs::read(corpus.join("seal_manifest/v2-release-symlink")).unwrap();
    kiln::seal::Manifest::decode(&manifest).unwrap();
}

#[test]
fn config_drive() {
    run("config_drive", kiln::fuzzing::config_drive);
}

#[test]
fn goal_state() {
    run("goal_state", kiln::fuzzing::goal_state);
}

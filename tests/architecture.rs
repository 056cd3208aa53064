//! The rules of ARCHITECTURE.md, held: each room of `src/` imports only rooms of lower layers, so
//! the module graph has no circle and nothing reaches back up the boot's walk.

use std::collections::BTreeMap;
use std::path::Path;

/// Each room's layer, as ARCHITECTURE.md lists them. A room may import rooms of lower layers only.
const LAYERS: &[(&str, u8)] = &[
    // Leaves: import nothing of kiln's.
    ("state", 0),
    ("terminal", 0),
    ("mountinfo", 0),
    ("fd_budget", 0),
    ("aws_names", 0),
    ("net", 0),
    ("state_dir", 0),
    ("systemd", 0),
    ("timer", 0),
    // The config, read once.
    ("config", 1),
    // What the config alone can drive, and the first fetch.
    ("metrics", 2),
    ("cgroup", 2),
    ("metadata", 2),
    // What the fetch makes.
    ("env", 3),
    ("aws", 3),
    ("process", 4),
    ("seal", 4),
    ("secrets", 4),
    ("render", 4),
    ("probe", 5),
    ("warm", 5),
    // The running instance.
    ("supervise", 6),
    ("serve", 6),
    ("lb", 6),
    ("lifecycle", 6),
    // Clients of a running kiln or of a fleet.
    ("fleet", 7),
    ("status", 7),
    ("once", 7),
    // The doors.
    ("commands", 8),
    ("boot", 9),
];

/// Rooms outside the walk: `fuzzing` is the fuzz targets' entry into every parser.
const EXEMPT: &[&str] = &["fuzzing", "lib", "main"];

fn room_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next().unwrap().as_os_str().to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// `crate::NAME` in code (comments and `#[cfg(test)] mod tests` left out).
fn imports(text: &str) -> Vec<String> {
    let code = text.split("#[cfg(test)]\nmod tests").next().unwrap();
    let mut found = Vec::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap();
        let mut rest = line;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            found.push(name);
        }
        if let Some(list) = line.trim_start().strip_prefix("use crate::{") {
            found.extend(
                list.split(',')
                    .map(|p| p.trim().split("::").next().unwrap().trim_matches('}').to_string()),
            );
        }
    }
    found
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_room_imports_only_rooms_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let layer: BTreeMap<&str, u8> = LAYERS.iter().copied().collect();
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut wrong = Vec::new();
    for file in all {
        let room = room_of(&src, &file);
        if EXEMPT.contains(&room.as_str()) {
            continue;
        }
        let Some(&mine) = layer.get(room.as_str()) else {
            wrong.push(format!(
                "{room}: a room without a layer: add it to ARCHITECTURE.md and LAYERS"
            ));
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for target in imports(&text) {
            let Some(&theirs) = layer.get(target.as_str()) else {
                continue; // crate-level items: EXIT_CONFIG, ...
            };
            if target != room && theirs >= mine {
                wrong.push(format!(
                    "{}: {room} (layer {mine}) imports {target} (layer {theirs})",
                    file.strip_prefix(&src).unwrap().display()
                ));
            }
        }
    }
    wrong.sort();
    wrong.dedup();
    assert!(
        wrong.is_empty(),
        "imports against ARCHITECTURE.md:\n{}",
        wrong.join("\n")
    );
}

//! Running `kiln fleet --json` from a network namespace (where the load balancer and the
//! members are reached) and reading its answer.

use crate::netns::Netns;
use std::path::Path;
use std::time::{Duration, Instant};

/// One `kiln fleet --json` run: its exit code, its JSON and how long the whole process took.
#[derive(Debug, Clone)]
pub struct FleetLook {
    pub exit: i32,
    pub json: serde_json::Value,
    /// Wall time of the `kiln fleet` process, start to exit.
    pub wall: Duration,
}

impl FleetLook {
    /// Runs `kiln fleet --json ARGS` inside `netns`; panics when it prints no JSON.
    pub fn run(netns: &Netns, kiln_bin: &Path, args: &[&str]) -> FleetLook {
        let started = Instant::now();
        let out = netns
            .command(kiln_bin)
            .arg("fleet")
            .arg("--json")
            .args(args)
            .output()
            .expect("run kiln fleet");
        let wall = started.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let json = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "kiln fleet {args:?} printed no JSON ({e}), exit {:?}:\n{stdout}{}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            )
        });
        FleetLook {
            exit: out.status.code().unwrap_or(-1),
            json,
            wall,
        }
    }

    pub fn verdict(&self) -> &str {
        self.json["verdict"].as_str().unwrap_or("")
    }

    /// Members on the image with this root hash.
    pub fn count_of(&self, root_hash: &str) -> usize {
        self.images()
            .into_iter()
            .find(|(_, hash, _)| hash == root_hash)
            .map_or(0, |(_, _, n)| n)
    }

    /// `(release label, root hash, members)` per image, most members first; "" for no label.
    pub fn images(&self) -> Vec<(String, String, usize)> {
        let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_string();
        self.json["images"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| {
                (
                    text(&i["release"]),
                    text(&i["root_hash"]),
                    i["members"].as_u64().unwrap_or(0) as usize,
                )
            })
            .collect()
    }

    pub fn problems(&self) -> Vec<String> {
        self.json["problems"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str().map(String::from))
            .collect()
    }

    /// The member the load balancer calls `name`, or whose kiln says it is instance `name`.
    pub fn member(&self, name: &str) -> Option<&serde_json::Value> {
        self.json["members"]
            .as_array()?
            .iter()
            .find(|m| m["name"] == name || m["kiln"]["instance_id"] == name)
    }

    /// How many members the answer lists.
    pub fn members(&self) -> usize {
        self.json["members"].as_array().map_or(0, Vec::len)
    }

    /// The whole answer, for a failing assertion.
    pub fn shown(&self) -> String {
        format!(
            "exit {}, {}",
            self.exit,
            serde_json::to_string_pretty(&self.json).unwrap_or_default()
        )
    }
}

//! kiln's part of the cgroup tree: found or made at boot, cleared of what an earlier kiln left,
//! one cgroup per unit, removed when kiln exits.

use super::discover::{self, Owner};
use super::files::{self, create_dir};
use super::limits::{Controller, Limits};
use super::name;
use super::unit::UnitCgroup;
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long what an earlier kiln left may take to die before the boot is refused.
const CLEAR_DEADLINE: Duration = Duration::from_secs(10);

/// How kiln will hold its services' processes.
#[derive(Debug)]
pub enum Containment {
    /// One cgroup per unit below `tree`; `cleared` is what an earlier kiln left there, killed.
    Cgroups {
        tree: ServiceTree,
        cleared: Vec<Cleared>,
    },
    /// No cgroup kiln may use: process groups only, and why.
    ProcessGroups { why: String },
}

/// Processes found in a cgroup of kiln's at boot and killed: an earlier kiln was killed
/// (`kill -9`, OOM) and its services outlived it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cleared {
    /// The cgroup, relative to `services/` (the unit's cgroup name).
    pub cgroup: String,
    /// Pid and command name of each process.
    pub processes: Vec<(Pid, String)>,
}

/// The `services/` cgroup and what each unit's cgroup below it can do.
#[derive(Debug)]
pub struct ServiceTree {
    services: PathBuf,
    /// The `kiln@…` sub-tree kiln made at the root of the hierarchy, removed with everything in
    /// it on exit; None when kiln owns its own cgroup (it stays in `kiln/` there).
    instance: Option<PathBuf>,
    /// Enabled for each unit's cgroup.
    controllers: Vec<Controller>,
    /// What kiln's cgroup offers its children (`cgroup.controllers`), for a refusal's words.
    offered: Vec<String>,
}

/// Finds kiln's cgroup, makes `services/` below it (and, where kiln owns its cgroup, moves
/// itself into `kiln/`), enables `wanted` where offered, and kills what an earlier kiln left.
/// An error (processes that would not die) refuses the boot: starting services beside them is
/// what cgroups are here to prevent.
pub fn contain(state_dir: &Path, wanted: &[Controller]) -> Result<Containment, String> {
    let (base, instance) = match place(state_dir) {
        Ok(placed) => placed,
        Err(why) => return Ok(Containment::ProcessGroups { why }),
    };
    let services = base.join("services");
    if let Err(e) = create_dir(&services) {
        return Ok(Containment::ProcessGroups {
            why: format!("cannot create {}: {e}", services.display()),
        });
    }
    let cleared = clear(&services)?;
    let offered = words(&base.join("cgroup.controllers"));
    let at_base = enable(&base, wanted);
    let controllers = enable(&services, &at_base);
    let tree = ServiceTree {
        services,
        instance,
        controllers,
        offered,
    };
    Ok(Containment::Cgroups { tree, cleared })
}

/// The controllers a kiln booted on this machine could give its units, found without changing
/// anything (for `kiln check`): the file that offers them, and its words; Err: why services
/// would get process groups only. Run outside kiln's own cgroup (a login shell, an image bake)
/// it answers for kiln.service, to which systemd delegates the controllers of the hierarchy's
/// top (`Delegate=yes`).
pub fn offered(state_dir: &Path) -> Result<(PathBuf, Vec<String>), String> {
    let located = discover::locate()?;
    let file = match discover::owner(&located.dir, &located.own, std::process::id()) {
        // `place` makes kiln's tree below the root: what the root enables for its children.
        Ok(Owner::Root) => {
            name::instance(state_dir)?;
            located.dir.join("cgroup.subtree_control")
        }
        Ok(Owner::Delegated) => located.dir.join("cgroup.controllers"),
        Err(_) => located.mount.join("cgroup.controllers"),
    };
    let words = words(&file);
    Ok((file, words))
}

/// The cgroup below which `services/` goes, and the sub-tree to remove on exit when kiln made
/// one at the root. Where kiln owns its cgroup it moves itself into a leaf `kiln/` first: a
/// cgroup that enables controllers for its children may hold no process itself.
fn place(state_dir: &Path) -> Result<(PathBuf, Option<PathBuf>), String> {
    let found = discover::find()?;
    match found.owner {
        Owner::Root => {
            let instance = found.dir.join(name::instance(state_dir)?);
            create_dir(&instance).map_err(|e| format!("cannot create {}: {e}", instance.display()))?;
            Ok((instance.clone(), Some(instance)))
        }
        Owner::Delegated => {
            let leaf = found.dir.join("kiln");
            create_dir(&leaf).map_err(|e| format!("cannot create {}: {e}", leaf.display()))?;
            std::fs::write(leaf.join("cgroup.procs"), std::process::id().to_string())
                .map_err(|e| format!("cannot move kiln into {}: {e}", leaf.display()))?;
            Ok((found.dir, None))
        }
    }
}

/// Kills whatever is in `services/` (an earlier kiln's units, whatever its config was) and
/// removes the cgroups below it: each unit starts in a fresh cgroup with this config's limits.
/// Whether anything is there is `cgroup.events`' word, not what kiln can see: processes of another
/// PID namespace are not listed, but they are killed all the same.
fn clear(services: &Path) -> Result<Vec<Cleared>, String> {
    let unreadable = |e: std::io::Error| format!("cannot read {}/cgroup.events: {e}", services.display());
    let events = std::fs::File::open(services.join("cgroup.events")).map_err(unreadable)?;
    if !files::populated(&events).map_err(unreadable)? {
        remove_children(services)?;
        return Ok(Vec::new());
    }
    let mut cleared = leftovers(services);
    if cleared.is_empty() {
        cleared.push(Cleared {
            cgroup: ".".into(),
            processes: Vec::new(),
        });
    }
    let empty = files::kill_and_wait_blocking(services, CLEAR_DEADLINE).map_err(|e| {
        format!(
            "cannot kill what an earlier kiln left in {}: {e}",
            services.display()
        )
    })?;
    if !empty {
        let left: Vec<String> = files::subtree(services)
            .iter()
            .flat_map(|c| files::pids(c).unwrap_or_default())
            .map(|p| format!("{p} {}", files::comm(p)))
            .collect();
        return Err(format!(
            "processes an earlier kiln left in {} did not die within {}s of SIGKILL: {}",
            services.display(),
            CLEAR_DEADLINE.as_secs(),
            left.join(", ")
        ));
    }
    remove_children(services)?;
    Ok(cleared)
}

/// The processes kiln can see in each cgroup below `services/`, to say what it killed.
fn leftovers(services: &Path) -> Vec<Cleared> {
    files::subtree(services)
        .into_iter()
        .filter_map(|cgroup| {
            let pids = files::pids(&cgroup).ok().filter(|p| !p.is_empty())?;
            let name = cgroup
                .strip_prefix(services)
                .unwrap_or(&cgroup)
                .display()
                .to_string();
            Some(Cleared {
                cgroup: if name.is_empty() { ".".into() } else { name },
                processes: pids.into_iter().map(|p| (p, files::comm(p))).collect(),
            })
        })
        .collect()
}

fn remove_children(services: &Path) -> Result<(), String> {
    let children = std::fs::read_dir(services)
        .map_err(|e| format!("cannot read {}: {e}", services.display()))?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()));
    for child in children {
        files::remove_tree(&child.path())
            .map_err(|e| format!("cannot remove an earlier kiln's cgroup: {e}"))?;
    }
    Ok(())
}

/// Enables each of `wanted` that `dir` offers for its children; returns those enabled.
fn enable(dir: &Path, wanted: &[Controller]) -> Vec<Controller> {
    let offered = words(&dir.join("cgroup.controllers"));
    let control = dir.join("cgroup.subtree_control");
    wanted
        .iter()
        .copied()
        .filter(|c| offered.iter().any(|o| o == c.as_str()))
        .filter(|c| match std::fs::write(&control, format!("+{c}")) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!("cannot enable the {c} controller in {}: {e}", control.display());
                false
            }
        })
        .collect()
}

fn words(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .split_whitespace()
        .map(String::from)
        .collect()
}

impl ServiceTree {
    /// `…/services`: every unit's cgroup is a child of it.
    pub fn dir(&self) -> &Path {
        &self.services
    }

    /// Controllers enabled in each unit's cgroup.
    pub fn controllers(&self) -> &[Controller] {
        &self.controllers
    }

    /// Makes (or takes over) the cgroup of `unit` and writes its `limits`. A limit whose
    /// controller kiln does not have is refused, naming the key: a `memory_max` that silently
    /// did nothing would be found out by the OOM killer of the whole machine.
    pub fn unit(&self, unit: &str, limits: &Limits) -> Result<UnitCgroup, String> {
        let settings = limits.settings();
        if let Some(setting) = settings
            .iter()
            .find(|s| !self.controllers.contains(&s.controller))
        {
            let offered = match self.offered.is_empty() {
                true => "none".to_string(),
                false => self.offered.join(" "),
            };
            return Err(format!(
                "{} needs the {} controller, which kiln's cgroup {} does not have (it has: {offered}); a limit kiln cannot apply is refused, not ignored",
                setting.key,
                setting.controller,
                self.services.parent().unwrap_or(&self.services).display(),
            ));
        }
        UnitCgroup::make(self.services.join(name::unit(unit)), settings)
    }
}

/// On exit (every unit stopped), kiln's cgroups go: the `kiln@…` sub-tree it made, or
/// `services/` in a cgroup of its own (kiln itself stays in `kiln/` until it exits, and systemd
/// removes the unit's cgroup then).
impl Drop for ServiceTree {
    fn drop(&mut self) {
        let made = self.instance.as_ref().unwrap_or(&self.services);
        if let Err(e) = files::remove_tree(made) {
            tracing::warn!("cannot remove kiln's cgroups: {e}");
        }
    }
}

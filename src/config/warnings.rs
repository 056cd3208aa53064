//! What `kiln check` warns about in the config alone: settings that are accepted but do not do
//! what they seem to. (What depends on this machine's cgroups is `crate::cgroup::warnings`.) A
//! warning never fails `kiln check` (exit 0) unless `--strict` asks it to.

use super::validate::place;
use super::{Config, ServiceConfig, glob_match};
use nix::unistd::{Uid, User};
use std::path::Path;

impl Config {
    /// Every warning, service by service in file order, each naming its place and key.
    pub fn warnings(&self) -> Vec<String> {
        let state_dir = &self.control.state_dir;
        let mut warnings = Vec::new();
        for (i, service) in self.services.iter().enumerate() {
            let here = place(i, service);
            let own = env_allow_warning(service, &self.services, state_dir);
            warnings.extend(own.map(|w| format!("{here}: {w}")));
        }
        warnings
    }
}

/// `env_allow` keeps names out of a service's environment, not out of its reach: root reads
/// every process's `/proc/PID/environ`, kiln's user owns STATE_DIR/env, and a process may read
/// the environ of another process of its user.
fn env_allow_warning(service: &ServiceConfig, all: &[ServiceConfig], state_dir: &Path) -> Option<String> {
    service.env_allow.as_ref()?;
    let uid = uid_of(service)?;
    let no_user = match service.user {
        None => " (no `user`: kiln's)",
        Some(_) => "",
    };
    let reads_all = format!(
        "who can read the whole environment ({}, /proc/PID/environ of every service)",
        state_dir.join("env").display()
    );
    if uid.is_root() {
        return Some(format!(
            "env_allow is no boundary: the service runs as root{no_user}, {reads_all}; give it a user of its own"
        ));
    }
    if uid == Uid::effective() {
        return Some(format!(
            "env_allow is no boundary: the service runs as kiln's own user{no_user}, {reads_all}; give it a user of its own"
        ));
    }
    let (index, wider) = all.iter().enumerate().find(|(_, other)| {
        other.name != service.name && uid_of(other) == Some(uid) && gets_more(other, service)
    })?;
    Some(format!(
        "env_allow is no boundary: the service runs as {:?}, as {} does, which gets more of the environment, and a process can read /proc/PID/environ of another of its user; give it a user of its own",
        service.user.as_deref().unwrap_or_default(),
        place(index, wider)
    ))
}

/// The user a service runs as: its `user`, or kiln's own. None for a user that does not exist
/// (a problem of its own).
fn uid_of(service: &ServiceConfig) -> Option<Uid> {
    match &service.user {
        None => Some(Uid::effective()),
        Some(name) => User::from_name(name).ok().flatten().map(|u| u.uid),
    }
}

/// `other` may get a name `service` does not: it has no allow list, or a glob of its list is
/// not on `service`'s, or a name of its list is not matched by `service`'s globs.
fn gets_more(other: &ServiceConfig, service: &ServiceConfig) -> bool {
    let (Some(theirs), Some(ours)) = (&other.env_allow, &service.env_allow) else {
        return other.env_allow.is_none();
    };
    theirs.iter().any(|pattern| {
        let literal = !pattern.contains(['*', '?']);
        !(ours.contains(pattern) || (literal && ours.iter().any(|glob| glob_match(glob, pattern))))
    })
}

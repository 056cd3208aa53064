//! What `kiln check` warns about in the config alone: settings that are accepted but do not do
//! what they seem to. (What depends on this machine is with the room that knows it: the cgroups
//! in `crate::cgroup::warnings`, the sealed paths in `crate::seal::warnings`, the unit's stop
//! timeout and the target group's deregistration delay in `crate::lb::warnings`.) A warning
//! never fails `kiln check` (exit 0) unless `--strict` asks it to.

use super::secrets::Scheme;
use super::validate::place;
use super::{Config, ServiceConfig, glob_match};
use nix::unistd::{Uid, User};
use std::path::Path;

impl Config {
    /// Every warning, service by service in file order, each naming its place and key.
    pub fn warnings(&self) -> Vec<String> {
        let state_dir = &self.control.state_dir;
        let mut warnings = self.default_reference_warnings();
        for (i, service) in self.services.iter().enumerate() {
            let here = place(i, service);
            let own = env_allow_warning(service, &self.services, state_dir);
            warnings.extend(own.map(|w| format!("{here}: {w}")));
            for (name, value) in &service.env {
                if let Some(scheme) = reference_scheme(value) {
                    warnings.push(format!(
                        "{here}: env {name} looks like a secret reference ({scheme}:...), but a service's \
                         env is never resolved: the service gets that text; move it to [env] defaults, \
                         with [secrets] schemes including \"{scheme}\""
                    ));
                }
            }
        }
        warnings
    }

    /// `[env] defaults` that look like secret references but are not resolved: no `[secrets]`,
    /// or one whose `schemes` leaves theirs out.
    fn default_reference_warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for (name, value) in &self.env.defaults {
            let Some(scheme) = reference_scheme(value) else {
                continue;
            };
            let why = match &self.secrets {
                Some(secrets) if secrets.enables(scheme) => continue,
                Some(_) => format!("[secrets] schemes leaves out \"{scheme}\""),
                None => "there is no [secrets] section".to_string(),
            };
            warnings.push(format!(
                "[env] defaults: {name} looks like a secret reference ({scheme}:...), but {why}: \
                 the services get that text; add \"{scheme}\" to [secrets] schemes (a [secrets] \
                 section enables them all)"
            ));
        }
        warnings
    }
}

/// The scheme of a value shaped like a secret reference (`ssm:`, `secretsmanager:`, `gcp:`,
/// `keyvault:` and more): the shape alone, whether or not the rest is a valid reference. The
/// value itself is never shown: it may be a pasted secret.
fn reference_scheme(value: &str) -> Option<Scheme> {
    let (scheme, rest) = value.split_once(':')?;
    Scheme::ALL
        .into_iter()
        .find(|s| s.as_str() == scheme && !rest.is_empty())
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

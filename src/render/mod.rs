//! `[render]` at boot: the files the app reads its configuration from, written from the frozen
//! environment and the instance's facts after the environment is frozen and before any service
//! starts, then read-only for as long as kiln runs (`mount`), and gone when it stops.
//!
//! Every file's text is made first, in memory; only when all of them are made is anything
//! mounted or written, so a template naming a variable the instance lacks refuses the boot
//! having changed nothing. Errors name the file, the template, the line and the variable; values
//! never leave the files.

mod format;
mod mount;

use crate::config::render::{Account, Content, FilePlan, RenderPlan};
use crate::env::{FrozenEnv, Source};
use crate::metadata::InstanceFacts;
use crate::state::{RenderStatus, RenderedFile};
use std::collections::BTreeMap;
use std::path::PathBuf;

pub use mount::SOURCE;

/// The files as written, until [`Rendered::remove`] at stop.
#[derive(Debug)]
pub struct Rendered {
    dir: PathBuf,
    held: mount::Held,
    names: Vec<PathBuf>,
}

impl Rendered {
    /// Unmounts kiln's tmpfs (or removes the files written in place): nothing of them outlives
    /// the services that read them.
    pub fn remove(self) {
        mount::remove(&self.dir, &self.held, &self.names);
    }
}

/// One file's text and what it holds.
struct Made<'p> {
    plan: &'p FilePlan,
    text: String,
    variables: u32,
    secrets: u32,
}

/// Makes every file, then writes them all; the status says what was written and how it is held.
pub fn render(
    plan: &RenderPlan,
    env: &FrozenEnv,
    facts: &InstanceFacts,
) -> Result<(Rendered, RenderStatus), String> {
    let made = plan
        .files
        .iter()
        .enumerate()
        .map(|(i, file)| {
            make(file, env, facts)
                .map_err(|e| format!("[[render.file]] #{} {:?}: {e}", i.saturating_add(1), file.name))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let contents: Vec<mount::Contents<'_>> = made
        .iter()
        .map(|m| mount::Contents {
            name: &m.plan.name,
            bytes: m.text.as_bytes().to_vec(),
            uid: m.plan.owner.as_ref().map(|a| a.id),
            gid: m.plan.group.as_ref().map(|a| a.id),
            mode: m.plan.mode.bits(),
        })
        .collect();
    let held = mount::write_all(&plan.dir, &contents)
        .map_err(|e| format!("[render] dir {}: {e}", plan.dir.display()))?;
    let status = RenderStatus {
        dir: plan.dir.display().to_string(),
        read_only: held == mount::Held::ReadOnly,
        writable: match &held {
            mount::Held::ReadOnly => None,
            mount::Held::Writable(why) => Some(why.clone()),
        },
        files: made.iter().map(file_status).collect(),
    };
    let rendered = Rendered {
        dir: plan.dir.clone(),
        held,
        names: plan.files.iter().map(|f| PathBuf::from(&f.name)).collect(),
    };
    Ok((rendered, status))
}

/// One file's text: the allowed variables in its format, or its template filled.
fn make<'p>(file: &'p FilePlan, env: &FrozenEnv, facts: &InstanceFacts) -> Result<Made<'p>, String> {
    let count = |names: &mut dyn Iterator<Item = &str>| {
        let names: Vec<&str> = names.collect();
        let secrets = names
            .iter()
            .filter(|n| env.source(n) == Some(Source::Secret))
            .count();
        (names.len() as u32, secrets as u32)
    };
    match &file.content {
        Content::Env { format, allow } => {
            let vars: Vec<(&str, &str)> = env
                .vars()
                .filter(|(name, _)| allow.iter().any(|g| crate::config::glob_match(g, name)))
                .collect();
            let text = format::whole_env(*format, &vars).unwrap_or_default();
            let (variables, secrets) = count(&mut vars.iter().map(|(n, _)| *n));
            Ok(Made {
                plan: file,
                text,
                variables,
                secrets,
            })
        }
        Content::Template(template) => {
            let values: BTreeMap<String, String> =
                env.vars().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let text = template
                .render(&values, &fact_values(facts))
                .map_err(|e| format!("template {}: {}", template.path().display(), e.0))?;
            let named = template
                .env_names
                .iter()
                .map(String::as_str)
                .filter(|n| env.get(n).is_some());
            let (variables, secrets) = count(&mut named.into_iter());
            Ok(Made {
                plan: file,
                text,
                variables,
                secrets,
            })
        }
    }
}

/// `instance.*` of a template: the facts kiln knows, by the names `config::jinja` lists.
fn fact_values(facts: &InstanceFacts) -> BTreeMap<&'static str, String> {
    let known = [
        ("provider", Some(&facts.provider)),
        ("instance_id", facts.instance_id.as_ref()),
        ("region", facts.region.as_ref()),
        ("zone", facts.zone.as_ref()),
        ("local_ipv4", facts.local_ipv4.as_ref()),
        ("hostname", facts.hostname.as_ref()),
    ];
    known
        .into_iter()
        .filter_map(|(name, value)| Some((name, value?.clone())))
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

fn file_status(made: &Made<'_>) -> RenderedFile {
    let plan = made.plan;
    let name_of = |account: &Option<Account>, own: fn() -> String| {
        account.as_ref().map_or_else(own, |a| a.name.clone())
    };
    let owner = name_of(&plan.owner, || {
        let uid = nix::unistd::geteuid();
        nix::unistd::User::from_uid(uid)
            .ok()
            .flatten()
            .map_or(uid.to_string(), |u| u.name)
    });
    let group = name_of(&plan.group, || {
        let gid = nix::unistd::getegid();
        nix::unistd::Group::from_gid(gid)
            .ok()
            .flatten()
            .map_or(gid.to_string(), |g| g.name)
    });
    RenderedFile {
        name: plan.name.clone(),
        format: plan.format().as_str().to_string(),
        mode: plan.mode.to_string(),
        owner: format!("{owner}:{group}"),
        bytes: made.text.len() as u64,
        variables: made.variables,
        secrets: made.secrets,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_facts_a_template_sees_are_those_kiln_knows() {
        let facts = InstanceFacts {
            provider: "ec2".into(),
            instance_id: Some("i-0abc".into()),
            region: None,
            zone: Some(String::new()),
            local_ipv4: Some("10.0.0.5".into()),
            hostname: None,
        };
        let values = fact_values(&facts);
        assert_eq!(
            values.keys().copied().collect::<Vec<_>>(),
            ["instance_id", "local_ipv4", "provider"]
        );
        for name in values.keys() {
            assert!(crate::config::TEMPLATE_FACTS.contains(name), "{name}");
        }
    }
}

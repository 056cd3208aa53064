//! What `kiln check` (and the boot's log) warns about the cgroup limits on this machine: a
//! limit whose controller a kiln booted here would not have. It looks at the machine, so it
//! lives here rather than with the config's own warnings.

use super::Limits;
use crate::config::{Config, ServiceConfig, place};

/// Every limit warning, service by service in file order, each naming its place and key.
pub fn warnings(config: &Config) -> Vec<String> {
    // Asked only when a service sets a limit: most configs need no look at the cgroups.
    if config.services.iter().all(|s| Limits::of(s).is_empty()) {
        return Vec::new();
    }
    let offered = super::offered(&config.control.state_dir);
    let mut warnings = Vec::new();
    for (i, service) in config.services.iter().enumerate() {
        let here = place(i, service);
        warnings.extend(
            limit_warnings(service, &offered)
                .into_iter()
                .map(|w| format!("{here}: {w}")),
        );
    }
    warnings
}

/// A limit the controllers kiln would have here cannot hold: the boot would refuse it.
fn limit_warnings(
    service: &ServiceConfig,
    offered: &Result<(std::path::PathBuf, Vec<String>), String>,
) -> Vec<String> {
    let refused = "kiln boot refuses a limit it cannot apply";
    Limits::of(service)
        .settings()
        .into_iter()
        .filter_map(|setting| match offered {
            Ok((_, words)) if words.iter().any(|w| w == setting.controller.as_str()) => None,
            Ok((file, words)) => Some(format!(
                "{} needs the {} controller, which a kiln booted here would not have ({} offers: {}); {refused}",
                setting.key,
                setting.controller,
                file.display(),
                if words.is_empty() { "none".to_string() } else { words.join(" ") }
            )),
            Err(why) => Some(format!(
                "{} needs a cgroup, and a kiln booted here would hold its services in process groups only ({why}); {refused}",
                setting.key
            )),
        })
        .collect()
}

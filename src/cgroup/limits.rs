//! The controllers kiln enables for its units and the limits a service may set on its cgroup.

use crate::config::{ByteSize, ServiceConfig};
use std::fmt;

/// A cgroup v2 controller kiln uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Controller {
    /// `memory.current` for status, `memory.max` for `memory_max`.
    Memory,
    /// `pids.max` for `tasks_max`.
    Pids,
    /// `cpu.weight` for `cpu_weight`. Enabled only when a service sets one: with it, units share
    /// the CPU as units (each weighs 100 unless told), not as processes, which would shift
    /// time from a php-fpm of 20 children to a lone worker.
    Cpu,
}

impl Controller {
    pub const ALL: [Controller; 3] = [Controller::Memory, Controller::Pids, Controller::Cpu];

    /// Its name in `cgroup.controllers` and `cgroup.subtree_control`.
    pub fn as_str(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Cpu => "cpu",
        }
    }
}

impl fmt::Display for Controller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a service asks of each of its units' cgroups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub memory_max: Option<ByteSize>,
    pub cpu_weight: Option<u16>,
    pub tasks_max: Option<u64>,
}

/// One limit as written to the cgroup: the key that asked for it, the controller it needs, the
/// file and the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    pub key: &'static str,
    pub controller: Controller,
    pub file: &'static str,
    pub value: String,
}

impl Limits {
    pub fn of(service: &ServiceConfig) -> Limits {
        Limits {
            memory_max: service.memory_max,
            cpu_weight: service.cpu_weight,
            tasks_max: service.tasks_max,
        }
    }

    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }

    /// The files to write, in a fixed order.
    pub fn settings(&self) -> Vec<Setting> {
        let memory = self.memory_max.map(|m| Setting {
            key: "memory_max",
            controller: Controller::Memory,
            file: "memory.max",
            value: m.bytes().to_string(),
        });
        let cpu = self.cpu_weight.map(|w| Setting {
            key: "cpu_weight",
            controller: Controller::Cpu,
            file: "cpu.weight",
            value: w.to_string(),
        });
        let tasks = self.tasks_max.map(|t| Setting {
            key: "tasks_max",
            controller: Controller::Pids,
            file: "pids.max",
            value: t.to_string(),
        });
        [memory, cpu, tasks].into_iter().flatten().collect()
    }
}

/// The controllers kiln enables for its units when they are there: memory and pids always (they
/// count, and limit only when asked), cpu only when a service sets `cpu_weight`.
pub fn wanted(services: &[ServiceConfig]) -> Vec<Controller> {
    let cpu = services.iter().any(|s| s.cpu_weight.is_some());
    Controller::ALL
        .into_iter()
        .filter(|c| *c != Controller::Cpu || cpu)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_limit_goes_to_its_file_and_needs_its_controller() {
        let limits = Limits {
            memory_max: Some(ByteSize(256 << 20)),
            cpu_weight: Some(50),
            tasks_max: Some(64),
        };
        let written: Vec<(&str, Controller, &str, String)> = limits
            .settings()
            .into_iter()
            .map(|s| (s.key, s.controller, s.file, s.value))
            .collect();
        assert_eq!(
            written,
            [
                (
                    "memory_max",
                    Controller::Memory,
                    "memory.max",
                    "268435456".to_string()
                ),
                ("cpu_weight", Controller::Cpu, "cpu.weight", "50".to_string()),
                ("tasks_max", Controller::Pids, "pids.max", "64".to_string()),
            ]
        );
        assert!(Limits::default().settings().is_empty());
    }
}

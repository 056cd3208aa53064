//! Every unit (each replica of a service) in a cgroup v2 of its own, below kiln's. A process
//! group cannot hold a process that wants out (`setsid()` after a double fork); a cgroup can:
//! every process a unit forks stays in its cgroup, stop and restart kill the whole cgroup, a
//! unit counts as gone only once its cgroup is empty, and a new kiln finds and kills what a
//! killed one left before it starts anything.
//!
//! The tree, where kiln owns its cgroup (systemd's `Delegate=yes`; a container's PID 1):
//!
//! ```text
//! /sys/fs/cgroup/system.slice/kiln.service/   kiln's cgroup, delegated
//! ├── kiln/                                   kiln itself: a cgroup that enables controllers
//! │                                           for its children may hold no process
//! └── services/                               memory, pids (cpu with a cpu_weight) enabled
//!     ├── php-fpm/                            one cgroup per unit; its limits are written here
//!     ├── nginx/
//!     ├── worker#1/
//!     └── worker#2/
//! ```
//!
//! Where kiln's cgroup is the root of the hierarchy (a machine or container without systemd, the
//! hybrid layout's `/sys/fs/cgroup/unified` on CI), kiln stays where it is and makes a sub-tree
//! named after its state directory, escaped as `systemd-escape --path` does:
//! `/sys/fs/cgroup/unified/kiln@run-kiln/services/php-fpm/`. A new kiln with the same config
//! finds it again; kilns with different state directories never share one.
//!
//! Anywhere else (cgroup2 missing or read-only, a cgroup kiln was not given) services get
//! process groups only, as before, and `kiln status` says so.
//!
//! Rooms: `discover` (mountinfo, kiln's cgroup, who owns it), `tree` (kiln's part of the
//! tree: made, cleared, removed), `unit` (one unit's cgroup: join, kill, wait until empty,
//! usage), `limits` (controllers and the per-service limits), `name`, `files` (the interface
//! files).

mod discover;
mod files;
mod limits;
mod name;
mod tree;
mod unit;
mod warnings;
pub use warnings::warnings;

pub use limits::{Controller, Limits, wanted};
pub use name::instance as instance_name;
pub use tree::{Cleared, Containment, ServiceTree, contain, offered};
pub use unit::{UnitCgroup, Usage, usage};

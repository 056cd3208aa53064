//! kiln: the boot runtime of an immutable server image.
//!
//! One boot walks these rooms in order, and data only flows forward:
//! `config` → `seal` → `metadata` → `env` → `supervise` (+ `probe`) → `serve` → `lb`,
//! with `state` as the one live snapshot everyone reports into and `systemd` for
//! notify and logging. `process` (spawning, the one reaper, output forwarding) sits below both
//! `probe` and `supervise` and imports neither; so does `cgroup` (each unit's cgroup, below
//! `supervise` and `boot`). `boot` is the walk itself; `status` is the client
//! of `kiln status`; `fleet` looks at every instance behind the load balancer (`kiln fleet`).
//! `metrics` renders the snapshot (and what the `state`'s recorder counted) for Prometheus.
//! `net` is where every outbound HTTP request starts: its clients, the retry until a deadline,
//! the bounded body, the metadata addresses (and when kiln gives up on the network).
//! `once` holds the lease of a task run once per fleet in DynamoDB or Consul.
//! `render` writes the files the app reads its configuration from before the services start;
//! `warm` sends requests through the app's own listener before the instance says it is ready.

pub mod aws;
pub mod aws_names;
pub mod boot;
pub mod cgroup;
pub mod commands;
pub mod config;
pub mod env;
pub mod fd_budget;
pub mod fleet;
#[doc(hidden)]
pub mod fuzzing;
pub mod lb;
pub mod lifecycle;
pub mod metadata;
pub mod metrics;
pub mod mountinfo;
pub mod net;
pub mod once;
pub mod probe;
pub mod process;
pub mod render;
pub mod seal;
pub mod secrets;
pub mod serve;
pub mod state;
pub mod state_dir;
pub mod status;
pub mod supervise;
pub mod systemd;
pub mod terminal;
pub mod timer;
pub mod warm;

/// Exit code for a config that cannot be used (sysexits' EX_CONFIG).
pub const EXIT_CONFIG: u8 = 78;

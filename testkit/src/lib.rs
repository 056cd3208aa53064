//! Test support for kiln: real peers started by the tests, emulators for what has no real server
//! here (cloud metadata services, the Consul agent), and helpers to wait on conditions.

pub mod cgroups;
pub mod cloud_init;
pub mod control;
pub mod drill;
pub mod emulator;
pub mod example;
pub mod fleet_drill;
pub mod fleet_look;
pub mod haproxy;
pub mod instance;
pub mod lifecycle_drill;
pub mod load;
pub mod member;
pub mod moto;
pub mod net;
pub mod netns;
pub mod notify;
pub mod peers;
pub mod prometheus;
pub mod secrets_bench;
pub mod server;
pub mod symfony;
pub mod wait;

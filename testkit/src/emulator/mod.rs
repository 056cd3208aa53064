//! Faithful emulators of servers that cannot run here, served over real HTTP.

pub mod consul;
pub mod metadata;

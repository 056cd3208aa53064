//! Faithful emulators of servers that cannot run here, served over real HTTP.

pub mod consul;
pub mod gcp_secret_manager;
pub mod key_vault;
pub mod metadata;
pub mod wireserver;

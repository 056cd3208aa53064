//! Small subcommands that only read and report. `boot` and `status` have rooms of their own.

pub mod check;
pub mod env;
pub mod seal;
pub mod verify;

//! todo

pub mod agent;

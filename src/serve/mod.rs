//! What kiln answers: `/livez` and `/readyz` for the load balancer, and the read-only control
//! socket for `kiln status`. Both only read the shared snapshot.

pub mod agent;
pub mod control;
pub mod health;

//! Child processes, below both `probe` and `supervise`: how a child is made (`spawn`: its own
//! session or group, its identity; `clone`: born in its cgroup, or joining it; `child`: what the
//! new process does before exec; `signals`: a clean signal state), who collects its exit
//! (`reaper`, the one owner of `waitpid`), and where its output goes (`output`, line by line into
//! kiln's log), and at which priority (`priority`: kiln a step ahead, its children as it was
//! started). And how kiln's own process crashes (`crash`: no core, a sent SIGSEGV kills).

mod child;
pub mod clone;
pub mod crash;
pub mod output;
pub mod priority;
pub mod reaper;
pub mod signals;
pub mod spawn;

pub use reaper::{Exit, Reaper};

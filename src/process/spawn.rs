//! Turning a service's config into a process: born in its unit's cgroup (`clone3`, see
//! [`clone`]), or made to join it before exec, so that nothing it forks is ever
//! outside it; its own session and process group (what a kill reaches where there is no
//! cgroup), its identity, its environment, pipes for its output, and default signal dispositions
//! with an empty mask ([`child`] does that part, in the new process). Exec probes
//! get their own process group and the same clean signal state.

use super::child::{self, FAILURE_LEN, Ids, Plan, Step};
use super::clone::{self, Fallback, SpawnPath};
use super::priority::Pinned;
use super::reaper::{Exit, Reaper};
use super::signals;
use crate::cgroup::UnitCgroup;
use crate::config::ServiceConfig;
use crate::env::FrozenEnv;
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};
use nix::unistd::{Gid, Pid, Uid, User};
use std::collections::BTreeMap;
use std::ffi::{CString, c_char};
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::MutexGuard;
use tokio::sync::oneshot;

/// Where a bare program name is looked for when the environment has no PATH: the same list
/// `kiln check` assumes.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Who a service runs as, resolved before fork (reading /etc/passwd after fork is not safe).
#[derive(Debug, Clone)]
pub struct Identity {
    uid: Uid,
    gid: Gid,
    groups: Vec<Gid>,
    home: Option<String>,
    name: Option<String>,
}

impl Identity {
    /// Resolves `user`/`group`; None when both are unset (the service runs as kiln does).
    pub fn resolve(service: &ServiceConfig) -> Result<Option<Identity>, String> {
        if service.user.is_none() && service.group.is_none() {
            return Ok(None);
        }
        let user = match &service.user {
            Some(name) => Some(
                User::from_name(name)
                    .map_err(|e| format!("user {name:?}: {e}"))?
                    .ok_or_else(|| format!("user {name:?}: no such user"))?,
            ),
            None => None,
        };
        let gid = match &service.group {
            Some(name) => {
                nix::unistd::Group::from_name(name)
                    .map_err(|e| format!("group {name:?}: {e}"))?
                    .ok_or_else(|| format!("group {name:?}: no such group"))?
                    .gid
            }
            None => user.as_ref().map(|u| u.gid).unwrap_or_else(Gid::current),
        };
        let groups = match &user {
            Some(u) => {
                let cname = CString::new(u.name.clone()).map_err(|e| e.to_string())?;
                nix::unistd::getgrouplist(&cname, gid).map_err(|e| format!("groups of {:?}: {e}", u.name))?
            }
            None => vec![gid],
        };
        Ok(Some(Identity {
            uid: user.as_ref().map(|u| u.uid).unwrap_or_else(Uid::current),
            gid,
            groups,
            home: user.as_ref().map(|u| u.dir.to_string_lossy().into_owned()),
            name: user.map(|u| u.name),
        }))
    }
}

/// A process to start, every string of it ready for exec: made before the process exists, which
/// may allocate nothing. No `Debug`: the environment holds secrets.
pub struct Launch {
    /// The paths to try, in order: the program itself, or one per directory of PATH.
    exec: Vec<CString>,
    argv: Vec<CString>,
    /// `NAME=value`, sorted by name, each name once.
    env: Vec<CString>,
    cwd: Option<CString>,
    ids: Option<Ids>,
    /// The nice level to run at (`nice`); None: the one kiln was started with.
    nice: Option<i32>,
}

impl Launch {
    /// One replica of `service`. `replica` is 1-based and exported to the process as
    /// `KILN_REPLICA` so that workers can tell themselves apart.
    pub fn service(
        service: &ServiceConfig,
        env: &FrozenEnv,
        identity: Option<&Identity>,
        replica: u32,
    ) -> io::Result<Launch> {
        let replica = replica.to_string();
        let mut vars: BTreeMap<&str, &str> = env.for_service(service.env_allow.as_deref()).collect();
        vars.extend(service.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        vars.insert("KILN_SERVICE", &service.name);
        vars.insert("KILN_REPLICA", &replica);
        if let Some(id) = identity {
            if let Some(home) = &id.home {
                vars.insert("HOME", home);
            }
            if let Some(name) = &id.name {
                vars.insert("USER", name);
                vars.insert("LOGNAME", name);
            }
        }
        let launch = Launch::new(&service.command, &vars, service.working_dir.as_deref(), identity)?;
        Ok(Launch {
            nice: service.nice.map(i32::from),
            ..launch
        })
    }

    /// `argv` with exactly the environment `env`, in `cwd`, as `identity`. A bare program name
    /// is looked up in the PATH of `env` when the process execs.
    pub fn new(
        argv: &[String],
        env: &BTreeMap<&str, &str>,
        cwd: Option<&Path>,
        identity: Option<&Identity>,
    ) -> io::Result<Launch> {
        let program = argv
            .first()
            .ok_or_else(|| invalid("the command is empty".into()))?;
        let search = env.get("PATH").copied().unwrap_or(DEFAULT_PATH);
        let exec = candidates(program, search)?;
        let argv = argv
            .iter()
            .map(|arg| CString::new(arg.as_str()))
            .collect::<Result<_, _>>()
            .map_err(|_| invalid("an argument of the command contains a NUL byte".into()))?;
        let env = env
            .iter()
            .map(|(name, value)| {
                CString::new(format!("{name}={value}"))
                    .map_err(|_| invalid(format!("environment variable {name} contains a NUL byte")))
            })
            .collect::<Result<_, _>>()?;
        let cwd = cwd
            .map(|dir| CString::new(dir.as_os_str().as_bytes()))
            .transpose()
            .map_err(|_| invalid("working_dir contains a NUL byte".into()))?;
        let ids = identity.map(|id| Ids {
            uid: id.uid.as_raw(),
            gid: id.gid.as_raw(),
            groups: id.groups.iter().map(|g| g.as_raw()).collect(),
        });
        Ok(Launch {
            exec,
            argv,
            env,
            cwd,
            ids,
            nice: None,
        })
    }
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// What exec tries for `program`: a path as it is, a bare name in each directory of `search`.
fn candidates(program: &str, search: &str) -> io::Result<Vec<CString>> {
    let paths: Vec<String> = match program.contains('/') {
        true => vec![program.to_string()],
        false => search
            .split(':')
            .filter(|dir| !dir.is_empty())
            .map(|dir| format!("{}/{program}", dir.trim_end_matches('/')))
            .collect(),
    };
    paths
        .into_iter()
        .map(CString::new)
        .collect::<Result<_, _>>()
        .map_err(|_| invalid("the program or PATH contains a NUL byte".into()))
}

/// A started process: its pid, and the read ends of its stdout and stderr.
#[derive(Debug)]
pub struct Spawned {
    pub pid: Pid,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// How the new process gets into its unit's cgroup.
enum Way<'a> {
    /// Created inside it: `clone3(CLONE_INTO_CGROUP)` with the cgroup's directory.
    Born(MutexGuard<'a, OwnedFd>),
    /// Forked, then `0` into this `cgroup.procs` before anything else.
    Joins(OwnedFd),
    /// No cgroup: forked, in a session of its own.
    Forked,
}

impl Way<'_> {
    fn of(cgroup: Option<&UnitCgroup>, born: bool) -> io::Result<Way<'_>> {
        Ok(match cgroup {
            None => Way::Forked,
            Some(cgroup) if born => Way::Born(cgroup.dir_fd()),
            Some(cgroup) => Way::Joins(cgroup.open_procs()?),
        })
    }
}

/// The new process was killed before it ran an instruction (no [`child::HELLO`]).
#[derive(Debug)]
struct NeverRan;

impl std::fmt::Display for NeverRan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the new process was killed before it ran")
    }
}

impl std::error::Error for NeverRan {}

/// Starts `launch` in its unit's `cgroup` (without one: a session of its own in kiln's) and
/// returns it, once it has exec'd, with a receiver for its exit. An error names the step that
/// failed in the new process (`setuid: Operation not permitted`), or is exec's own.
///
/// A process that `clone3` created in its cgroup and that was killed before it ran is what a
/// kernel does that kills such processes (see `cgroup::UnitCgroup`): from then on every process
/// takes the fallback, starting with this one, and `kiln status` says why.
pub fn spawn(
    reaper: &Reaper,
    launch: &Launch,
    cgroup: Option<&UnitCgroup>,
) -> io::Result<(Spawned, oneshot::Receiver<Exit>)> {
    let born = cgroup.is_some() && *clone::path() == SpawnPath::IntoCgroup;
    match start(reaper, launch, Way::of(cgroup, born)?) {
        Err(e) if born && e.get_ref().is_some_and(|e| e.is::<NeverRan>()) => {
            clone::demote(Fallback::KilledBeforeItRan);
            start(reaper, launch, Way::of(cgroup, false)?)
        }
        started => started,
    }
}

/// One attempt of [`spawn`], the way given.
fn start(reaper: &Reaper, launch: &Launch, way: Way<'_>) -> io::Result<(Spawned, oneshot::Receiver<Exit>)> {
    let (stdout, out_w) = pipe()?;
    let (stderr, err_w) = pipe()?;
    let (report_r, report_w) = pipe()?;
    let null = above_stdio(std::fs::File::open("/dev/null")?.into())?;
    let argv = pointers(&launch.argv);
    let envp = pointers(&launch.env);
    let plan = Plan {
        exec: &launch.exec,
        argv: &argv,
        envp: &envp,
        stdio: [null.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()],
        cwd: launch.cwd.as_deref(),
        ids: launch.ids.as_ref(),
        nofile: crate::fd_budget::for_children(),
        nice: launch.nice.or_else(super::priority::for_children),
        cpus: None,
        join: match &way {
            Way::Joins(procs) => Some(procs.as_raw_fd()),
            Way::Born(_) | Way::Forked => None,
        },
        report: report_w.as_raw_fd(),
    };
    reaper.start_child(move || {
        let (pid, waited) = create(&way, &plan)?;
        // The child's ends: once they are closed here, the report ends when the child execs.
        drop((null, out_w, err_w, report_w, way));
        match read_report(&report_r, waited)? {
            None => Ok((Spawned { pid, stdout, stderr }, pid)),
            Some(failure) => {
                reap(pid);
                Err(failure)
            }
        }
    })
}

/// Creates the process and, in it, runs `plan` to its exec. Every signal is blocked meanwhile:
/// the child starts with none of kiln's handlers reachable, and unblocks once its dispositions
/// are the defaults.
/// Returns the pid, and whether this thread waited for the child's exec (`vfork3`).
fn create(way: &Way<'_>, plan: &Plan<'_>) -> io::Result<(Pid, bool)> {
    // Born, or forked where clone3 is there: sharing kiln's memory until the exec.
    let shared = match way {
        Way::Born(cgroup) => Some(Some(cgroup.as_fd())),
        Way::Forked if *clone::path() == SpawnPath::IntoCgroup => Some(None),
        Way::Forked | Way::Joins(_) => None,
    };
    let mut stack = shared.map(|_| clone::ChildStack::new()).transpose()?;
    let pinned = shared.and_then(|_| Pinned::here());
    let plan = &Plan {
        cpus: pinned.as_ref().map(Pinned::for_child),
        ..*plan
    };
    let mut kept = SigSet::empty();
    pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::all()), Some(&mut kept))?;
    let created = match (shared, stack.as_mut()) {
        (Some(cgroup), Some(stack)) => match clone::vfork3(cgroup, stack, enter, plan) {
            Ok(None) => clone::clone3(cgroup).map(|pid| (pid, false)),
            vforked => vforked.map(|pid| (pid, true)),
        },
        _ => clone::fork().map(|pid| (pid, false)),
    };
    let pid = match created {
        Ok((None, _)) => child::run(plan),
        Ok((Some(pid), waited)) => Ok((pid, waited)),
        Err(e) => Err(io::Error::from(e)),
    };
    pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&kept), None)?;
    pid
}

/// Where a process made by [`clone::vfork3`] begins, on its own stack.
extern "C" fn enter(plan: *const Plan<'_>) -> ! {
    // SAFETY: `create` passes its `plan`, which lives (in the suspended parent) until the exec.
    child::run(unsafe { &*plan })
}

/// A whole report of a failure: [`child::HELLO`], then the failure.
const REPORT_LEN: usize = 1 + FAILURE_LEN;

/// What the child reported: None when it ran and exec'd (the report pipe ended after
/// [`child::HELLO`]), else the error.
///
/// After `vfork3` (`waited`) nothing is waited for: the child has exited, with its whole report
/// in the pipe, or is past its exec's point of no return (the kernel releases the parent only
/// there), where the pipe holds [`child::HELLO`] and ends a moment later. Waiting for that end
/// let kiln's thread preempt its own child there, which then waited a tick for its CPU.
fn read_report(report: &OwnedFd, waited: bool) -> io::Result<Option<io::Error>> {
    if waited {
        fcntl(report, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    }
    let mut message = [0u8; REPORT_LEN];
    let mut got = 0;
    while got < message.len() {
        match nix::unistd::read(report, &mut message[got..]) {
            Ok(0) | Err(Errno::EAGAIN) => break,
            Ok(n) => got += n,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let [_, step, e0, e1, e2, e3] = message;
    let os = io::Error::from_raw_os_error(i32::from_ne_bytes([e0, e1, e2, e3]));
    let failure = match (got, Step::from_byte(step)) {
        (0, _) => io::Error::other(NeverRan),
        (1, _) => return Ok(None),
        (REPORT_LEN, Some(Step::Exec)) => os,
        (REPORT_LEN, Some(step)) => io::Error::new(os.kind(), format!("{}: {os}", step.doing())),
        _ => io::Error::other("the new process failed before its exec and did not say why"),
    };
    Ok(Some(failure))
}

/// Collects a child that failed before its exec (the reaper's lock is held: it cannot take it).
fn reap(pid: Pid) {
    while let Err(Errno::EINTR) = nix::sys::wait::waitpid(pid, None) {}
}

/// A close-on-exec pipe, (read, write), both above descriptor 2.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    Ok((above_stdio(read)?, above_stdio(write)?))
}

/// `fd`, or a close-on-exec copy of it at 3 or above where it is 0, 1 or 2 (kiln started with
/// a standard descriptor closed): the child's `dup2` onto 0, 1 and 2 must overwrite no source.
fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    let copy = fcntl(&fd, FcntlArg::F_DUPFD_CLOEXEC(3))?;
    // SAFETY: fcntl just made `copy`; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(copy) })
}

/// The null-terminated pointer list exec takes, into `strings` (which must outlive it).
fn pointers(strings: &[CString]) -> Vec<*const c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// The command of an exec probe: the service's environment, no input or output, and a process
/// group of its own so that a timeout kills everything it started.
pub fn probe_command(argv: &[String], env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    let nice = super::priority::for_children();
    // SAFETY: rt_sigaction, sigprocmask and setpriority only (async-signal-safe).
    unsafe {
        cmd.pre_exec(move || {
            signals::reset_in_child()?;
            nice.map_or(Ok(()), super::priority::set_nice_in_child)
        });
    }
    cmd
}

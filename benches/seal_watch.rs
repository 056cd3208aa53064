//! The seal watch's cost on a tree shaped like a Symfony release (`bench/seal_tree.py`: ~20,000
//! files in ~3,400 directories): `cargo bench --bench seal_watch [-- TREE]` (default
//! `/tmp/kiln-bench-seal/tree`, written when missing, as `bench/seal.sh` does).
//!
//! Twice: every sealed file with an inotify watch of its own, then none (a budget of 0: the files
//! are polled, as past `fs.inotify.max_user_watches / 2`). Each time: how long starting the watch
//! takes, the inotify watches kiln holds, the machine's slab growth (other processes move it too),
//! the CPU kiln uses while nothing happens, and how long a write through a hard link made from
//! outside the tree takes to be reported. It prints numbers; it asserts nothing.

use kiln::config::{Config, SealConfig};
use kiln::seal::{self, Change, DriftWatch};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long the idle CPU is measured.
const IDLE: Duration = Duration::from_secs(10);

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench --list`
    }
    let tree = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/kiln-bench-seal/tree"));
    if !tree.exists() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/seal_tree.py");
        let ok = std::process::Command::new("python3")
            .arg(script)
            .arg(&tree)
            .status();
        assert!(
            ok.is_ok_and(|s| s.success()),
            "bench/seal_tree.py {}",
            tree.display()
        );
    }
    let work = tempfile::tempdir().expect("temp dir");
    let config = config(&tree, work.path());
    seal::seal(&config).expect("kiln seal");
    println!("tree: {}: {} files", tree.display(), count_files(&tree));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    for (label, budget) in [("every file watched", None), ("files polled (budget 0)", Some(0))] {
        println!("\n{label}");
        runtime.block_on(round(&config, &tree, budget));
    }
}

fn config(tree: &Path, work: &Path) -> SealConfig {
    let text = format!(
        "[seal]\npaths = [{tree:?}]\nexclude = [{:?}]\nmanifest = {:?}\nrescan = \"1h\"\nreadonly = false\n",
        tree.join("var/cache"),
        work.join("seal"),
    );
    Config::parse(&text).expect("bench config").seal
}

async fn round(config: &SealConfig, tree: &Path, budget: Option<usize>) {
    let verified = seal::verify_at_boot(config).expect("the tree matches its seal");
    let slab = slab_kb();
    let started = Instant::now();
    let watch = match budget {
        Some(budget) => seal::watch_within(config, &verified, budget),
        None => seal::watch(config, &verified),
    };
    let mut watch = watch.expect("watch").expect("something to watch");
    let setup = started.elapsed();
    let first = watch.next().await.expect("first rescan");
    assert!(first.differences.is_empty(), "{:?}", first.differences);
    // Counted once the first rescan is over: it watches the directories anew.
    println!(
        "  start: {:.0} ms; first rescan done {:.0} ms after start; {} inotify watches, slab +{} kB",
        ms(setup),
        ms(started.elapsed()),
        inotify_watches(),
        slab_kb() - slab
    );
    let cpu = cpu_time();
    tokio::time::sleep(IDLE).await;
    let used = cpu_time() - cpu;
    println!(
        "  idle: {:.1} ms CPU in {IDLE:?} ({:.2} % of a core)",
        ms(used),
        100.0 * used.as_secs_f64() / IDLE.as_secs_f64()
    );
    let latency = write_through_a_link(&mut watch, tree).await;
    println!(
        "  write through an outside hard link reported after {:.0} ms",
        ms(latency)
    );
}

/// Links a sealed file from outside the tree, writes through the link, waits for the report,
/// then puts the content back.
async fn write_through_a_link(watch: &mut DriftWatch, tree: &Path) -> Duration {
    let file = tree.join("composer.json");
    let original = std::fs::read(&file).expect("composer.json");
    let outside = tempfile::tempdir().expect("temp dir");
    let link = outside.path().join("outside");
    std::fs::hard_link(&file, &link).expect("hard link");
    let started = Instant::now();
    std::fs::write(&link, b"{}").expect("write through the link");
    loop {
        let report = tokio::time::timeout(Duration::from_secs(60), watch.next())
            .await
            .expect("a report within 60s")
            .expect("the watch runs");
        let seen = report
            .differences
            .iter()
            .any(|d| d.path == file && matches!(d.change, Change::ContentChanged { .. }));
        if seen {
            let latency = started.elapsed();
            std::fs::write(&link, original).expect("put composer.json back");
            return latency;
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => count_files(&e.path()),
            Ok(t) if t.is_file() => 1,
            _ => 0,
        })
        .sum()
}

/// `Slab:` of /proc/meminfo, in kB (machine-wide).
fn slab_kb() -> i64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("Slab:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The inotify watches this process holds, from /proc/self/fdinfo.
fn inotify_watches() -> usize {
    let Ok(fds) = std::fs::read_dir("/proc/self/fdinfo") else {
        return 0;
    };
    fds.flatten()
        .filter_map(|fd| std::fs::read_to_string(fd.path()).ok())
        .map(|info| info.lines().filter(|l| l.starts_with("inotify wd:")).count())
        .sum()
}

/// User and system CPU time of this process so far.
fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the rusage it is given; zeroed is a valid rusage either way.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

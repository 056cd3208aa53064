//! The watch after boot: inotify sees a change within a second (the rescan is set to an hour, so
//! only the watch can), even one written through a hard link from outside the tree; new
//! directories are watched, excluded paths are ignored, and the full rescan runs at start and on
//! its period.

use crate::seal_support::{Fixture, KERNEL, build_tree, let_nobody_write, setcap};
use kiln::seal::{self, Change, Difference, DriftReport, DriftWatch, FoundBy};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::time::{Duration, Instant};

/// The watch promises a change is seen within one second; the test allows twice that, and the
/// rescan (one hour) cannot be what finds it.
const WATCH_DEADLINE: Duration = Duration::from_secs(2);

fn at(fx: &Fixture, rel: &str, change: Change) -> Difference {
    Difference {
        path: fx.path(rel),
        change,
    }
}

/// Seals, verifies as boot does, starts the watch and waits for its first (clean) rescan.
async fn watching(fx: &Fixture) -> DriftWatch {
    watching_within(fx, None).await
}

/// [`watching`], with at most `budget` inotify watches before files are polled.
async fn watching_within(fx: &Fixture, budget: Option<usize>) -> DriftWatch {
    fx.seal();
    let verified = seal::verify_at_boot(&fx.config).expect("clean at boot");
    let watch = match budget {
        Some(budget) => seal::watch_within(&fx.config, &verified, budget),
        None => seal::watch(&fx.config, &verified),
    };
    let mut watch = watch.expect("watch starts").expect("something to watch");
    assert_eq!(watch.unwatched(), &[], "everything is watched");
    let first = next(&mut watch, Duration::from_secs(30)).await;
    assert_eq!(first.found_by, FoundBy::Rescan);
    assert_eq!(first.differences, vec![]);
    watch
}

async fn next(watch: &mut DriftWatch, within: Duration) -> DriftReport {
    tokio::time::timeout(within, watch.next())
        .await
        .unwrap_or_else(|_| panic!("no drift report within {within:?}"))
        .expect("the watch stopped")
}

/// Waits, within the watch deadline, for a report saying exactly `expected`; every report on the
/// way must come from the watch.
async fn expect_drift(watch: &mut DriftWatch, expected: &[Difference]) {
    expect_drift_within(watch, expected, WATCH_DEADLINE).await
}

async fn expect_drift_within(watch: &mut DriftWatch, expected: &[Difference], deadline: Duration) {
    let start = Instant::now();
    let mut last = None;
    while let Some(left) = deadline.checked_sub(start.elapsed()) {
        match tokio::time::timeout(left, watch.next()).await {
            Ok(Some(report)) => {
                assert_eq!(report.found_by, FoundBy::Watch, "{report:?}");
                if report.differences == expected {
                    eprintln!("seen after {:?}", start.elapsed());
                    return;
                }
                last = Some(report.differences);
            }
            Ok(None) => panic!("the watch stopped"),
            Err(_) => break,
        }
    }
    panic!("within {deadline:?}: expected {expected:#?}, last report {last:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_is_seen_within_a_second() {
    let fx = Fixture::new();
    let mut watch = watching(&fx).await;
    fs::write(fx.path("src/Kernel.php"), "<?php // hotfix").unwrap();
    let expected = at(
        &fx,
        "src/Kernel.php",
        Change::ContentChanged {
            from_size: KERNEL.len() as u64,
            to_size: 15,
        },
    );
    expect_drift(&mut watch, &[expected]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_change_is_seen_and_accumulates() {
    let fx = Fixture::new();
    let mut watch = watching(&fx).await;
    let mut expected = Vec::new();

    fs::set_permissions(fx.path("public/index.php"), fs::Permissions::from_mode(0o666)).unwrap();
    expected.push(at(
        &fx,
        "public/index.php",
        Change::ModeChanged {
            from: 0o644,
            to: 0o666,
        },
    ));
    expect_drift(&mut watch, &expected).await;

    let before = fs::metadata(fx.path("composer.json")).unwrap();
    std::os::unix::fs::chown(fx.path("composer.json"), Some(4242), None).expect("chown (tests run as root)");
    expected.insert(
        0,
        at(
            &fx,
            "composer.json",
            Change::OwnerChanged {
                from: (before.uid(), before.gid()),
                to: (4242, before.gid()),
            },
        ),
    );
    expect_drift(&mut watch, &expected).await;

    fs::remove_file(fx.path("bin/console")).unwrap();
    expected.insert(0, at(&fx, "bin/console", Change::Removed { kind: "file" }));
    expect_drift(&mut watch, &expected).await;

    fs::remove_file(fx.path("current")).unwrap();
    symlink("public", fx.path("current")).unwrap();
    expected.insert(
        2,
        at(
            &fx,
            "current",
            Change::SymlinkRetargeted {
                from: "src".into(),
                to: "public".into(),
            },
        ),
    );
    expect_drift(&mut watch, &expected).await;

    fs::remove_file(fx.path("vendor/autoload.php")).unwrap();
    fs::create_dir(fx.path("vendor/autoload.php")).unwrap();
    expected.push(at(
        &fx,
        "vendor/autoload.php",
        Change::TypeChanged {
            from: "file",
            to: "directory",
        },
    ));
    expect_drift(&mut watch, &expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_and_moved_directories_are_watched_too() {
    let fx = Fixture::new();
    let mut watch = watching(&fx).await;

    fs::create_dir_all(fx.path("public/uploads/2024")).unwrap();
    let mut expected = vec![
        at(&fx, "public/uploads", Change::Added { kind: "directory" }),
        at(&fx, "public/uploads/2024", Change::Added { kind: "directory" }),
    ];
    expect_drift(&mut watch, &expected).await;

    // A file in a directory that did not exist when the watch started.
    fs::write(fx.path("public/uploads/2024/shell.php"), "<?php").unwrap();
    expected.push(at(
        &fx,
        "public/uploads/2024/shell.php",
        Change::Added { kind: "file" },
    ));
    expect_drift(&mut watch, &expected).await;

    // A sealed directory renamed, then written into under its new name.
    fs::rename(fx.path("src/Controller"), fx.path("src/Api")).unwrap();
    let moved = vec![
        at(&fx, "src/Api", Change::Added { kind: "directory" }),
        at(&fx, "src/Api/HomeController.php", Change::Added { kind: "file" }),
        at(&fx, "src/Controller", Change::Removed { kind: "directory" }),
        at(
            &fx,
            "src/Controller/HomeController.php",
            Change::Removed { kind: "file" },
        ),
    ];
    expected.extend(moved);
    expect_drift(&mut watch, &expected).await;
    fs::write(fx.path("src/Api/Backdoor.php"), "<?php").unwrap();
    expected.insert(4, at(&fx, "src/Api/Backdoor.php", Change::Added { kind: "file" }));
    expect_drift(&mut watch, &expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excluded_paths_are_ignored_and_a_revert_reports_clean() {
    let fx = Fixture::new();
    let mut watch = watching(&fx).await;

    fs::write(fx.path("var/cache/prod/container.php"), "<?php // rebuilt").unwrap();
    fs::create_dir_all(fx.path("var/cache/dev/pools")).unwrap();
    fs::write(fx.path("var/cache/dev/pools/x"), "x").unwrap();
    // Written after the cache changes: the first report is about this alone.
    fs::write(fx.path("src/Kernel.php"), "<?php // hotfix").unwrap();
    let report = next(&mut watch, WATCH_DEADLINE).await;
    assert_eq!(report.found_by, FoundBy::Watch);
    assert_eq!(
        report.differences,
        vec![at(
            &fx,
            "src/Kernel.php",
            Change::ContentChanged {
                from_size: KERNEL.len() as u64,
                to_size: 15
            }
        )]
    );

    fs::write(fx.path("src/Kernel.php"), KERNEL).unwrap();
    expect_drift(&mut watch, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_rescan_covers_the_time_since_boot() {
    let fx = Fixture::new();
    fx.seal();
    let verified = seal::verify_at_boot(&fx.config).unwrap();
    assert!(verified.root_hash.is_some());
    // Changed after the boot check, before the watch starts.
    fs::write(fx.path("public/late.php"), "<?php").unwrap();
    let mut watch = seal::watch(&fx.config, &verified).unwrap().unwrap();
    let report = next(&mut watch, Duration::from_secs(30)).await;
    assert_eq!(report.found_by, FoundBy::Rescan);
    assert_eq!(
        report.differences,
        vec![at(&fx, "public/late.php", Change::Added { kind: "file" })]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rescan_repeats_on_its_period() {
    let fx = Fixture::with(&["rescan = \"1s\""]);
    fx.seal();
    let verified = seal::verify_at_boot(&fx.config).unwrap();
    let config = fx.config.clone();
    let mut watch = seal::watch(&config, &verified).unwrap().unwrap();
    for _ in 0..3 {
        let report = next(&mut watch, Duration::from_secs(30)).await;
        assert_eq!(report.found_by, FoundBy::Rescan);
        assert_eq!(report.differences, vec![]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_watched_without_a_seal() {
    let config = kiln::config::Config::parse("").unwrap().seal;
    let verified = seal::verify_at_boot(&config).unwrap();
    assert!(seal::watch(&config, &verified).unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capability_or_an_acl_added_after_boot_is_seen() {
    let fx = Fixture::new();
    let mut watch = watching(&fx).await;
    setcap(&fx.path("bin/console"), "cap_setuid+ep");
    let capability = |fx: &Fixture| {
        let value = xattr::get(fx.path("bin/console"), "security.capability").unwrap();
        at(
            fx,
            "bin/console",
            Change::XattrChanged {
                name: "security.capability".into(),
                from: None,
                to: value,
            },
        )
    };
    let mut expected = vec![capability(&fx)];
    expect_drift(&mut watch, &expected).await;

    let_nobody_write(&fx.path("composer.json"));
    let acl = xattr::get(fx.path("composer.json"), "system.posix_acl_access").unwrap();
    expected.extend([
        at(
            &fx,
            "composer.json",
            Change::ModeChanged {
                from: 0o644,
                to: 0o664,
            },
        ),
        at(
            &fx,
            "composer.json",
            Change::XattrChanged {
                name: "system.posix_acl_access".into(),
                from: None,
                to: acl,
            },
        ),
    ]);
    expect_drift(&mut watch, &expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_below_a_symlinked_release_is_watched_through_the_link() {
    let fx = Fixture::release("current/public");
    let mut watch = watching(&fx).await;
    let page = fx.path("public/index.php");
    fs::write(&page, "<?php // hotfix").unwrap();
    let hotfix = at(
        &fx,
        "public/index.php",
        Change::ContentChanged {
            from_size: 40,
            to_size: 15,
        },
    );
    expect_drift(&mut watch, std::slice::from_ref(&hotfix)).await;

    // `ln -sfn releases/43 current`, the way deploy tools do it: a new link renamed over the old.
    let srv = fx.dir.path().join("srv");
    build_tree(&srv.join("releases/43"), false);
    symlink("releases/43", srv.join("current.new")).unwrap();
    fs::rename(srv.join("current.new"), srv.join("current")).unwrap();
    let swapped = Difference {
        path: srv.join("current"),
        change: Change::SymlinkRetargeted {
            from: "releases/42".into(),
            to: "releases/43".into(),
        },
    };
    // Release 43's public folder is as sealed; only the link differs.
    expect_drift(&mut watch, std::slice::from_ref(&swapped)).await;

    // And the watch follows the link: a change in release 43 is seen too.
    fs::write(srv.join("releases/43/public/shell.php"), "<?php").unwrap();
    let added = Difference {
        path: srv.join("releases/43/public/shell.php"),
        change: Change::Added { kind: "file" },
    };
    expect_drift(&mut watch, &[swapped, added]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sealed_symlink_is_watched_as_a_link_and_a_tree() {
    let fx = Fixture::release("current");
    let mut watch = watching(&fx).await;
    fs::create_dir(fx.path("src/Evil")).unwrap();
    fs::write(fx.path("src/Evil/x.php"), "<?php").unwrap();
    let added = vec![
        at(&fx, "src/Evil", Change::Added { kind: "directory" }),
        at(&fx, "src/Evil/x.php", Change::Added { kind: "file" }),
    ];
    expect_drift(&mut watch, &added).await;

    fs::remove_file(&fx.sealed).unwrap();
    symlink(&fx.app, &fx.sealed).unwrap();
    let mut expected = vec![Difference {
        path: fx.sealed.clone(),
        change: Change::SymlinkRetargeted {
            from: "releases/42".into(),
            to: fx.app.clone(),
        },
    }];
    expected.extend(added);
    expect_drift(&mut watch, &expected).await;
}

/// `ln` a sealed file from outside the sealed tree (`readonly = false`: nothing stops it), then
/// write through that name and return `src/Kernel.php`'s drift.
fn write_through_a_hard_link(fx: &Fixture, outside: &tempfile::TempDir) -> Difference {
    let link = outside.path().join("outside");
    fs::hard_link(fx.path("src/Kernel.php"), &link).unwrap();
    fs::write(&link, "<?php // hotfix").unwrap();
    at(
        fx,
        "src/Kernel.php",
        Change::ContentChanged {
            from_size: KERNEL.len() as u64,
            to_size: 15,
        },
    )
}

/// The write shows on no directory of the tree, but the file's own watch sees it (the rescan
/// is an hour away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_a_hard_link_made_outside_the_tree_is_seen() {
    let fx = Fixture::with(&["readonly = false"]);
    let mut watch = watching(&fx).await;
    let outside = tempfile::tempdir().expect("temp dir");
    let expected = write_through_a_hard_link(&fx, &outside);
    expect_drift(&mut watch, &[expected]).await;
}

/// A sealed file replaced (a new inode renamed over it, as editors and deploy tools do) gets a
/// watch of its own too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_renamed_over_a_sealed_one_is_watched_too() {
    let fx = Fixture::with(&["readonly = false"]);
    let mut watch = watching(&fx).await;
    let fresh = fx.path("src/.Kernel.php.swp");
    fs::write(&fresh, KERNEL).unwrap();
    fs::set_permissions(&fresh, fs::Permissions::from_mode(0o600)).unwrap();
    fs::rename(&fresh, fx.path("src/Kernel.php")).unwrap();
    // Seen (so the new inode is watched, if it is) before anything is written through it.
    let mode = at(
        &fx,
        "src/Kernel.php",
        Change::ModeChanged {
            from: 0o644,
            to: 0o600,
        },
    );
    expect_drift(&mut watch, std::slice::from_ref(&mode)).await;
    let outside = tempfile::tempdir().expect("temp dir");
    let content = write_through_a_hard_link(&fx, &outside);
    expect_drift(&mut watch, &[content, mode]).await;
}

/// Past the budget of inotify watches (none here for files), a sealed file's inode is polled
/// every 5 s: the write through a hard link is seen within seconds, not at the rescan (an hour).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_watch_budget_a_write_through_a_hard_link_is_polled() {
    let fx = Fixture::with(&["readonly = false"]);
    let mut watch = watching_within(&fx, Some(0)).await;
    let outside = tempfile::tempdir().expect("temp dir");
    let expected = write_through_a_hard_link(&fx, &outside);
    expect_drift_within(
        &mut watch,
        &[expected],
        Duration::from_secs(5) + 2 * WATCH_DEADLINE,
    )
    .await;
}

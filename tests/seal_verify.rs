//! `kiln seal` and `kiln verify`: determinism, location independence, every kind of change,
//! bad manifests, and the boot-time check built on them.

use crate::seal_support::{CONSOLE, Fixture, KERNEL, build_tree, let_nobody_write, set_mtimes, setcap};
use kiln::seal::{self, Change, Difference, Link, Manifest, SealError};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::PathBuf;

fn differences(fx: &Fixture) -> Vec<Difference> {
    seal::verify(&fx.config).expect("verify").differences
}

fn at(path: PathBuf, change: Change) -> Difference {
    Difference { path, change }
}

#[test]
fn seal_then_verify_is_clean() {
    let fx = Fixture::new();
    let manifest = fx.seal();
    assert_eq!(differences(&fx), vec![]);
    let verified = seal::verify_at_boot(&fx.config).expect("boot verification");
    assert_eq!(verified.root_hash, Some(manifest.root_hash_hex()));
    assert!(verified.skipped.is_none());

    let out = fx.kiln("verify").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&manifest.root_hash_hex()));

    // The excluded cache and the manifest are not in it; everything else is.
    let text = fs::read_to_string(&fx.manifest).unwrap();
    assert!(!text.contains("var/cache"), "{text}");
    assert!(text.contains(" src/Controller/HomeController.php\n"), "{text}");
    assert!(text.contains("\nl 0777 "), "{text}");
}

#[test]
fn the_cli_seals_and_reports_the_root_hash() {
    let fx = Fixture::new();
    let out = fx.kiln("seal").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let manifest = Manifest::decode(&fs::read(&fx.manifest).unwrap()).unwrap();
    assert!(
        stdout.contains(&format!("root {}", manifest.root_hash_hex())),
        "{stdout}"
    );
}

#[test]
fn each_kind_of_change_is_reported_exactly() {
    type Tamper = fn(&Fixture) -> Vec<Difference>;
    let cases: &[(&str, Tamper)] = &[
        ("content", |fx| {
            let hotfix = "<?php\nclass Kernel { /* hotfix */ }\n";
            fs::write(fx.path("src/Kernel.php"), hotfix).unwrap();
            vec![at(
                fx.path("src/Kernel.php"),
                Change::ContentChanged {
                    from_size: KERNEL.len() as u64,
                    to_size: hotfix.len() as u64,
                },
            )]
        }),
        ("content, same size", |fx| {
            fs::write(fx.path("src/Kernel.php"), KERNEL.replace("Kernel", "Kernal")).unwrap();
            vec![at(
                fx.path("src/Kernel.php"),
                Change::ContentChanged {
                    from_size: KERNEL.len() as u64,
                    to_size: KERNEL.len() as u64,
                },
            )]
        }),
        ("mode", |fx| {
            fs::set_permissions(fx.path("public/index.php"), fs::Permissions::from_mode(0o666)).unwrap();
            vec![at(
                fx.path("public/index.php"),
                Change::ModeChanged {
                    from: 0o644,
                    to: 0o666,
                },
            )]
        }),
        ("owner", |fx| {
            let path = fx.path("composer.json");
            let before = fs::metadata(&path).unwrap();
            std::os::unix::fs::chown(&path, Some(4242), Some(4343)).expect("chown (the tests run as root)");
            vec![at(
                path,
                Change::OwnerChanged {
                    from: (before.uid(), before.gid()),
                    to: (4242, 4343),
                },
            )]
        }),
        ("new file", |fx| {
            fs::write(fx.path("public/shell.php"), "<?php system($_GET['c']);").unwrap();
            vec![at(fx.path("public/shell.php"), Change::Added { kind: "file" })]
        }),
        ("deleted file", |fx| {
            fs::remove_file(fx.path("bin/console")).unwrap();
            vec![at(fx.path("bin/console"), Change::Removed { kind: "file" })]
        }),
        ("symlink retargeted", |fx| {
            fs::remove_file(fx.path("current")).unwrap();
            symlink("public", fx.path("current")).unwrap();
            vec![at(
                fx.path("current"),
                Change::SymlinkRetargeted {
                    from: "src".into(),
                    to: "public".into(),
                },
            )]
        }),
        ("file replaced by a directory", |fx| {
            fs::remove_file(fx.path("vendor/autoload.php")).unwrap();
            fs::create_dir(fx.path("vendor/autoload.php")).unwrap();
            vec![at(
                fx.path("vendor/autoload.php"),
                Change::TypeChanged {
                    from: "file",
                    to: "directory",
                },
            )]
        }),
        ("directory removed with its files", |fx| {
            fs::remove_dir_all(fx.path("src")).unwrap();
            vec![
                at(fx.path("src"), Change::Removed { kind: "directory" }),
                at(fx.path("src/Controller"), Change::Removed { kind: "directory" }),
                at(
                    fx.path("src/Controller/HomeController.php"),
                    Change::Removed { kind: "file" },
                ),
                at(fx.path("src/Kernel.php"), Change::Removed { kind: "file" }),
            ]
        }),
        ("several, first ones first", |fx| {
            fs::write(fx.path("vendor/evil.php"), "x").unwrap();
            fs::write(fx.path("bin/console"), "x").unwrap();
            fs::set_permissions(fx.path("bin/console"), fs::Permissions::from_mode(0o700)).unwrap();
            vec![
                at(
                    fx.path("bin/console"),
                    Change::ContentChanged {
                        from_size: CONSOLE.len() as u64,
                        to_size: 1,
                    },
                ),
                at(
                    fx.path("bin/console"),
                    Change::ModeChanged {
                        from: 0o755,
                        to: 0o700,
                    },
                ),
                at(fx.path("vendor/evil.php"), Change::Added { kind: "file" }),
            ]
        }),
        ("only inside exclude: nothing", |fx| {
            fs::write(fx.path("var/cache/prod/container.php"), "<?php // rebuilt").unwrap();
            fs::write(fx.path("var/cache/new.php"), "x").unwrap();
            vec![]
        }),
    ];
    for (name, tamper) in cases {
        let fx = Fixture::new();
        fx.seal();
        let expected = tamper(&fx);
        assert_eq!(differences(&fx), expected, "case: {name}");
        if expected.is_empty() {
            continue;
        }
        match seal::verify_at_boot(&fx.config) {
            Err(SealError::Drift(found)) => assert_eq!(found, expected, "case: {name}"),
            other => panic!("case {name}: boot verification gave {other:?}"),
        }
        let out = fx.kiln("verify").output().unwrap();
        assert_eq!(out.status.code(), Some(1), "case: {name}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<String> = expected.iter().map(|d| d.to_string()).collect();
        assert_eq!(stdout.lines().collect::<Vec<_>>(), lines, "case: {name}");
    }
}

#[test]
fn differences_read_well() {
    let fx = Fixture::new();
    fx.seal();
    fs::write(fx.path("src/Kernel.php"), "changed").unwrap();
    fs::set_permissions(fx.path("composer.json"), fs::Permissions::from_mode(0o600)).unwrap();
    let found = differences(&fx);
    let app = fx.app.display();
    assert_eq!(
        found.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        vec![
            format!("mode changed {app}/composer.json (0644 -> 0600)"),
            format!(
                "content changed {app}/src/Kernel.php (size {} -> 7)",
                KERNEL.len()
            ),
        ]
    );
}

#[test]
fn a_drift_error_lists_the_first_few() {
    let fx = Fixture::new();
    fx.seal();
    for i in 0..8 {
        fs::write(fx.path(&format!("public/added{i}.php")), "x").unwrap();
    }
    let err = seal::verify_at_boot(&fx.config).unwrap_err();
    let SealError::Drift(found) = &err else {
        panic!("{err}")
    };
    assert_eq!(found.len(), 8);
    let text = err.to_string();
    assert!(text.starts_with("8 differences from the seal: added "), "{text}");
    assert!(text.contains("public/added0.php (file)"), "{text}");
    assert!(text.ends_with("; and 3 more"), "{text}");
    assert!(!text.contains("added5"), "{text}");
}

#[test]
fn sealing_twice_gives_identical_bytes() {
    let fx = Fixture::new();
    fx.seal();
    let first = fs::read(&fx.manifest).unwrap();
    // Reading and touching changes times, never the manifest.
    set_mtimes(&fx.app, 1_000_000_000);
    fx.seal();
    assert_eq!(fs::read(&fx.manifest).unwrap(), first);
}

#[test]
fn the_same_content_elsewhere_has_the_same_root_hash() {
    let fx = Fixture::new();
    let here = fx.seal();
    set_mtimes(&fx.app, 1_500_000_000);

    let other = tempfile::tempdir().unwrap();
    let app = other.path().join("releases/20240101/app");
    build_tree(&app, true);
    set_mtimes(&app, 1_700_000_000);
    let mut config = fx.config.clone();
    config.paths = vec![app.clone()];
    config.exclude = vec![format!("{}/var/cache", app.display())];
    config.manifest = other.path().join("seal");
    let there = seal::seal(&config).unwrap();

    assert_eq!(here.root_hash, there.root_hash);
    assert_eq!(here.roots[0].entries, there.roots[0].entries);
    let (a, b) = (
        fs::read_to_string(&fx.manifest).unwrap(),
        fs::read_to_string(&config.manifest).unwrap(),
    );
    assert_ne!(a, b, "the manifests name their own sealed paths");
    assert_eq!(
        a.lines().filter(|l| !l.starts_with("seal ")).collect::<Vec<_>>(),
        b.lines().filter(|l| !l.starts_with("seal ")).collect::<Vec<_>>()
    );

    // And a different tree has a different root hash.
    fs::write(app.join("composer.json"), "{}").unwrap();
    assert_ne!(seal::seal(&config).unwrap().root_hash, here.root_hash);
}

#[test]
fn large_files_are_hashed_in_full() {
    let fx = Fixture::new();
    let content: Vec<u8> = (0..5 * 1024 * 1024 + 12_345u32)
        .map(|i| (i % 251) as u8)
        .collect();
    fs::write(fx.path("public/video.bin"), &content).unwrap();
    let manifest = fx.seal();
    let entry = manifest.roots[0]
        .entries
        .iter()
        .find(|e| e.path == std::path::Path::new("public/video.bin"))
        .unwrap();
    assert_eq!(
        entry.kind,
        seal::Kind::File {
            size: content.len() as u64,
            hash: blake3::hash(&content)
        }
    );
    // One byte in the middle changes it.
    let mut changed = content;
    changed[3 * 1024 * 1024] ^= 1;
    fs::write(fx.path("public/video.bin"), &changed).unwrap();
    assert_eq!(
        differences(&fx),
        vec![at(
            fx.path("public/video.bin"),
            Change::ContentChanged {
                from_size: changed.len() as u64,
                to_size: changed.len() as u64
            }
        )]
    );
}

#[test]
fn awkward_names_survive_the_manifest() {
    use std::os::unix::ffi::OsStrExt;
    let fx = Fixture::new();
    let names: [&[u8]; 4] = [
        b"with space.php",
        b"new\nline.php",
        b"\xff\xfe.bin",
        b"back\\slash",
    ];
    for name in names {
        fs::write(fx.app.join(std::ffi::OsStr::from_bytes(name)), name).unwrap();
    }
    fx.seal();
    assert_eq!(differences(&fx), vec![]);
    let text = fs::read_to_string(&fx.manifest).unwrap();
    assert!(text.contains(" new\\x0aline.php\n"), "{text}");
    fs::remove_file(fx.app.join("new\nline.php")).unwrap();
    let found = differences(&fx);
    assert_eq!(found.len(), 1);
    assert!(
        found[0].to_string().ends_with("/new\\x0aline.php (file)"),
        "{}",
        found[0]
    );
}

#[test]
fn bad_manifests_are_clear_errors() {
    let fx = Fixture::new();
    fx.seal();
    let good = fs::read(&fx.manifest).unwrap();
    let text = String::from_utf8(good.clone()).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("truncated", good[..good.len() * 2 / 3].to_vec(), "truncated"),
        (
            "cut before the root line",
            {
                let end = text.rfind("root ").unwrap();
                good[..end].to_vec()
            },
            "truncated",
        ),
        ("empty", Vec::new(), "truncated"),
        (
            "edited",
            text.replacen("f 0644", "f 0666", 1).into_bytes(),
            "edited",
        ),
        (
            "entry removed",
            {
                let line = text.lines().find(|l| l.ends_with(" composer.json")).unwrap();
                text.replace(&format!("{line}\n"), "").into_bytes()
            },
            "edited",
        ),
        (
            "a newer version",
            text.replacen("kiln-seal 2", "kiln-seal 3", 1).into_bytes(),
            "format version 3",
        ),
        (
            "version 1, which does not cover extended attributes",
            text.replacen("kiln-seal 2", "kiln-seal 1", 1).into_bytes(),
            "format version 1, written by an older kiln: it does not cover extended attributes",
        ),
        (
            "not a manifest",
            b"{\"json\": true}\n".to_vec(),
            "not a kiln seal manifest",
        ),
    ];
    for (name, bytes, needle) in cases {
        fs::write(&fx.manifest, &bytes).unwrap();
        let err = seal::verify_at_boot(&fx.config).unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(err, SealError::ManifestInvalid { .. }),
            "{name}: {message}"
        );
        assert!(message.contains(needle), "{name}: {message}");
        assert!(
            message.contains(&fx.manifest.display().to_string()),
            "{name}: {message}"
        );

        let out = fx.kiln("verify").output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{name}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(needle), "{name}");
    }
}

#[test]
fn a_missing_manifest_refuses_unless_not_required() {
    let fx = Fixture::new();
    let err = seal::verify_at_boot(&fx.config).unwrap_err();
    assert!(matches!(err, SealError::ManifestMissing { .. }), "{err}");
    assert!(err.to_string().contains("run `kiln seal`"), "{err}");

    let relaxed = Fixture::with(&["required = false"]);
    let verified = seal::verify_at_boot(&relaxed.config).expect("boots unsealed");
    assert_eq!(verified.root_hash, None);
    assert!(verified.skipped.unwrap().contains("required = false"));

    // required = false forgives a missing manifest, not a bad one.
    fs::write(&relaxed.manifest, "kiln-seal 2\n").unwrap();
    assert!(matches!(
        seal::verify_at_boot(&relaxed.config),
        Err(SealError::ManifestInvalid { .. })
    ));
}

#[test]
fn without_a_seal_section_nothing_is_checked() {
    let config = kiln::config::Config::parse("").unwrap();
    let verified = seal::verify_at_boot(&config.seal).unwrap();
    assert_eq!(verified.root_hash, None);
    assert!(verified.skipped.is_some());
    assert_eq!(
        seal::remount_readonly(&config.seal),
        seal::ReadonlyOutcome::NotSealed
    );
    assert!(matches!(seal::seal(&config.seal), Err(SealError::NotConfigured)));
}

#[test]
fn a_manifest_for_other_paths_is_refused() {
    let fx = Fixture::new();
    fx.seal();
    let mut config = fx.config.clone();
    config.paths.push(fx.dir.path().join("etc/kiln"));
    let err = seal::verify_at_boot(&config).unwrap_err();
    assert!(matches!(err, SealError::PathsChanged { .. }), "{err}");
    assert!(err.to_string().contains("seal again"), "{err}");
}

#[test]
fn a_missing_sealed_path_cannot_be_sealed() {
    let fx = Fixture::new();
    let mut config = fx.config.clone();
    config.paths.push(fx.dir.path().join("nowhere"));
    let err = seal::seal(&config).unwrap_err();
    assert!(err.to_string().contains("nowhere"), "{err}");
    assert!(!fx.manifest.exists(), "nothing written");
}

/// `kiln verify`: exit code and the difference lines.
fn verify_cli(fx: &Fixture) -> (Option<i32>, Vec<String>) {
    let out = fx.kiln("verify").output().unwrap();
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    (out.status.code(), lines)
}

#[test]
fn capabilities_acls_and_other_xattrs_are_sealed() {
    let fx = Fixture::new();
    fx.seal();
    setcap(&fx.path("bin/console"), "cap_setuid+ep");
    let_nobody_write(&fx.path("composer.json"));
    xattr::set(fx.path("src/Kernel.php"), "user.origin", b"hotfix").unwrap();
    let app = fx.app.display();
    let expected = vec![
        format!("capabilities added {app}/bin/console (cap_setuid=ep)"),
        // setfacl also widens the group bits to the ACL mask.
        format!("mode changed {app}/composer.json (0644 -> 0664)"),
        format!(
            "access ACL added {app}/composer.json \
             (user::rw-,user:65534:rw-,group::r--,mask::rw-,other::r--)"
        ),
        format!("xattr user.origin added {app}/src/Kernel.php"),
    ];
    let found = differences(&fx);
    assert_eq!(
        found.iter().map(ToString::to_string).collect::<Vec<_>>(),
        expected
    );
    match seal::verify_at_boot(&fx.config) {
        Err(SealError::Drift(at_boot)) => assert_eq!(at_boot, found),
        other => panic!("the boot check gave {other:?}"),
    }
    assert_eq!(verify_cli(&fx), (Some(1), expected.clone()));

    // The namespaces of the machine, not the image, are not sealed (see src/seal/xattrs.rs).
    xattr::set(fx.path("public/index.php"), "trusted.overlay.origin", b"x").unwrap();
    if xattr::set(
        fx.path("public/index.php"),
        "security.selinux",
        b"system_u:object_r:httpd_sys_content_t:s0",
    )
    .is_err()
    {
        eprintln!("security.selinux cannot be set here; trusted.* alone is checked");
    }
    assert_eq!(differences(&fx), found);
}

#[test]
fn a_capability_sealed_in_must_stay_as_it_was() {
    let fx = Fixture::new();
    let php = fx.path("bin/console");
    setcap(&php, "cap_net_bind_service+ep");
    fx.seal();
    assert_eq!(differences(&fx), vec![]);
    let text = fs::read_to_string(&fx.manifest).unwrap();
    assert!(text.contains(" bin/console\nx security.capability 0"), "{text}");

    setcap(&php, "cap_setuid+ep");
    let app = fx.app.display();
    assert_eq!(
        verify_cli(&fx),
        (
            Some(1),
            vec![format!(
                "capabilities changed {app}/bin/console (cap_net_bind_service=ep -> cap_setuid=ep)"
            )]
        )
    );
    crate::seal_support::run("setcap", &["-r".as_ref(), php.as_os_str()]);
    assert_eq!(
        verify_cli(&fx),
        (
            Some(1),
            vec![format!(
                "capabilities removed {app}/bin/console (cap_net_bind_service=ep)"
            )]
        )
    );
}

#[test]
fn a_sealed_symlink_seals_the_link_and_the_tree_it_leads_to() {
    let fx = Fixture::release("current");
    let manifest = fx.seal();
    let root = &manifest.roots[0];
    assert_eq!(
        root.links,
        vec![Link {
            path: fx.sealed.clone(),
            target: "releases/42".into()
        }]
    );
    let paths: Vec<_> = root
        .entries
        .iter()
        .map(|e| e.path.display().to_string())
        .collect();
    assert!(paths.contains(&"public/index.php".to_string()), "{paths:?}");
    assert!(
        !paths.iter().any(|p| p.starts_with("var/cache")),
        "excluded through the link: {paths:?}"
    );
    assert_eq!(differences(&fx), vec![]);
    let text = fs::read_to_string(&fx.manifest).unwrap();
    assert!(
        text.contains(&format!("\nvia {} releases/42\nd 0755 ", fx.sealed.display())),
        "{text}"
    );

    // A change in the release is drift, named where it really is.
    fs::write(fx.path("src/Kernel.php"), "<?php // hotfix").unwrap();
    assert_eq!(
        differences(&fx),
        vec![at(
            fx.path("src/Kernel.php"),
            Change::ContentChanged {
                from_size: KERNEL.len() as u64,
                to_size: 15
            }
        )]
    );
    fs::write(fx.path("src/Kernel.php"), KERNEL).unwrap();

    // Pointing the link at an identical copy is drift too: the link itself is sealed.
    let srv = fx.dir.path().join("srv");
    build_tree(&srv.join("releases/43"), true);
    fs::remove_file(&fx.sealed).unwrap();
    symlink("releases/43", &fx.sealed).unwrap();
    assert_eq!(
        differences(&fx),
        vec![at(
            fx.sealed.clone(),
            Change::SymlinkRetargeted {
                from: "releases/42".into(),
                to: "releases/43".into()
            }
        )]
    );
    assert!(matches!(
        seal::verify_at_boot(&fx.config),
        Err(SealError::Drift(_))
    ));
}

#[test]
fn a_path_below_a_symlinked_release_is_sealed_through_the_link() {
    let fx = Fixture::release("current/public");
    let manifest = fx.seal();
    let current = fx.dir.path().join("srv/current");
    assert_eq!(
        manifest.roots[0].links,
        vec![Link {
            path: current.clone(),
            target: "releases/42".into()
        }]
    );
    assert_eq!(manifest.roots[0].entries.len(), 2, "public and public/index.php");
    assert_eq!(differences(&fx), vec![]);

    // Another release behind `current`, with another page.
    let next = fx.dir.path().join("srv/releases/43");
    build_tree(&next, false);
    fs::write(next.join("public/index.php"), "<?php echo 43;").unwrap();
    fs::remove_file(&current).unwrap();
    symlink("releases/43", &current).unwrap();
    assert_eq!(
        differences(&fx),
        vec![
            at(
                current,
                Change::SymlinkRetargeted {
                    from: "releases/42".into(),
                    to: "releases/43".into()
                }
            ),
            at(
                next.join("public/index.php"),
                Change::ContentChanged {
                    from_size: 40,
                    to_size: 14
                }
            ),
        ]
    );
}

#[test]
fn the_release_label_is_sealed_and_the_flag_wins_over_the_config() {
    let fx = Fixture::with(&["release = \"v41\""]);
    let release_of = |fx: &Fixture| {
        Manifest::decode(&fs::read(&fx.manifest).unwrap())
            .unwrap()
            .release
            .map(|r| r.to_string())
    };
    let out = fx.kiln("seal").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("\nrelease v41\n"));
    assert_eq!(release_of(&fx).as_deref(), Some("v41"));

    let out = fx.kiln("seal").args(["--release", "v42"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(release_of(&fx).as_deref(), Some("v42"));
    let verified = seal::verify_at_boot(&fx.config).unwrap();
    assert_eq!(verified.release.map(|r| r.to_string()).as_deref(), Some("v42"));
    let out = fx.kiln("verify").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("(release v42, "));

    // A bad label is refused and changes nothing.
    let before = fs::read(&fx.manifest).unwrap();
    let out = fx.kiln("seal").args(["--release", "v 43"]).output().unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--release: a release label is one word"));
    assert_eq!(fs::read(&fx.manifest).unwrap(), before);

    // The label cannot be edited without the manifest failing its own check.
    let text = String::from_utf8(before).unwrap();
    fs::write(&fx.manifest, text.replacen("release v42", "release v43", 1)).unwrap();
    let out = fx.kiln("verify").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("edited"));
}

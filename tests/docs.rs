//! The documentation is checked like code: every ```toml snippet of README.md and docs/ goes
//! through `kiln check` (or `kiln env`, for user-data), every relative link leads to a file and
//! heading that exist, and every page is reachable from the README.
//!
//! What the info string after ```toml says (docs/README.md, "Writing these docs", says the same
//! for writers):
//!
//! - `toml`: a whole kiln.toml, as a reader copies it into /etc/kiln/kiln.toml; `kiln check`
//!   must accept it. Whole, not a fragment the test completes: what the reader copies is exactly
//!   what was checked, and no one base config could complete every fragment (TOML forbids a
//!   table twice; lifecycle hooks need `[metadata] provider = "ec2"`; a probe needs its
//!   `[[service]]`). Every section has defaults, so one section alone is already a whole config.
//! - `toml invalid`: deliberately wrong; `kiln check` must refuse it (exit 78), and the ```text
//!   block right after it shows what kiln says, the file named `/etc/kiln/kiln.toml`: each of its
//!   lines must be a line of what `kiln check` printed.
//! - `toml user-data`: TOML user-data (an `[env]` table); `kiln env` must read it from a seed.
//!
//! `kiln check` looks at the machine: each program a service or exec probe runs, each
//! `working_dir`, `user` and `group`. Docs name what a real image has (`/srv/app`, `php-fpm8.2`,
//! `user = "app"`), not what this test machine has, so every snippet is checked inside a private
//! mount namespace that holds [the docs' image](DocsImage): its directories over `/srv`, its users
//! added to `/etc/passwd` and `/etc/group`, and `PATH` holding only its programs. A snippet that
//! names anything else fails here, as it would fail `kiln check` in that image.

use pulldown_cmark::{CodeBlockKind, Event, Options, Parser, Tag, TagEnd};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Output};

const KILN: &str = env!("CARGO_BIN_EXE_kiln");
const REPO: &str = env!("CARGO_MANIFEST_DIR");

/// Where an `invalid` snippet's expected message names its file.
const SHOWN_PATH: &str = "/etc/kiln/kiln.toml";

/// The image the docs describe: what packaging/image/stages/appbase.sh installs and makes (nginx,
/// php8.2-fpm, php8.2-cli; the user `app`; `/srv/app`), the layout of a Symfony release in
/// `/srv/app`, and the users the docs' examples create in their bake.
struct DocsImage;

impl DocsImage {
    /// Programs on its `PATH` (bare names: the docs name programs as the image's PATH finds them).
    const PROGRAMS: &[&str] = &["nginx", "php-fpm8.2", "php", "php8.2"];
    /// Directories under `/srv`.
    const DIRS: &[&str] = &[
        "app/bin",
        "app/config",
        "app/public",
        "app/var/cache",
        "app/var/log",
    ];
    /// Executable files under `/srv`.
    const FILES: &[&str] = &["app/bin/console"];
    /// Files under `/srv` with what the docs say they hold (the template of `[render]`'s page).
    const TEXTS: &[(&str, &str)] = &[(
        "app/deploy/nginx-instance.conf.j2",
        "add_header X-Kiln-Instance \"{{ instance.instance_id }}\" always;\n",
    )];
    /// Users (each with a group of its name) beside the machine's own: `app` (appbase.sh), `www-data`
    /// (Debian's), `thumbs` (made in the security page's bake).
    const USERS: &[(&str, u32)] = &[("app", 990), ("www-data", 33), ("thumbs", 991)];

    /// Builds the image's pieces under `root`: `srv/`, `bin/`, `passwd`, `group`.
    fn build(root: &Path) -> DocsImage {
        for dir in Self::DIRS {
            std::fs::create_dir_all(root.join("srv").join(dir)).unwrap();
        }
        for (file, text) in Self::TEXTS {
            let path = root.join("srv").join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        std::fs::create_dir_all(root.join("bin")).unwrap();
        let programs = Self::PROGRAMS.iter().map(|p| root.join("bin").join(p));
        for file in Self::FILES
            .iter()
            .map(|f| root.join("srv").join(f))
            .chain(programs)
        {
            std::fs::write(&file, "#!/bin/sh\nexit 0\n").unwrap();
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        for (name, line) in [
            ("passwd", "{u}:x:{id}:{id}::/nonexistent:/usr/sbin/nologin"),
            ("group", "{u}:x:{id}:"),
        ] {
            let mut text = std::fs::read_to_string(Path::new("/etc").join(name)).unwrap();
            for (user, id) in Self::USERS {
                if !text.lines().any(|l| l.starts_with(&format!("{user}:"))) {
                    text.push_str(&line.replace("{u}", user).replace("{id}", &id.to_string()));
                    text.push('\n');
                }
            }
            std::fs::write(root.join(name), text).unwrap();
        }
        DocsImage
    }

    /// Runs kiln with `args` inside a private mount namespace holding the image built in `root`.
    fn kiln(&self, root: &Path, args: &[&str]) -> Output {
        assert!(
            Path::new("/srv").is_dir(),
            "the docs' image is mounted over /srv, which is missing"
        );
        let script = r#"mount --bind "$1" /srv && mount --bind "$2" /etc/passwd &&
                        mount --bind "$3" /etc/group && PATH="$4" && shift 4 && exec "$@""#;
        let [srv, passwd, group, bin] = ["srv", "passwd", "group", "bin"].map(|p| root.join(p));
        Command::new("/usr/bin/unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "--",
                "/bin/sh",
                "-ec",
                script,
                "sh",
            ])
            .args([&srv, &passwd, &group, &bin])
            .arg(KILN)
            .args(args)
            .env_remove("KILN_LOG")
            .output()
            .expect("unshare (util-linux) runs kiln in a mount namespace")
    }
}

/// A ```toml block, where it is, and the ```text block right after it (for `invalid`).
struct Snippet {
    file: PathBuf,
    line: usize,
    attributes: Vec<String>,
    text: String,
    next_text: Option<String>,
}

impl Snippet {
    fn place(&self) -> String {
        format!(
            "{}:{}",
            self.file.strip_prefix(REPO).unwrap_or(&self.file).display(),
            self.line
        )
    }
}

/// README.md and every page of docs/, but docs/_incoming (drafts the lead has not placed yet).
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![Path::new(REPO).join("README.md")];
    let mut dirs = vec![Path::new(REPO).join("docs")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() && path.file_name().is_some_and(|n| n != "_incoming") {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "md") {
                pages.push(path);
            }
        }
    }
    pages.sort();
    pages
}

fn parser(text: &str) -> Parser<'_> {
    Parser::new_ext(text, Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH)
}

/// Every fenced code block of `text`: its info string, text and 1-based line.
fn code_blocks(text: &str) -> Vec<(String, String, usize)> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, String, usize)> = None;
    for (event, range) in parser(text).into_offset_iter() {
        match event {
            Event::Start(Tag::CodeBlock(CodeBlockKind::Fenced(info))) => {
                let line = text[..range.start].lines().count() + 1;
                open = Some((info.to_string(), String::new(), line));
            }
            Event::Text(t) => {
                if let Some((_, body, _)) = open.as_mut() {
                    body.push_str(&t);
                }
            }
            Event::End(TagEnd::CodeBlock) => blocks.extend(open.take()),
            _ => {}
        }
    }
    blocks
}

fn snippets(file: &Path) -> Vec<Snippet> {
    let blocks = code_blocks(&std::fs::read_to_string(file).unwrap());
    let mut found = Vec::new();
    for (i, (info, text, line)) in blocks.iter().enumerate() {
        let mut words = info.split_whitespace();
        if words.next() != Some("toml") {
            continue;
        }
        let next_text = blocks
            .get(i + 1)
            .filter(|(info, _, _)| info.trim() == "text")
            .map(|(_, text, _)| text.clone());
        found.push(Snippet {
            file: file.to_path_buf(),
            line: *line,
            attributes: words.map(str::to_string).collect(),
            text: text.clone(),
            next_text,
        });
    }
    found
}

/// Why `snippet` does not hold what its fence says, if it does not.
fn check_snippet(image: &DocsImage, root: &Path, n: usize, snippet: &Snippet) -> Option<String> {
    let config = root.join(format!("snippet-{n}.toml"));
    let attributes: Vec<&str> = snippet.attributes.iter().map(String::as_str).collect();
    match attributes.as_slice() {
        [] => {
            std::fs::write(&config, &snippet.text).unwrap();
            let out = image.kiln(root, &["check", "--config", config.to_str().unwrap()]);
            let said = said(&out, &config);
            (out.status.code() != Some(0)).then(|| format!("kiln check refuses it:\n{said}"))
        }
        ["invalid"] => {
            std::fs::write(&config, &snippet.text).unwrap();
            let out = image.kiln(root, &["check", "--config", config.to_str().unwrap()]);
            invalid_as_shown(snippet, &out, &config)
        }
        ["user-data"] => user_data_read(image, root, n, snippet),
        other => Some(format!(
            "unknown fence attributes {other:?}: use ```toml, ```toml invalid or ```toml user-data"
        )),
    }
}

/// kiln's stdout and stderr, the snippet's file shown as the docs show it.
fn said(out: &Output, config: &Path) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    text.replace(config.to_str().unwrap(), SHOWN_PATH)
}

/// An `invalid` snippet is refused, with the message its ```text block shows.
fn invalid_as_shown(snippet: &Snippet, out: &Output, config: &Path) -> Option<String> {
    let said = said(out, config);
    if out.status.code() != Some(78) {
        return Some(format!(
            "marked invalid, but kiln check exits {:?}:\n{said}",
            out.status.code()
        ));
    }
    let Some(shown) = &snippet.next_text else {
        return Some("marked invalid: put what kiln check says in a ```text block right after it".into());
    };
    let lines: BTreeSet<&str> = said.lines().map(str::trim).collect();
    let missing: Vec<&str> = shown
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !lines.contains(l))
        .collect();
    (!missing.is_empty()).then(|| format!("kiln check does not say {missing:#?}; it says:\n{said}"))
}

/// A `user-data` snippet is read by `kiln env` from a nocloud seed, as TOML user-data.
fn user_data_read(image: &DocsImage, root: &Path, n: usize, snippet: &Snippet) -> Option<String> {
    let seed = root.join(format!("seed-{n}"));
    std::fs::create_dir_all(&seed).unwrap();
    std::fs::write(seed.join("meta-data"), "instance-id: iid-docs\n").unwrap();
    std::fs::write(seed.join("user-data"), &snippet.text).unwrap();
    let config = root.join(format!("snippet-{n}.toml"));
    let seed = seed.display();
    let kiln_toml = format!("[metadata]\nprovider = \"nocloud\"\nseed = \"{seed}\"\nuser_data = \"toml\"\n");
    std::fs::write(&config, kiln_toml).unwrap();
    let out = image.kiln(root, &["env", "--config", config.to_str().unwrap()]);
    (out.status.code() != Some(0)).then(|| format!("kiln env refuses it:\n{}", said(&out, &config)))
}

#[test]
fn every_toml_snippet_is_what_its_fence_says() {
    let root = tempfile::tempdir().unwrap();
    let image = DocsImage::build(root.path());
    let all: Vec<Snippet> = pages().iter().flat_map(|p| snippets(p)).collect();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    for (n, snippet) in all.iter().enumerate() {
        *kinds.entry(snippet.attributes.join(" ")).or_default() += 1;
        if let Some(why) = check_snippet(&image, root.path(), n, snippet) {
            failures.push(format!(
                "{}: {why}\n--- snippet ---\n{}",
                snippet.place(),
                snippet.text
            ));
        }
    }
    eprintln!("checked {} toml snippets: {kinds:?}", all.len());
    assert!(
        all.len() > 10,
        "the docs hold config snippets; found {}",
        all.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A link as written, on its page.
struct Link {
    page: PathBuf,
    target: String,
}

/// The links of a page, and the anchors of its headings as GitHub makes them.
fn links_and_anchors(page: &Path) -> (Vec<Link>, BTreeSet<String>) {
    let text = std::fs::read_to_string(page).unwrap();
    let (mut links, mut anchors, mut heading) = (Vec::new(), BTreeSet::new(), None::<String>);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for event in parser(&text) {
        match event {
            Event::Start(Tag::Link { dest_url, .. }) | Event::Start(Tag::Image { dest_url, .. }) => {
                links.push(Link {
                    page: page.to_path_buf(),
                    target: dest_url.to_string(),
                });
            }
            Event::Start(Tag::Heading { .. }) => heading = Some(String::new()),
            Event::Text(t) | Event::Code(t) => {
                if let Some(h) = heading.as_mut() {
                    h.push_str(&t);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                let slug = slug(&heading.take().unwrap_or_default());
                let count = seen.entry(slug.clone()).or_default();
                anchors.insert(match *count {
                    0 => slug.clone(),
                    n => format!("{slug}-{n}"),
                });
                *count += 1;
            }
            _ => {}
        }
    }
    (links, anchors)
}

/// GitHub's anchor of a heading: lower case, punctuation dropped but `-` and `_`, spaces as `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | ' '))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// `path` without `.` and `..`, or None when it climbs out of the repository.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            other => out.push(other),
        }
    }
    out.starts_with(REPO).then_some(out)
}

/// Why a relative link does not lead where it says; None for one that does, or an absolute URL.
/// `anchors` holds the checked pages' headings; another markdown file's are read when linked.
fn broken(link: &Link, anchors: &BTreeMap<PathBuf, BTreeSet<String>>) -> Option<String> {
    if link.target.contains("://") || link.target.starts_with("mailto:") {
        return None;
    }
    let (path, anchor) = link.target.split_once('#').unwrap_or((&link.target, ""));
    let target = match path {
        "" => link.page.clone(),
        path => match normalize(&link.page.parent().unwrap().join(path)) {
            Some(target) if target.exists() => target,
            _ => return Some(format!("{}: no such file", link.target)),
        },
    };
    if anchor.is_empty() {
        return None;
    }
    if target.extension().is_none_or(|e| e != "md") {
        return Some(format!(
            "{}: an anchor into a file that is not markdown",
            link.target
        ));
    }
    let heads = match anchors.get(&target) {
        Some(heads) => heads.clone(),
        None => links_and_anchors(&target).1,
    };
    (!heads.contains(anchor))
        .then(|| format!("{}: no heading #{anchor} in {}", link.target, target.display()))
}

#[test]
fn every_relative_link_leads_to_a_file_and_heading_that_exist() {
    let pages = pages();
    let mut anchors = BTreeMap::new();
    let mut links = Vec::new();
    for page in &pages {
        let (found, heads) = links_and_anchors(page);
        links.extend(found);
        anchors.insert(page.clone(), heads);
    }
    let broken: Vec<String> = links
        .iter()
        .filter_map(|link| {
            let why = broken(link, &anchors)?;
            Some(format!(
                "{}: {why}",
                link.page.strip_prefix(REPO).unwrap().display()
            ))
        })
        .collect();
    eprintln!("checked {} links in {} pages", links.len(), pages.len());
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn every_page_is_reachable_from_the_readme() {
    let pages: BTreeSet<PathBuf> = pages().into_iter().collect();
    let mut reached = BTreeSet::new();
    let mut next = vec![Path::new(REPO).join("README.md")];
    while let Some(page) = next.pop() {
        if !reached.insert(page.clone()) {
            continue;
        }
        for link in links_and_anchors(&page).0 {
            let path = link.target.split('#').next().unwrap_or_default();
            if path.is_empty() || path.contains("://") {
                continue;
            }
            if let Some(target) = normalize(&page.parent().unwrap().join(path))
                && pages.contains(&target)
            {
                next.push(target);
            }
        }
    }
    let orphans: Vec<_> = pages.difference(&reached).collect();
    assert!(
        orphans.is_empty(),
        "pages no link leads to from README.md: {orphans:#?}"
    );
}

#[test]
fn anchors_are_made_as_github_makes_them() {
    assert_eq!(
        slug("`[service.startup]`, `[service.ready]`, `[service.live]`"),
        "servicestartup-serviceready-servicelive"
    );
    assert_eq!(
        slug("`env_allow` is a boundary between users only"),
        "env_allow-is-a-boundary-between-users-only"
    );
    assert_eq!(
        slug("Signals, systemd and the journal"),
        "signals-systemd-and-the-journal"
    );
    assert_eq!(slug("`/livez` and `/readyz`"), "livez-and-readyz");
}

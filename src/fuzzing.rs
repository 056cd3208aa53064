//! The fuzz targets' entry points (`fuzz/`): each feeds untrusted bytes to one parser the way
//! kiln does and panics when one of its promises breaks, so libFuzzer finds broken promises as
//! well as panics. `tests/fuzz_corpus.rs` runs every seed of `fuzz/corpus/` through the same
//! functions on stable Rust, in the normal suite. Not an API.

use crate::config::{Config, ProviderKind, SecretsConfig, UserDataFormat};
use crate::seal::Manifest;

/// A value that must never appear in an error about other lines.
const MARKER: &str = "s3cr3t-marker-value";
/// The longest probe detail `kiln status` should ever carry.
const DETAIL_MAX_CHARS: usize = 300;

/// User-data (first byte: dotenv, TOML, JSON or auto; gzip by its magic), with a cap of 4 KiB.
pub fn user_data(data: &[u8]) {
    let Some((&selector, raw)) = data.split_first() else {
        return;
    };
    let format = [
        UserDataFormat::Dotenv,
        UserDataFormat::Toml,
        UserDataFormat::Json,
        UserDataFormat::Auto,
    ][usize::from(selector % 4)];
    let limit = 4096;
    if let Ok(pairs) = crate::env::parse_user_data(raw, format, limit) {
        let bytes: usize = pairs.iter().map(|(n, v)| n.len() + v.len()).sum();
        assert!(
            bytes as u64 <= limit,
            "{bytes} bytes of variables from a {limit}-byte cap"
        );
        for (name, value) in &pairs {
            assert!(
                !name.is_empty() && !value.contains('\0'),
                "{name:?} holds a NUL or has no name"
            );
        }
    }
    // An error about any line never shows a value, here the first line's.
    let mut marked = format!("FUZZ_SECRET={MARKER}\n").into_bytes();
    marked.extend_from_slice(raw);
    if let Err(e) = crate::env::parse_user_data(&marked, UserDataFormat::Dotenv, 1 << 16) {
        assert!(!e.contains(MARKER), "an error shows a value: {e}");
    }
}

/// MIME user-data (kiln's part of one shared with cloud-init): bounded output; parts written
/// with base64 bodies come back whole; an error about kiln's part never shows a value.
pub fn user_data_mime(data: &[u8]) {
    use base64::Engine;
    if let Ok(parts) = crate::env::mime_parts(data) {
        assert!(parts.len() <= crate::env::MIME_PARTS_MAX, "{} parts", parts.len());
        let bytes: usize = parts.iter().map(|(_, body)| body.len()).sum();
        assert!(
            bytes <= data.len(),
            "{bytes} bytes of parts from {} bytes",
            data.len()
        );
    }
    // The bytes cut at each 0xff into parts, written as a tool writes them: they come back.
    let chunks: Vec<&[u8]> = data
        .split(|&b| b == 0xff)
        .take(crate::env::MIME_PARTS_MAX)
        .collect();
    let mut document =
        String::from("Content-Type: multipart/mixed; boundary=\"==kiln==\"\nMIME-Version: 1.0\n\n");
    for (n, chunk) in chunks.iter().enumerate() {
        let kind = ["text/x-kiln-env", "text/cloud-config", "text/x-shellscript"][n % 3];
        let body = base64::engine::general_purpose::STANDARD.encode(chunk);
        document.push_str(&format!(
            "--==kiln==\nContent-Type: {kind}; charset=\"utf-8\"\nContent-Transfer-Encoding: base64\n\n{body}\n"
        ));
    }
    document.push_str("--==kiln==--\n");
    let parts = crate::env::mime_parts(document.as_bytes())
        .unwrap_or_else(|e| panic!("a well-formed document is refused: {e}"));
    let bodies: Vec<&[u8]> = parts.iter().map(|(_, body)| body.as_slice()).collect();
    assert_eq!(bodies, chunks, "the parts do not come back whole");
    // kiln's part: an error about any of its lines never shows a value, here the first's.
    let marked = format!(
        "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/cloud-config\n\n#cloud-config\n--b\nContent-Type: text/x-kiln-env\n\n# kiln environment, not for cloud-init\nFUZZ_SECRET={MARKER}\n{}\n--b--\n",
        String::from_utf8_lossy(data)
    );
    if let Err(e) = crate::env::parse_user_data(marked.as_bytes(), UserDataFormat::Dotenv, 1 << 16) {
        assert!(!e.contains(MARKER), "an error shows a value: {e}");
    }
}

/// The seal manifest: what decodes encodes back to itself, with the same root hash.
pub fn seal_manifest(data: &[u8]) {
    let Ok(manifest) = Manifest::decode(data) else {
        return;
    };
    let encoded = manifest.encode();
    let again =
        Manifest::decode(&encoded).unwrap_or_else(|e| panic!("an encoded manifest does not decode: {e}"));
    assert_eq!(again.encode(), encoded, "encoding is not stable");
    assert_eq!(again.root_hash_hex(), manifest.root_hash_hex());
}

/// php-fpm's answer to a FastCGI ping: bounded in memory and in what status shows.
pub fn fastcgi_answer(data: &[u8]) {
    let (response, outcome) = crate::probe::fastcgi::answer_of(data, Some("pong"));
    if let Ok(stdout) = response {
        assert!(
            stdout.len() <= 64 * 1024 + 65_535 + 255,
            "{} bytes kept",
            stdout.len()
        );
    }
    let chars = outcome.detail.chars().count();
    assert!(chars <= DETAIL_MAX_CHARS, "a probe detail of {chars} characters");
}

/// HAProxy's `show stat` CSV: a server `find` returns is among those `all` lists.
pub fn haproxy_stat(data: &[u8]) {
    use crate::lb::haproxy::ServerStat;
    let csv = String::from_utf8_lossy(data);
    let all = ServerStat::all(&csv, "app");
    if let Some(one) = ServerStat::find(&csv, "app", "s1") {
        assert_eq!(one.name, "s1");
        assert!(all.iter().any(|s| s.name == "s1"), "find sees s1, all does not");
    }
}

/// Metadata documents (first byte: the provider): facts a boot accepts are printable.
pub fn metadata_document(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let provider = [
        ProviderKind::Ec2,
        ProviderKind::Gce,
        ProviderKind::Azure,
        ProviderKind::Openstack,
        ProviderKind::Digitalocean,
        ProviderKind::Nocloud,
    ][usize::from(selector % 6)];
    if let Ok(facts) = crate::metadata::facts_from_document(provider, body) {
        let all = [
            &facts.instance_id,
            &facts.region,
            &facts.zone,
            &facts.local_ipv4,
            &facts.hostname,
        ];
        for fact in all.into_iter().flatten() {
            assert!(
                !fact.chars().any(char::is_control),
                "an accepted fact holds a control character"
            );
        }
    }
}

/// A secret reference: an accepted one is its own text, and every ARN region in it is one DNS
/// label; an error is a short sentence that never quotes the value (a pasted secret, or hostile
/// text from user-data or tags).
pub fn secret_reference(data: &[u8]) {
    let Ok(value) = std::str::from_utf8(data) else {
        return;
    };
    let config: SecretsConfig = toml::from_str("").expect("[secrets] has defaults");
    match crate::secrets::Reference::parse(value, &config) {
        Some(Ok(reference)) => {
            assert_eq!(reference.to_string(), value);
            let region = match &reference.target {
                crate::secrets::Target::Ssm(p) => p.region.as_ref(),
                crate::secrets::Target::SecretsManager(s) => s.region.as_ref(),
                _ => None,
            };
            if let Some(region) = region {
                let label = region.as_str();
                assert!(
                    label
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                    "a region that is not one DNS label"
                );
            }
            let again = crate::secrets::Reference::parse(value, &config);
            assert!(matches!(again, Some(Ok(r)) if r == reference));
        }
        Some(Err(e)) => {
            let chars = e.chars().count();
            assert!(chars <= 200, "an error of {chars} characters");
            // Shorter values may be words of the sentence itself ("ssm:", "arn:aws").
            assert!(
                value.len() < 24 || !e.contains(value),
                "the error quotes the value"
            );
        }
        _ => {}
    }
}

/// An AWS error answer (JSON or XML): what is shown is one line.
pub fn aws_error(data: &[u8]) {
    if let Some(error) = crate::aws::parse_error_answer(data) {
        assert!(
            !error.message.contains(['\n', '\r']),
            "a message of several lines"
        );
        assert!(!error.code.contains(['\n', '\r']), "a code of several lines");
    }
}

/// kiln.toml: an error is a non-empty list; a config that loads keeps the promises `kiln
/// check` makes about services (unique names, `after` naming services that exist, no cycle).
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let config = match Config::parse(text) {
        Ok(config) => config,
        Err(errors) => {
            assert!(
                !errors.is_empty() && errors.iter().all(|e| !e.trim().is_empty()),
                "{errors:?}"
            );
            return;
        }
    };
    let names: Vec<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
    let unique: std::collections::HashSet<&str> = names.iter().copied().collect();
    assert_eq!(unique.len(), names.len(), "two services share a name");
    for service in &config.services {
        for dep in &service.after {
            assert!(
                unique.contains(dep.as_str()) && dep != &service.name,
                "bad after {dep:?}"
            );
        }
    }
    // No cycle: repeatedly take the services whose dependencies are all taken.
    let mut taken = std::collections::HashSet::new();
    while taken.len() < names.len() {
        let before = taken.len();
        for service in &config.services {
            if service.after.iter().all(|d| taken.contains(d.as_str())) {
                taken.insert(service.name.as_str());
            }
        }
        assert!(taken.len() > before, "a dependency cycle was accepted");
    }
}

/// A config drive image (first byte: ISO 9660 or FAT): its label is read without a panic, and
/// what is read of it keeps within the caps (user-data at most one byte past its limit).
pub fn config_drive(data: &[u8]) {
    use crate::metadata::config_drive::{self, Filesystem};
    let Some((&selector, image)) = data.split_first() else {
        return;
    };
    let _ = config_drive::label_of(image);
    let filesystem = match selector % 2 {
        0 => Filesystem::Iso9660,
        _ => Filesystem::Vfat,
    };
    let cap = 4096;
    let device = std::io::Cursor::new(image.to_vec());
    if let Ok(contents) = config_drive::read_from(device, filesystem, cap) {
        let user_data = contents.user_data.map_or(0, |u| u.len());
        assert!(
            user_data <= cap as usize,
            "{user_data} bytes of user-data from a {cap}-byte cap"
        );
    }
}

/// The WireServer's goal state: an accepted one holds values kiln may echo (a number, ids
/// without spaces or control characters).
pub fn goal_state(data: &[u8]) {
    if let Ok(goal) = crate::metadata::wireserver::GoalState::parse(data) {
        assert!(goal.incarnation.bytes().all(|b| b.is_ascii_digit()), "{goal:?}");
        for id in [&goal.container_id, &goal.instance_id] {
            assert!(
                !id.is_empty() && !id.chars().any(|c| c.is_control() || c.is_whitespace()),
                "{goal:?}"
            );
        }
    }
}

//! Pinning the image from outside. The seal proves that an instance matches its own manifest, but
//! the manifest travels inside the image: an instance launched from the wrong image verifies
//! against its own. The launch configuration can name what must run, and the boot compares it with
//! the verified seal before anything starts:
//!
//! - instance tags (EC2 instance tags in metadata, GCE/OpenStack metadata, Azure tags)
//!   `kiln-expect-release` and `kiln-expect-seal`: letters, digits and `-` only, the one spelling
//!   every cloud accepts as a key (GCE's metadata keys allow no `:` or `/`);
//! - reserved user-data keys `KILN_EXPECT_RELEASE` and `KILN_EXPECT_SEAL`, the only `KILN_` names
//!   user-data may set, kept out of the services' environment.
//!
//! The names are fetching's (`metadata` asks for the tags, `env` sets the keys aside); this file
//! only compares what they say with the seal.
//!
//! Every pin given must hold. A pin that is not a valid label or hash, two pins that disagree, an
//! unknown `kiln-expect-*` tag (a typo would pin nothing), a pin on an instance without a verified
//! seal, and a pin the image does not match all refuse the boot.

use super::Verified;
use crate::config::Release;
use crate::env::{PIN_RELEASE_KEY, PIN_SEAL_KEY};
use crate::metadata::{PIN_RELEASE_TAG, PIN_SEAL_TAG, PIN_TAG_PREFIX};
use std::collections::BTreeMap;
use std::fmt;

/// What the launch configuration says must run; empty when it says nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pin {
    pub release: Option<Pinned<Release>>,
    pub root_hash: Option<Pinned<blake3::Hash>>,
}

/// One expected value and where it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinned<T> {
    pub value: T,
    /// `tag kiln-expect-release`, `user-data KILN_EXPECT_SEAL`.
    pub from: String,
}

/// Why the boot may not go on; the text names what was expected and what runs, never a value
/// that failed to parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pin: {0}")]
pub struct PinError(String);

impl Pin {
    /// The pin from the `kiln-expect-*` tags (other tags are the environment's) and the
    /// `KILN_EXPECT_*` user-data keys.
    pub fn read(
        tags: &BTreeMap<String, String>,
        user_data: &BTreeMap<String, String>,
    ) -> Result<Pin, PinError> {
        let mut pin = Pin::default();
        for (tag, value) in tags.iter().filter(|(tag, _)| tag.starts_with(PIN_TAG_PREFIX)) {
            let from = format!("tag {tag}");
            match tag.as_str() {
                PIN_RELEASE_TAG => pin.expect_release(value, from)?,
                PIN_SEAL_TAG => pin.expect_root_hash(value, from)?,
                _ => {
                    return Err(PinError(format!(
                        "{from} is not a pin: the pin tags are {PIN_RELEASE_TAG} and {PIN_SEAL_TAG}"
                    )));
                }
            }
        }
        for (key, value) in user_data {
            let from = format!("user-data {key}");
            match key.as_str() {
                PIN_RELEASE_KEY => pin.expect_release(value, from)?,
                PIN_SEAL_KEY => pin.expect_root_hash(value, from)?,
                _ => return Err(PinError(format!("{from} is not a pin"))),
            }
        }
        Ok(pin)
    }

    pub fn is_empty(&self) -> bool {
        self.release.is_none() && self.root_hash.is_none()
    }

    fn expect_release(&mut self, value: &str, from: String) -> Result<(), PinError> {
        let value = value
            .trim()
            .parse::<Release>()
            .map_err(|e| PinError(format!("{from}: {e}")))?;
        agree(&mut self.release, Pinned { value, from }, "releases")
    }

    fn expect_root_hash(&mut self, value: &str, from: String) -> Result<(), PinError> {
        let value = value.trim();
        let value = (value.len() == 64)
            .then(|| blake3::Hash::from_hex(value).ok())
            .flatten()
            .ok_or_else(|| {
                PinError(format!(
                    "{from} is not a seal root hash (64 hex digits, as `kiln seal` prints it)"
                ))
            })?;
        agree(&mut self.root_hash, Pinned { value, from }, "seals")
    }

    /// Ok when the verified image is what the pin names (and when there is no pin).
    pub fn check(&self, running: &Verified) -> Result<(), PinError> {
        if self.is_empty() {
            return Ok(());
        }
        let Some(manifest) = &running.manifest else {
            let why = running.skipped.as_deref().unwrap_or("no verified seal");
            return Err(PinError(format!(
                "the launch configuration pins {self}, but this instance is not sealed ({why}): \
                 nothing to compare with"
            )));
        };
        if let Some(want) = &self.release
            && manifest.release.as_ref() != Some(&want.value)
        {
            let running = match &manifest.release {
                Some(release) => format!("this image is release {release}"),
                None => "this image has no release label".to_string(),
            };
            return Err(PinError(format!(
                "the launch configuration expects release {} ({}), {running}",
                want.value, want.from
            )));
        }
        if let Some(want) = &self.root_hash
            && manifest.root_hash != want.value
        {
            return Err(PinError(format!(
                "the launch configuration expects seal {} ({}), this image's seal is {}",
                want.value.to_hex(),
                want.from,
                manifest.root_hash.to_hex()
            )));
        }
        Ok(())
    }
}

/// Keeps `new`, unless another pin already named something else.
fn agree<T: PartialEq + fmt::Display>(
    slot: &mut Option<Pinned<T>>,
    new: Pinned<T>,
    what: &str,
) -> Result<(), PinError> {
    match slot {
        Some(old) if old.value != new.value => Err(PinError(format!(
            "the launch configuration pins two {what}: {} ({}) and {} ({})",
            old.value, old.from, new.value, new.from
        ))),
        Some(_) => Ok(()),
        None => {
            *slot = Some(new);
            Ok(())
        }
    }
}

/// `release v42 and seal 2cd4...`, for messages.
impl fmt::Display for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(r) = &self.release {
            parts.push(format!("release {} ({})", r.value, r.from));
        }
        if let Some(h) = &self.root_hash {
            parts.push(format!("seal {} ({})", h.value.to_hex(), h.from));
        }
        f.write_str(&parts.join(" and "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::{Manifest, Verified};
    use std::sync::Arc;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn image(release: Option<&str>) -> Verified {
        let manifest = Manifest::new(release.map(|r| r.parse().unwrap()), Vec::new());
        Verified {
            root_hash: Some(manifest.root_hash_hex()),
            release: manifest.release.clone(),
            manifest: Some(Arc::new(manifest)),
            skipped: None,
        }
    }

    #[test]
    fn a_matching_pin_passes_and_no_pin_is_no_check() {
        let running = image(Some("v42"));
        let hash = running.root_hash.clone().unwrap();
        let pin = Pin::read(&map(&[(PIN_RELEASE_TAG, "v42")]), &map(&[(PIN_SEAL_KEY, &hash)])).unwrap();
        assert_eq!(pin.check(&running), Ok(()));
        let none = Pin::read(&map(&[("env.APP_ENV", "prod"), ("Name", "web-1")]), &map(&[])).unwrap();
        assert!(none.is_empty());
        assert_eq!(none.check(&Verified::default()), Ok(()));
    }

    #[test]
    fn a_wrong_or_unsealed_image_is_refused_with_both_sides() {
        let running = image(Some("v42"));
        let pin = Pin::read(&map(&[]), &map(&[(PIN_RELEASE_KEY, "v43")])).unwrap();
        assert_eq!(
            pin.check(&running).unwrap_err().to_string(),
            "pin: the launch configuration expects release v43 (user-data KILN_EXPECT_RELEASE), \
             this image is release v42"
        );
        let unlabelled = image(None);
        assert!(
            pin.check(&unlabelled)
                .unwrap_err()
                .to_string()
                .contains("no release label")
        );

        let other = "ab".repeat(32);
        let pin = Pin::read(&map(&[(PIN_SEAL_TAG, &other)]), &map(&[])).unwrap();
        let err = pin.check(&running).unwrap_err().to_string();
        assert!(
            err.contains(&format!("expects seal {other} (tag kiln-expect-seal)")),
            "{err}"
        );
        assert!(err.contains(running.root_hash.as_deref().unwrap()), "{err}");

        let unsealed = Verified {
            skipped: Some("no [seal] section: nothing is sealed".into()),
            ..Verified::default()
        };
        let err = pin.check(&unsealed).unwrap_err().to_string();
        assert!(err.contains("not sealed (no [seal] section"), "{err}");
    }

    #[test]
    fn bad_unknown_and_disagreeing_pins_are_refused_without_echoing_values() {
        let err = |tags: &[(&str, &str)], user_data: &[(&str, &str)]| {
            Pin::read(&map(tags), &map(user_data)).unwrap_err().to_string()
        };
        let bad = err(&[(PIN_RELEASE_TAG, "v42; rm -rf /")], &[]);
        assert!(
            bad.contains("tag kiln-expect-release: a release label is one word"),
            "{bad}"
        );
        assert!(!bad.contains("rm -rf"), "{bad}");
        let short = err(&[], &[(PIN_SEAL_KEY, "2cd48efa9c7643f8")]);
        assert!(
            short.contains("KILN_EXPECT_SEAL is not a seal root hash"),
            "{short}"
        );
        assert!(!short.contains("2cd48efa"), "{short}");
        let typo = err(&[("kiln-expect-relase", "v42")], &[]);
        assert!(typo.contains("tag kiln-expect-relase is not a pin"), "{typo}");
        let two = err(&[(PIN_RELEASE_TAG, "v42")], &[(PIN_RELEASE_KEY, "v41")]);
        assert!(
            two.contains("pins two releases: v42 (tag kiln-expect-release) and v41"),
            "{two}"
        );
        // The same value twice is one pin.
        let same = Pin::read(
            &map(&[(PIN_RELEASE_TAG, "v42")]),
            &map(&[(PIN_RELEASE_KEY, "v42")]),
        )
        .unwrap();
        assert_eq!(same.release.unwrap().from, "tag kiln-expect-release");
    }
}

//! Durations written the way people write them: `250ms`, `20s`, `5m`, `1h 30m`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A `std::time::Duration` that reads from and writes to human strings in TOML and JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct HumanDuration(pub std::time::Duration);

impl HumanDuration {
    /// The longest duration any key takes: ten years, as humantime counts them (365.25 days).
    /// Nothing kiln waits for is that long, and every sum or product kiln makes of durations
    /// and counts stays far from `Duration` and `Instant` overflow.
    pub const MAX: HumanDuration = HumanDuration::from_secs(10 * 31_557_600);

    pub const fn from_millis(ms: u64) -> Self {
        Self(std::time::Duration::from_millis(ms))
    }

    pub const fn from_secs(s: u64) -> Self {
        Self(std::time::Duration::from_secs(s))
    }

    pub fn get(self) -> std::time::Duration {
        self.0
    }
}

impl From<HumanDuration> for std::time::Duration {
    fn from(d: HumanDuration) -> Self {
        d.0
    }
}

impl std::str::FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let d = humantime::parse_duration(s.trim()).map(Self).map_err(|e| {
            format!(
                "invalid duration {s:?} ({e}): write a number and a unit, like \"250ms\", \"20s\" or \"5m\""
            )
        })?;
        if d > Self::MAX {
            return Err(format!("invalid duration {s:?}: at most \"10y\""));
        }
        Ok(d)
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(
            "250ms".parse::<HumanDuration>().unwrap(),
            HumanDuration::from_millis(250)
        );
        assert_eq!(
            "20s".parse::<HumanDuration>().unwrap(),
            HumanDuration::from_secs(20)
        );
        assert_eq!(
            "5m".parse::<HumanDuration>().unwrap(),
            HumanDuration::from_secs(300)
        );
    }

    #[test]
    fn refuses_more_than_ten_years() {
        assert_eq!("10y".parse::<HumanDuration>().unwrap(), HumanDuration::MAX);
        let err = "500000000000y".parse::<HumanDuration>().unwrap_err();
        assert_eq!(err, "invalid duration \"500000000000y\": at most \"10y\"");
        let err = "99999999999999999999y".parse::<HumanDuration>().unwrap_err();
        assert!(
            err.starts_with("invalid duration \"99999999999999999999y\" ("),
            "{err}"
        );
    }

    #[test]
    fn rejects_a_number_without_unit() {
        let err = "20".parse::<HumanDuration>().unwrap_err();
        assert!(err.contains("\"20\""), "{err}");
    }
}

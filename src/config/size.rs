//! Sizes written the way systemd's `MemoryMax=` takes them: `"512M"`, `"2G"`, or bytes.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A number of bytes, from a TOML integer or a string with an optional `K`, `M`, `G` or `T`
/// suffix (powers of 1024, as systemd and the kernel's `memory.max` count).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl std::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("{s:?}: write bytes, or a number with K, M, G or T (powers of 1024), like \"512M\"");
        let text = s.trim();
        let (digits, shift) = match text.char_indices().last() {
            Some((at, unit)) if unit.is_ascii_alphabetic() => {
                let shift = match unit.to_ascii_uppercase() {
                    'K' => 10,
                    'M' => 20,
                    'G' => 30,
                    'T' => 40,
                    _ => return Err(bad()),
                };
                (text.get(..at).unwrap_or_default(), shift)
            }
            _ => (text, 0),
        };
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let number: u64 = digits.parse().map_err(|_| bad())?;
        number
            .checked_mul(1u64 << shift)
            .map(ByteSize)
            .ok_or_else(|| format!("{s:?}: too large"))
    }
}

impl fmt::Display for ByteSize {
    /// The largest unit that divides the size exactly: `512M`, `1536K`, `1000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, shift) in [("T", 40u32), ("G", 30), ("M", 20), ("K", 10)] {
            let whole = self
                .0
                .checked_shr(shift)
                .filter(|w| w.checked_shl(shift) == Some(self.0));
            if let Some(whole) = whole.filter(|w| *w != 0) {
                return write!(f, "{whole}{unit}");
            }
        }
        write!(f, "{}", self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Bytes(u64),
            Text(String),
        }
        match Written::deserialize(d)? {
            Written::Bytes(bytes) => Ok(ByteSize(bytes)),
            Written::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bytes_and_powers_of_1024() {
        let parsed: Vec<u64> = ["1000", "512M", "2g", "1536K", "1T"]
            .iter()
            .map(|s| s.parse::<ByteSize>().unwrap().bytes())
            .collect();
        assert_eq!(parsed, [1000, 512 << 20, 2 << 30, 1536 << 10, 1 << 40]);
    }

    #[test]
    fn refuses_what_is_not_a_size_and_what_overflows() {
        for bad in ["", "M", "12X", "-1", "1.5G", "1 G", "99999999999T"] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad:?} was accepted");
        }
        assert_eq!(
            "12X".parse::<ByteSize>().unwrap_err(),
            "\"12X\": write bytes, or a number with K, M, G or T (powers of 1024), like \"512M\""
        );
    }

    #[test]
    fn prints_the_largest_exact_unit() {
        assert_eq!(ByteSize(512 << 20).to_string(), "512M");
        assert_eq!(ByteSize(1536 << 10).to_string(), "1536K");
        assert_eq!(ByteSize(1000).to_string(), "1000");
    }
}

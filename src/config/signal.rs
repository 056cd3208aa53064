//! Signal names in config (`"SIGQUIT"` or `"QUIT"`), checked when the file is read.

use nix::sys::signal::Signal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalName(pub Signal);

impl std::str::FromStr for SignalName {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let upper = s.trim().to_ascii_uppercase();
        let full = if upper.starts_with("SIG") {
            upper
        } else {
            format!("SIG{upper}")
        };
        full.parse::<Signal>()
            .map(SignalName)
            .map_err(|_| format!("unknown signal {s:?}: use a name like \"SIGTERM\" or \"SIGQUIT\""))
    }
}

impl<'de> Deserialize<'de> for SignalName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for SignalName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_with_and_without_prefix() {
        assert_eq!("SIGQUIT".parse::<SignalName>().unwrap().0, Signal::SIGQUIT);
        assert_eq!("term".parse::<SignalName>().unwrap().0, Signal::SIGTERM);
        assert!("SIGNOPE".parse::<SignalName>().is_err());
    }
}

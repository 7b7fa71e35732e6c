//! Exchange versions as Active Directory stores them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An Exchange build, e.g. 15.2.1258.12 (Exchange 2019 CU13).
///
/// Active Directory keeps it twice on every `msExchExchangeServer` object: as `versionNumber`
/// (an integer, see [`ExchangeVersion::from_version_number`]) and as `serialNumber`
/// (`"Version 15.2 (Build 31258.12)"`, see [`ExchangeVersion::from_serial_number`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ExchangeVersion {
    /// Major version: 8 (2007), 14 (2010), 15 (2013 and later).
    pub major: u8,
    /// Minor version: 15.0 = 2013, 15.1 = 2016, 15.2 = 2019 / Subscription Edition.
    pub minor: u8,
    /// Build number (cumulative update level), without the `3` prefix that `serialNumber` adds.
    pub build: u16,
    /// Revision (security update level); `versionNumber` does not carry it.
    pub revision: Option<u16>,
}

/// The product line a build belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Product {
    /// Exchange Server 2007 (8.x).
    Exchange2007,
    /// Exchange Server 2010 (14.x).
    Exchange2010,
    /// Exchange Server 2013 (15.0).
    Exchange2013,
    /// Exchange Server 2016 (15.1).
    Exchange2016,
    /// Exchange Server 2019 (15.2, builds before 2562).
    Exchange2019,
    /// Exchange Server Subscription Edition (15.2, build 2562 and later).
    ExchangeSe,
    /// A version this crate does not know.
    Unknown,
}

impl fmt::Display for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Product::Exchange2007 => "Exchange 2007",
            Product::Exchange2010 => "Exchange 2010",
            Product::Exchange2013 => "Exchange 2013",
            Product::Exchange2016 => "Exchange 2016",
            Product::Exchange2019 => "Exchange 2019",
            Product::ExchangeSe => "Exchange SE",
            Product::Unknown => "unknown Exchange version",
        })
    }
}

/// A `versionNumber` or `serialNumber` that is not an Exchange version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an Exchange version: {input:?} ({reason}); expected e.g. \"Version 15.2 (Build 31258.12)\"")]
pub struct InvalidVersion {
    /// The input, truncated to 80 characters.
    pub input: String,
    /// Why it was refused.
    pub reason: &'static str,
}

impl InvalidVersion {
    fn new(input: &str, reason: &'static str) -> Self {
        InvalidVersion {
            input: input.chars().take(80).collect(),
            reason,
        }
    }
}

/// Exchange 2013 and later write build numbers into `serialNumber` with a leading 3
/// ("Build 31258.12" is build 1258).
const SERIAL_BUILD_PREFIX: u32 = 30_000;
/// First build of Exchange Server Subscription Edition (15.2.2562).
const SE_FIRST_BUILD: u16 = 2562;

impl ExchangeVersion {
    /// A version from its parts.
    pub const fn new(major: u8, minor: u8, build: u16) -> Self {
        ExchangeVersion {
            major,
            minor,
            build,
            revision: None,
        }
    }

    /// Decodes AD `versionNumber`: major = bits 22..28, minor = bits 16..22, build = bits 0..15.
    pub fn from_version_number(v: u32) -> Result<Self, InvalidVersion> {
        let major = ((v >> 22) & 63) as u8;
        let minor = ((v >> 16) & 63) as u8;
        let build = (v & 0x7FFF) as u16;
        if major == 0 {
            return Err(InvalidVersion::new(
                &v.to_string(),
                "major version 0 in versionNumber",
            ));
        }
        Ok(ExchangeVersion::new(major, minor, build))
    }

    /// Encodes as AD `versionNumber` (the inverse of [`Self::from_version_number`] for
    /// major, minor < 64 and build < 32768; the revision is not stored). Sets bit 30 like Exchange.
    pub fn to_version_number(&self) -> u32 {
        (1 << 30)
            | (u32::from(self.major & 63) << 22)
            | (u32::from(self.minor & 63) << 16)
            | u32::from(self.build & 0x7FFF)
    }

    /// Parses AD `serialNumber`: `"Version 15.2 (Build 31258.12)"`, `"Version 14.3 (Build 123.2)"`.
    pub fn from_serial_number(s: &str) -> Result<Self, InvalidVersion> {
        let err = |reason| InvalidVersion::new(s, reason);
        let rest = s
            .trim()
            .strip_prefix("Version ")
            .ok_or_else(|| err("missing \"Version \" prefix"))?;
        let (mm, rest) = rest
            .split_once(" (Build ")
            .ok_or_else(|| err("missing \" (Build \""))?;
        let inner = rest
            .strip_suffix(')')
            .ok_or_else(|| err("missing closing parenthesis"))?;
        let (major, minor) = mm.split_once('.').ok_or_else(|| err("no minor version"))?;
        let major: u8 = parse_num(major).ok_or_else(|| err("bad major version"))?;
        let minor: u8 = parse_num(minor).ok_or_else(|| err("bad minor version"))?;
        let (build, revision) = match inner.split_once('.') {
            Some((b, r)) => (b, Some(r)),
            None => (inner, None),
        };
        let mut build: u32 = parse_num(build).ok_or_else(|| err("bad build number"))?;
        if major >= 15 && build >= SERIAL_BUILD_PREFIX {
            build -= SERIAL_BUILD_PREFIX;
        }
        let build = u16::try_from(build).map_err(|_| err("build number too large"))?;
        let revision = match revision {
            Some(r) => Some(parse_num::<u16>(r).ok_or_else(|| err("bad revision"))?),
            None => None,
        };
        if major == 0 {
            return Err(err("major version 0"));
        }
        Ok(ExchangeVersion {
            major,
            minor,
            build,
            revision,
        })
    }

    /// Formats as AD `serialNumber` (inverse of [`Self::from_serial_number`]).
    pub fn to_serial_number(&self) -> String {
        let build = if self.major >= 15 {
            u32::from(self.build) + SERIAL_BUILD_PREFIX
        } else {
            u32::from(self.build)
        };
        match self.revision {
            Some(r) => format!("Version {}.{} (Build {build}.{r})", self.major, self.minor),
            None => format!("Version {}.{} (Build {build})", self.major, self.minor),
        }
    }

    /// The product line.
    pub fn product(&self) -> Product {
        match (self.major, self.minor) {
            (8, _) => Product::Exchange2007,
            (14, _) => Product::Exchange2010,
            (15, 0) => Product::Exchange2013,
            (15, 1) => Product::Exchange2016,
            (15, 2) if self.build >= SE_FIRST_BUILD => Product::ExchangeSe,
            (15, 2) => Product::Exchange2019,
            _ => Product::Unknown,
        }
    }
}

/// Decimal digits only (no sign, no whitespace), at most 9 of them.
fn parse_num<T: TryFrom<u32>>(s: &str) -> Option<T> {
    if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    T::try_from(s.parse::<u32>().ok()?).ok()
}

impl fmt::Display for ExchangeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.build)?;
        if let Some(r) = self.revision {
            write!(f, ".{r}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_serial_numbers() {
        let v = ExchangeVersion::from_serial_number("Version 15.1 (Build 30845.5)").unwrap();
        assert_eq!(v.to_string(), "15.1.845.5");
        assert_eq!(v.product(), Product::Exchange2016);
        let v = ExchangeVersion::from_serial_number("Version 14.3 (Build 123.4)").unwrap();
        assert_eq!(v.to_string(), "14.3.123.4");
        assert_eq!(v.product(), Product::Exchange2010);
        let v = ExchangeVersion::from_serial_number("Version 8.3 (Build 83.6)").unwrap();
        assert_eq!(v.product(), Product::Exchange2007);
        let v = ExchangeVersion::from_serial_number("Version 15.2 (Build 32562.17)").unwrap();
        assert_eq!(v.product(), Product::ExchangeSe);
    }

    #[test]
    fn known_version_number() {
        // Exchange 2016 CU23: 15.1.2507 with bit 30 set, as Exchange writes it.
        let n = (1u32 << 30) | (15 << 22) | (1 << 16) | 2507;
        let v = ExchangeVersion::from_version_number(n).unwrap();
        assert_eq!((v.major, v.minor, v.build), (15, 1, 2507));
        assert!(ExchangeVersion::from_version_number(0).is_err());
    }

    #[test]
    fn bad_serials_name_the_input() {
        for s in [
            "",
            "Version",
            "Version 15.x (Build 1.2)",
            "Version 15.2 (Build 1.2",
            "15.2.1",
        ] {
            let e = ExchangeVersion::from_serial_number(s).unwrap_err();
            assert!(e.to_string().contains("not an Exchange version"), "{e}");
        }
    }

    proptest! {
        #[test]
        fn version_number_round_trips(major in 1u8..64, minor in 0u8..64, build in 0u16..0x8000) {
            let v = ExchangeVersion::new(major, minor, build);
            prop_assert_eq!(ExchangeVersion::from_version_number(v.to_version_number()).unwrap(), v);
        }

        #[test]
        fn serial_number_round_trips(major in 1u8..=99, minor in 0u8..=99, build in 0u16..30000, rev in proptest::option::of(0u16..10000)) {
            let v = ExchangeVersion { major, minor, build, revision: rev };
            prop_assert_eq!(ExchangeVersion::from_serial_number(&v.to_serial_number()).unwrap(), v);
        }

        #[test]
        fn decoding_never_panics(s in ".*", n in any::<u32>()) {
            let _ = ExchangeVersion::from_serial_number(&s);
            let _ = ExchangeVersion::from_version_number(n);
        }

        #[test]
        fn serial_like_inputs_never_panic(a in "[0-9]{0,12}", b in "[0-9]{0,12}", c in "[0-9.]{0,14}") {
            let _ = ExchangeVersion::from_serial_number(&format!("Version {a}.{b} (Build {c})"));
        }
    }
}

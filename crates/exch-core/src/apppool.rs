//! Validated IIS application pool names.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An IIS application pool name that is safe to put into a PowerShell single-quoted string,
/// a URL path segment or an `appcmd` argument.
///
/// Accepted: 1–64 characters from `A–Z a–z 0–9 space . _ - ( )`, not starting or ending with a
/// space. Every Exchange pool name (`MSExchangeOWAAppPool`, `DefaultAppPool`, …) qualifies;
/// quotes, `$`, backticks, `;`, `|`, `&`, newlines and anything else PowerShell or a shell could
/// interpret are refused.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct AppPool(String);

/// A refused application pool name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid app pool name {name:?}: {reason}; use the name IIS shows (letters, digits, space, . _ - ( ), at most 64)")]
pub struct InvalidAppPool {
    /// The refused name (truncated to 80 characters).
    pub name: String,
    /// Why.
    pub reason: &'static str,
}

impl AppPool {
    /// Longest accepted name.
    pub const MAX_LEN: usize = 64;

    /// Validates `name`.
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidAppPool> {
        let name = name.into();
        let err = |reason| InvalidAppPool {
            name: name.chars().take(80).collect(),
            reason,
        };
        if name.is_empty() {
            return Err(err("empty"));
        }
        if name.chars().count() > Self::MAX_LEN {
            return Err(err("longer than 64 characters"));
        }
        if name.starts_with(' ') || name.ends_with(' ') {
            return Err(err("leading or trailing space"));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '.' | '_' | '-' | '(' | ')'))
        {
            return Err(err(
                "contains a character outside A-Z a-z 0-9 space . _ - ( )",
            ));
        }
        Ok(AppPool(name))
    }

    /// A name known at compile time to be valid (used by the pool catalog).
    ///
    /// # Panics
    /// If `name` is invalid — only call it with literals.
    pub fn from_static(name: &'static str) -> Self {
        match AppPool::new(name) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AppPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AppPool({:?})", self.0)
    }
}

impl fmt::Display for AppPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for AppPool {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for AppPool {
    type Err = InvalidAppPool;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AppPool::new(s)
    }
}

impl<'de> Deserialize<'de> for AppPool {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        AppPool::new(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn exchange_names_are_valid() {
        for n in [
            "MSExchangeOWAAppPool",
            "DefaultAppPool",
            "MSExchangeRPCProxyFrontEndAppPool",
        ] {
            assert_eq!(AppPool::new(n).unwrap().as_str(), n);
        }
    }

    #[test]
    fn hostile_names_are_refused() {
        for n in [
            "", " a", "a'b", "a$b", "a`b", "a;b", "a|b", "a\nb", "a\"b", "x&y", "é",
        ] {
            assert!(AppPool::new(n).is_err(), "{n:?}");
        }
        assert!(serde_json::from_str::<AppPool>("\"a'b\"").is_err());
    }

    proptest! {
        #[test]
        fn accepted_names_contain_no_metacharacters(s in ".{0,80}") {
            if let Ok(p) = AppPool::new(s.clone()) {
                prop_assert_eq!(p.as_str(), s.as_str());
                prop_assert!(!p.as_str().contains(['\'', '"', '$', '`', ';', '|', '&', '\n', '\r', '/', '\\', '%']));
            }
        }
    }
}

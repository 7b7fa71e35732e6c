//! Strong random passwords for resets.

use rand::rngs::OsRng;
use rand::seq::SliceRandom;
use rand::Rng;
use secrecy::SecretString;

const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
const DIGITS: &[u8] = b"23456789";
/// No quotes, backslash or space: safe in shells, LDIF and PowerShell without quoting games.
const SYMBOLS: &[u8] = b"!#$%&()*+,-./:;<=>?@[]^_{|}~";

/// Length of [`generate_password`]'s passwords.
pub const GENERATED_PASSWORD_LEN: usize = 32;

/// A random password from the operating system's CSPRNG (`OsRng`): 32 characters, at least
/// one upper-case letter, lower-case letter, digit and symbol (so it satisfies AD complexity
/// for any account name), without look-alike characters (`0 O 1 l I`), quotes, backslash or
/// space. About 190 bits of entropy.
///
/// ```
/// use secrecy::ExposeSecret;
/// let pw = exch_directory::generate_password();
/// assert_eq!(pw.expose_secret().len(), 32);
/// ```
pub fn generate_password() -> SecretString {
    let mut rng = OsRng;
    let all: Vec<u8> = [UPPER, LOWER, DIGITS, SYMBOLS].concat();
    let mut chars: Vec<u8> = [UPPER, LOWER, DIGITS, SYMBOLS]
        .iter()
        .map(|class| class[rng.gen_range(0..class.len())])
        .collect();
    while chars.len() < GENERATED_PASSWORD_LEN {
        chars.push(all[rng.gen_range(0..all.len())]);
    }
    chars.shuffle(&mut rng);
    // Every byte comes from the ASCII tables above.
    SecretString::from(chars.into_iter().map(char::from).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PasswordPolicy;
    use secrecy::ExposeSecret;
    use std::collections::HashSet;

    #[test]
    fn strong_and_different() {
        let mut seen = HashSet::new();
        for _ in 0..500 {
            let pw = generate_password();
            let s = pw.expose_secret();
            assert_eq!(s.len(), GENERATED_PASSWORD_LEN);
            assert!(s.bytes().any(|b| UPPER.contains(&b)));
            assert!(s.bytes().any(|b| LOWER.contains(&b)));
            assert!(s.bytes().any(|b| DIGITS.contains(&b)));
            assert!(s.bytes().any(|b| SYMBOLS.contains(&b)));
            assert!(!s.contains(['"', '\\', ' ', '\'', '`']));
            assert_eq!(
                PasswordPolicy::default().violation("administrator", s),
                None
            );
            assert!(seen.insert(s.to_owned()), "repeated password");
            assert!(!format!("{pw:?}").contains(s));
        }
    }
}

//! `cadata`-style OWA cookies: the user's credentials, encrypted with a key of the server
//! certificate.
//!
//! Exchange's forms-based authentication module keeps no session in the worker: it puts the
//! user name and password, encrypted, in the `cadata*` cookies — the symmetric key itself
//! encrypted with the public key of the certificate bound to the site — and on every request
//! decrypts them and logs the user on again as a Basic logon, through IIS's token cache. So a
//! session survives a recycle and an `iisreset`, works on every front end that has the same
//! certificate, and ends only when the re-logon fails. (Microsoft: "Forms-based authentication
//! in Exchange", and Exchange's `Microsoft.Exchange.HttpProxy` FBA module, which names the
//! cookies `cadata`, `cadataKey`, `cadataIV`, `cadataSig`, `cadataTTL`.)
//!
//! The lab keeps one cookie, `cadata`, sealed with encrypt-then-MAC: an HMAC-SHA-256 key
//! stream (counter mode) and an HMAC-SHA-256 tag, both keyed from the [`SessionKey`] that
//! stands for the certificate's key. A tampered cookie, or one sealed by a server with another
//! certificate, does not open.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

const NONCE: usize = 16;
const TAG: usize = 32;

/// The key that protects `cadata` cookies: it stands for the server certificate's key, so
/// servers that share a certificate share it. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionKey([u8; 32]);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

impl SessionKey {
    /// A fresh random key (a certificate of its own).
    pub fn random() -> Self {
        let mut key = [0u8; 32];
        key[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        key[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        SessionKey(key)
    }

    /// The key derived from a certificate (or any bytes standing for it): same certificate,
    /// same key.
    pub fn from_certificate(der: &[u8]) -> Self {
        SessionKey(Sha256::digest(der).into())
    }

    fn derive(&self, label: &[u8]) -> [u8; 32] {
        hmac_sha256(&self.0, &[label])
    }

    fn keystream(&self, nonce: &[u8], data: &mut [u8]) {
        let key = self.derive(b"cadata-encrypt");
        for (i, chunk) in data.chunks_mut(32).enumerate() {
            let block = hmac_sha256(&key, &[nonce, &(i as u64).to_be_bytes()]);
            for (b, k) in chunk.iter_mut().zip(block.iter()) {
                *b ^= k;
            }
        }
    }

    fn tag(&self, nonce_and_ciphertext: &[u8]) -> [u8; TAG] {
        hmac_sha256(&self.derive(b"cadata-mac"), &[nonce_and_ciphertext])
    }

    /// Seals `user` and `password` into a cookie value (URL-safe base64).
    pub(crate) fn seal(&self, user: &str, password: &SecretString) -> String {
        let mut plain = Vec::with_capacity(user.len() + 1 + password.expose_secret().len());
        plain.extend_from_slice(user.as_bytes());
        plain.push(0);
        plain.extend_from_slice(password.expose_secret().as_bytes());
        let nonce = *uuid::Uuid::new_v4().as_bytes();
        self.keystream(&nonce, &mut plain);
        let mut out = Vec::with_capacity(NONCE + plain.len() + TAG);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&plain);
        let tag = self.tag(&out);
        out.extend_from_slice(&tag);
        B64.encode(out)
    }

    /// Opens a cookie value sealed with this key; `None` when it is not one.
    pub(crate) fn open(&self, cookie: &str) -> Option<(String, SecretString)> {
        let raw = B64.decode(cookie.trim()).ok()?;
        if raw.len() < NONCE + TAG + 1 {
            return None;
        }
        let (body, tag) = raw.split_at(raw.len() - TAG);
        let expected = self.tag(body);
        // Constant time: every byte is compared.
        let diff = expected
            .iter()
            .zip(tag)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return None;
        }
        let (nonce, ciphertext) = body.split_at(NONCE);
        let mut plain = ciphertext.to_vec();
        self.keystream(nonce, &mut plain);
        let text = String::from_utf8(plain).ok()?;
        let (user, password) = text.split_once('\0')?;
        Some((user.to_owned(), SecretString::from(password.to_owned())))
    }
}

/// HMAC-SHA-256 (RFC 2104) of the concatenation of `parts` under a 32-byte key.
fn hmac_sha256(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(key);
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    for part in parts {
        inner.update(part);
    }
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_shape() {
        // RFC 4231 test case 2 uses a 4-byte key; with a 32-byte zero-padded key the result
        // is the same (HMAC pads keys with zeros to the block size).
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let mac = hmac_sha256(&key, &[b"what do ya want ", b"for nothing?"]);
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn sealed_cookies_open_with_the_same_key_only() {
        let key = SessionKey::from_certificate(b"cert");
        let cookie = key.seal("CORP\\bob", &SecretString::from("p:ss\0".to_owned()));
        assert!(!cookie.contains("bob"));
        let (user, pw) = SessionKey::from_certificate(b"cert")
            .open(&cookie)
            .expect("same certificate");
        assert_eq!(user, "CORP\\bob");
        assert_eq!(pw.expose_secret(), "p:ss\0");
        assert!(SessionKey::random().open(&cookie).is_none());
        let mut tampered = B64.decode(&cookie).unwrap();
        tampered[NONCE] ^= 1;
        assert!(key.open(&B64.encode(tampered)).is_none());
        assert!(key.open("not-a-cookie").is_none());
        assert_eq!(format!("{key:?}"), "SessionKey(..)");
    }
}

//! MS-WSMV 2.2.9.1 message encryption: the `multipart/encrypted` body that carries a sealed
//! SOAP envelope over plain HTTP.
//!
//! ```text
//! --Encrypted Boundary\r\n
//! \tContent-Type: application/HTTP-SPNEGO-session-encrypted\r\n
//! \tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=<plaintext bytes>\r\n
//! --Encrypted Boundary\r\n
//! \tContent-Type: application/octet-stream\r\n
//! <u32 LE header length><header (NTLM: the 16-byte signature)><ciphertext>--Encrypted Boundary--\r\n
//! ```
//!
//! Windows writes the closing boundary straight after the ciphertext, with no CRLF before it
//! (winrm-rs 1.1 expects one and so decrypts the CRLF-less trailer as part of the message);
//! the parser here takes the ciphertext as exactly the bytes up to the closing boundary at
//! the end of the body, and accepts a CRLF before it only when the length still checks out.

/// The protocol of SPNEGO (NTLM or Kerberos under `Negotiate`) session encryption.
pub(crate) const SPNEGO_PROTOCOL: &str = "application/HTTP-SPNEGO-session-encrypted";
/// The protocol of the `Kerberos` scheme's session encryption.
pub(crate) const KERBEROS_PROTOCOL: &str = "application/HTTP-Kerberos-session-encrypted";

const BOUNDARY: &[u8] = b"--Encrypted Boundary";
const OCTET_STREAM: &[u8] = b"\tContent-Type: application/octet-stream\r\n";

/// The `Content-Type` header of an encrypted body.
pub(crate) fn content_type(protocol: &str) -> String {
    format!("multipart/encrypted;protocol=\"{protocol}\";boundary=\"Encrypted Boundary\"")
}

/// True when a `Content-Type` header value announces an encrypted body.
pub(crate) fn is_encrypted(content_type: &str) -> bool {
    let ct = content_type.to_ascii_lowercase();
    ct.starts_with("multipart/encrypted") && ct.contains("session-encrypted")
}

/// Frames a sealed message: `header` is the security trailer the SSP produced (NTLM's
/// signature, Kerberos's wrap token header), `sealed` the encrypted SOAP body of
/// `plain_len` bytes.
pub(crate) fn encode(protocol: &str, plain_len: usize, header: &[u8], sealed: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(sealed.len() + header.len() + 256);
    out.extend_from_slice(BOUNDARY);
    out.extend_from_slice(b"\r\n\tContent-Type: ");
    out.extend_from_slice(protocol.as_bytes());
    out.extend_from_slice(
        b"\r\n\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=",
    );
    out.extend_from_slice(plain_len.to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(BOUNDARY);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(OCTET_STREAM);
    let header_len = u32::try_from(header.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&header_len.to_le_bytes());
    out.extend_from_slice(header);
    out.extend_from_slice(sealed);
    out.extend_from_slice(BOUNDARY);
    out.extend_from_slice(b"--\r\n");
    out
}

/// One sealed message taken apart.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Sealed<'a> {
    /// The protocol named in the first part.
    pub(crate) protocol: &'a str,
    /// The plaintext length announced by `OriginalContent` (checked after unsealing).
    pub(crate) plain_len: usize,
    /// The security trailer (NTLM signature / Kerberos wrap header).
    pub(crate) header: &'a [u8],
    /// The ciphertext.
    pub(crate) sealed: &'a [u8],
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|i| i + from)
}

/// Takes an encrypted body apart. Only single-part bodies (what Windows sends for
/// `multipart/encrypted`) are accepted.
pub(crate) fn decode(body: &[u8]) -> Result<Sealed<'_>, String> {
    let rest = body
        .strip_prefix(BOUNDARY)
        .and_then(|r| r.strip_prefix(b"\r\n"))
        .ok_or("the body does not start with --Encrypted Boundary")?;
    let part_end = find(rest, BOUNDARY, 0).ok_or("no second boundary")?;
    let headers = std::str::from_utf8(&rest[..part_end])
        .map_err(|_| "the first part's headers are not UTF-8")?;
    let mut protocol = None;
    let mut plain_len = None;
    for line in headers.split("\r\n").map(str::trim) {
        if let Some(v) = line.strip_prefix("Content-Type:") {
            protocol = Some(v.trim());
        } else if let Some(v) = line.strip_prefix("OriginalContent:") {
            let len = v
                .split(';')
                .find_map(|kv| kv.trim().strip_prefix("Length="))
                .ok_or("OriginalContent has no Length")?;
            plain_len = Some(
                len.trim()
                    .parse::<usize>()
                    .map_err(|_| format!("bad OriginalContent Length {len:?}"))?,
            );
        }
    }
    let protocol = protocol.ok_or("the first part has no Content-Type")?;
    let plain_len = plain_len.ok_or("the first part has no OriginalContent")?;
    let second = &rest[part_end + BOUNDARY.len()..];
    let second = second
        .strip_prefix(b"\r\n")
        .and_then(|s| s.strip_prefix(OCTET_STREAM))
        .ok_or("the second part is not application/octet-stream")?;
    let mut trailer = BOUNDARY.to_vec();
    trailer.extend_from_slice(b"--\r\n");
    let payload = second
        .strip_suffix(trailer.as_slice())
        .or_else(|| second.strip_suffix(&trailer[..trailer.len() - 2]))
        .ok_or("the body does not end with --Encrypted Boundary--")?;
    if payload.len() < 4 {
        return Err("the encrypted part is shorter than its length prefix".into());
    }
    let (len, payload) = payload.split_at(4);
    let header_len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if header_len > payload.len() {
        return Err(format!(
            "the security header length {header_len} exceeds the part ({} bytes)",
            payload.len()
        ));
    }
    let (header, sealed) = payload.split_at(header_len);
    Ok(Sealed {
        protocol,
        plain_len,
        header,
        sealed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_the_windows_trailer() {
        let body = encode(SPNEGO_PROTOCOL, 5, &[1; 16], b"abcde");
        // No CRLF between the ciphertext and the closing boundary, as Windows writes it.
        assert!(body.ends_with(b"abcde--Encrypted Boundary--\r\n"));
        let s = decode(&body).unwrap();
        assert_eq!(s.protocol, SPNEGO_PROTOCOL);
        assert_eq!(
            (s.plain_len, s.header, s.sealed),
            (5, &[1u8; 16][..], &b"abcde"[..])
        );
    }

    #[test]
    fn ciphertext_that_ends_in_crlf_is_kept_whole() {
        let body = encode(SPNEGO_PROTOCOL, 4, &[2; 16], b"ab\r\n");
        let s = decode(&body).unwrap();
        assert_eq!(s.sealed, b"ab\r\n");
    }

    #[test]
    fn refuses_garbage() {
        for bad in [
            &b""[..],
            b"--Encrypted Boundary\r\n",
            b"--Encrypted Boundary\r\n\tContent-Type: x\r\n--Encrypted Boundary\r\n\tContent-Type: application/octet-stream\r\n\x10\0\0\0ab--Encrypted Boundary--\r\n",
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
        assert!(is_encrypted(&content_type(SPNEGO_PROTOCOL)));
        assert!(!is_encrypted("application/soap+xml;charset=UTF-8"));
    }
}

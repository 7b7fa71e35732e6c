//! MS-WSMV 2.2.9.1 message encryption framing (`multipart/encrypted`), as Windows writes it.
//!
//! ```text
//! --Encrypted Boundary\r\n
//! \tContent-Type: application/HTTP-SPNEGO-session-encrypted\r\n
//! \tOriginalContent: type=application/soap+xml;charset=UTF-8;Length=N\r\n
//! --Encrypted Boundary\r\n
//! \tContent-Type: application/octet-stream\r\n
//! <u32 LE header length><header (NTLM: the 16-byte signature)><ciphertext>--Encrypted Boundary--\r\n
//! ```
//!
//! After `Authorization: Kerberos` the protocol is `application/HTTP-Kerberos-session-encrypted`
//! and the header is the 60-byte RFC 4121 wrap token head (pypsrp, the exch-iis client);
//! pywinrm's Kerberos says `HTTP-SPNEGO-session-encrypted`. The endpoint accepts either and
//! answers with the protocol of the request.
//!
//! Windows writes the closing boundary straight after the ciphertext, without a CRLF; replies
//! are framed that way. The decoder takes the ciphertext length from `Length=N` (NTLM's RC4
//! does not change the length), so it accepts a CRLF before the closing boundary or none,
//! with or without the tabs, and several parts in one body.

/// The protocol of NTLM/SPNEGO (and Kerberos via SPNEGO) session encryption.
pub(crate) const SPNEGO_PROTOCOL: &str = "application/HTTP-SPNEGO-session-encrypted";
/// The protocol of session encryption after `Authorization: Kerberos`.
pub(crate) const KERBEROS_PROTOCOL: &str = "application/HTTP-Kerberos-session-encrypted";
/// The boundary Windows uses.
pub(crate) const BOUNDARY: &str = "Encrypted Boundary";

/// The Content-Type of an encrypted reply.
pub(crate) fn content_type(protocol: &str) -> String {
    format!("multipart/encrypted;protocol=\"{protocol}\";boundary=\"{BOUNDARY}\"")
}

/// Whether a request's Content-Type announces an MS-WSMV encrypted body: (boundary,
/// protocol) if so.
pub(crate) fn encrypted_boundary(content_type: &str) -> Option<(String, &'static str)> {
    let lower = content_type.to_ascii_lowercase();
    if !lower.trim_start().starts_with("multipart/encrypted") {
        return None;
    }
    let protocol = [SPNEGO_PROTOCOL, KERBEROS_PROTOCOL]
        .into_iter()
        .find(|p| lower.contains(&format!("protocol=\"{}\"", p.to_ascii_lowercase())))?;
    let at = lower.find("boundary=")? + "boundary=".len();
    let rest = &content_type[at..];
    let value = match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next()?,
        None => rest.split(';').next()?.trim(),
    };
    Some((value.to_owned(), protocol))
}

/// One encrypted part of a request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct EncryptedPart {
    /// The security header (NTLM: the signature).
    pub(crate) header: Vec<u8>,
    /// The ciphertext.
    pub(crate) sealed: Vec<u8>,
}

fn strip<'a>(data: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    data.strip_prefix(prefix)
}

fn skip_crlf(mut data: &[u8]) -> &[u8] {
    while let Some(rest) = strip(data, b"\r\n") {
        data = rest;
    }
    data
}

fn line(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = data.windows(2).position(|w| w == b"\r\n")?;
    Some((&data[..at], &data[at + 2..]))
}

/// Splits an encrypted body of `protocol` into its parts. `Err` says what is wrong (for the
/// fault text).
pub(crate) fn decode(
    body: &[u8],
    boundary: &str,
    protocol: &str,
) -> Result<Vec<EncryptedPart>, &'static str> {
    let open = format!("--{boundary}");
    let mut rest = body;
    let mut parts = Vec::new();
    loop {
        rest = skip_crlf(rest);
        rest = strip(rest, open.as_bytes()).ok_or("missing MIME boundary")?;
        if let Some(after) = strip(rest, b"--") {
            if !skip_crlf(after).is_empty() {
                return Err("data after the closing boundary");
            }
            if parts.is_empty() {
                return Err("no encrypted part");
            }
            return Ok(parts);
        }
        rest = strip(rest, b"\r\n").ok_or("boundary not followed by CRLF")?;
        // Headers of the first part: up to the next boundary.
        let mut length: Option<usize> = None;
        let mut protocol_ok = false;
        loop {
            if rest.starts_with(open.as_bytes()) {
                break;
            }
            let (l, r) = line(rest).ok_or("unterminated part header")?;
            let text = std::str::from_utf8(l).map_err(|_| "part header is not UTF-8")?;
            let text = text.trim();
            let lower = text.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-type:") {
                protocol_ok = v.trim() == protocol.to_ascii_lowercase();
            } else if lower.starts_with("originalcontent:") {
                length = lower
                    .split(';')
                    .find_map(|kv| kv.trim().strip_prefix("length="))
                    .and_then(|n| n.trim().parse().ok());
            }
            rest = r;
        }
        if !protocol_ok {
            return Err("the first part's Content-Type is not the protocol of the body");
        }
        let length = length.ok_or("OriginalContent has no Length")?;
        rest = strip(rest, open.as_bytes()).ok_or("missing second boundary")?;
        rest = strip(rest, b"\r\n").ok_or("boundary not followed by CRLF")?;
        let (l, r) = line(rest).ok_or("unterminated octet-stream header")?;
        if !String::from_utf8_lossy(l)
            .trim()
            .eq_ignore_ascii_case("content-type: application/octet-stream")
        {
            return Err("the second part is not application/octet-stream");
        }
        rest = r;
        let hlen = rest.get(..4).ok_or("truncated header length")?;
        let hlen = u32::from_le_bytes([hlen[0], hlen[1], hlen[2], hlen[3]]) as usize;
        rest = &rest[4..];
        let header = rest.get(..hlen).ok_or("truncated security header")?;
        rest = &rest[hlen..];
        let sealed = rest.get(..length).ok_or("truncated ciphertext")?;
        rest = &rest[length..];
        parts.push(EncryptedPart {
            header: header.to_vec(),
            sealed: sealed.to_vec(),
        });
    }
}

/// Frames one encrypted message of `protocol` the way Windows does (no CRLF before the
/// closing boundary).
pub(crate) fn encode(protocol: &str, header: &[u8], sealed: &[u8], plain_len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(sealed.len() + header.len() + 256);
    out.extend_from_slice(
        format!(
            "--{BOUNDARY}\r\n\tContent-Type: {protocol}\r\n\tOriginalContent: type=application/soap+xml;charset=UTF-8;Length={plain_len}\r\n--{BOUNDARY}\r\n\tContent-Type: application/octet-stream\r\n"
        )
        .as_bytes(),
    );
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(header);
    out.extend_from_slice(sealed);
    out.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_windows_closing() {
        let framed = encode(SPNEGO_PROTOCOL, &[1; 16], b"cipher", 6);
        assert!(framed.ends_with(b"cipher--Encrypted Boundary--\r\n"));
        assert!(decode(&framed, BOUNDARY, KERBEROS_PROTOCOL).is_err());
        let parts = decode(&framed, BOUNDARY, SPNEGO_PROTOCOL).unwrap();
        assert_eq!(
            parts,
            vec![EncryptedPart {
                header: vec![1; 16],
                sealed: b"cipher".to_vec()
            }]
        );
    }

    #[test]
    fn accepts_a_crlf_before_the_closing_boundary_and_rejects_lies() {
        let mut framed = encode(KERBEROS_PROTOCOL, &[1; 60], b"cipher", 6);
        let at = framed.len() - "--Encrypted Boundary--\r\n".len();
        framed.splice(at..at, b"\r\n".iter().copied());
        assert_eq!(
            decode(&framed, BOUNDARY, KERBEROS_PROTOCOL).unwrap().len(),
            1
        );
        let long = encode(SPNEGO_PROTOCOL, &[1; 16], b"cipher", 60);
        assert!(decode(&long, BOUNDARY, SPNEGO_PROTOCOL).is_err());
        assert!(decode(b"<s:Envelope/>", BOUNDARY, SPNEGO_PROTOCOL).is_err());
    }

    #[test]
    fn content_type_detection() {
        for protocol in [SPNEGO_PROTOCOL, KERBEROS_PROTOCOL] {
            assert_eq!(
                encrypted_boundary(&content_type(protocol)),
                Some((BOUNDARY.to_owned(), protocol))
            );
        }
        assert_eq!(
            encrypted_boundary("multipart/encrypted;protocol=\"application/HTTP-CredSSP-session-encrypted\";boundary=\"x\""),
            None
        );
        assert_eq!(
            encrypted_boundary("application/soap+xml;charset=UTF-8"),
            None
        );
    }
}

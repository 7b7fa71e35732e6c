//! MIT keytab files (format 0x0502 and 0x0501), as `samba-tool domain exportkeytab`,
//! `ktutil`, `ktpass` and `msktutil` write them. Format:
//! <https://web.mit.edu/kerberos/krb5-1.21/doc/formats/keytab_file_format.html>
//!
//! ```text
//! keytab   = u16 version (0x05 0x02) , { i32 size , entry[size] }   (size < 0: a hole of -size bytes)
//! entry    = u16 num_components , data realm , { data component } , u32 name_type (0x0502 only)
//!            , u32 timestamp , u8 vno8 , u16 enctype , data key , [ u32 vno ]      (big endian)
//! data     = u16 length , bytes
//! ```
//! (0x0501 counts the realm in `num_components` and has no `name_type`.)

/// One key of a keytab.
#[derive(Clone)]
pub(crate) struct KeytabEntry {
    pub(crate) realm: String,
    /// Name components: `["HTTP", "ex01.lab.example.test"]`.
    pub(crate) components: Vec<String>,
    /// The 32-bit kvno when present (and non-zero), else the 8-bit one.
    pub(crate) kvno: u32,
    /// Kerberos etype: 18 aes256-cts-hmac-sha1-96, 17 aes128-cts-hmac-sha1-96, 23 rc4-hmac.
    pub(crate) enctype: u16,
    pub(crate) key: Vec<u8>,
}

impl std::fmt::Debug for KeytabEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}@{} kvno {} etype {} ({} byte key)",
            self.principal(),
            self.realm,
            self.kvno,
            self.enctype,
            self.key.len()
        )
    }
}

impl KeytabEntry {
    /// `HTTP/ex01.lab.example.test` (no realm).
    pub(crate) fn principal(&self) -> String {
        self.components.join("/")
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err(format!(
                "truncated (need {n} more bytes, have {})",
                self.0.len()
            ));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, String> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn data(&mut self) -> Result<&'a [u8], String> {
        let n = self.u16()? as usize;
        self.take(n)
    }

    fn string(&mut self) -> Result<String, String> {
        String::from_utf8(self.data()?.to_vec()).map_err(|_| "a name is not UTF-8".to_owned())
    }
}

/// Parses a whole keytab file. `Err` says what is wrong (never key material).
pub(crate) fn parse(bytes: &[u8]) -> Result<Vec<KeytabEntry>, String> {
    let mut r = Reader(bytes);
    let version = r.u16()?;
    if version != 0x0502 && version != 0x0501 {
        return Err(format!(
            "not an MIT keytab (version {version:#06x}, want 0x0502)"
        ));
    }
    let mut out = Vec::new();
    while !r.0.is_empty() {
        let size = r.u32()? as i32;
        if size < 0 {
            // A hole left by a deleted entry.
            r.take(size.unsigned_abs() as usize)?;
            continue;
        }
        if size == 0 {
            break;
        }
        let mut e = Reader(r.take(size as usize)?);
        let mut n = e.u16()? as usize;
        if version == 0x0501 {
            n = n.saturating_sub(1);
        }
        let realm = e.string()?;
        let components = (0..n).map(|_| e.string()).collect::<Result<Vec<_>, _>>()?;
        if version == 0x0502 {
            let _name_type = e.u32()?;
        }
        let _timestamp = e.u32()?;
        let vno8 = e.u8()?;
        let enctype = e.u16()?;
        let key = e.data()?.to_vec();
        let kvno = match e.0.len() {
            n if n >= 4 => match e.u32()? {
                0 => u32::from(vno8),
                v => v,
            },
            _ => u32::from(vno8),
        };
        out.push(KeytabEntry {
            realm,
            components,
            kvno,
            enctype,
            key,
        });
    }
    Ok(out)
}

/// The key an acceptor for `principal` (`HTTP/fqdn`, case-insensitive, realm ignored) uses:
/// aes256 (18) if the keytab has one, else aes128 (17), else any etype; highest kvno.
pub(crate) fn service_key<'a>(
    entries: &'a [KeytabEntry],
    principal: &str,
) -> Option<&'a KeytabEntry> {
    let of = |etype: Option<u16>| {
        entries
            .iter()
            .filter(|e| etype.is_none_or(|t| e.enctype == t))
            .filter(|e| e.principal().eq_ignore_ascii_case(principal))
            .max_by_key(|e| e.kvno)
    };
    of(Some(18)).or_else(|| of(Some(17))).or_else(|| of(None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(out: &mut Vec<u8>, b: &[u8]) {
        out.extend_from_slice(&(b.len() as u16).to_be_bytes());
        out.extend_from_slice(b);
    }

    fn entry(principal: &[&str], kvno: u32, etype: u16, key: &[u8]) -> Vec<u8> {
        let mut e = Vec::new();
        e.extend_from_slice(&(principal.len() as u16).to_be_bytes());
        data(&mut e, b"LAB.EXAMPLE.TEST");
        for c in principal {
            data(&mut e, c.as_bytes());
        }
        e.extend_from_slice(&2u32.to_be_bytes()); // NT-SRV-INST
        e.extend_from_slice(&0u32.to_be_bytes());
        e.push(kvno as u8);
        e.extend_from_slice(&etype.to_be_bytes());
        data(&mut e, key);
        e.extend_from_slice(&kvno.to_be_bytes());
        let mut out = (e.len() as u32).to_be_bytes().to_vec();
        out.extend(e);
        out
    }

    #[test]
    fn parses_entries_and_holes_and_picks_aes256() {
        let mut kt = vec![0x05, 0x02];
        kt.extend(entry(&["HTTP", "ex01.lab.example.test"], 2, 17, &[1; 16]));
        kt.extend_from_slice(&(-8i32).to_be_bytes());
        kt.extend_from_slice(&[0; 8]);
        kt.extend(entry(&["HTTP", "ex01.lab.example.test"], 2, 18, &[2; 32]));
        kt.extend(entry(&["HTTP", "ex01.lab.example.test"], 300, 18, &[3; 32]));
        kt.extend(entry(&["HTTP", "ex02.lab.example.test"], 9, 18, &[4; 32]));
        let entries = parse(&kt).unwrap();
        assert_eq!(entries.len(), 4);
        assert_eq!(entries[0].realm, "LAB.EXAMPLE.TEST");
        let k = service_key(&entries, "http/EX01.lab.example.test").unwrap();
        assert_eq!((k.enctype, k.kvno, k.key[0]), (18, 300, 3));
        assert!(service_key(&entries, "HTTP/ex03.lab.example.test").is_none());
        assert!(!format!("{k:?}").contains("[3, 3"));
    }

    #[test]
    fn refuses_garbage() {
        assert!(parse(b"").is_err());
        assert!(parse(&[0x05, 0x03]).is_err());
        assert!(parse(&[0x05, 0x02, 0, 0, 0, 40, 0]).is_err());
    }
}

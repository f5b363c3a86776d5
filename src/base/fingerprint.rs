//! A certificate pin: the SHA-256 of one server certificate, whole (its DER encoding, the
//! bytes `openssl x509 -noout -fingerprint -sha256` hashes), written `sha256/` followed by the
//! 64 hex digits, with or without the colons openssl prints between byte pairs.
//!
//! The whole certificate, not its SubjectPublicKeyInfo: the pin stands for the one certificate
//! an operator looked at and approved, and that is the value they can compare by eye — what
//! openssl prints and what a browser's certificate viewer shows as the "SHA-256 fingerprint".
//! A key pin (HPKP, curl's `--pinnedpubkey sha256//…`) exists to survive a CA re-issuing a
//! certificate for the same key; a self-signed MX certificate has no CA, and a new one should
//! be approved again, not trusted silently because its key did not change.

/// The SHA-256 of a certificate's DER encoding.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CertFingerprint([u8; 32]);

/// How a pin is written.
pub const PIN_PREFIX: &str = "sha256/";

impl CertFingerprint {
    pub fn from_digest(digest: [u8; 32]) -> CertFingerprint {
        CertFingerprint(digest)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Reads `sha256/AB:CD:…` (or the same hex without colons, either case). The error says
    /// what is wrong and how to get a right one.
    pub fn parse(text: &str) -> Result<CertFingerprint, String> {
        let how = "read it with: openssl s_client -connect <mx>:8083 </dev/null 2>/dev/null | \
                   openssl x509 -noout -fingerprint -sha256";
        let Some(rest) = text.strip_prefix(PIN_PREFIX) else {
            return Err(format!(
                "must be \"{PIN_PREFIX}\" and the certificate's SHA-256 fingerprint in hex; {how}"
            ));
        };
        let hex: String = rest.chars().filter(|c| *c != ':').collect();
        if (hex.len() == 44 && hex.ends_with('=')) || rest.starts_with('/') {
            return Err(format!(
                "this looks like a base64 public key pin (curl's --pinnedpubkey); warden pins \
                 the whole certificate by its SHA-256 fingerprint in hex; {how}"
            ));
        }
        if hex.len() != 64 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "the SHA-256 fingerprint is 64 hex digits (32 bytes), got {:?}; {how}",
                rest
            ));
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                .map_err(|_| format!("{rest:?} is not hex"))?;
        }
        Ok(CertFingerprint(out))
    }
}

/// `sha256/AB:CD:…`, upper case with colons, as openssl prints it.
impl std::fmt::Display for CertFingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(PIN_PREFIX)?;
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for CertFingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_pin_reads_openssl_hex_with_or_without_colons_and_prints_it_back() {
        let colons = "sha256/3B:0E:9A:7C:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:01:02:03:04:05:06:07:08:09:0A:0B:0C";
        let pin = CertFingerprint::parse(colons).unwrap();
        assert_eq!(pin.as_bytes()[0], 0x3b);
        assert_eq!(pin.as_bytes()[31], 0x0c);
        assert_eq!(pin.to_string(), colons);
        let bare = colons.replace(':', "").to_lowercase();
        assert_eq!(CertFingerprint::parse(&bare).unwrap(), pin);
    }

    #[test]
    fn a_wrong_pin_says_what_a_right_one_looks_like() {
        let no_prefix = CertFingerprint::parse("3B0E").unwrap_err();
        assert!(
            no_prefix.contains("openssl x509 -noout -fingerprint -sha256"),
            "{no_prefix}"
        );
        let short = CertFingerprint::parse("sha256/3B:0E").unwrap_err();
        assert!(short.contains("64 hex digits"), "{short}");
        let not_hex = CertFingerprint::parse(&format!("sha256/{}", "zz".repeat(32))).unwrap_err();
        assert!(not_hex.contains("64 hex digits"), "{not_hex}");
        // curl's public key pin: another hash of another thing.
        let spki = "sha256//YhKJKSzoTt2b5FP18fvpHo7fJYqQCjAa3HWY3tvRMwE=";
        let err = CertFingerprint::parse(spki).unwrap_err();
        assert!(err.contains("base64 public key pin"), "{err}");
        let err = CertFingerprint::parse("sha256/YhKJKSzoTt2b5FP18fvpHo7fJYqQCjAa3HWY3tvRMwE=")
            .unwrap_err();
        assert!(err.contains("base64 public key pin"), "{err}");
    }
}

//! The lab's own certificate authority and the server certificates of HTTPS listeners
//! (Windows' WinRM HTTPS listener, port 5986), generated at run time.
//!
//! ```
//! use exch_lab::winrm::tls::{CertSignature, LabCa};
//! let ca = LabCa::new(CertSignature::EcdsaP256Sha256).unwrap();
//! let cert = ca.issue("ex01.lab.example.test").unwrap();
//! assert!(ca.pem().starts_with("-----BEGIN CERTIFICATE-----"));
//! assert_eq!(cert.end_point_hash().len(), 32);
//! ```

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SignatureAlgorithm,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::Digest;

/// How the lab CA signs (and so which hash RFC 5929's `tls-server-end-point` uses).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertSignature {
    /// ECDSA P-256 with SHA-256 (channel binding hash: SHA-256).
    #[default]
    EcdsaP256Sha256,
    /// ECDSA P-384 with SHA-384 (channel binding hash: SHA-384).
    EcdsaP384Sha384,
}

impl CertSignature {
    fn algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            CertSignature::EcdsaP256Sha256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            CertSignature::EcdsaP384Sha384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        }
    }

    /// RFC 5929 4.1: the certificate's signature hash, SHA-256 for MD5/SHA-1/SHA-256.
    fn end_point_hash(self, der: &[u8]) -> Vec<u8> {
        match self {
            CertSignature::EcdsaP256Sha256 => sha2::Sha256::digest(der).to_vec(),
            CertSignature::EcdsaP384Sha384 => sha2::Sha384::digest(der).to_vec(),
        }
    }
}

/// Why a certificate could not be made.
#[derive(Debug, thiserror::Error)]
#[error("cannot generate the lab's TLS certificates: {0}")]
pub struct TlsSetupError(String);

/// A certificate authority that exists only for this lab run.
pub struct LabCa {
    signature: CertSignature,
    params: CertificateParams,
    key: KeyPair,
    pem: String,
}

impl std::fmt::Debug for LabCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabCa")
            .field("signature", &self.signature)
            .finish_non_exhaustive()
    }
}

impl LabCa {
    /// A fresh CA ("exch-lab CA") whose key signs with `signature`.
    pub fn new(signature: CertSignature) -> Result<Self, TlsSetupError> {
        let err = |e: rcgen::Error| TlsSetupError(e.to_string());
        let key = KeyPair::generate_for(signature.algorithm()).map_err(err)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "exch-lab CA");
        dn.push(DnType::OrganizationName, "exch-revoke lab");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).map_err(err)?;
        Ok(LabCa {
            signature,
            pem: cert.pem(),
            params,
            key,
        })
    }

    /// The CA certificate, PEM (what a client passes as its trust anchor).
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// How the CA signs.
    pub fn signature(&self) -> CertSignature {
        self.signature
    }

    /// A server certificate for `fqdn` with SANs `fqdn`, `localhost` and `127.0.0.1`.
    pub fn issue(&self, fqdn: &str) -> Result<ServerCertificate, TlsSetupError> {
        let err = |e: rcgen::Error| TlsSetupError(e.to_string());
        let key = KeyPair::generate_for(self.signature.algorithm()).map_err(err)?;
        let mut params =
            CertificateParams::new(vec![fqdn.to_owned(), "localhost".to_owned()]).map_err(err)?;
        params
            .subject_alt_names
            .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, fqdn);
        params.distinguished_name = dn;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).map_err(err)?;
        let der = cert.der().to_vec();
        Ok(ServerCertificate {
            end_point_hash: self.signature.end_point_hash(&der),
            der,
            key_der: key.serialize_der(),
        })
    }
}

/// A server certificate and its key.
#[derive(Clone)]
pub struct ServerCertificate {
    der: Vec<u8>,
    key_der: Vec<u8>,
    end_point_hash: Vec<u8>,
}

impl std::fmt::Debug for ServerCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCertificate")
            .field("der_len", &self.der.len())
            .finish_non_exhaustive()
    }
}

impl ServerCertificate {
    /// The certificate, DER.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// RFC 5929 `tls-server-end-point` hash of the certificate (the channel binding data
    /// after the `tls-server-end-point:` prefix).
    pub fn end_point_hash(&self) -> &[u8] {
        &self.end_point_hash
    }

    /// A rustls server configuration presenting this certificate (ring provider, TLS 1.2 and
    /// 1.3, HTTP/1.1).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsSetupError(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(self.der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone())),
            )
            .map_err(|e| TlsSetupError(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha384_certificates_bind_with_sha384() {
        let ca = LabCa::new(CertSignature::EcdsaP384Sha384).unwrap();
        let cert = ca.issue("ex01.lab.example.test").unwrap();
        assert_eq!(cert.end_point_hash().len(), 48);
        assert_eq!(cert.end_point_hash(), &sha2::Sha384::digest(cert.der())[..]);
        cert.server_config().unwrap();
    }
}

//! The swarm's root CA and node certificates (rcgen), and reading identities back (x509-parser).
//!
//! Like swarmkit: the root CA is self-signed with CN `swarm-ca`; a node certificate carries the
//! node ID as CN, the role as OU (`swarm-manager` / `swarm-worker`) and the swarm ID as O. Node
//! keys never leave their node: a joining node sends a CSR and the manager signs the public key
//! with a subject of its own choosing (nothing in the CSR but the key is used). Managers' certs
//! also name `swarm-manager` in their SANs: that is the TLS server name nodes verify.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::api::types::Role;

/// Subject CN of the root CA.
pub const CA_COMMON_NAME: &str = "swarm-ca";
/// TLS server name that every manager certificate carries and every node verifies.
pub const MANAGER_SERVER_NAME: &str = "swarm-manager";
/// OU of manager certificates.
pub const OU_MANAGER: &str = "swarm-manager";
/// OU of worker certificates.
pub const OU_WORKER: &str = "swarm-worker";
/// Root CA lifetime (Docker: 20 years).
const CA_VALIDITY: Duration = Duration::days(20 * 365);
/// Node certificate lifetime (Docker: 90 days).
pub const NODE_CERT_VALIDITY: Duration = Duration::days(90);

/// Certificate errors.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("certificate generation failed: {0}")]
    Generate(rcgen::Error),
    #[error("the certificate signing request is not valid: {0}")]
    BadCsr(rcgen::Error),
    #[error("the certificate is not valid X.509: {0}")]
    BadCert(String),
    #[error("the certificate has no {0} in its subject")]
    MissingField(&'static str),
    #[error("unknown role {0:?} in the certificate's OU (expected swarm-manager or swarm-worker)")]
    UnknownRole(String),
    #[error("not valid PEM: {0}")]
    Pem(String),
}

impl From<rcgen::Error> for CaError {
    fn from(e: rcgen::Error) -> Self {
        CaError::Generate(e)
    }
}

/// The OU that encodes `role`.
pub fn role_ou(role: Role) -> &'static str {
    match role {
        Role::Manager => OU_MANAGER,
        Role::Worker => OU_WORKER,
    }
}

/// The swarm's root CA: its certificate and its private key (both PEM).
#[derive(Clone, Serialize, Deserialize)]
pub struct RootCa {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for RootCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootCa").finish_non_exhaustive()
    }
}

/// A node's own key and certificate (both PEM).
#[derive(Clone, Serialize, Deserialize)]
pub struct NodeCredentials {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for NodeCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCredentials").finish_non_exhaustive()
    }
}

/// Identity read from a node certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertIdentity {
    pub node_id: String,
    pub role: Role,
    pub swarm_id: Option<String>,
    /// Expiry, seconds since the Unix epoch.
    pub not_after: i64,
}

impl RootCa {
    /// Creates a new self-signed root CA.
    pub fn generate() -> Result<Self, CaError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, CA_COMMON_NAME);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + CA_VALIDITY;
        let cert = params.self_signed(&key)?;
        Ok(RootCa {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// DER of the CA certificate.
    pub fn cert_der(&self) -> Result<Vec<u8>, CaError> {
        pem_to_der(&self.cert_pem)
    }

    /// Signs the public key of `csr_pem` into a node certificate for `node_id` with `role`.
    /// Only the key is taken from the CSR; the subject and SANs are the manager's choice.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        node_id: &str,
        role: Role,
        swarm_id: &str,
    ) -> Result<String, CaError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(CaError::BadCsr)?;
        let ca_key = KeyPair::from_pem(&self.key_pem)?;
        let ca_der = self.cert_der()?;
        let issuer = CertificateParams::from_ca_cert_der(&ca_der.into())?.self_signed(&ca_key)?;

        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, node_id);
        dn.push(DnType::OrganizationalUnitName, role_ou(role));
        dn.push(DnType::OrganizationName, swarm_id);
        params.distinguished_name = dn;
        let mut sans = vec![SanType::DnsName(node_id.try_into()?)];
        if role == Role::Manager {
            sans.push(SanType::DnsName(MANAGER_SERVER_NAME.try_into()?));
        }
        params.subject_alt_names = sans;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + NODE_CERT_VALIDITY;
        let cert = params.signed_by(&csr.public_key, &issuer, &ca_key)?;
        Ok(cert.pem())
    }
}

/// A new node key and a CSR for it (PEM). The key stays on the node.
pub fn new_key_and_csr() -> Result<(String, String), CaError> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    // The subject is ignored by the signer; a placeholder keeps the CSR well-formed.
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "swarmnet-node");
    params.distinguished_name = dn;
    let csr = params.serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.pem()?))
}

/// DER bytes of the first PEM block in `pem_text`.
pub fn pem_to_der(pem_text: &str) -> Result<Vec<u8>, CaError> {
    let block = x509_parser::pem::parse_x509_pem(pem_text.as_bytes())
        .map_err(|e| CaError::Pem(e.to_string()))?
        .1;
    Ok(block.contents)
}

/// Reads node ID (CN), role (OU), swarm ID (O) and expiry from a node certificate (DER).
pub fn identity_from_der(der: &[u8]) -> Result<CertIdentity, CaError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| CaError::BadCert(e.to_string()))?;
    let subject = cert.subject();
    let text = |attr: Option<&x509_parser::x509::AttributeTypeAndValue<'_>>| {
        attr.and_then(|a| a.as_str().ok()).map(str::to_string)
    };
    let node_id = text(subject.iter_common_name().next()).ok_or(CaError::MissingField("CN"))?;
    let ou = text(subject.iter_organizational_unit().next()).ok_or(CaError::MissingField("OU"))?;
    let role = match ou.as_str() {
        OU_MANAGER => Role::Manager,
        OU_WORKER => Role::Worker,
        _ => return Err(CaError::UnknownRole(ou)),
    };
    let swarm_id = text(subject.iter_organization().next());
    Ok(CertIdentity {
        node_id,
        role,
        swarm_id,
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// Same as [`identity_from_der`] for a PEM certificate.
pub fn identity_from_pem(pem_text: &str) -> Result<CertIdentity, CaError> {
    identity_from_der(&pem_to_der(pem_text)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::token::{ca_digest_text, JoinToken};

    #[test]
    fn ca_is_self_signed_ca_named_swarm_ca() {
        let ca = RootCa::generate().unwrap();
        let der = ca.cert_der().unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(cert.subject(), cert.issuer());
        assert!(cert.is_ca());
        let cn = cert.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), CA_COMMON_NAME);
    }

    #[test]
    fn token_digest_is_sha256_of_ca_der() {
        let ca = RootCa::generate().unwrap();
        let der = ca.cert_der().unwrap();
        let token = JoinToken::generate(&der);
        let expected = ca_digest_text(&der);
        assert_eq!(token.to_string().split('-').nth(2).unwrap(), expected);
        let other = RootCa::generate().unwrap();
        assert!(!token.matches_ca(&other.cert_der().unwrap()));
    }

    #[test]
    fn signed_node_cert_carries_id_role_and_swarm() {
        let ca = RootCa::generate().unwrap();
        let (_key, csr) = new_key_and_csr().unwrap();
        for role in [Role::Worker, Role::Manager] {
            let pem = ca.sign_csr(&csr, "nodeid123", role, "swarm42").unwrap();
            let id = identity_from_pem(&pem).unwrap();
            assert_eq!(id.node_id, "nodeid123");
            assert_eq!(id.role, role);
            assert_eq!(id.swarm_id.as_deref(), Some("swarm42"));
            let der = pem_to_der(&pem).unwrap();
            let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
            let ou = cert.subject().iter_organizational_unit().next().unwrap();
            assert_eq!(ou.as_str().unwrap(), role_ou(role));
            // Signed by the CA: the issuer is the CA's subject and the signature verifies.
            let ca_der = ca.cert_der().unwrap();
            let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
            assert_eq!(cert.issuer(), ca_cert.subject());
            cert.verify_signature(Some(ca_cert.public_key())).unwrap();
        }
    }

    #[test]
    fn node_cert_ignores_the_subject_asked_for_in_the_csr() {
        let ca = RootCa::generate().unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "i-am-the-leader");
        dn.push(DnType::OrganizationalUnitName, OU_MANAGER);
        params.distinguished_name = dn;
        let csr = params.serialize_request(&key).unwrap().pem().unwrap();
        let pem = ca.sign_csr(&csr, "realid", Role::Worker, "s").unwrap();
        let id = identity_from_pem(&pem).unwrap();
        assert_eq!(id.node_id, "realid");
        assert_eq!(id.role, Role::Worker);
    }

    #[test]
    fn garbage_csr_is_refused() {
        let ca = RootCa::generate().unwrap();
        let err = ca
            .sign_csr("not a csr", "id", Role::Worker, "s")
            .unwrap_err();
        assert!(matches!(err, CaError::BadCsr(_)), "{err}");
    }

    #[test]
    fn node_cert_lifetime_is_90_days() {
        let ca = RootCa::generate().unwrap();
        let (_key, csr) = new_key_and_csr().unwrap();
        let pem = ca.sign_csr(&csr, "n", Role::Worker, "s").unwrap();
        let id = identity_from_pem(&pem).unwrap();
        let left = id.not_after - OffsetDateTime::now_utc().unix_timestamp();
        assert!((89 * 86400..=90 * 86400).contains(&left), "{left}");
    }
}

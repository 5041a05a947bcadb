//! rustls configurations for the cluster port (ring provider).
//!
//! - Managers serve TLS with their node certificate and ask for a client certificate signed by
//!   the swarm CA; a client without one may only ask for the root CA or join with a token.
//! - Nodes verify managers against the swarm CA with the server name `swarm-manager`, and
//!   present their own certificate.
//! - A joining node's very first connection trusts nothing and asks only for the CA; it checks
//!   the CA's digest against the token before it uses it (see [`super::rpc::fetch_root_ca`]).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use super::ca::{identity_from_der, CertIdentity, NodeCredentials, MANAGER_SERVER_NAME};

/// TLS setup errors.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS: {0}")]
    Rustls(rustls::Error),
    #[error("TLS: the swarm CA is not usable as a trust root: {0}")]
    Verifier(rustls::server::VerifierBuilderError),
    #[error("TLS: cannot read {what} PEM: {err}")]
    Pem { what: &'static str, err: String },
}

impl From<rustls::Error> for TlsError {
    fn from(e: rustls::Error) -> Self {
        TlsError::Rustls(e)
    }
}

impl From<rustls::server::VerifierBuilderError> for TlsError {
    fn from(e: rustls::server::VerifierBuilderError) -> Self {
        TlsError::Verifier(e)
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(ca_pem: &str) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    store.add(cert_der(ca_pem, "CA certificate")?)?;
    Ok(store)
}

fn cert_der(pem: &str, what: &'static str) -> Result<CertificateDer<'static>, TlsError> {
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| TlsError::Pem {
        what,
        err: e.to_string(),
    })
}

fn key_der(pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| TlsError::Pem {
        what: "private key",
        err: e.to_string(),
    })
}

/// The manager's listener: its own certificate; client certificates optional but verified.
pub fn server_config(creds: &NodeCredentials, ca_pem: &str) -> Result<Arc<ServerConfig>, TlsError> {
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca_pem)?), provider())
            .allow_unauthenticated()
            .build()?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![cert_der(&creds.cert_pem, "node certificate")?],
            key_der(&creds.key_pem)?,
        )?;
    Ok(Arc::new(config))
}

/// A node talking to managers: verifies them against `ca_pem`, presents `creds` if given.
pub fn client_config(
    ca_pem: &str,
    creds: Option<&NodeCredentials>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca_pem)?);
    let config = match creds {
        Some(creds) => builder.with_client_auth_cert(
            vec![cert_der(&creds.cert_pem, "node certificate")?],
            key_der(&creds.key_pem)?,
        )?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// First contact of a joining node: accepts any server certificate (still checking the
/// handshake signature), because the only thing asked on it is the CA, which is then checked
/// against the token's digest.
pub fn bootstrap_client_config() -> Result<Arc<ClientConfig>, TlsError> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(UntrustedServer(provider())))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The server name every manager certificate carries.
pub fn manager_server_name() -> ServerName<'static> {
    ServerName::try_from(MANAGER_SERVER_NAME).expect("swarm-manager is a valid DNS name")
}

/// Identity of a verified TLS peer from its leaf certificate, if it presented one.
pub fn peer_identity(certs: Option<&[CertificateDer<'_>]>) -> Option<CertIdentity> {
    let leaf = certs?.first()?;
    identity_from_der(leaf.as_ref()).ok()
}

#[derive(Debug)]
struct UntrustedServer(Arc<CryptoProvider>);

impl ServerCertVerifier for UntrustedServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

//! Identities and certificate pinning: a peer is its self-signed certificate, named by the
//! certificate's SHA-256 [`Fingerprint`]. The TLS settings built here accept a certificate only
//! when its fingerprint is the expected one (the handshake signature is still checked, so the
//! other side proves it holds the certificate's key).

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};

use qtalk_mux::tls::rustls;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// The server name peers put in their TLS handshakes with each other. Certificates are
/// checked by fingerprint, not by name, so it carries no meaning beyond being valid.
pub const PEER_SERVER_NAME: &str = "qtalk-p2p";

/// SHA-256 of a certificate's DER encoding: what the rendezvous vouches for and what peers
/// check. Written as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER-encoded certificate.
    pub fn of(cert_der: &[u8]) -> Fingerprint {
        let digest = ring::digest::digest(&ring::digest::SHA256, cert_der);
        let mut out = [0u8; 32];
        out.copy_from_slice(digest.as_ref());
        Fingerprint(out)
    }

    /// The 32 bytes of the digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// A text that is not 64 hex digits.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a fingerprint is 64 hex digits")]
pub struct BadFingerprint;

impl FromStr for Fingerprint {
    type Err = BadFingerprint;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return Err(BadFingerprint);
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = (pair[0] as char).to_digit(16).ok_or(BadFingerprint)?;
            let lo = (pair[1] as char).to_digit(16).ok_or(BadFingerprint)?;
            out[i] = (hi * 16 + lo) as u8;
        }
        Ok(Fingerprint(out))
    }
}

impl serde::Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A peer's certificate (self-signed, one per process unless the application keeps one) and
/// its key.
#[derive(Debug)]
pub struct PeerIdentity {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    fingerprint: Fingerprint,
}

impl Clone for PeerIdentity {
    fn clone(&self) -> Self {
        PeerIdentity {
            cert: self.cert.clone(),
            key: self.key.clone_key(),
            fingerprint: self.fingerprint,
        }
    }
}

impl PeerIdentity {
    /// A fresh self-signed certificate (ECDSA P-256) for [`PEER_SERVER_NAME`].
    pub fn generate() -> io::Result<PeerIdentity> {
        let id = qtalk_mux::tls::self_signed(&[PEER_SERVER_NAME])?;
        let cert = id
            .certs
            .into_iter()
            .next()
            .ok_or_else(|| io::Error::other("no certificate generated"))?;
        Ok(PeerIdentity::new(cert, id.key))
    }

    /// An identity from a certificate and its private key (e.g. read with
    /// [`qtalk_mux::tls::load_certs`] and [`qtalk_mux::tls::load_key`]).
    pub fn new(cert: CertificateDer<'static>, key: PrivateKeyDer<'static>) -> PeerIdentity {
        let fingerprint = Fingerprint::of(&cert);
        PeerIdentity {
            cert,
            key,
            fingerprint,
        }
    }

    /// The certificate's fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The certificate (DER).
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.cert
    }
}

pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub(crate) fn tls_error(e: impl fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("tls: {e}"))
}

/// Which client certificates a server accepts.
#[derive(Clone, Debug)]
pub(crate) enum Allowed {
    /// Any certificate (the rendezvous: it records the fingerprint).
    Any,
    /// Exactly this one.
    One(Fingerprint),
    /// Those currently expected (a node while introductions are pending), with a count of
    /// the introductions that expect each.
    Expected(Arc<Mutex<HashMap<Fingerprint, usize>>>),
}

impl Allowed {
    fn allows(&self, fp: &Fingerprint) -> bool {
        match self {
            Allowed::Any => true,
            Allowed::One(one) => one == fp,
            Allowed::Expected(set) => set
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains_key(fp),
        }
    }
}

/// Checks certificates by fingerprint and handshake signatures with the provider's algorithms.
#[derive(Debug)]
struct Pinned {
    allowed: Allowed,
    provider: Arc<CryptoProvider>,
}

impl Pinned {
    fn check(&self, cert: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        if self.allowed.allows(&Fingerprint::of(cert)) {
            Ok(())
        } else {
            tracing::debug!(fingerprint = %Fingerprint::of(cert), "p2p: certificate refused");
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ))
        }
    }

    fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

impl ClientCertVerifier for Pinned {
    /// The rendezvous (which accepts any certificate) lets clients without one in, for calls
    /// that need no identity (`Stats`); everywhere else a certificate is required.
    fn client_auth_mandatory(&self) -> bool {
        !matches!(self.allowed, Allowed::Any)
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.check(end_entity)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

/// Makes `tls` (settings for reaching the rendezvous) present `identity` as its client
/// certificate, so that the rendezvous learns the fingerprint from the handshake itself.
pub(crate) fn with_client_cert(
    tls: rustls::ClientConfig,
    identity: &PeerIdentity,
) -> io::Result<rustls::ClientConfig> {
    qtalk_mux::tls::with_client_certificate(
        tls,
        vec![identity.cert.clone()],
        identity.key.clone_key(),
    )
}

/// Client settings that present `identity` and accept only a server whose certificate has
/// the fingerprint `expected`.
pub(crate) fn pinned_client(
    identity: &PeerIdentity,
    expected: Fingerprint,
) -> io::Result<rustls::ClientConfig> {
    let provider = provider();
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error)?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    tls.dangerous().set_certificate_verifier(Arc::new(Pinned {
        allowed: Allowed::One(expected),
        provider: provider.clone(),
    }));
    qtalk_mux::tls::with_client_certificate(
        tls,
        vec![identity.cert.clone()],
        identity.key.clone_key(),
    )
}

/// Server settings presenting `certs`/`key` and requiring a client certificate that
/// `allowed` accepts.
pub(crate) fn server_requiring(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    allowed: Allowed,
) -> io::Result<rustls::ServerConfig> {
    let provider = provider();
    rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error)?
        .with_client_cert_verifier(Arc::new(Pinned { allowed, provider }))
        .with_single_cert(certs, key)
        .map_err(tls_error)
}

/// Server settings for a peer: its own certificate, client certificates as `allowed`.
pub(crate) fn peer_server(
    identity: &PeerIdentity,
    allowed: Allowed,
) -> io::Result<rustls::ServerConfig> {
    server_requiring(
        vec![identity.cert.clone()],
        identity.key.clone_key(),
        allowed,
    )
}

/// The fingerprint of the certificate a QUIC connection's peer presented.
pub(crate) fn peer_fingerprint(conn: &qtalk_mux::quic::quinn::Connection) -> Option<Fingerprint> {
    let identity = conn.peer_identity()?;
    let certs = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    certs.first().map(|c| Fingerprint::of(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_text_round_trip() {
        let fp = Fingerprint::of(b"certificate");
        let text = fp.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(text.parse::<Fingerprint>(), Ok(fp));
        assert_eq!("zz".parse::<Fingerprint>(), Err(BadFingerprint));
        assert_eq!("g".repeat(64).parse::<Fingerprint>(), Err(BadFingerprint));
        let json = format!("\"{text}\"");
        let back: Fingerprint = serde_json_like(&json);
        assert_eq!(back, fp);
    }

    fn serde_json_like(s: &str) -> Fingerprint {
        // A string value: strip the quotes and parse, as any self-describing codec does.
        s.trim_matches('"').parse().unwrap()
    }

    #[test]
    fn identities_differ() {
        let a = PeerIdentity::generate().unwrap();
        let b = PeerIdentity::generate().unwrap();
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert_eq!(a.fingerprint(), Fingerprint::of(a.certificate()));
    }
}

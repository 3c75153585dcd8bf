//! TLS: certificates and settings for QUIC, TLS over TCP (`transport::connect_tls`,
//! `Listener::bind_tls`) and `wss://`; feature `tls` (implied by `quic`).
//!
//! Everything here uses rustls with the *ring* provider, TLS 1.3 only, and needs no process-wide
//! default provider. A server needs a certificate chain and its key ([`load_certs`] and
//! [`load_key`] read PEM files; [`self_signed`] makes one for development and tests). A client
//! trusts the operating system's roots ([`platform_client_config`]), the roots it is given
//! ([`client_config`]), or, for development against self-signed
//! servers only, nothing at all ([`insecure_client_config`], what the reference's checker does).
//!
//! ```
//! let identity = qtalk_mux::tls::self_signed(&["localhost"])?;
//! let server = qtalk_mux::tls::server_config(identity.certs.clone(), identity.key.clone_key())?;
//! let client = qtalk_mux::tls::client_config(identity.certs)?;
//! # let _ = (server, client);
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

pub use rustls;

/// A certificate chain with its private key: what a server presents.
#[derive(Debug)]
pub struct Identity {
    /// The chain, leaf first.
    pub certs: Vec<CertificateDer<'static>>,
    /// The leaf's private key.
    pub key: PrivateKeyDer<'static>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_error(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("tls: {e}"))
}

fn generate(names: &[&str]) -> io::Result<rcgen::CertifiedKey<rcgen::KeyPair>> {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    rcgen::generate_simple_self_signed(names).map_err(tls_error)
}

/// A fresh self-signed certificate for the given DNS names or IP addresses (development and
/// tests; clients must trust it explicitly, or skip verification).
pub fn self_signed(names: &[&str]) -> io::Result<Identity> {
    let generated = generate(names)?;
    Ok(Identity {
        certs: vec![generated.cert.der().clone()],
        key: PrivateKeyDer::Pkcs8(generated.signing_key.serialize_der().into()),
    })
}

/// How long a certificate from [`self_signed_for_browsers`] is valid, in all: browsers take a
/// certificate by its hash (`serverCertificateHashes`) only when this is at most 14 days.
pub const BROWSER_CERTIFICATE_VALIDITY: Duration = Duration::from_secs(13 * 24 * 3600);

/// How far back a certificate from [`self_signed_for_browsers`] starts being valid, for clocks
/// a little behind (counted in [`BROWSER_CERTIFICATE_VALIDITY`]).
const BACKDATE: Duration = Duration::from_secs(3600);

/// A fresh self-signed certificate that browsers accept for WebTransport by its hash
/// (`serverCertificateHashes`, see [`CertificateHash`]) without any CA: ECDSA P-256, valid from
/// an hour ago for [`BROWSER_CERTIFICATE_VALIDITY`] (13 days) in all. For development; make a
/// new one (which has a new hash) before it expires.
///
/// ```
/// let identity = qtalk_mux::tls::self_signed_for_browsers(&["localhost"])?;
/// let hash = qtalk_mux::tls::CertificateHash::of(&identity.certs[0]);
/// assert_eq!(hash.to_string().len(), 64);
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn self_signed_for_browsers(names: &[&str]) -> io::Result<Identity> {
    let (cert, key) = generate_for_browsers(names)?;
    Ok(Identity {
        certs: vec![cert.der().clone()],
        key: PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    })
}

/// [`self_signed_for_browsers`] as PEM text: `(certificate, private key)`.
pub fn self_signed_for_browsers_pem(names: &[&str]) -> io::Result<(String, String)> {
    let (cert, key) = generate_for_browsers(names)?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn generate_for_browsers(names: &[&str]) -> io::Result<(rcgen::Certificate, rcgen::KeyPair)> {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = rcgen::CertificateParams::new(names).map_err(tls_error)?;
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(tls_error)?;
    let start = rcgen::date_time_ymd(1970, 1, 1) + since_epoch.saturating_sub(BACKDATE);
    params.not_before = start;
    params.not_after = start + BROWSER_CERTIFICATE_VALIDITY;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(tls_error)?;
    let cert = params.self_signed(&key).map_err(tls_error)?;
    Ok((cert, key))
}

/// The SHA-256 hash of a certificate (its DER bytes): what a browser's
/// `serverCertificateHashes` names, and what [`hash_pinned_client_config`] trusts. Shown and
/// parsed as 64 hexadecimal digits (any case; `:` between bytes allowed when parsing).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CertificateHash([u8; 32]);

impl CertificateHash {
    /// The hash of `cert`.
    pub fn of(cert: &CertificateDer<'_>) -> CertificateHash {
        let digest = ring::digest::digest(&ring::digest::SHA256, cert.as_ref());
        let mut hash = [0u8; 32];
        hash.copy_from_slice(digest.as_ref());
        CertificateHash(hash)
    }

    /// The hash from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> CertificateHash {
        CertificateHash(bytes)
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Display for CertificateHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl std::fmt::Debug for CertificateHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CertificateHash({self})")
    }
}

/// Text that is not 32 bytes in hexadecimal, refused by [`CertificateHash`]'s `FromStr`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("a certificate hash is 64 hexadecimal digits (SHA-256)")]
pub struct CertificateHashError;

impl std::str::FromStr for CertificateHash {
    type Err = CertificateHashError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let digits: Vec<u8> = text.bytes().filter(|&b| b != b':').collect();
        if digits.len() != 64 {
            return Err(CertificateHashError);
        }
        let mut hash = [0u8; 32];
        for (byte, pair) in hash.iter_mut().zip(digits.chunks(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| CertificateHashError)?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| CertificateHashError)?;
        }
        Ok(CertificateHash(hash))
    }
}

/// Client settings that trust a server by its certificate's hash alone, as a browser with
/// `serverCertificateHashes`: the server's (leaf) certificate must hash to one of `hashes`;
/// its names, issuer and dates are not checked (browsers also require the hashed
/// certificate to be ECDSA and valid for at most 14 days; this does not). The handshake's
/// signatures are checked.
pub fn hash_pinned_client_config(
    hashes: impl IntoIterator<Item = CertificateHash>,
) -> io::Result<rustls::ClientConfig> {
    let provider = provider();
    let verifier = PinnedHashes {
        hashes: hashes.into_iter().collect(),
        provider: provider.clone(),
    };
    if verifier.hashes.is_empty() {
        return Err(tls_error("no certificate hash to trust"));
    }
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error)?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config
        .dangerous()
        .set_certificate_verifier(Arc::new(verifier));
    Ok(config)
}

/// Accepts a certificate whose hash is listed; checks handshake signatures.
#[derive(Debug)]
struct PinnedHashes {
    hashes: Vec<CertificateHash>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedHashes {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.hashes.contains(&CertificateHash::of(end_entity)) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            ))
        }
    }

    fn verify_tls12_signature(
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

    fn verify_tls13_signature(
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

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A fresh self-signed certificate as PEM text: `(certificate, private key)`, ready to be
/// written to the files [`load_certs`] and [`load_key`] read.
pub fn self_signed_pem(names: &[&str]) -> io::Result<(String, String)> {
    let generated = generate(names)?;
    Ok((generated.cert.pem(), generated.signing_key.serialize_pem()))
}

/// Reads every certificate of a PEM file (a chain, leaf first, or CA roots).
pub fn load_certs(path: impl AsRef<Path>) -> io::Result<Vec<CertificateDer<'static>>> {
    let path = path.as_ref();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| tls_error(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(tls_error(format!(
            "{}: no certificate in the file",
            path.display()
        )));
    }
    Ok(certs)
}

/// Reads the first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file.
pub fn load_key(path: impl AsRef<Path>) -> io::Result<PrivateKeyDer<'static>> {
    let path = path.as_ref();
    PrivateKeyDer::from_pem_file(path).map_err(|e| tls_error(format!("{}: {e}", path.display())))
}

/// Server settings presenting `certs` and `key`, without client authentication.
pub fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> io::Result<rustls::ServerConfig> {
    rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(tls_error)
}

/// Server settings presenting `certs` and `key` that require every client to present a
/// certificate chaining to one of `client_roots` (mutual TLS): a client without one, or with
/// another, fails the handshake and never reaches a session. The certificates a client
/// presented are in its session's
/// [`ConnectionInfo::peer_certificates`](crate::ConnectionInfo::peer_certificates).
///
/// ```
/// let server = qtalk_mux::tls::self_signed(&["localhost"])?;
/// let client = qtalk_mux::tls::self_signed(&["client-1"])?;
/// let _mtls = qtalk_mux::tls::server_config_with_client_auth(
///     server.certs,
///     server.key,
///     client.certs.clone(),
/// )?;
/// let roots = qtalk_mux::tls::client_config(Vec::new())?;
/// let _presenting = qtalk_mux::tls::with_client_certificate(roots, client.certs, client.key)?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn server_config_with_client_auth(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_roots: impl IntoIterator<Item = CertificateDer<'static>>,
) -> io::Result<rustls::ServerConfig> {
    let mut store = rustls::RootCertStore::empty();
    for cert in client_roots {
        store.add(cert).map_err(tls_error)?;
    }
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(store), provider())
            .build()
            .map_err(tls_error)?;
    rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(tls_error)
}

/// Client settings `tls` that present `certs` (leaf first) and `key` to servers that ask for
/// a client certificate (see [`server_config_with_client_auth`]).
pub fn with_client_certificate(
    mut tls: rustls::ClientConfig,
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> io::Result<rustls::ClientConfig> {
    let provider = tls.crypto_provider().clone();
    let key = rustls::sign::CertifiedKey::from_der(certs, key, &provider).map_err(tls_error)?;
    tls.client_auth_cert_resolver = Arc::new(ClientCertificate(Arc::new(key)));
    Ok(tls)
}

/// Presents one certificate whenever a server asks.
#[derive(Debug)]
struct ClientCertificate(Arc<rustls::sign::CertifiedKey>);

impl rustls::client::ResolvesClientCert for ClientCertificate {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Client settings trusting the given root certificates (a private CA, or a server's
/// self-signed certificate).
pub fn client_config(
    roots: impl IntoIterator<Item = CertificateDer<'static>>,
) -> io::Result<rustls::ClientConfig> {
    let mut store = rustls::RootCertStore::empty();
    for cert in roots {
        store.add(cert).map_err(tls_error)?;
    }
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error)?
        .with_root_certificates(store)
        .with_no_client_auth())
}

/// Client settings that verify servers the way the operating system does (its trust store and
/// verifier): what to use for servers with publicly trusted certificates.
pub fn platform_client_config() -> io::Result<rustls::ClientConfig> {
    use rustls_platform_verifier::BuilderVerifierExt;
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_error)?
        .with_platform_verifier()
        .map_err(tls_error)?
        .with_no_client_auth())
}

/// Client settings that accept any server certificate. The handshake is still encrypted and
/// its signatures checked, but the server is not authenticated: anyone on the path can pose as
/// it. For development against self-signed servers only (the reference's checker does this).
pub fn insecure_client_config() -> rustls::ClientConfig {
    let provider = provider();
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("the ring provider supports TLS 1.3")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config
        .dangerous()
        .set_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)));
    config
}

/// Accepts every certificate; checks handshake signatures with the provider's algorithms.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
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
        rustls::crypto::verify_tls12_signature(
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
        rustls::crypto::verify_tls13_signature(
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

/// The client side of a TLS handshake on `stream`, checking that the certificate names
/// `server_name`.
pub(crate) async fn client_handshake<S>(
    stream: S,
    server_name: &str,
    tls: rustls::ClientConfig,
) -> io::Result<tokio_rustls::client::TlsStream<S>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|_| tls_error(format!("{server_name:?} is not a valid server name")))?;
    tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, stream)
        .await
}

/// The server side of a TLS connection for a listener: the handshake within the configured
/// handshake timeout, then a session; `None` (logged at debug level) when the handshake fails.
pub(crate) async fn server_session(
    stream: tokio::net::TcpStream,
    peer: std::net::SocketAddr,
    tls: tokio_rustls::TlsAcceptor,
    config: crate::Config,
) -> Option<crate::Session> {
    crate::transport::tune_tcp(&stream, &config);
    let info = crate::conn_info::tcp_info(crate::TransportKind::Tls, &stream);
    match tokio::time::timeout(config.handshake_timeout, tls.accept(stream)).await {
        Ok(Ok(stream)) => {
            let conn = stream.get_ref().1;
            let info = info.with_tls(crate::conn_info::tls_info(conn, conn.server_name()));
            Some(crate::Session::new(stream, config.copying_transport()).with_connection_info(info))
        }
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "qmux: TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "qmux: TLS handshake timed out");
            None
        }
    }
}

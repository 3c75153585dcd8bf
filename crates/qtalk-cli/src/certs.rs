//! The certificate of a WebTransport listener (`qtalk interop --listen https://HOST:PORT/`):
//! the one given (`--cert`, `--key`), or a development certificate that browsers accept by its
//! hash alone.
//!
//! Browsers take a server certificate without a CA only through `serverCertificateHashes`,
//! and only an ECDSA P-256 one valid for at most 14 days in all
//! ([`qtalk_mux::tls::self_signed_for_browsers`], 13 days). So a development server prints
//! the SHA-256 hash of its certificate, for the page (and for `--cert-hash` here), and a new
//! certificate, with a new hash, is made at each start: restart the server before 13 days have
//! passed. To keep one hash across restarts, write a certificate once
//! ([`qtalk_mux::tls::self_signed_for_browsers_pem`]) and serve it with `--cert`/`--key` (its
//! hash is printed all the same); replace it within 13 days.

use std::io;
use std::path::PathBuf;

use qtalk_mux::tls::{self, CertificateHash};

/// A WebTransport listener's TLS settings and what to tell about its certificate.
#[derive(Debug)]
pub struct ListenerCertificate {
    /// The server settings presenting the certificate.
    pub tls: tls::rustls::ServerConfig,
    /// The SHA-256 hash of the certificate presented (the chain's first).
    pub hash: CertificateHash,
    /// The certificate was made here, for development (not given as files).
    pub generated: bool,
}

/// The names a development certificate carries: localhost, its loopback addresses, and the
/// listening host.
pub fn development_names(host: &str) -> Vec<&str> {
    let mut names = vec!["localhost", "127.0.0.1", "::1"];
    if !names.contains(&host) && !host.is_empty() && host != "0.0.0.0" && host != "::" {
        names.push(host);
    }
    names
}

/// The certificate of a WebTransport listener on `host`: the PEM files given as
/// `(certificate, key)`, or a fresh development certificate browsers accept by its hash.
pub fn webtransport(
    given: Option<(PathBuf, PathBuf)>,
    host: &str,
) -> io::Result<ListenerCertificate> {
    let (certs, key, generated) = match given {
        Some((cert, key)) => (tls::load_certs(cert)?, tls::load_key(key)?, false),
        None => {
            let id = tls::self_signed_for_browsers(&development_names(host))?;
            (id.certs, id.key, true)
        }
    };
    let hash = CertificateHash::of(&certs[0]);
    Ok(ListenerCertificate {
        tls: tls::server_config(certs, key)?,
        hash,
        generated,
    })
}

/// What a WebTransport listener prints on stderr after `listening on URL`: for a development
/// certificate, how browsers and `qtalk` clients take it; then, as the last line, the
/// certificate's hash (`certificate sha-256: HEX`, for pages and scripts to read).
pub fn announcement(cert: &ListenerCertificate) -> String {
    let mut text = String::new();
    if cert.generated {
        let days = tls::BROWSER_CERTIFICATE_VALIDITY.as_secs() / 86_400;
        text.push_str(&format!(
            "note: a development certificate (ECDSA P-256, valid {days} days, a new one at \
             each start): browsers accept it through serverCertificateHashes with the hash \
             below, qtalk clients with --cert-hash HASH (or --insecure)\n"
        ));
    }
    text.push_str(&format!("certificate sha-256: {}", cert.hash));
    text
}

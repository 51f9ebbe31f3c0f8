//! TLS for the admin API (rustls, on ring): the server's configuration
//! from `[admin] tls_cert` / `tls_key`, and the client's (the `ferrolb`
//! commands) from `--cacert`. TLS 1.2 and 1.3 with rustls's safe default
//! suites; no client certificates (the bearer token authenticates).

use std::path::Path;
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// ring's provider. rustls marks it deprecated because it lacks the
/// post-quantum key exchange of its aws-lc-rs provider, which would bring
/// a C build of its own (cmake) into every build of ferrolb; the classic
/// suites it offers are rustls's safe defaults.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of a PEM file (at least one).
fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let all: Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .collect();
    let all = all.map_err(|e| format!("{}: not a PEM certificate file: {e}", path.display()))?;
    if all.is_empty() {
        return Err(format!(
            "{}: no certificate in it (a PEM file with \"-----BEGIN CERTIFICATE-----\")",
            path.display()
        ));
    }
    Ok(all)
}

/// The server's configuration: the certificate chain of `cert` (the
/// server's first) and the private key of `key`, which must match.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let chain = certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        format!(
            "{}: no PEM private key in it (PKCS#8, PKCS#1 or SEC1): {e}",
            key.display()
        )
    })?;
    let cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("the certificate and the key do not go together: {e}"))?;
    Ok(Arc::new(cfg))
}

/// The client's configuration: servers are trusted when their
/// certificate chains to one in `cacert`.
pub fn client_config(cacert: &Path) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    for c in certs(cacert)? {
        roots
            .add(c)
            .map_err(|e| format!("{}: not a CA certificate: {e}", cacert.display()))?;
    }
    let cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

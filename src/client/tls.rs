//! TLS to brokers with rustls (ring provider; no OpenSSL).
//!
//! The broker's certificate is verified against a CA file (PEM) or the system's
//! CA bundle, and its name against the host the broker advertises in metadata
//! (an IP address is matched against IP-address SANs, as Java's
//! `ssl.endpoint.identification.algorithm=https` does). A client certificate
//! (mTLS) is sent when configured. TLS 1.2 and 1.3 are offered.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::ClientError;

/// Where the system CA bundle lives on common Linux distributions (after `SSL_CERT_FILE`).
const SYSTEM_CA_FILES: [&str; 5] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// TLS settings of one cluster.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// PEM file of the CA certificates that sign the brokers' certificates
    /// (none: the system CA bundle).
    pub ca_file: Option<PathBuf>,
    /// PEM certificate chain of the client (mTLS), leaf first.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate (PKCS#8, PKCS#1 or SEC1, unencrypted).
    pub key_file: Option<PathBuf>,
    /// Name to verify every broker's certificate against, instead of the broker's host.
    pub server_name: Option<String>,
    /// Accept any certificate (no verification at all). For tests only.
    pub insecure_skip_verify: bool,
}

/// A ready TLS client: rustls config plus the name override.
#[derive(Clone)]
pub struct Tls {
    connector: TlsConnector,
    server_name: Option<String>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("server_name", &self.server_name).finish()
    }
}

fn setup_err(reason: String) -> ClientError {
    ClientError::Invalid {
        what: "TLS settings",
        reason,
    }
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| setup_err(format!("cannot read {what} {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(setup_err(format!("{what} {} holds no PEM certificate", path.display())));
    }
    Ok(certs)
}

fn system_roots() -> Result<(RootCertStore, PathBuf), ClientError> {
    let env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
    let candidates: Vec<PathBuf> = env
        .into_iter()
        .chain(SYSTEM_CA_FILES.iter().map(PathBuf::from))
        .collect();
    for path in &candidates {
        if path.is_file() {
            let mut roots = RootCertStore::empty();
            roots.add_parsable_certificates(read_certs(path, "system CA bundle")?);
            if !roots.is_empty() {
                return Ok((roots, path.clone()));
            }
        }
    }
    Err(setup_err(format!(
        "no CA file configured and no system CA bundle found (looked at $SSL_CERT_FILE and {}); set ca_file",
        SYSTEM_CA_FILES.join(", ")
    )))
}

impl Tls {
    /// Builds the rustls client config: reads the CA, certificate and key files.
    pub fn new(s: &TlsSettings) -> Result<Self, ClientError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| setup_err(e.to_string()))?;
        let builder = if s.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
        } else {
            let roots = match &s.ca_file {
                Some(path) => {
                    let mut roots = RootCertStore::empty();
                    for cert in read_certs(path, "CA file")? {
                        roots
                            .add(cert)
                            .map_err(|e| setup_err(format!("CA file {}: {e}", path.display())))?;
                    }
                    roots
                }
                None => system_roots()?.0,
            };
            builder.with_root_certificates(roots)
        };
        let config = match (&s.cert_file, &s.key_file) {
            (Some(cert), Some(key)) => {
                let chain = read_certs(cert, "client certificate file")?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    setup_err(format!(
                        "cannot read client key file {} (unencrypted PKCS#8, PKCS#1 or SEC1 PEM expected): {e}",
                        key.display()
                    ))
                })?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| setup_err(format!("client certificate and key do not fit: {e}")))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => return Err(setup_err("cert_file and key_file must be set together".into())),
        };
        Ok(Tls {
            connector: TlsConnector::from(Arc::new(config)),
            server_name: s.server_name.clone(),
        })
    }

    /// Runs the TLS handshake with `broker` (`host:port`) over `tcp`.
    pub async fn connect(&self, broker: &str, tcp: TcpStream) -> Result<TlsStream<TcpStream>, ClientError> {
        let host = match &self.server_name {
            Some(n) => n.as_str(),
            None => host_of(broker),
        };
        let name = ServerName::try_from(host.to_string()).map_err(|_| ClientError::Tls {
            broker: broker.to_string(),
            reason: format!("{host:?} is not a valid TLS server name; set server_name"),
        })?;
        self.connector.connect(name, tcp).await.map_err(|e| ClientError::Tls {
            broker: broker.to_string(),
            reason: explain(&e, host),
        })
    }
}

/// The host part of `host:port` (brackets of an IPv6 literal removed).
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr);
    host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host)
}

/// One sentence an operator can act on, for a failed handshake.
pub(crate) fn explain(e: &std::io::Error, host: &str) -> String {
    let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) else {
        return if e.kind() == std::io::ErrorKind::UnexpectedEof {
            "the broker closed the connection during the TLS handshake (is this a TLS listener?)".into()
        } else {
            format!("TLS handshake failed: {e}")
        };
    };
    use rustls::Error as E;
    match tls {
        E::InvalidCertificate(c) => match c {
            CertificateError::UnknownIssuer => {
                "the broker's certificate is not trusted: it is not signed by a CA in ca_file (or the system CA bundle when ca_file is unset)".into()
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => format!(
                "the broker's certificate is not valid for host {host:?} (hostname verification failed; its names: {})",
                match c {
                    CertificateError::NotValidForNameContext { presented, .. } => presented
                        .iter()
                        .map(|n| {
                            // rustls formats them as `DnsName("host")`: keep the name.
                            n.split_once("(\"")
                                .and_then(|(_, rest)| rest.strip_suffix("\")"))
                                .unwrap_or(n)
                        })
                        .collect::<Vec<_>>()
                        .join(", "),
                    _ => "?".into(),
                }
            ),
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "the broker's certificate has expired".into()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "the broker's certificate is not valid yet (check the clocks)".into()
            }
            CertificateError::Revoked => "the broker's certificate is revoked".into(),
            other => format!("the broker's certificate is invalid: {other:?}"),
        },
        E::AlertReceived(alert) => format!(
            "the broker refused the TLS handshake (alert {alert:?}; does the listener require a client certificate, cert_file and key_file?)"
        ),
        other => format!("TLS handshake failed: {other}"),
    }
}

/// The explanation of a TLS alert the broker sent after the handshake, if `e` is one.
pub(crate) fn alert_reason(e: &std::io::Error) -> Option<String> {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::AlertReceived(_)) => Some(explain(e, "")),
        _ => None,
    }
}

/// Accepts every certificate, but still checks the handshake signatures so the
/// peer holds the key of the certificate it showed (`insecure_skip_verify`).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_strips_port_and_brackets() {
        assert_eq!(host_of("127.0.0.1:9092"), "127.0.0.1");
        assert_eq!(host_of("kafka-1.example.com:9093"), "kafka-1.example.com");
        assert_eq!(host_of("[::1]:9093"), "::1");
    }

    #[test]
    fn missing_files_are_named() {
        let e = Tls::new(&TlsSettings {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("/nonexistent/ca.pem") && e.contains("CA file"), "{e}");
        let dir = std::env::temp_dir().join(format!("strait-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a pem\n").unwrap();
        let e = Tls::new(&TlsSettings {
            ca_file: Some(empty.clone()),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("holds no PEM certificate"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn client_certificate_needs_its_own_key() {
        let dir = std::env::temp_dir().join(format!("strait-tls-mtls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["strait".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        for (name, text) in [
            ("ca.pem", cert.pem()),
            ("cert.pem", cert.pem()),
            ("key.pem", key.serialize_pem()),
            ("other.pem", other.serialize_pem()),
        ] {
            std::fs::write(dir.join(name), text).unwrap();
        }
        let settings = |cert: Option<&str>, key: Option<&str>| TlsSettings {
            ca_file: Some(dir.join("ca.pem")),
            cert_file: cert.map(|c| dir.join(c)),
            key_file: key.map(|k| dir.join(k)),
            ..Default::default()
        };
        assert!(Tls::new(&settings(Some("cert.pem"), Some("key.pem"))).is_ok());
        let e = Tls::new(&settings(Some("cert.pem"), None)).unwrap_err().to_string();
        assert!(e.contains("set together"), "{e}");
        let e = Tls::new(&settings(Some("cert.pem"), Some("other.pem")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("do not fit"), "{e}");
        let e = Tls::new(&settings(Some("cert.pem"), Some("cert.pem")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("client key file") && e.contains("unencrypted PKCS#8"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn insecure_mode_builds_without_any_ca() {
        let t = Tls::new(&TlsSettings {
            insecure_skip_verify: true,
            ..Default::default()
        });
        assert!(t.is_ok());
    }
}

//! Test PKI for the real-broker TLS tests: a CA, broker certificates (a good one
//! with an IP SAN for 127.0.0.1, one for a wrong host name, an expired one), a
//! client certificate for mTLS and an unrelated CA, generated with rcgen and
//! written as PEM files (Kafka reads PEM keystores: key then chain).
//! Included by the test binaries with `#[path = "harness/pki.rs"] mod pki;`.
#![allow(dead_code)]

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};

/// Certificates written to a directory, PEM.
pub struct Pki {
    pub dir: PathBuf,
}

impl Pki {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
    pub fn p(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

fn ca(name: &str) -> (CertificateParams, KeyPair, String) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let pem = p.self_signed(&key).unwrap().pem();
    (p, key, pem)
}

/// A leaf certificate signed by the CA: (cert PEM, PKCS#8 key PEM).
fn leaf(
    issuer: &Issuer<'_, &KeyPair>,
    cn: &str,
    sans: Vec<SanType>,
    eku: ExtendedKeyUsagePurpose,
    expired: bool,
) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.subject_alt_names = sans;
    p.extended_key_usages = vec![eku];
    if expired {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let cert = p.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Generates everything into a fresh directory `strait-pki-<tag>-<pid>` under the temp dir:
/// `ca.pem`, `server.pem`, `wronghost.pem`, `expired.pem` (keystores), `client.pem`,
/// `client.key`, `other-ca.pem`.
pub fn make_pki(tag: &str) -> Pki {
    let dir = std::env::temp_dir().join(format!("strait-pki-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (ca_params, ca_key, ca_pem) = ca("strait test CA");
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    let ip = SanType::IpAddress("127.0.0.1".parse().unwrap());
    let localhost = SanType::DnsName("localhost".try_into().unwrap());
    let server = ExtendedKeyUsagePurpose::ServerAuth;
    let keystore = |name: &str, (cert, key): (String, String)| {
        // Kafka's PEM keystore: the private key (PKCS#8, unencrypted) and the chain.
        std::fs::write(dir.join(name), format!("{key}{cert}")).unwrap();
    };
    keystore(
        "server.pem",
        leaf(&issuer, "broker", vec![ip.clone(), localhost], server.clone(), false),
    );
    keystore(
        "wronghost.pem",
        leaf(
            &issuer,
            "broker",
            vec![SanType::DnsName("wrong.example.com".try_into().unwrap())],
            server.clone(),
            false,
        ),
    );
    keystore("expired.pem", leaf(&issuer, "broker", vec![ip], server, true));
    let (cert, key) = leaf(&issuer, "strait", vec![], ExtendedKeyUsagePurpose::ClientAuth, false);
    std::fs::write(dir.join("client.pem"), cert).unwrap();
    std::fs::write(dir.join("client.key"), key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca_pem).unwrap();
    // A CA that signed nothing the broker shows.
    std::fs::write(dir.join("other-ca.pem"), ca("some other CA").2).unwrap();
    Pki { dir }
}

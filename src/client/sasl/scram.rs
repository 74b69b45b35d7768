//! SCRAM-SHA-256 and SCRAM-SHA-512 client (RFC 5802, RFC 7677), as Kafka's
//! `ScramSaslClient` speaks it: no channel binding (`n,,`), no authorization id.
//!
//! Sans-I/O: [`ScramClient`] produces the client messages and checks the
//! server's; the SASL driver carries them in SaslAuthenticate requests.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256, Sha512};

/// The hash function of a SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScramHash {
    /// SCRAM-SHA-256.
    Sha256,
    /// SCRAM-SHA-512.
    Sha512,
}

/// Kafka refuses fewer iterations than this (`ScramMechanism.minIterations`).
const MIN_ITERATIONS: u32 = 4096;
/// Upper bound so a hostile server cannot make us spin for minutes.
const MAX_ITERATIONS: u32 = 1_000_000;

impl ScramHash {
    fn hmac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha256 => {
                let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            ScramHash::Sha512 => {
                let mut m = <Hmac<Sha512> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
        }
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        match self {
            ScramHash::Sha256 => Sha256::digest(data).to_vec(),
            ScramHash::Sha512 => Sha512::digest(data).to_vec(),
        }
    }

    fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
        match self {
            ScramHash::Sha256 => {
                let mut out = vec![0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                out
            }
            ScramHash::Sha512 => {
                let mut out = vec![0u8; 64];
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut out);
                out
            }
        }
    }
}

/// A SCRAM exchange in progress.
#[derive(Debug)]
pub struct ScramClient {
    hash: ScramHash,
    client_first_bare: String,
    nonce: String,
    expected_server_signature: Option<Vec<u8>>,
}

/// `=` and `,` are escaped in a SCRAM user name (RFC 5802 §5.1 `saslname`).
fn escape_name(user: &str) -> String {
    user.replace('=', "=3D").replace(',', "=2C")
}

/// The value of attribute `key` (`r`, `s`, `i`, `v`, `e`) of a server message.
fn attr(msg: &str, key: char) -> Option<&str> {
    msg.split(',').find_map(|part| {
        let mut chars = part.chars();
        (chars.next() == Some(key) && chars.next() == Some('=')).then(|| &part[2..])
    })
}

impl ScramClient {
    /// Starts an exchange for `user` with a random `nonce` (printable, no commas).
    pub fn new(hash: ScramHash, user: &str, nonce: String) -> Self {
        let client_first_bare = format!("n={},r={nonce}", escape_name(user));
        ScramClient {
            hash,
            client_first_bare,
            nonce,
            expected_server_signature: None,
        }
    }

    /// The client-first message.
    pub fn client_first(&self) -> Vec<u8> {
        format!("n,,{}", self.client_first_bare).into_bytes()
    }

    /// Takes the server-first message, returns the client-final message (with the proof).
    pub fn client_final(&mut self, server_first: &[u8], password: &str) -> Result<Vec<u8>, String> {
        let server_first = std::str::from_utf8(server_first).map_err(|_| "server-first message is not UTF-8")?;
        if let Some(e) = attr(server_first, 'e') {
            return Err(format!("server error {e}"));
        }
        let nonce = attr(server_first, 'r').ok_or("server-first message has no nonce")?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err("server nonce does not extend the client nonce".into());
        }
        let salt = attr(server_first, 's')
            .and_then(|s| B64.decode(s).ok())
            .ok_or("server-first message has no valid salt")?;
        let iterations: u32 = attr(server_first, 'i')
            .and_then(|i| i.parse().ok())
            .ok_or("server-first message has no valid iteration count")?;
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(format!(
                "server asks for {iterations} iterations; allowed {MIN_ITERATIONS} to {MAX_ITERATIONS}"
            ));
        }
        let h = self.hash;
        let salted = h.salted_password(password.as_bytes(), &salt, iterations);
        let client_key = h.hmac(&salted, b"Client Key");
        let stored_key = h.hash(&client_key);
        // "biws" is base64("n,,"): the GS2 header, no channel binding.
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let signature = h.hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        let server_key = h.hmac(&salted, b"Server Key");
        self.expected_server_signature = Some(h.hmac(&server_key, auth_message.as_bytes()));
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks the server-final message: the server proves it knows the password too.
    pub fn verify_server_final(&self, server_final: &[u8]) -> Result<(), String> {
        let msg = std::str::from_utf8(server_final).map_err(|_| "server-final message is not UTF-8")?;
        if let Some(e) = attr(msg, 'e') {
            return Err(format!("server error {e}"));
        }
        let v = attr(msg, 'v')
            .and_then(|v| B64.decode(v).ok())
            .ok_or("server-final message has no valid signature")?;
        match &self.expected_server_signature {
            Some(expected) if *expected == v => Ok(()),
            _ => Err("the server's signature is wrong: it does not know this user's credentials".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 §3 test vector.
    #[test]
    fn rfc7677_sha256_vector() {
        let mut c = ScramClient::new(ScramHash::Sha256, "user", "rOprNGfwEbeRWgbNEkqO".into());
        assert_eq!(c.client_first(), b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        let fin = c.client_final(server_first, "pencil").unwrap();
        assert_eq!(
            String::from_utf8(fin).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        c.verify_server_final(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .unwrap();
        assert!(c
            .verify_server_final(b"v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
            .is_err());
        assert!(c
            .verify_server_final(b"e=invalid-proof")
            .unwrap_err()
            .contains("invalid-proof"));
    }

    #[test]
    fn hostile_server_messages_are_refused() {
        let mut c = ScramClient::new(ScramHash::Sha512, "a,b=c", "abc".into());
        assert_eq!(c.client_first(), b"n,,n=a=2Cb=3Dc,r=abc");
        for bad in [
            &b"r=xyz123,s=AAAA,i=4096"[..], // nonce not extended from ours
            b"r=abc,s=AAAA,i=4096",         // nonce not extended at all
            b"r=abcdef,s=!!!,i=4096",       // bad salt
            b"r=abcdef,s=AAAA,i=12",        // too few iterations
            b"r=abcdef,s=AAAA,i=999999999", // too many
            b"r=abcdef,s=AAAA",             // no iterations
            b"\xff\xfe",
            b"",
        ] {
            assert!(c.client_final(bad, "pw").is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(c.verify_server_final(b"v=AAAA").is_err(), "no client-final sent yet");
    }
}

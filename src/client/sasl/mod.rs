//! SASL authentication of a connection: PLAIN, SCRAM-SHA-256/512 and
//! OAUTHBEARER, with KIP-368 re-authentication.
//!
//! The flow is Kafka's (KIP-152): after ApiVersions, `SaslHandshake` v1 names the
//! mechanism, then every SASL token travels in a `SaslAuthenticate` request, a
//! normal Kafka request with a header and correlation id. So the exchange runs
//! over the same pipelined [`Connection`] as everything else.
//!
//! Re-authentication (KIP-368): SaslAuthenticate v1+ answers with
//! `session_lifetime_ms`; the broker closes a connection whose session expired
//! on its next request. Like the Java client (`KafkaChannel`,
//! `SaslClientAuthenticator.reauthenticate`), strait authenticates again on the
//! same connection before that, at a random point between 85 % and 95 % of the
//! lifetime. The broker reads the frames after a re-auth SaslHandshake as SASL
//! tokens, so no other request may be written in between: the exchange holds the
//! connection's write gate exclusively. Requests already written are answered
//! first (the broker serves one request per connection at a time, in order);
//! requests submitted meanwhile wait at the gate in submission order, so ordering
//! of idempotent produces is kept.

#[cfg(test)]
mod gate_tests;
mod scram;

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{SaslAuthenticateRequest, SaslHandshakeRequest};
use kafka_protocol::protocol::StrBytes;

pub use scram::{ScramClient, ScramHash};

use super::{error_name, ClientError, Connection, Result, Secret};

/// A SASL mechanism strait speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub enum SaslMechanism {
    /// RFC 4616: user name and password, in clear (use TLS).
    #[serde(rename = "PLAIN")]
    Plain,
    /// RFC 5802/7677 with SHA-256.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// RFC 5802 with SHA-512.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
    /// RFC 7628: a bearer token (KIP-255).
    #[serde(rename = "OAUTHBEARER")]
    OAuthBearer,
}

impl SaslMechanism {
    /// The mechanism name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
            SaslMechanism::OAuthBearer => "OAUTHBEARER",
        }
    }
}

/// Where an OAUTHBEARER token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// A fixed token (inline in the config or from an environment variable).
    Fixed(Secret),
    /// A file read again at every (re-)authentication, so a token refreshed by
    /// another process is picked up without a restart.
    File(PathBuf),
}

impl TokenSource {
    fn token(&self) -> std::result::Result<Secret, String> {
        match self {
            TokenSource::Fixed(s) => Ok(s.clone()),
            TokenSource::File(p) => match std::fs::read_to_string(p) {
                Ok(t) if !t.trim().is_empty() => Ok(Secret::new(t.trim())),
                Ok(_) => Err(format!("token file {} is empty", p.display())),
                Err(e) => Err(format!("cannot read token file {}: {e}", p.display())),
            },
        }
    }
}

/// SASL settings of one cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslSettings {
    /// The mechanism.
    pub mechanism: SaslMechanism,
    /// User name (PLAIN, SCRAM).
    pub username: String,
    /// Password (PLAIN, SCRAM).
    pub password: Secret,
    /// Token (OAUTHBEARER).
    pub token: Option<TokenSource>,
}

fn nonce() -> Result<String> {
    use base64::Engine;
    let mut raw = [0u8; 24];
    rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut raw)
        .map_err(|_| ClientError::Invalid {
            what: "SCRAM nonce",
            reason: "the system random source failed".into(),
        })?;
    Ok(base64::engine::general_purpose::STANDARD.encode(raw))
}

/// One SaslAuthenticate round trip: the broker's reply bytes and session lifetime.
async fn step(conn: &Connection, version: i16, mech: SaslMechanism, token: Vec<u8>) -> Result<(Bytes, i64)> {
    let req = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token));
    let resp = conn.request_exclusive(version, &req).await?;
    if resp.error_code != 0 {
        let reason = match resp.error_message.as_deref().filter(|m| !m.is_empty()) {
            Some(m) => format!("{m} ({})", error_name(resp.error_code)),
            None => format!("the broker refused the credentials ({})", error_name(resp.error_code)),
        };
        return Err(auth_err(conn, mech, reason));
    }
    Ok((resp.auth_bytes, resp.session_lifetime_ms))
}

fn auth_err(conn: &Connection, mech: SaslMechanism, reason: String) -> ClientError {
    ClientError::Auth {
        broker: conn.broker().to_string(),
        mechanism: mech.name(),
        reason,
    }
}

/// Authenticates `conn` (first time or again): SaslHandshake, then the
/// mechanism's SaslAuthenticate exchange, holding the connection's write gate
/// throughout. Returns the session lifetime the broker granted (`None`: no
/// expiry, no re-authentication needed).
pub async fn authenticate(conn: &Connection, s: &SaslSettings) -> Result<Option<Duration>> {
    let mech = s.mechanism;
    let _exclusive = conn.exclusive().await;
    let hs_version = conn.version_of::<SaslHandshakeRequest>()?;
    if hs_version < 1 {
        return Err(auth_err(
            conn,
            mech,
            "the broker only supports SaslHandshake v0 (Kafka before 1.0); not supported".into(),
        ));
    }
    let hs = SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mech.name()));
    let resp = conn.request_exclusive(hs_version, &hs).await?;
    match resp.error_code {
        0 => {}
        33 => {
            let offered: Vec<&str> = resp.mechanisms.iter().map(|m| m.as_str()).collect();
            return Err(auth_err(
                conn,
                mech,
                format!(
                    "the listener does not enable {}; it offers [{}]",
                    mech.name(),
                    offered.join(", ")
                ),
            ));
        }
        34 => {
            return Err(auth_err(
                conn,
                mech,
                "the listener does not use SASL (SaslHandshake refused); check the port and security settings".into(),
            ))
        }
        c => return Err(auth_err(conn, mech, format!("SaslHandshake failed: {}", error_name(c)))),
    }
    let version = conn.version_of::<SaslAuthenticateRequest>()?;
    let lifetime_ms = match mech {
        SaslMechanism::Plain => {
            let mut msg = Vec::with_capacity(2 + s.username.len() + s.password.expose().len());
            msg.push(0);
            msg.extend_from_slice(s.username.as_bytes());
            msg.push(0);
            msg.extend_from_slice(s.password.expose().as_bytes());
            step(conn, version, mech, msg).await?.1
        }
        SaslMechanism::ScramSha256 | SaslMechanism::ScramSha512 => {
            let hash = if mech == SaslMechanism::ScramSha256 {
                ScramHash::Sha256
            } else {
                ScramHash::Sha512
            };
            let mut scram = ScramClient::new(hash, &s.username, nonce()?);
            let (server_first, _) = step(conn, version, mech, scram.client_first()).await?;
            let fin = scram
                .client_final(&server_first, s.password.expose())
                .map_err(|r| auth_err(conn, mech, r))?;
            let (server_final, lifetime) = step(conn, version, mech, fin).await?;
            scram
                .verify_server_final(&server_final)
                .map_err(|r| auth_err(conn, mech, r))?;
            lifetime
        }
        SaslMechanism::OAuthBearer => {
            let token = s
                .token
                .as_ref()
                .ok_or_else(|| auth_err(conn, mech, "no token configured".into()))?
                .token()
                .map_err(|r| auth_err(conn, mech, r))?;
            // RFC 7628 client initial response: GS2 header, then kvpairs separated by 0x01.
            let msg = format!("n,,\x01auth=Bearer {}\x01\x01", token.expose()).into_bytes();
            let (reply, lifetime) = step(conn, version, mech, msg).await?;
            if !reply.is_empty() {
                // The broker sent an error challenge (JSON, e.g. {"status":"invalid_token"});
                // RFC 7628 §3.2.3: answer with a lone 0x01 to get the final failure.
                let detail = String::from_utf8_lossy(&reply).into_owned();
                return Err(match step(conn, version, mech, vec![1]).await {
                    Err(ClientError::Auth { reason, .. }) => {
                        auth_err(conn, mech, format!("{reason}; broker said {detail}"))
                    }
                    Err(e) => e,
                    Ok(_) => auth_err(conn, mech, format!("the broker refused the token: {detail}")),
                });
            }
            lifetime
        }
    };
    Ok((lifetime_ms > 0).then(|| Duration::from_millis(lifetime_ms as u64)))
}

/// When to re-authenticate a session of `lifetime`: at a random point between
/// 85 % and 95 % of it, as the Java client does, so many connections do not
/// re-authenticate in lockstep. Never sooner than 50 ms, so an absurdly short
/// lifetime cannot turn into a busy loop.
pub fn reauth_delay(lifetime: Duration) -> Duration {
    lifetime
        .mul_f64(0.85 + 0.10 * fastrand::f64())
        .max(Duration::from_millis(50))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reauth_happens_between_85_and_95_percent() {
        for _ in 0..1000 {
            let d = reauth_delay(Duration::from_secs(100));
            assert!(d >= Duration::from_secs(85) && d <= Duration::from_secs(95), "{d:?}");
        }
        assert_eq!(reauth_delay(Duration::from_millis(1)), Duration::from_millis(50));
    }

    #[test]
    fn token_file_is_read_each_time_and_trimmed() {
        let p = std::env::temp_dir().join(format!("strait-token-{}", std::process::id()));
        std::fs::write(&p, "one\n").unwrap();
        let src = TokenSource::File(p.clone());
        assert_eq!(src.token().unwrap().expose(), "one");
        std::fs::write(&p, "two").unwrap();
        assert_eq!(src.token().unwrap().expose(), "two");
        std::fs::write(&p, "  \n").unwrap();
        assert!(src.token().unwrap_err().contains("empty"));
        std::fs::remove_file(&p).unwrap();
        let e = src.token().unwrap_err();
        assert!(e.contains("cannot read token file"), "{e}");
    }

    #[test]
    fn settings_debug_hides_secrets() {
        let s = SaslSettings {
            mechanism: SaslMechanism::Plain,
            username: "alice".into(),
            password: Secret::new("alice-pw-123"),
            token: Some(TokenSource::Fixed(Secret::new("tok-456"))),
        };
        let d = format!("{s:?}");
        assert!(
            d.contains("alice") && !d.contains("alice-pw-123") && !d.contains("tok-456"),
            "{d}"
        );
    }
}

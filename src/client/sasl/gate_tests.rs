//! Re-authentication against a scripted in-memory broker: requests submitted
//! during the exchange wait until it is over (nothing may reach the broker
//! between SaslHandshake and the last SaslAuthenticate), requests written
//! before it are still answered, and a refused re-authentication is an
//! [`ClientError::Auth`] without the password.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::{
    ApiKey, MetadataRequest, MetadataResponse, RequestHeader, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncWriteExt, DuplexStream};

use super::{authenticate, SaslMechanism, SaslSettings};
use crate::client::fake::{api, connected as connected_with, read_request, response};
use crate::client::{ClientError, Connection, ConnectionConfig, Secret};

async fn respond<T: Encodable + HeaderVersion>(s: &mut DuplexStream, h: &RequestHeader, body: &T) {
    s.write_all(&response(h.correlation_id, h.request_api_version, body))
        .await
        .unwrap();
}

async fn connected() -> (Arc<Connection>, DuplexStream) {
    let apis = vec![
        api(ApiKey::Metadata, 12),
        api(ApiKey::SaslHandshake, 1),
        api(ApiKey::SaslAuthenticate, 2),
    ];
    let (conn, server) = connected_with(apis, ConnectionConfig::default()).await;
    (Arc::new(conn), server)
}

fn plain() -> SaslSettings {
    SaslSettings {
        mechanism: SaslMechanism::Plain,
        username: "alice".into(),
        password: Secret::new("pw-very-secret"),
        token: None,
    }
}

fn metadata(conn: &Arc<Connection>) -> tokio::task::JoinHandle<Option<String>> {
    let c = conn.clone();
    tokio::spawn(async move {
        c.request(&MetadataRequest::default())
            .await
            .unwrap()
            .cluster_id
            .map(|s| s.to_string())
    })
}

#[tokio::test]
async fn requests_wait_while_the_connection_reauthenticates() {
    let (conn, mut server) = connected().await;
    // A request written before re-authentication starts.
    let early = metadata(&conn);
    let (early_h, _) = read_request(&mut server).await.unwrap();
    assert_eq!(early_h.request_api_key, ApiKey::Metadata as i16);

    let c = conn.clone();
    let reauth = tokio::spawn(async move { authenticate(&c, &plain()).await });
    let (hs, _) = read_request(&mut server).await.unwrap();
    assert_eq!(hs.request_api_key, ApiKey::SaslHandshake as i16);
    assert_eq!(hs.request_api_version, 1);

    // Submitted during the exchange: must not reach the broker yet.
    let late = metadata(&conn);
    let nothing = tokio::time::timeout(Duration::from_millis(200), read_request(&mut server)).await;
    assert!(
        nothing.is_err(),
        "a request was written between SaslHandshake and SaslAuthenticate"
    );

    // The broker answers in order: the early request first, then the handshake.
    respond(
        &mut server,
        &early_h,
        &MetadataResponse::default().with_cluster_id(Some(StrBytes::from_static_str("early"))),
    )
    .await;
    assert_eq!(early.await.unwrap().as_deref(), Some("early"));
    respond(
        &mut server,
        &hs,
        &SaslHandshakeResponse::default().with_mechanisms(vec![StrBytes::from_static_str("PLAIN")]),
    )
    .await;
    let (auth, mut body) = read_request(&mut server).await.unwrap();
    assert_eq!(auth.request_api_key, ApiKey::SaslAuthenticate as i16);
    let req = SaslAuthenticateRequest::decode(&mut body, auth.request_api_version).unwrap();
    assert_eq!(&req.auth_bytes[..], b"\0alice\0pw-very-secret");
    let nothing = tokio::time::timeout(Duration::from_millis(100), read_request(&mut server)).await;
    assert!(
        nothing.is_err(),
        "a request was written before the last SaslAuthenticate answer"
    );
    respond(
        &mut server,
        &auth,
        &SaslAuthenticateResponse::default().with_session_lifetime_ms(60_000),
    )
    .await;
    assert_eq!(reauth.await.unwrap().unwrap(), Some(Duration::from_secs(60)));

    // Now the held request goes out.
    let (late_h, _) = read_request(&mut server).await.unwrap();
    assert_eq!(late_h.request_api_key, ApiKey::Metadata as i16);
    respond(
        &mut server,
        &late_h,
        &MetadataResponse::default().with_cluster_id(Some(StrBytes::from_static_str("late"))),
    )
    .await;
    assert_eq!(late.await.unwrap().as_deref(), Some("late"));
}

#[tokio::test]
async fn refused_credentials_and_mechanisms_are_auth_errors_without_the_password() {
    let (conn, mut server) = connected().await;
    let c = conn.clone();
    let task = tokio::spawn(async move { authenticate(&c, &plain()).await });
    let (hs, _) = read_request(&mut server).await.unwrap();
    respond(&mut server, &hs, &SaslHandshakeResponse::default()).await;
    let (auth, _) = read_request(&mut server).await.unwrap();
    respond(
        &mut server,
        &auth,
        &SaslAuthenticateResponse::default()
            .with_error_code(58)
            .with_error_message(Some(StrBytes::from_static_str("Invalid username or password"))),
    )
    .await;
    let e = task.await.unwrap().unwrap_err();
    assert!(matches!(e, ClientError::Auth { .. }), "{e:?}");
    let text = format!("{e} {e:?}");
    assert!(
        text.contains("PLAIN") && text.contains("Invalid username or password"),
        "{text}"
    );
    assert!(!text.contains("pw-very-secret"), "{text}");

    let c = conn.clone();
    let task = tokio::spawn(async move { authenticate(&c, &plain()).await });
    let (hs, _) = read_request(&mut server).await.unwrap();
    respond(
        &mut server,
        &hs,
        &SaslHandshakeResponse::default()
            .with_error_code(33)
            .with_mechanisms(vec![StrBytes::from_static_str("SCRAM-SHA-512")]),
    )
    .await;
    let e = task.await.unwrap().unwrap_err().to_string();
    assert!(
        e.contains("does not enable PLAIN") && e.contains("SCRAM-SHA-512"),
        "{e}"
    );
}

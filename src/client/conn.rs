//! One pipelined connection to one broker.
//!
//! Many requests may be in flight; responses are matched to waiters by
//! correlation id in a reader task (rskafka's `messenger.rs` follows the same
//! shape). A writer task owns the write half, so a caller that gives up (a
//! dropped future) can never leave half a request on the wire. Any I/O or
//! framing error, and any request timeout (as in the Java client's
//! `NetworkClient`), poisons the connection: every waiter fails with the same
//! error and later requests fail at once, so the pool opens a new one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiVersionsRequest, ApiVersionsResponse, ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::{Request, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::lowat::LowWatermark;
use super::{ClientError, Result};
use crate::protocol::produce::{encode_produce, ProduceTopic};
use crate::protocol::{
    api_name, decode_response, encode_request, response_correlation_id, write_chunks, ApiVersionTable, FrameDecoder,
    DEFAULT_MAX_FRAME_BYTES,
};

/// Settings of one connection.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// `client.id` sent in every request header.
    pub client_id: String,
    /// How long to wait for each response before closing the connection.
    pub request_timeout: Duration,
    /// Largest response frame accepted; checked before allocating.
    pub max_frame_bytes: usize,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            client_id: "strait".to_string(),
            request_timeout: Duration::from_secs(30),
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
        }
    }
}

/// A response that carries a broker throttle time (KIP-219: the client must
/// hold back further requests on this connection for that long).
pub trait Throttled {
    /// `throttle_time_ms` of the response, 0 when absent.
    fn throttle_time_ms(&self) -> i32;
}

macro_rules! throttled {
    ($($t:ty),* $(,)?) => {$(
        impl Throttled for $t {
            fn throttle_time_ms(&self) -> i32 { self.throttle_time_ms }
        }
    )*};
}
throttled!(
    kafka_protocol::messages::ProduceResponse,
    kafka_protocol::messages::FetchResponse,
    kafka_protocol::messages::ListOffsetsResponse,
    kafka_protocol::messages::MetadataResponse,
    kafka_protocol::messages::OffsetCommitResponse,
    kafka_protocol::messages::OffsetFetchResponse,
    kafka_protocol::messages::FindCoordinatorResponse,
    kafka_protocol::messages::ApiVersionsResponse,
    kafka_protocol::messages::CreateTopicsResponse,
    kafka_protocol::messages::DeleteTopicsResponse,
    kafka_protocol::messages::InitProducerIdResponse,
    kafka_protocol::messages::DescribeConfigsResponse,
    kafka_protocol::messages::IncrementalAlterConfigsResponse,
    kafka_protocol::messages::CreatePartitionsResponse,
    kafka_protocol::messages::AddPartitionsToTxnResponse,
    kafka_protocol::messages::AddOffsetsToTxnResponse,
    kafka_protocol::messages::EndTxnResponse,
    kafka_protocol::messages::TxnOffsetCommitResponse,
    kafka_protocol::messages::DescribeGroupsResponse,
    kafka_protocol::messages::ListGroupsResponse,
    kafka_protocol::messages::DescribeClusterResponse,
    kafka_protocol::messages::JoinGroupResponse,
    kafka_protocol::messages::SyncGroupResponse,
    kafka_protocol::messages::HeartbeatResponse,
    kafka_protocol::messages::LeaveGroupResponse,
    kafka_protocol::messages::DescribeAclsResponse,
    kafka_protocol::messages::CreateAclsResponse,
    kafka_protocol::messages::DeleteAclsResponse,
);

type Waiter = oneshot::Sender<Result<Bytes>>;

#[derive(Debug, Default)]
struct State {
    pending: HashMap<i32, Waiter>,
    failed: Option<ClientError>,
    throttle_until: Option<Instant>,
}

#[derive(Debug)]
struct Shared {
    broker: String,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave State inconsistent
        // (every update is a single insert/remove), so poisoning is ignored.
        crate::sync::lock(&self.state)
    }

    /// Poisons the connection: fails every waiter with `err`; later requests fail at once.
    fn fail(&self, err: ClientError) {
        let waiters: Vec<Waiter> = {
            let mut st = self.lock();
            if st.failed.is_none() {
                st.failed = Some(err.clone());
            }
            st.pending.drain().map(|(_, w)| w).collect()
        };
        if !waiters.is_empty() {
            debug!(broker = %self.broker, failed = waiters.len(), error = %err, "connection failed");
        }
        for w in waiters {
            let _ = w.send(Err(err.clone()));
        }
    }
}

/// A pipelined connection to one broker, with its negotiated API versions.
#[derive(Debug)]
pub struct Connection {
    shared: Arc<Shared>,
    tx: mpsc::Sender<Vec<Bytes>>,
    next_id: AtomicI32,
    config: ConnectionConfig,
    versions: ApiVersionTable,
    tasks: [AbortHandle; 2],
    /// Requests take it shared while they are queued for the writer; a SASL
    /// (re-)authentication takes it exclusively for its whole exchange, so no
    /// other request reaches the broker between its SaslHandshake and the last
    /// SaslAuthenticate (KIP-368). tokio's RwLock is fair: waiters are served in
    /// arrival order, which keeps submission order.
    gate: tokio::sync::RwLock<()>,
    /// Background tasks tied to this connection (re-authentication).
    extra_tasks: Mutex<Vec<AbortHandle>>,
    reauthentications: AtomicU64,
    /// How long the ApiVersions exchange of the handshake took.
    handshake: Duration,
}

impl Drop for Connection {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        for t in crate::sync::lock(&self.extra_tasks).iter() {
            t.abort();
        }
    }
}

impl Connection {
    /// Takes over an established byte stream (TCP, TLS, an in-memory pipe), starts
    /// the reader and writer tasks and negotiates API versions.
    pub async fn handshake<S>(stream: S, broker: impl Into<String>, config: ConnectionConfig) -> Result<Self>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        Self::start(stream, broker.into(), config, None).await
    }

    /// [`Connection::handshake`] over a plain TCP stream, whose receive
    /// low-watermark then follows large responses (see [`super::lowat`]).
    pub async fn handshake_tcp(
        stream: tokio::net::TcpStream,
        broker: impl Into<String>,
        config: ConnectionConfig,
    ) -> Result<Self> {
        let lowat = LowWatermark::new(std::os::fd::AsRawFd::as_raw_fd(&stream));
        Self::start(stream, broker.into(), config, Some(lowat)).await
    }

    async fn start<S>(stream: S, broker: String, config: ConnectionConfig, lowat: Option<LowWatermark>) -> Result<Self>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (rd, wr) = tokio::io::split(stream);
        let shared = Arc::new(Shared {
            broker: broker.clone(),
            state: Mutex::new(State::default()),
        });
        let (tx, rx) = mpsc::channel(128);
        let reader = tokio::spawn(read_loop(
            rd,
            shared.clone(),
            FrameDecoder::new(config.max_frame_bytes),
            lowat,
        ));
        let writer = tokio::spawn(write_loop(wr, rx, shared.clone()));
        let mut conn = Connection {
            shared,
            tx,
            next_id: AtomicI32::new(1),
            config,
            versions: ApiVersionTable::default(),
            tasks: [reader.abort_handle(), writer.abort_handle()],
            gate: tokio::sync::RwLock::new(()),
            extra_tasks: Mutex::new(Vec::new()),
            reauthentications: AtomicU64::new(0),
            handshake: Duration::ZERO,
        };
        let t = Instant::now();
        conn.versions = conn.negotiate_versions().await?;
        conn.handshake = t.elapsed();
        Ok(conn)
    }

    /// ApiVersions v3 (KIP-511), falling back to v0 for brokers that refuse it.
    async fn negotiate_versions(&self) -> Result<ApiVersionTable> {
        let req = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("strait"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        // UNSUPPORTED_VERSION (35): a broker older than v3 answers in v0 format
        // (header v0, error_code first), which need not decode as v3; ask again at v0.
        const UNSUPPORTED_VERSION: [u8; 2] = 35i16.to_be_bytes();
        let frame = self.request_frame(3, &req).await?;
        let unsupported = frame.get(4..6) == Some(&UNSUPPORTED_VERSION[..]);
        let resp: ApiVersionsResponse = match decode_response::<ApiVersionsRequest>(frame, 3) {
            Ok((_, resp)) if resp.error_code != 35 => resp,
            Err(_) | Ok(_) if unsupported => self.request_at(0, &ApiVersionsRequest::default()).await?,
            Ok((_, resp)) => resp,
            Err(source) => return Err(self.protocol_error(source)),
        };
        if resp.error_code != 0 {
            return Err(ClientError::kafka(
                "ApiVersions",
                &self.shared.broker,
                "connection",
                resp.error_code,
                None,
            ));
        }
        Ok(ApiVersionTable::from_response(&resp))
    }

    /// The broker this connection talks to (`host:port`).
    pub fn broker(&self) -> &str {
        &self.shared.broker
    }

    /// The API versions the broker announced.
    pub fn versions(&self) -> &ApiVersionTable {
        &self.versions
    }

    /// The error that closed this connection, if it is closed.
    pub fn failure(&self) -> Option<ClientError> {
        self.shared.lock().failed.clone()
    }

    /// True once an error has closed this connection.
    pub fn is_failed(&self) -> bool {
        self.shared.lock().failed.is_some()
    }

    /// Closes the connection with `err`: in-flight requests fail with it, later ones too.
    pub fn fail(&self, err: ClientError) {
        self.shared.fail(err);
    }

    /// Ties a background task to this connection: it is aborted when the connection is dropped.
    pub fn attach_task(&self, task: AbortHandle) {
        crate::sync::lock(&self.extra_tasks).push(task);
    }

    /// How many times this connection re-authenticated (KIP-368).
    pub fn reauthentications(&self) -> u64 {
        self.reauthentications.load(Ordering::Relaxed)
    }

    pub(crate) fn note_reauthentication(&self) {
        self.reauthentications.fetch_add(1, Ordering::Relaxed);
    }

    /// Holds back every other request until the guard is dropped (SASL exchanges).
    pub(crate) async fn exclusive(&self) -> tokio::sync::RwLockWriteGuard<'_, ()> {
        self.gate.write().await
    }

    /// Sends `body` at `version` and waits, bypassing the write gate and throttling:
    /// only for the holder of [`exclusive`](Self::exclusive).
    pub(crate) async fn request_exclusive<R: Request>(&self, version: i16, body: &R) -> Result<R::Response> {
        let rx = self
            .submit_now(|id| encode_request(id, &self.config.client_id, version, body).map(|b| vec![b]))
            .await?;
        let frame = self.wait(R::KEY, rx).await?;
        let (_, resp) = decode_response::<R>(frame, version).map_err(|source| self.protocol_error(source))?;
        Ok(resp)
    }

    /// Closes the connection: in-flight requests fail, later ones fail at once.
    pub fn close(&self) {
        self.shared.fail(ClientError::Closed {
            broker: self.shared.broker.clone(),
        });
    }

    /// The highest version of `R` both sides support.
    pub fn version_of<R: Request>(&self) -> Result<i16> {
        self.versions.negotiate::<R>().map_err(|source| ClientError::Protocol {
            broker: self.shared.broker.clone(),
            source,
        })
    }

    /// The round trip of the handshake's ApiVersions exchange: a first
    /// estimate, known without another request (at most the round trip plus
    /// the broker's answer time; two of them for a broker older than
    /// ApiVersions v3).
    pub fn handshake_round_trip(&self) -> Duration {
        self.handshake
    }

    /// The smallest of `tries` ApiVersions round trips on this connection: the
    /// network's round-trip time plus the broker's least answer time; `None`
    /// when a request fails.
    pub async fn round_trip(&self, tries: usize) -> Option<Duration> {
        let mut best: Option<Duration> = None;
        for _ in 0..tries {
            let t = Instant::now();
            self.request(&ApiVersionsRequest::default()).await.ok()?;
            let d = t.elapsed();
            best = Some(best.map_or(d, |b| b.min(d)));
        }
        best
    }

    /// Sends `body` at the negotiated version and waits for its response.
    pub async fn request<R>(&self, body: &R) -> Result<R::Response>
    where
        R: Request,
        R::Response: Throttled,
    {
        let version = self.version_of::<R>()?;
        self.request_at(version, body).await
    }

    /// Sends `body` at an explicit `version` and waits for its response.
    pub async fn request_at<R>(&self, version: i16, body: &R) -> Result<R::Response>
    where
        R: Request,
        R::Response: Throttled,
    {
        let frame = self
            .roundtrip(R::KEY, |id| {
                encode_request(id, &self.config.client_id, version, body).map(|b| vec![b])
            })
            .await?;
        let (_, resp) = decode_response::<R>(frame, version).map_err(|source| self.protocol_error(source))?;
        self.note_throttle(resp.throttle_time_ms());
        Ok(resp)
    }

    /// Sends `body` at `version` and returns the raw response frame (size prefix
    /// removed), for golden-frame capture and diagnostics.
    pub async fn request_frame<R: Request>(&self, version: i16, body: &R) -> Result<Bytes> {
        self.roundtrip(R::KEY, |id| {
            encode_request(id, &self.config.client_id, version, body).map(|b| vec![b])
        })
        .await
    }

    /// Sends a Produce request built by the zero-copy encoder and waits for the
    /// answer: record batches go to the socket from their original buffers.
    /// `acks` must be -1 or 1 (acks=0 has no response and is never used by strait).
    pub async fn produce(
        self: &Arc<Self>,
        version: i16,
        transactional_id: Option<&str>,
        acks: i16,
        timeout_ms: i32,
        topics: &[ProduceTopic],
    ) -> Result<ProduceResponse> {
        self.submit_produce(version, transactional_id, acks, timeout_ms, topics)
            .await?
            .response()
            .await
    }

    fn protocol_error(&self, source: crate::protocol::ProtocolError) -> ClientError {
        ClientError::Protocol {
            broker: self.shared.broker.clone(),
            source,
        }
    }

    fn note_throttle(&self, ms: i32) {
        if ms > 0 {
            debug!(broker = %self.shared.broker, throttle_ms = ms, "broker throttled us");
            let until = Instant::now() + Duration::from_millis(ms as u64);
            let mut st = self.shared.lock();
            if st.throttle_until.is_none_or(|t| t < until) {
                st.throttle_until = Some(until);
            }
        }
    }

    /// Registers a waiter, hands the encoded frame to the writer, and waits.
    async fn roundtrip<F>(&self, api_key: i16, encode: F) -> Result<Bytes>
    where
        F: FnOnce(i32) -> std::result::Result<Vec<Bytes>, crate::protocol::ProtocolError>,
    {
        let rx = self.submit(encode).await?;
        self.wait(api_key, rx).await
    }

    /// Queues an encoded request on the connection. Requests submitted one after
    /// another reach the broker in that order (the writer task takes them from one
    /// queue), which is what keeps idempotent sequence numbers in order.
    async fn submit<F>(&self, encode: F) -> Result<oneshot::Receiver<Result<Bytes>>>
    where
        F: FnOnce(i32) -> std::result::Result<Vec<Bytes>, crate::protocol::ProtocolError>,
    {
        let throttle = self.shared.lock().throttle_until;
        if let Some(until) = throttle {
            tokio::time::sleep_until(until).await;
        }
        let _open = self.gate.read().await;
        self.submit_now(encode).await
    }

    /// [`submit`](Self::submit) without throttling or the write gate.
    async fn submit_now<F>(&self, encode: F) -> Result<oneshot::Receiver<Result<Bytes>>>
    where
        F: FnOnce(i32) -> std::result::Result<Vec<Bytes>, crate::protocol::ProtocolError>,
    {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) & i32::MAX;
        let chunks = encode(id).map_err(|source| self.protocol_error(source))?;
        let (wtx, wrx) = oneshot::channel();
        {
            let mut st = self.shared.lock();
            if let Some(err) = &st.failed {
                return Err(err.clone());
            }
            st.pending.insert(id, wtx);
        }
        if self.tx.send(chunks).await.is_err() {
            let err = self.failure().unwrap_or(ClientError::Closed {
                broker: self.shared.broker.clone(),
            });
            self.shared.lock().pending.remove(&id);
            return Err(err);
        }
        Ok(wrx)
    }

    /// Waits for the response of a submitted request, within the request timeout.
    async fn wait(&self, api_key: i16, wrx: oneshot::Receiver<Result<Bytes>>) -> Result<Bytes> {
        match tokio::time::timeout(self.config.request_timeout, wrx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(self.failure().unwrap_or(ClientError::Closed {
                broker: self.shared.broker.clone(),
            })),
            Err(_) => {
                let err = ClientError::Timeout {
                    broker: self.shared.broker.clone(),
                    api: api_name(api_key),
                    timeout_ms: self.config.request_timeout.as_millis() as u64,
                };
                warn!(broker = %self.shared.broker, api = api_name(api_key), "request timed out; closing the connection");
                self.shared.fail(err.clone());
                Err(err)
            }
        }
    }

    /// Queues a Produce request (zero-copy encoder) and returns a handle to await
    /// its response. Call in the order the batches must reach the broker.
    pub async fn submit_produce(
        self: &Arc<Self>,
        version: i16,
        transactional_id: Option<&str>,
        acks: i16,
        timeout_ms: i32,
        topics: &[ProduceTopic],
    ) -> Result<PendingProduce> {
        if acks == 0 {
            return Err(ClientError::Invalid {
                what: "acks",
                reason: "acks=0 gets no response and can lose data; use -1 (all)".into(),
            });
        }
        let rx = self
            .submit(|id| {
                encode_produce(
                    id,
                    &self.config.client_id,
                    version,
                    transactional_id,
                    acks,
                    timeout_ms,
                    topics,
                )
                .map(|f| f.chunks)
            })
            .await?;
        Ok(PendingProduce {
            conn: self.clone(),
            rx,
            version,
        })
    }
}

/// A submitted Produce request; [`PendingProduce::response`] waits for its answer.
#[derive(Debug)]
pub struct PendingProduce {
    conn: Arc<Connection>,
    rx: oneshot::Receiver<Result<Bytes>>,
    version: i16,
}

impl PendingProduce {
    /// Waits for and decodes the Produce response.
    pub async fn response(self) -> Result<ProduceResponse> {
        let frame = self.conn.wait(ProduceRequest::KEY_I16, self.rx).await?;
        let (_, resp) = decode_response::<ProduceRequest>(frame, self.version)
            .map_err(|source| self.conn.protocol_error(source))?;
        self.conn.note_throttle(resp.throttle_time_ms);
        Ok(resp)
    }
}

/// Convenience: the API key of a request type as `i16`.
trait KeyI16 {
    const KEY_I16: i16;
}
impl<R: Request> KeyI16 for R {
    const KEY_I16: i16 = R::KEY;
}

/// Bytes the frame at the start of `buf` still lacks (0 before its size is known).
fn missing_bytes(buf: &[u8]) -> usize {
    match buf.get(..4) {
        Some(b) => (i32::from_be_bytes([b[0], b[1], b[2], b[3]]).max(0) as usize + 4).saturating_sub(buf.len()),
        None => 0,
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut rd: R,
    shared: Arc<Shared>,
    mut decoder: FrameDecoder,
    mut lowat: Option<LowWatermark>,
) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some(frame)) => {
                let id = match response_correlation_id(&frame) {
                    Ok(id) => id,
                    Err(source) => {
                        shared.fail(ClientError::Protocol {
                            broker: shared.broker.clone(),
                            source,
                        });
                        return;
                    }
                };
                let waiter = shared.lock().pending.remove(&id);
                match waiter {
                    Some(w) => {
                        let _ = w.send(Ok(frame));
                    }
                    None => {
                        debug!(broker = %shared.broker, correlation_id = id, "response nobody waits for")
                    }
                }
            }
            Ok(None) => {
                // A frame in progress already has its exact room (see FrameDecoder);
                // only a full buffer between frames gets a fresh read area.
                if buf.capacity() == buf.len() {
                    buf.reserve(64 * 1024);
                }
                if let Some(w) = lowat.as_mut() {
                    w.expect(missing_bytes(&buf));
                }
                match rd.read_buf(&mut buf).await {
                    Ok(0) => {
                        shared.fail(closed(&shared.broker, &buf));
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        // With TLS 1.3 the broker checks a client certificate after the
                        // handshake: its refusal arrives here, as an alert.
                        shared.fail(match super::tls::alert_reason(&e) {
                            Some(reason) => ClientError::Tls {
                                broker: shared.broker.clone(),
                                reason,
                            },
                            None => ClientError::Io {
                                broker: shared.broker.clone(),
                                kind: e.kind(),
                                reason: e.to_string(),
                            },
                        });
                        return;
                    }
                }
            }
            Err(source) => {
                shared.fail(ClientError::Protocol {
                    broker: shared.broker.clone(),
                    source,
                });
                return;
            }
        }
    }
}

/// The error for a connection the broker closed: plain when it closed between
/// responses, with how much of the frame had arrived when it cut one short.
fn closed(broker: &str, buf: &[u8]) -> ClientError {
    let broker = broker.to_string();
    let reason = match buf.len() {
        0 => return ClientError::Closed { broker },
        n @ 1..=3 => format!("the broker closed the connection after {n} of the 4 bytes of a response's size prefix"),
        n => {
            let size = i32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
            format!(
                "the broker closed the connection in the middle of a response: {} of its {size} bytes arrived",
                n - 4
            )
        }
    };
    ClientError::Io {
        broker,
        kind: std::io::ErrorKind::UnexpectedEof,
        reason,
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(mut wr: W, mut rx: mpsc::Receiver<Vec<Bytes>>, shared: Arc<Shared>) {
    while let Some(mut chunks) = rx.recv().await {
        // Coalesce requests already queued into one vectored write.
        while chunks.len() < 256 {
            match rx.try_recv() {
                Ok(more) => chunks.extend(more),
                Err(_) => break,
            }
        }
        if let Err(e) = write_chunks(&mut wr, &chunks).await {
            shared.fail(ClientError::Io {
                broker: shared.broker.clone(),
                kind: e.kind(),
                reason: e.to_string(),
            });
            return;
        }
    }
    let _ = wr.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiKey, MetadataRequest, MetadataResponse};
    use tokio::io::DuplexStream;

    use crate::client::fake::{api, connected, read_request, response};

    /// A fake broker end: answers the ApiVersions handshake, returns the stream.
    async fn fake_broker(config: ConnectionConfig) -> (Connection, DuplexStream) {
        connected(vec![api(ApiKey::Metadata, 12)], config).await
    }

    #[tokio::test]
    async fn responses_out_of_order_reach_their_callers() {
        let (conn, mut server) = fake_broker(ConnectionConfig::default()).await;
        let conn = Arc::new(conn);
        let mut calls = Vec::new();
        for _ in 0..3 {
            let c = conn.clone();
            calls.push(tokio::spawn(async move {
                c.request(&MetadataRequest::default()).await.unwrap()
            }));
        }
        let mut reqs = Vec::new();
        for _ in 0..3 {
            reqs.push(read_request(&mut server).await.unwrap().0);
        }
        for h in reqs.iter().rev() {
            let body = MetadataResponse::default()
                .with_cluster_id(Some(StrBytes::from_string(format!("c{}", h.correlation_id))));
            server
                .write_all(&response(h.correlation_id, h.request_api_version, &body))
                .await
                .unwrap();
        }
        let mut seen: Vec<String> = Vec::new();
        for c in calls {
            seen.push(c.await.unwrap().cluster_id.unwrap().to_string());
        }
        let mut expected: Vec<String> = reqs.iter().map(|h| format!("c{}", h.correlation_id)).collect();
        assert_eq!(seen, expected, "each caller got the response to its own request");
        expected.dedup();
        assert_eq!(expected.len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn timeout_closes_the_connection_and_fails_every_waiter() {
        let cfg = ConnectionConfig {
            request_timeout: Duration::from_millis(500),
            ..Default::default()
        };
        let (conn, _server) = fake_broker(cfg).await;
        let conn = Arc::new(conn);
        let c2 = conn.clone();
        let other = tokio::spawn(async move { c2.request(&MetadataRequest::default()).await });
        let err = conn.request(&MetadataRequest::default()).await.unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Timeout {
                    api: "Metadata",
                    timeout_ms: 500,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(other.await.unwrap().is_err());
        assert!(conn.is_failed());
        let again = conn.request(&MetadataRequest::default()).await.unwrap_err();
        assert!(
            matches!(again, ClientError::Timeout { .. }),
            "later requests fail at once: {again:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn throttle_time_delays_the_next_request() {
        let (conn, mut server) = fake_broker(ConnectionConfig::default()).await;
        let conn = Arc::new(conn);
        let c2 = conn.clone();
        let first = tokio::spawn(async move { c2.request(&MetadataRequest::default()).await });
        let (h, _) = read_request(&mut server).await.unwrap();
        let throttled = MetadataResponse::default().with_throttle_time_ms(700);
        server
            .write_all(&response(h.correlation_id, h.request_api_version, &throttled))
            .await
            .unwrap();
        first.await.unwrap().unwrap();
        let start = Instant::now();
        let c3 = conn.clone();
        let second = tokio::spawn(async move { c3.request(&MetadataRequest::default()).await });
        let (h, _) = read_request(&mut server).await.unwrap();
        assert!(
            start.elapsed() >= Duration::from_millis(700),
            "sent after {:?}",
            start.elapsed()
        );
        server
            .write_all(&response(
                h.correlation_id,
                h.request_api_version,
                &MetadataResponse::default(),
            ))
            .await
            .unwrap();
        second.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn oversized_frame_fails_in_flight_requests_without_allocating() {
        let cfg = ConnectionConfig {
            max_frame_bytes: 1024,
            ..Default::default()
        };
        let (conn, mut server) = fake_broker(cfg).await;
        let conn = Arc::new(conn);
        let c2 = conn.clone();
        let call = tokio::spawn(async move { c2.request(&MetadataRequest::default()).await });
        let _ = read_request(&mut server).await.unwrap();
        server.write_all(&1_000_000_000i32.to_be_bytes()).await.unwrap();
        let err = call.await.unwrap().unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Protocol {
                    source: crate::protocol::ProtocolError::FrameTooLarge {
                        limit: 1024,
                        actual: 1_000_000_000
                    },
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("fake:9092"), "{err}");
    }

    #[tokio::test]
    async fn broker_closing_fails_in_flight_requests() {
        let (conn, mut server) = fake_broker(ConnectionConfig::default()).await;
        let conn = Arc::new(conn);
        let c2 = conn.clone();
        let call = tokio::spawn(async move { c2.request(&MetadataRequest::default()).await });
        let (h, _) = read_request(&mut server).await.unwrap();
        let full = response(h.correlation_id, h.request_api_version, &MetadataResponse::default());
        server.write_all(&full[..full.len() / 2]).await.unwrap(); // half a response
        drop(server);
        let err = call.await.unwrap().unwrap_err();
        assert!(
            matches!(
                err,
                ClientError::Io {
                    kind: std::io::ErrorKind::UnexpectedEof,
                    ..
                }
            ),
            "{err:?}"
        );
        let expected = format!(
            "connection to broker fake:9092 failed: the broker closed the connection in the middle of a response: {} of its {} bytes arrived",
            full.len() / 2 - 4,
            full.len() - 4
        );
        assert_eq!(err.to_string(), expected);
    }
}

//! An in-memory Kafka broker for unit tests (compiled only with `cfg(test)`).
//!
//! Two levels:
//! - frame helpers and a scripted connection ([`read_request`], [`response`],
//!   [`connected`]) for tests that play the broker's side request by request
//!   (the connection and SASL re-authentication tests);
//! - [`FakeCluster`], one broker on a loopback port that answers ApiVersions,
//!   Metadata, InitProducerId and Produce the way a real broker does for an
//!   idempotent producer (sequence numbers checked per producer id and
//!   partition, duplicates answered as such), with errors injected per
//!   partition. It lets the producer be tested through a real [`super::Client`]
//!   without a JVM. The real-broker tests (`protocol-tests/`) stay the acceptance tests.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, BrokerId, InitProducerIdResponse, MetadataRequest, MetadataResponse, ProduceRequest,
    ProduceResponse, ProducerId, RequestHeader, ResponseHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::TcpListener;
use uuid::Uuid;

use super::{code, Connection, ConnectionConfig};
use crate::sync::lock;

/// Reads one request frame; returns (header, body bytes).
pub(crate) async fn read_request<S: AsyncRead + Unpin>(s: &mut S) -> Option<(RequestHeader, Bytes)> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len).await.ok()?;
    let mut buf = vec![0u8; i32::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).await.ok()?;
    let mut b = Bytes::from(buf);
    let key = i16::from_be_bytes([b[0], b[1]]);
    let version = i16::from_be_bytes([b[2], b[3]]);
    let hv = ApiKey::try_from(key).ok()?.request_header_version(version);
    let h = RequestHeader::decode(&mut b, hv).ok()?;
    Some((h, b))
}

/// One response frame, size prefix included.
pub(crate) fn response<T: Encodable + HeaderVersion>(corr: i32, version: i16, body: &T) -> Vec<u8> {
    let mut b = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(corr)
        .encode(&mut b, T::header_version(version))
        .expect("response header encodes");
    body.encode(&mut b, version).expect("response body encodes");
    let mut out = (b.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&b);
    out
}

/// An ApiVersions entry `0..=max` for `key`.
pub(crate) fn api(key: ApiKey, max: i16) -> ApiVersion {
    ApiVersion::default()
        .with_api_key(key as i16)
        .with_min_version(0)
        .with_max_version(max)
}

/// A connection whose broker side the test plays: the ApiVersions handshake is
/// answered with `apis`; returns the connection and the broker's end.
pub(crate) async fn connected(apis: Vec<ApiVersion>, config: ConnectionConfig) -> (Connection, DuplexStream) {
    let (client, mut server) = tokio::io::duplex(1 << 20);
    let handshake = tokio::spawn(Connection::handshake(client, "fake:9092", config));
    let (h, _) = read_request(&mut server).await.expect("an ApiVersions request");
    let resp = ApiVersionsResponse::default().with_api_keys(apis);
    server
        .write_all(&response(h.correlation_id, h.request_api_version, &resp))
        .await
        .expect("the client reads the handshake answer");
    (handshake.await.expect("handshake task").expect("handshake"), server)
}

/// One batch the fake broker wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Written {
    /// Offset the broker assigned to its first record.
    pub(crate) base_offset: i64,
    /// Records in it.
    pub(crate) records: i32,
    /// Producer id and sequence of its header.
    pub(crate) producer_id: i64,
    pub(crate) base_sequence: i32,
    /// Its records section, as sent.
    pub(crate) body: Bytes,
}

#[derive(Debug, Default)]
struct Log {
    written: Vec<Written>,
    end: i64,
    /// Next expected sequence per producer id.
    next_seq: HashMap<i64, i32>,
}

#[derive(Debug, Default)]
struct State {
    topics: BTreeMap<String, (Uuid, Vec<Log>)>,
    next_producer_id: i64,
    inject: HashMap<(String, i32), VecDeque<i16>>,
    produce_requests: u64,
}

/// A one-broker in-memory cluster on a loopback port (see the module docs).
#[derive(Debug)]
pub(crate) struct FakeCluster {
    /// `127.0.0.1:port` to bootstrap from.
    pub(crate) addr: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeCluster {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeCluster {
    /// A cluster holding `topics` (name, partition count).
    pub(crate) async fn start(topics: &[(&str, i32)]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let port = listener.local_addr().expect("bound").port();
        let mut state = State {
            next_producer_id: 1000,
            ..State::default()
        };
        for (i, (t, n)) in topics.iter().enumerate() {
            let logs = (0..*n).map(|_| Log::default()).collect();
            state
                .topics
                .insert(t.to_string(), (Uuid::from_u128(i as u128 + 1), logs));
        }
        let state = Arc::new(Mutex::new(state));
        let s = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(serve(sock, s.clone(), port));
            }
        });
        Self {
            addr: format!("127.0.0.1:{port}"),
            state,
            task,
        }
    }

    /// The next Produce of `topic`'s `partition` is answered with `error` (and not written).
    pub(crate) fn inject(&self, topic: &str, partition: i32, error: i16) {
        lock(&self.state)
            .inject
            .entry((topic.to_string(), partition))
            .or_default()
            .push_back(error);
    }

    /// Every batch written to `topic`'s `partition`, in log order.
    pub(crate) fn written(&self, topic: &str, partition: i32) -> Vec<Written> {
        lock(&self.state).topics[topic].1[partition as usize].written.clone()
    }

    /// Producer ids handed out so far.
    pub(crate) fn producer_ids(&self) -> i64 {
        lock(&self.state).next_producer_id - 1000
    }

    /// Produce requests answered so far.
    pub(crate) fn produce_requests(&self) -> u64 {
        lock(&self.state).produce_requests
    }
}

async fn serve(mut sock: tokio::net::TcpStream, state: Arc<Mutex<State>>, port: u16) {
    while let Some((h, mut body)) = read_request(&mut sock).await {
        let (corr, v) = (h.correlation_id, h.request_api_version);
        let frame = match ApiKey::try_from(h.request_api_key) {
            Ok(ApiKey::ApiVersions) => response(
                corr,
                v,
                &ApiVersionsResponse::default().with_api_keys(vec![
                    api(ApiKey::ApiVersions, 3),
                    api(ApiKey::Metadata, 12),
                    api(ApiKey::Produce, 9),
                    api(ApiKey::InitProducerId, 4),
                ]),
            ),
            Ok(ApiKey::Metadata) => {
                let req = MetadataRequest::decode(&mut body, v).ok();
                response(corr, v, &metadata(&lock(&state), port, req))
            }
            Ok(ApiKey::InitProducerId) => {
                let mut s = lock(&state);
                let pid = s.next_producer_id;
                s.next_producer_id += 1;
                response(
                    corr,
                    v,
                    &InitProducerIdResponse::default()
                        .with_producer_id(ProducerId(pid))
                        .with_producer_epoch(0),
                )
            }
            Ok(ApiKey::Produce) => match ProduceRequest::decode(&mut body, v) {
                Ok(req) => response(corr, v, &produce(&mut lock(&state), req)),
                Err(_) => return,
            },
            _ => return,
        };
        if sock.write_all(&frame).await.is_err() {
            return;
        }
    }
}

fn metadata(s: &State, port: u16, req: Option<MetadataRequest>) -> MetadataResponse {
    let wanted: Option<Vec<String>> = req.and_then(|r| {
        r.topics
            .map(|ts| ts.into_iter().filter_map(|t| t.name.map(|n| n.0.to_string())).collect())
    });
    let topics = s
        .topics
        .iter()
        .filter(|(name, _)| wanted.as_ref().is_none_or(|w| w.contains(name)))
        .map(|(name, (id, logs))| {
            MetadataResponseTopic::default()
                .with_name(Some(TopicName(StrBytes::from_string(name.clone()))))
                .with_topic_id(*id)
                .with_partitions(
                    (0..logs.len() as i32)
                        .map(|p| {
                            MetadataResponsePartition::default()
                                .with_partition_index(p)
                                .with_leader_id(BrokerId(1))
                                .with_replica_nodes(vec![BrokerId(1)])
                                .with_isr_nodes(vec![BrokerId(1)])
                        })
                        .collect(),
                )
        })
        .collect();
    MetadataResponse::default()
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(1))
            .with_host(StrBytes::from_static_str("127.0.0.1"))
            .with_port(port as i32)])
        .with_cluster_id(Some(StrBytes::from_static_str("fake-cluster")))
        .with_controller_id(BrokerId(1))
        .with_topics(topics)
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// Appends each partition's batch as a broker does for an idempotent producer.
fn produce(s: &mut State, req: ProduceRequest) -> ProduceResponse {
    s.produce_requests += 1;
    let mut out = Vec::new();
    for t in req.topic_data {
        let name = t.name.0.to_string();
        let mut parts = Vec::new();
        for p in t.partition_data {
            let mut answer = |error: i16, base: i64| {
                parts.push(
                    PartitionProduceResponse::default()
                        .with_index(p.index)
                        .with_error_code(error)
                        .with_base_offset(base),
                )
            };
            if let Some(e) = s.inject.get_mut(&(name.clone(), p.index)).and_then(VecDeque::pop_front) {
                answer(e, -1);
                continue;
            }
            let Some(log) = s
                .topics
                .get_mut(&name)
                .and_then(|(_, logs)| logs.get_mut(p.index as usize))
            else {
                answer(code::UNKNOWN_TOPIC_OR_PARTITION, -1);
                continue;
            };
            let batch = p.records.unwrap_or_default();
            if batch.len() < 61 {
                answer(code::UNKNOWN_SERVER_ERROR, -1);
                continue;
            }
            let (pid, seq, records) = (i64_at(&batch, 43), i32_at(&batch, 53), i32_at(&batch, 57));
            let expected = *log.next_seq.get(&pid).unwrap_or(&0);
            if pid >= 0 && seq != expected {
                // A batch the broker has (a resend) is a duplicate; one from the
                // future is out of order; an unknown producer id with a
                // non-zero first sequence would be UNKNOWN_PRODUCER_ID on old brokers.
                let duplicate = log
                    .written
                    .iter()
                    .any(|w| w.producer_id == pid && w.base_sequence == seq);
                answer(
                    if duplicate {
                        code::DUPLICATE_SEQUENCE_NUMBER
                    } else {
                        code::OUT_OF_ORDER_SEQUENCE_NUMBER
                    },
                    -1,
                );
                continue;
            }
            if pid >= 0 {
                log.next_seq.insert(pid, seq.wrapping_add(records) & i32::MAX);
            }
            let base = log.end;
            log.end += records as i64;
            log.written.push(Written {
                base_offset: base,
                records,
                producer_id: pid,
                base_sequence: seq,
                body: batch.slice(61..),
            });
            answer(code::NONE, base);
        }
        out.push(
            TopicProduceResponse::default()
                .with_name(TopicName(StrBytes::from_string(name)))
                .with_partition_responses(parts),
        );
    }
    ProduceResponse::default().with_responses(out)
}

//! Protocol and client tests against real Apache Kafka brokers (4.x and 3.9.x),
//! started by the harness from jars resolved from Maven Central.

mod harness;

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use harness::{unique_topic, KafkaCluster};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, MetadataRequest, ProduceRequest, TopicName};
use kafka_protocol::protocol::{Message, StrBytes};
use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use strait::batch::split_batches;
use strait::client::{Client, ClientConfig, ClientError, Connection, NewTopic};
use strait::protocol::{ProducePartition, ProduceTopic, ProtocolError};
use uuid::Uuid;

/// Runs an async test body against both the Kafka 4.x and the 3.9.x cluster.
macro_rules! on_both_versions {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn kafka_4() {
                super::$name(super::harness::kafka4()).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn kafka_3_9() {
                super::$name(super::harness::kafka3()).await
            }
        }
    )*};
}

on_both_versions!(
    negotiates_versions,
    metadata_and_topic_admin,
    raw_batches_of_every_codec_round_trip,
    oversized_response_is_a_clear_error,
    pipelines_200_requests,
    group_offsets_and_producer_ids,
);

async fn client(cluster: &KafkaCluster) -> Client {
    Client::connect(ClientConfig::new(&cluster.bootstrap))
        .await
        .expect("connect")
}

/// Creates a topic and waits until its leader serves Fetch for every partition
/// (metadata names a leader a moment before the leader accepts requests).
async fn create_topic(c: &Client, name: &str, partitions: i32) {
    c.create_topics(
        &[NewTopic {
            name: name.into(),
            partitions,
            replication_factor: 1,
            configs: vec![],
        }],
        30_000,
        false,
    )
    .await
    .expect("create topic");
    let id = c.refresh_metadata(Some(&[name.to_string()])).await.unwrap().topics[name].id;
    for p in 0..partitions {
        c.retrying(|| async {
            let (leader, _) = c.leader(name, p).await?;
            let conn = c.broker(leader).await?;
            let resp = fetch(&conn, name, id, p, 0, 0).await?;
            match resp.responses[0].partitions[0].error_code {
                0 => Ok(()),
                code => Err(ClientError::kafka("Fetch", "leader", name, code, None)),
            }
        })
        .await
        .expect("partition served");
    }
}

async fn negotiates_versions(cluster: &KafkaCluster) {
    let c = client(cluster).await;
    let conn = c.any_broker().await.unwrap();
    let t = conn.versions();
    for (key, ours) in [
        (ApiKey::Produce as i16, ProduceRequest::VERSIONS),
        (ApiKey::Fetch as i16, FetchRequest::VERSIONS),
        (ApiKey::Metadata as i16, MetadataRequest::VERSIONS),
    ] {
        let (lo, hi) = t.broker_range(key).expect("broker announces the API");
        let picked = match key {
            0 => conn.version_of::<ProduceRequest>().unwrap(),
            1 => conn.version_of::<FetchRequest>().unwrap(),
            _ => conn.version_of::<MetadataRequest>().unwrap(),
        };
        assert_eq!(
            picked,
            hi.min(ours.max),
            "api {key}: broker {lo}..={hi}, ours {:?}",
            ours
        );
        assert!(picked >= lo.max(ours.min));
    }
    // Kafka 3.9 and 4.x both take flexible Produce (v9+) and zstd (v7+).
    assert!(conn.version_of::<ProduceRequest>().unwrap() >= 9);
    // OffsetCommit must be negotiated against the request type, whose maximum is
    // one below what valid_versions() claims.
    let oc = conn
        .version_of::<kafka_protocol::messages::OffsetCommitRequest>()
        .unwrap();
    assert!(oc <= kafka_protocol::messages::OffsetCommitRequest::VERSIONS.max);
    assert!(ApiKey::OffsetCommit.valid_versions().max > kafka_protocol::messages::OffsetCommitRequest::VERSIONS.max);
}

async fn metadata_and_topic_admin(cluster: &KafkaCluster) {
    let c = client(cluster).await;
    let topic = unique_topic("admin");
    c.create_topics(
        &[NewTopic {
            name: topic.clone(),
            partitions: 3,
            replication_factor: 1,
            configs: vec![
                ("cleanup.policy".into(), "compact".into()),
                ("retention.ms".into(), "123456789".into()),
            ],
        }],
        30_000,
        false,
    )
    .await
    .unwrap();
    // Metadata: the broker we bootstrapped from, the topic with three led partitions.
    let md = c.refresh_metadata(None).await.unwrap();
    assert_eq!(md.brokers.len(), cluster.nodes);
    let port: i32 = cluster.bootstrap.rsplit(':').next().unwrap().parse().unwrap();
    assert!(md.brokers.values().any(|b| b.port == port));
    let t = &md.topics[&topic];
    assert_eq!(t.error_code, 0);
    assert_ne!(t.id, Uuid::nil());
    assert_eq!(
        t.partitions.iter().map(|p| p.partition).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert!(t.partitions.iter().all(|p| p.leader >= 0));
    assert!(!t.is_internal);
    // Creating it again is TOPIC_ALREADY_EXISTS, named in the error...
    let err = c
        .create_topics(
            &[NewTopic {
                name: topic.clone(),
                partitions: 1,
                replication_factor: 1,
                configs: vec![],
            }],
            30_000,
            false,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(36), "{err}");
    assert!(err.to_string().contains(&topic), "{err}");
    // ...and fine with if_not_exists.
    c.create_topics(
        &[NewTopic {
            name: topic.clone(),
            partitions: 1,
            replication_factor: 1,
            configs: vec![],
        }],
        30_000,
        true,
    )
    .await
    .unwrap();
    // Configs: explicit ones are reported as such.
    let cfg = &c.describe_topic_configs(std::slice::from_ref(&topic)).await.unwrap()[&topic];
    let get = |name: &str| cfg.iter().find(|e| e.name == name).cloned().unwrap();
    assert_eq!(get("cleanup.policy").value.as_deref(), Some("compact"));
    assert!(get("cleanup.policy").is_explicit());
    assert!(!get("segment.bytes").is_explicit());
    c.alter_topic_configs(
        &topic,
        &[
            ("retention.ms".into(), Some("987654321".into())),
            ("cleanup.policy".into(), None),
        ],
    )
    .await
    .unwrap();
    // The change reaches the broker's metadata a moment after the controller accepted it.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let cfg = &c.describe_topic_configs(std::slice::from_ref(&topic)).await.unwrap()[&topic];
        let retention = cfg.iter().find(|e| e.name == "retention.ms").unwrap().value.clone();
        let policy_explicit = cfg.iter().find(|e| e.name == "cleanup.policy").unwrap().is_explicit();
        if retention.as_deref() == Some("987654321") && !policy_explicit {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "config change not visible: retention.ms={retention:?}, cleanup.policy explicit={policy_explicit}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Partitions: 3 -> 5.
    c.create_partitions(&topic, 5, 30_000).await.unwrap();
    let md = c.refresh_metadata(Some(std::slice::from_ref(&topic))).await.unwrap();
    assert_eq!(md.topics[&topic].partitions.len(), 5);
    // Unknown topic: a clear per-topic error from the leader lookup.
    let err = c.leader(&unique_topic("missing"), 0).await.unwrap_err();
    assert_eq!(err.code(), Some(3), "{err}");
}

fn records(n: usize, tag: &str) -> Vec<Record> {
    (0..n)
        .map(|i| {
            let mut headers = indexmap::IndexMap::new();
            headers.insert(
                StrBytes::from_string(format!("h{i}")),
                Some(Bytes::from(format!("hv{i}"))),
            );
            Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: i as i32,
                timestamp: 1_700_000_000_000 + i as i64,
                key: if i % 3 == 0 {
                    None
                } else {
                    Some(Bytes::from(format!("{tag}-key-{i}")))
                },
                value: Some(Bytes::from(format!("{tag}-value-{i}-{}", "x".repeat(i * 7)))),
                headers,
            }
        })
        .collect()
}

/// One v2 batch of `n` records in `codec`, built with the crate's encoder.
pub fn encode_batch(n: usize, codec: Compression, tag: &str) -> Bytes {
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records(n, tag),
        &RecordEncodeOptions {
            version: 2,
            compression: codec,
        },
    )
    .unwrap();
    let b = buf.freeze();
    let (batches, rest) = split_batches(&b).unwrap();
    assert_eq!((batches.len(), rest), (1, 0), "the encoder made exactly one batch");
    b
}

const CODECS: [(Compression, &str); 5] = [
    (Compression::None, "none"),
    (Compression::Gzip, "gzip"),
    (Compression::Snappy, "snappy"),
    (Compression::Lz4, "lz4"),
    (Compression::Zstd, "zstd"),
];

/// Produces one batch per call through the zero-copy path, acks=all; returns its base offset.
async fn produce_batch(
    conn: &Arc<Connection>,
    topic: &str,
    id: Uuid,
    partition: i32,
    batch: Bytes,
) -> Result<i64, ClientError> {
    let version = conn.version_of::<ProduceRequest>()?;
    let resp = conn
        .produce(
            version,
            None,
            -1,
            30_000,
            &[ProduceTopic {
                name: topic.into(),
                topic_id: id,
                partitions: vec![ProducePartition::whole(partition, batch)],
            }],
        )
        .await?;
    let p = &resp.responses[0].partition_responses[0];
    if p.error_code != 0 {
        return Err(ClientError::kafka(
            "Produce",
            conn.broker(),
            topic,
            p.error_code,
            p.error_message.as_deref(),
        ));
    }
    Ok(p.base_offset)
}

/// One Fetch of `topic`/`partition` from `offset` (by name below v13, by id from v13).
pub async fn fetch(
    conn: &Connection,
    topic: &str,
    id: Uuid,
    partition: i32,
    offset: i64,
    max_wait_ms: i32,
) -> Result<FetchResponse, ClientError> {
    let version = conn.version_of::<FetchRequest>()?;
    let req = strait::client::fetch::single_fetch_request(topic, id, partition, offset, max_wait_ms, 10 * 1024 * 1024);
    conn.request_at(version, &req).await
}

fn fetched_records(resp: &FetchResponse) -> Bytes {
    let p = &resp.responses[0].partitions[0];
    assert_eq!(p.error_code, 0, "fetch error {}", p.error_code);
    p.records.clone().unwrap_or_default()
}

async fn raw_batches_of_every_codec_round_trip(cluster: &KafkaCluster) {
    let c = client(cluster).await;
    let topic = unique_topic("codecs");
    create_topic(&c, &topic, 1).await;
    let md = c.refresh_metadata(Some(std::slice::from_ref(&topic))).await.unwrap();
    let id = md.topics[&topic].id;
    let (leader, _) = c.leader(&topic, 0).await.unwrap();
    let conn = c.broker(leader).await.unwrap();
    let mut sent = Vec::new();
    let mut next = 0i64;
    for (codec, name) in CODECS {
        let batch = encode_batch(20, codec, name);
        let base = produce_batch(&conn, &topic, id, 0, batch.clone()).await.unwrap();
        assert_eq!(base, next, "{name} batch landed at the next offset");
        next += 20;
        sent.push(batch);
    }
    // Fetch everything back and compare byte for byte, except baseOffset (0..8,
    // assigned by the broker) and partitionLeaderEpoch (12..16, stamped by it).
    let mut got = Vec::new();
    let mut offset = 0;
    while got.len() < sent.len() {
        let blob = fetched_records(&fetch(&conn, &topic, id, 0, offset, 500).await.unwrap());
        let (batches, _) = split_batches(&blob).unwrap();
        assert!(!batches.is_empty(), "fetch from {offset} returned no batch");
        offset = batches.last().unwrap().last_offset() + 1;
        got.extend(batches);
    }
    assert_eq!(got.len(), sent.len());
    for (i, (s, g)) in sent.iter().zip(&got).enumerate() {
        let name = CODECS[i].1;
        assert_eq!(g.codec(), CODECS[i].0 as u8, "{name}: codec kept");
        assert_eq!(g.base_offset(), i as i64 * 20);
        assert_eq!(s.len(), g.len(), "{name}: same length");
        assert_eq!(&s[8..12], &g.bytes()[8..12], "{name}: length field");
        assert_eq!(
            &s[16..],
            &g.bytes()[16..],
            "{name}: magic, crc, attributes, records identical"
        );
    }
    // An independent client (librdkafka's kcat) reads the same records.
    let out = std::process::Command::new("kcat")
        .args([
            "-C",
            "-b",
            &cluster.bootstrap,
            "-t",
            &topic,
            "-p",
            "0",
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%o %k %s\\n",
        ])
        .output()
        .expect("kcat is installed (.ci/run installs it)");
    assert!(out.status.success(), "kcat: {}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect();
    assert_eq!(lines.len(), 100, "kcat read {} records", lines.len());
    for (i, line) in lines.iter().enumerate() {
        let (codec, n) = (CODECS[i / 20].1, i % 20);
        let key = if n % 3 == 0 {
            String::new()
        } else {
            format!("{codec}-key-{n}")
        };
        assert_eq!(line, &format!("{i} {key} {codec}-value-{n}-{}", "x".repeat(n * 7)));
    }
}

async fn oversized_response_is_a_clear_error(cluster: &KafkaCluster) {
    let c = client(cluster).await;
    let topic = unique_topic("bigframe");
    create_topic(&c, &topic, 1).await;
    let id = c
        .refresh_metadata(Some(std::slice::from_ref(&topic)))
        .await
        .unwrap()
        .topics[&topic]
        .id;
    let (leader, _) = c.leader(&topic, 0).await.unwrap();
    produce_batch(
        &c.broker(leader).await.unwrap(),
        &topic,
        id,
        0,
        encode_batch(200, Compression::None, "big"),
    )
    .await
    .unwrap();
    // A second client whose frame cap is far below that fetch response.
    let mut cfg = ClientConfig::new(&cluster.bootstrap);
    cfg.connection.max_frame_bytes = 4096;
    let small = Client::connect(cfg).await.unwrap();
    let conn = small.broker(leader).await.unwrap();
    let err = fetch(&conn, &topic, id, 0, 0, 100).await.unwrap_err();
    match &err {
        ClientError::Protocol {
            source: ProtocolError::FrameTooLarge { limit: 4096, actual },
            broker,
        } => {
            assert!(*actual > 4096);
            assert!(!broker.is_empty());
        }
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("exceeds the limit of 4096 bytes") && msg.contains("max_frame_bytes"),
        "{msg}"
    );
    assert!(
        conn.is_failed(),
        "the stream cannot be resynchronised after an unread frame"
    );
    // The pool opens a fresh connection; small responses still work.
    let again = small.broker(leader).await.unwrap();
    assert!(!Arc::ptr_eq(&conn, &again));
    again
        .request(&MetadataRequest::default().with_topics(Some(vec![])))
        .await
        .unwrap();
}

async fn pipelines_200_requests(cluster: &KafkaCluster) {
    let c = Arc::new(client(cluster).await);
    // Ten topics with distinct partition counts, so every answer says which question it answers.
    let topics: Vec<(String, i32)> = (1..=10).map(|i| (unique_topic(&format!("pipe{i}")), i)).collect();
    c.create_topics(
        &topics
            .iter()
            .map(|(n, p)| NewTopic {
                name: n.clone(),
                partitions: *p,
                replication_factor: 1,
                configs: vec![],
            })
            .collect::<Vec<_>>(),
        30_000,
        false,
    )
    .await
    .unwrap();
    let conn = c.any_broker().await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..200 {
        let conn = conn.clone();
        let (name, parts) = topics[i % topics.len()].clone();
        tasks.push(tokio::spawn(async move {
            let req = MetadataRequest::default().with_topics(Some(vec![
                kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_string(name.clone())))),
            ]));
            let resp = conn.request(&req).await.unwrap();
            assert_eq!(resp.topics.len(), 1);
            assert_eq!(resp.topics[0].name.as_ref().unwrap().0.as_str(), name);
            assert_eq!(resp.topics[0].partitions.len() as i32, parts);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(!conn.is_failed());
    // All 200 went over that one connection: the pool still hands out the same one.
    assert!(Arc::ptr_eq(&conn, &c.any_broker().await.unwrap()));
}

async fn group_offsets_and_producer_ids(cluster: &KafkaCluster) {
    let c = client(cluster).await;
    let topic = unique_topic("offsets");
    create_topic(&c, &topic, 2).await;
    let id = c
        .refresh_metadata(Some(std::slice::from_ref(&topic)))
        .await
        .unwrap()
        .topics[&topic]
        .id;
    let (leader, _) = c.leader(&topic, 1).await.unwrap();
    produce_batch(
        &c.broker(leader).await.unwrap(),
        &topic,
        id,
        1,
        encode_batch(7, Compression::Lz4, "o"),
    )
    .await
    .unwrap();
    assert_eq!(
        c.list_offset(&topic, 1, strait::client::admin::EARLIEST, false)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        c.list_offset(&topic, 1, strait::client::admin::LATEST, true)
            .await
            .unwrap(),
        7
    );
    assert_eq!(
        c.list_offset(&topic, 0, strait::client::admin::LATEST, false)
            .await
            .unwrap(),
        0
    );
    let group = unique_topic("group");
    c.commit_offsets(&group, &[(topic.clone(), 0, 0), (topic.clone(), 1, 5)])
        .await
        .unwrap();
    let mut got = c.fetch_offsets(&group, &[(topic.clone(), vec![0, 1])]).await.unwrap();
    got.sort();
    assert_eq!(got, vec![(topic.clone(), 0, 0), (topic.clone(), 1, 5)]);
    // The Java consumer-group tool sees the same committed offsets.
    let out = cluster
        .tool(
            "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
            &[
                "--bootstrap-server",
                &cluster.bootstrap,
                "--describe",
                "--group",
                &group,
            ],
        )
        .unwrap();
    let line = out
        .lines()
        .find(|l| l.contains(&topic) && l.split_whitespace().nth(2) == Some("1"))
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(line.split_whitespace().nth(3), Some("5"), "{line}");
    let (pid, epoch) = c.init_producer_id(None, 60_000).await.unwrap();
    assert!(pid >= 0 && epoch >= 0);
    let (tpid, tepoch) = c.init_producer_id(Some(&unique_topic("txn")), 60_000).await.unwrap();
    assert!(tpid >= 0 && tepoch >= 0 && tpid != pid);
}

/// A TCP proxy that can cut a connection in the middle of a response.
mod proxy {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    pub struct CutProxy {
        pub addr: String,
        cut: Arc<AtomicBool>,
    }

    impl CutProxy {
        pub async fn start(target: String) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap().to_string();
            let cut = Arc::new(AtomicBool::new(false));
            let flag = cut.clone();
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    let server = TcpStream::connect(&target).await.unwrap();
                    let flag = flag.clone();
                    tokio::spawn(async move {
                        let (mut cr, mut cw) = client.into_split();
                        let (mut sr, mut sw) = server.into_split();
                        let up = tokio::spawn(async move { tokio::io::copy(&mut cr, &mut sw).await });
                        let mut buf = vec![0u8; 64 * 1024];
                        loop {
                            let n = match sr.read(&mut buf).await {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            if flag.swap(false, Ordering::SeqCst) {
                                // Forward half of this response, then drop both sides.
                                let _ = cw.write_all(&buf[..n / 2]).await;
                                break;
                            }
                            if cw.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                        up.abort();
                    });
                }
            });
            Self { addr, cut }
        }

        /// The next response chunk from the broker is cut in half and the connection dropped.
        pub fn cut_next_response(&self) {
            self.cut.store(true, Ordering::SeqCst);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connection_fails_only_its_in_flight_requests() {
    let cluster = harness::kafka4();
    let c = Arc::new(client(cluster).await);
    let topic = unique_topic("cut");
    create_topic(&c, &topic, 1).await;
    let id = c
        .refresh_metadata(Some(std::slice::from_ref(&topic)))
        .await
        .unwrap()
        .topics[&topic]
        .id;
    let proxy = proxy::CutProxy::start(cluster.node_address(0)).await;
    let via_proxy = c.connection(&proxy.addr).await.unwrap();
    let direct = c.any_broker().await.unwrap();
    // Five long-poll fetches on the proxied connection (empty partition, 3 s wait):
    // all five are in flight when the first response is cut in half.
    let mut in_flight = Vec::new();
    for _ in 0..5 {
        let conn = via_proxy.clone();
        let topic = topic.clone();
        in_flight.push(tokio::spawn(async move { fetch(&conn, &topic, id, 0, 0, 3000).await }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    proxy.cut_next_response();
    // Meanwhile the other connection keeps working.
    let other = tokio::spawn({
        let direct = direct.clone();
        let topic = topic.clone();
        async move { fetch(&direct, &topic, id, 0, 0, 10).await }
    });
    for t in in_flight {
        let err = t
            .await
            .unwrap()
            .expect_err("in-flight request on the cut connection must fail");
        assert!(
            matches!(err, ClientError::Closed { .. } | ClientError::Io { .. }),
            "{err:?}"
        );
    }
    other
        .await
        .unwrap()
        .expect("request on another connection is unaffected");
    assert!(via_proxy.is_failed());
    assert!(!direct.is_failed());
    // The next call through the pool reconnects and succeeds.
    let fresh = c.connection(&proxy.addr).await.unwrap();
    assert!(!Arc::ptr_eq(&fresh, &via_proxy));
    let resp = fetch(&fresh, &topic, id, 0, 0, 10).await.unwrap();
    assert_eq!(resp.responses[0].partitions[0].error_code, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_and_non_kafka_servers_give_one_clear_error() {
    // A port nobody listens on.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = l.local_addr().unwrap().to_string();
    drop(l);
    let mut cfg = ClientConfig::new(&dead);
    cfg.connect_timeout = Duration::from_secs(2);
    let err = Client::connect(cfg).await.unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&dead) && msg.contains("refused"), "{msg}");
    // A server that accepts TCP and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let mut cfg = ClientConfig::new(&addr);
    cfg.connect_timeout = Duration::from_millis(500);
    let msg = Client::connect(cfg).await.unwrap_err().to_string();
    assert!(msg.contains(&addr) && msg.contains("Kafka listener"), "{msg}");
}

/// Captures real response frames (ApiVersions, Metadata, a Fetch holding batches
/// of all five codecs) and checks the committed golden files under
/// `protocol-tests/golden/` have the same shape. `STRAIT_CAPTURE_GOLDEN=1`
/// rewrites the files from the live broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn golden_frames_match_live_broker() {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::ApiVersionsRequest;
    let cluster = harness::kafka4();
    let c = client(cluster).await;
    let topic = "golden-mixed";
    create_topic(&c, topic, 1).await;
    let id = c.refresh_metadata(Some(&[topic.to_string()])).await.unwrap().topics[topic].id;
    let (leader, _) = c.leader(topic, 0).await.unwrap();
    let conn = c.broker(leader).await.unwrap();
    for (codec, name) in CODECS {
        produce_batch(&conn, topic, id, 0, encode_batch(4, codec, name))
            .await
            .unwrap();
    }
    let av_version = 3;
    let av = conn
        .request_frame(
            av_version,
            &ApiVersionsRequest::default()
                .with_client_software_name(StrBytes::from_static_str("strait"))
                .with_client_software_version(StrBytes::from_static_str("golden")),
        )
        .await
        .unwrap();
    let md_version = conn.version_of::<MetadataRequest>().unwrap();
    let md = conn
        .request_frame(
            md_version,
            &MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(TopicName(StrBytes::from_static_str(topic))))
            ])),
        )
        .await
        .unwrap();
    let fetch_version = conn.version_of::<FetchRequest>().unwrap();
    let req = strait::client::fetch::single_fetch_request(topic, id, 0, 0, 100, 1 << 20);
    let fetch_frame = conn.request_frame(fetch_version, &req).await.unwrap();
    let live = [
        (format!("api_versions-v{av_version}.bin"), av),
        (format!("metadata-v{md_version}.bin"), md),
        (format!("fetch-v{fetch_version}.bin"), fetch_frame),
    ];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("protocol-tests/golden");
    if std::env::var_os("STRAIT_CAPTURE_GOLDEN").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for f in std::fs::read_dir(&dir).unwrap().flatten() {
            if f.path().extension().is_some_and(|e| e == "bin") {
                std::fs::remove_file(f.path()).unwrap();
            }
        }
        for (name, frame) in &live {
            std::fs::write(dir.join(name), frame).unwrap();
        }
    }
    // The live frames and the committed ones decode to the same shape.
    for (name, frame) in &live {
        let golden = std::fs::read(dir.join(name))
            .unwrap_or_else(|e| panic!("golden file {name} for this broker's version: {e}"));
        let describe = |f: Bytes| golden_shape(name, f);
        assert_eq!(describe(frame.clone()), describe(Bytes::from(golden)), "{name}");
    }
}

/// A version-independent summary of a golden frame, compared between live and committed copies.
fn golden_shape(name: &str, frame: Bytes) -> String {
    use kafka_protocol::messages::ApiVersionsRequest;
    let version: i16 = name
        .rsplit_once("-v")
        .unwrap()
        .1
        .trim_end_matches(".bin")
        .parse()
        .unwrap();
    if name.starts_with("api_versions") {
        let (_, r) = strait::protocol::decode_response::<ApiVersionsRequest>(frame, version).unwrap();
        let mut keys: Vec<i16> = r
            .api_keys
            .iter()
            .map(|k| k.api_key)
            .filter(|k| [0, 1, 3, 22].contains(k))
            .collect();
        keys.sort();
        format!("error={} keys={keys:?}", r.error_code)
    } else if name.starts_with("metadata") {
        let (_, r) = strait::protocol::decode_response::<MetadataRequest>(frame, version).unwrap();
        let t = &r.topics[0];
        format!(
            "brokers={} topic={:?} partitions={}",
            r.brokers.len(),
            t.name.as_ref().map(|n| n.0.to_string()),
            t.partitions.len()
        )
    } else {
        let (_, r) = strait::protocol::decode_response::<FetchRequest>(frame, version).unwrap();
        let records = r.responses[0].partitions[0].records.clone().unwrap();
        let (batches, rest) = split_batches(&records).unwrap();
        let codecs: Vec<u8> = batches.iter().map(|b| b.codec()).collect();
        format!("batches={} codecs={codecs:?} rest={rest}", batches.len())
    }
}

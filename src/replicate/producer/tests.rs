//! The producer without a real broker: the decision table and the queue as
//! plain functions, then the whole producer (queue, senders, leader and
//! producer-id recovery) against the in-memory [`FakeCluster`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::decide::{verdict, Answer, Verdict};
use super::merge::deep_below;
use super::queue::{PartKey, Queue, State};
use super::Producer;
use super::{Item, Route};
use crate::batch::writer::{write_batch, BatchSpec, RecordSpec};
use crate::batch::{ProducerStamp, RawBatch};
use crate::client::fake::FakeCluster;
use crate::client::{code, Client, ClientConfig};
use crate::config::ProduceSettings;
use crate::replicate::budget::{Held, Share};
use crate::replicate::metrics::Metrics;

fn settings() -> ProduceSettings {
    ProduceSettings {
        max_in_flight_per_partition: 5,
        max_request_bytes: 1 << 20,
        coalesce_below_bytes: 0,
        max_decompressed_batch_bytes: 1 << 24,
        timeout_ms: 5_000,
        transactional_id: None,
    }
}

const STAMP: ProducerStamp = ProducerStamp {
    producer_id: 7,
    producer_epoch: 0,
    transactional: false,
};

/// A source batch of `n` records with value `value` at source offset `base`.
fn batch_of(base: i64, n: i32, value: &[u8]) -> RawBatch {
    let records: Vec<RecordSpec> = (0..n).map(|i| RecordSpec::simple(i, value)).collect();
    write_batch(
        &BatchSpec {
            base_offset: base,
            ..BatchSpec::default()
        },
        &records,
    )
}

async fn held() -> Arc<Held> {
    Arc::new(Share::alone(1 << 30).reserve_up_to(1, 1).await)
}

/// `count` batches of `n` records from source offset `from`, as a fetcher hands them over.
async fn items(from: i64, count: i64, n: i32) -> Vec<Item> {
    items_of(from, count, n, b"value").await
}

/// [`items`] with records of value `value`.
async fn items_of(from: i64, count: i64, n: i32, value: &[u8]) -> Vec<Item> {
    let h = held().await;
    (0..count)
        .map(|i| {
            let base = from + i * n as i64;
            Item::Batch {
                batch: batch_of(base, n, value),
                src_base: base,
                src_last: base + n as i64 - 1,
                deltas: None,
                held: h.clone(),
                origin: None,
                fetched: std::time::Instant::now(),
            }
        })
        .collect()
}

fn route(topic: &str, partition: i32) -> Route {
    Route {
        src_topic: Arc::from(topic),
        partition,
        dst_topic: Arc::from(topic),
    }
}

fn key(topic: &str, partition: i32) -> PartKey {
    (Arc::from(topic), partition)
}

fn ok(base: i64) -> Answer {
    Answer {
        code: code::NONE,
        base_offset: base,
        message: None,
    }
}

fn err(c: i16) -> Answer {
    Answer {
        code: c,
        base_offset: -1,
        message: None,
    }
}

#[test]
fn the_decision_table() {
    use code::*;
    let v = |c, first, eos| verdict(c, first, eos);
    assert_eq!(v(NONE, true, false), Verdict::Acked);
    assert_eq!(v(DUPLICATE_SEQUENCE_NUMBER, false, true), Verdict::Acked);
    assert_eq!(v(NOT_LEADER_OR_FOLLOWER, true, false), Verdict::Retry { refresh: true });
    assert_eq!(v(NETWORK_EXCEPTION, true, false), Verdict::Retry { refresh: true });
    assert_eq!(v(NOT_ENOUGH_REPLICAS, true, false), Verdict::Retry { refresh: false });
    assert_eq!(v(REQUEST_TIMED_OUT, true, true), Verdict::Retry { refresh: false });
    // Lost producer state shows on the oldest unacknowledged batch...
    assert_eq!(v(OUT_OF_ORDER_SEQUENCE_NUMBER, true, false), Verdict::NewProducerId);
    assert_eq!(v(UNKNOWN_PRODUCER_ID, true, false), Verdict::NewProducerId);
    // ...the batches behind it are merely out of order: resent after it.
    assert_eq!(
        v(OUT_OF_ORDER_SEQUENCE_NUMBER, false, false),
        Verdict::Retry { refresh: false }
    );
    assert_eq!(v(UNKNOWN_PRODUCER_ID, false, false), Verdict::Retry { refresh: false });
    assert_eq!(v(UNKNOWN_SERVER_ERROR, false, false), Verdict::Retry { refresh: false });
    // A transaction cannot renumber, and a fenced producer must stop.
    assert_eq!(v(UNKNOWN_PRODUCER_ID, true, true), Verdict::FailTransaction);
    assert_eq!(v(PRODUCER_FENCED, false, true), Verdict::FailTransaction);
    assert_eq!(v(INVALID_PRODUCER_EPOCH, false, true), Verdict::FailTransaction);
    // Refused for good.
    assert_eq!(v(10, true, false), Verdict::Stop, "MESSAGE_TOO_LARGE");
    assert_eq!(v(29, true, false), Verdict::Stop, "TOPIC_AUTHORIZATION_FAILED");
}

#[tokio::test]
async fn one_batch_per_partition_per_request_and_one_in_flight_until_confirmed() {
    let mut q = Queue::new(STAMP);
    let m = Metrics::default();
    for p in 0..2 {
        q.add_route(route("t", p), 100, 0, Default::default());
        q.parts.get_mut(&key("t", p)).unwrap().leader = 1;
        assert!(q.enqueue(&key("t", p), items(100, 4, 10).await));
    }
    let first = q.next_request(1, &settings(), &m);
    assert_eq!(first.len(), 2, "one batch of each partition");
    assert!(
        q.next_request(1, &settings(), &m).is_empty(),
        "unconfirmed: one in flight"
    );
    assert!(q.next_request(2, &settings(), &m).is_empty(), "not the leader");
    let sent: Vec<(PartKey, u64)> = first.iter().map(|o| (o.key.clone(), o.entry)).collect();
    let answers: HashMap<PartKey, Answer> = sent.iter().map(|(k, _)| (k.clone(), ok(0))).collect();
    assert_eq!(q.complete(&sent, &answers, false, &m), Default::default());
    // Confirmed: up to the window (3 batches left of each partition, one per request).
    for _ in 0..3 {
        assert_eq!(q.next_request(1, &settings(), &m).len(), 2);
    }
    assert!(q.next_request(1, &settings(), &m).is_empty(), "all in flight");
    let positions: HashMap<i32, i64> = q
        .positions()
        .iter()
        .map(|p| (p.route.partition, p.acked_next))
        .collect();
    assert_eq!(positions, HashMap::from([(0, 110), (1, 110)]));
    assert_eq!(Metrics::get(&m.records), 20);
}

/// `count` batches of `n` records of 1 KiB each from source offset `from`:
/// above `coalesce_below_bytes`, below the deep-queue threshold.
async fn kib_items(from: i64, count: i64, n: i32) -> Vec<Item> {
    items_of(from, count, n, &[7u8; 1024]).await
}

/// Records of each batch in flight of partition `p` of topic "t", in order.
fn in_flight_records(q: &Queue, p: i32) -> Vec<i32> {
    q.parts[&key("t", p)]
        .entries
        .iter()
        .filter(|e| e.state == State::InFlight)
        .map(|e| e.records)
        .collect()
}

#[test]
fn only_a_queue_deeper_than_the_free_window_merges_larger_batches() {
    assert_eq!(deep_below(3, 5, false), 0, "everything can go now");
    assert_eq!(deep_below(1, 5, true), 0, "nothing to merge with");
    assert_eq!(deep_below(2, 5, true), 256 * 1024, "far: every slot's bytes count");
    assert_eq!(deep_below(6, 5, false), 64 * 1024);
    assert_eq!(deep_below(2, 1, true), 256 * 1024, "far: any two that fit in 512 KiB");
}

#[tokio::test]
async fn batches_queued_past_the_window_merge_and_a_short_queue_goes_raw() {
    let mut q = Queue::new(STAMP);
    let m = Metrics::default();
    let s = ProduceSettings {
        coalesce_below_bytes: 2048,
        ..settings()
    };
    q.add_route(route("t", 0), 0, 0, Default::default());
    q.parts.get_mut(&key("t", 0)).unwrap().leader = 1;
    q.max_message.insert(Arc::from("t"), Some(1_048_588));
    // One batch, acknowledged: the window opens to 5.
    assert!(q.enqueue(&key("t", 0), kib_items(0, 1, 4).await));
    let a = q.next_request(1, &s, &m);
    let sent: Vec<(PartKey, u64)> = a.iter().map(|o| (o.key.clone(), o.entry)).collect();
    let answers: HashMap<PartKey, Answer> = sent.iter().map(|(k, _)| (k.clone(), ok(0))).collect();
    q.complete(&sent, &answers, false, &m);
    // Three 4 KiB batches, five slots free: each goes raw, one per request.
    assert!(q.enqueue(&key("t", 0), kib_items(4, 3, 4).await));
    for _ in 0..3 {
        assert_eq!(q.next_request(1, &s, &m).len(), 1);
    }
    assert_eq!(in_flight_records(&q, 0), vec![4, 4, 4]);
    assert_eq!(Metrics::get(&m.batches_coalesced), 0);
    // Ten more with two slots free: they would wait a round trip, so the run
    // merges into one batch of 40 records (sequence numbers stay contiguous).
    assert!(q.enqueue(&key("t", 0), kib_items(16, 10, 4).await));
    assert_eq!(q.next_request(1, &s, &m).len(), 1);
    assert_eq!(in_flight_records(&q, 0), vec![4, 4, 4, 40]);
    assert_eq!(Metrics::get(&m.batches_coalesced), 10);
    let merged = q.parts[&key("t", 0)].entries.back().unwrap();
    assert_eq!((merged.src_base, merged.src_last, merged.seq), (16, 55, 16));
    // Every answer in: the position covers all 56 records.
    let sent: Vec<(PartKey, u64)> = q.parts[&key("t", 0)]
        .entries
        .iter()
        .map(|e| (key("t", 0), e.id))
        .collect();
    let answers: HashMap<PartKey, Answer> = sent.iter().map(|(k, _)| (k.clone(), ok(0))).collect();
    for one in &sent {
        q.complete(std::slice::from_ref(one), &answers, false, &m);
    }
    assert_eq!(q.positions()[0].acked_next, 56);
}

#[tokio::test]
async fn merged_batches_stay_within_half_the_topics_max_message_bytes() {
    let m = Metrics::default();
    let s = ProduceSettings {
        coalesce_below_bytes: 2048,
        ..settings()
    };
    // (max.message.bytes known or not, records of the first request's batch)
    for (max, want) in [(Some(40_000), 16), (None, 4), (Some(1_048_588), 40)] {
        let mut q = Queue::new(STAMP);
        q.add_route(route("t", 0), 0, 0, Default::default());
        q.parts.get_mut(&key("t", 0)).unwrap().leader = 1;
        if let Some(max) = max {
            q.max_message.insert(Arc::from("t"), Some(max));
        }
        // Ten 4 KiB batches, one slot free (unconfirmed): deep enough to merge.
        assert!(q.enqueue(&key("t", 0), kib_items(0, 10, 4).await));
        assert_eq!(q.next_request(1, &s, &m).len(), 1);
        assert_eq!(in_flight_records(&q, 0), vec![want], "max.message.bytes {max:?}");
    }
}

#[tokio::test]
async fn an_error_resends_from_the_first_unacknowledged_batch_in_order() {
    let mut q = Queue::new(STAMP);
    let m = Metrics::default();
    q.add_route(route("t", 0), 0, 0, Default::default());
    let k = key("t", 0);
    q.parts.get_mut(&k).unwrap().leader = 1;
    q.enqueue(&k, items(0, 3, 10).await);
    // Confirm the first batch, then put two in flight.
    let a = q.next_request(1, &settings(), &m);
    q.complete(
        &[(k.clone(), a[0].entry)],
        &HashMap::from([(k.clone(), ok(0))]),
        false,
        &m,
    );
    let b = q.next_request(1, &settings(), &m);
    let c = q.next_request(1, &settings(), &m);
    assert_eq!((b.len(), c.len()), (1, 1));
    // The first of them fails: nothing is sent until the second came back too.
    let fx = q.complete(
        &[(k.clone(), b[0].entry)],
        &HashMap::from([(k.clone(), err(code::NOT_LEADER_OR_FOLLOWER))]),
        false,
        &m,
    );
    assert!(fx.refresh, "a leadership error looks the leader up again");
    q.parts.get_mut(&k).unwrap().leader = 1;
    assert!(
        q.next_request(1, &settings(), &m).is_empty(),
        "waits for the batch in flight"
    );
    q.complete(
        &[(k.clone(), c[0].entry)],
        &HashMap::from([(k.clone(), err(code::OUT_OF_ORDER_SEQUENCE_NUMBER))]),
        false,
        &m,
    );
    // Resent in order, with their original sequence numbers.
    let again = q.next_request(1, &settings(), &m);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].entry, b[0].entry);
    assert_eq!(
        i32::from_be_bytes(again[0].batch.header[53..57].try_into().unwrap()),
        10,
        "base sequence kept"
    );
    assert_eq!(q.positions()[0].acked_next, 10);
    assert_eq!(Metrics::get(&m.produce_retries), 2);
}

#[tokio::test]
async fn a_batch_acknowledged_after_a_failed_one_still_lets_the_failed_one_go_again() {
    // Two batches in flight; the first one's answer is an error, the second is
    // written (its request reached the broker on a new connection). The failed
    // one must be sent again: the partition may not wait for an answer that
    // will never come.
    let mut q = Queue::new(STAMP);
    let m = Metrics::default();
    q.add_route(route("t", 0), 0, 0, Default::default());
    let k = key("t", 0);
    q.parts.get_mut(&k).unwrap().leader = 1;
    q.enqueue(&k, items(0, 3, 10).await);
    let a = q.next_request(1, &settings(), &m);
    q.complete(
        &[(k.clone(), a[0].entry)],
        &HashMap::from([(k.clone(), ok(0))]),
        false,
        &m,
    );
    let b = q.next_request(1, &settings(), &m);
    let c = q.next_request(1, &settings(), &m);
    q.complete(
        &[(k.clone(), b[0].entry)],
        &HashMap::from([(k.clone(), Answer::request_failed("connection reset".into()))]),
        false,
        &m,
    );
    q.parts.get_mut(&k).unwrap().leader = 1; // the leader lookup came back
    q.complete(
        &[(k.clone(), c[0].entry)],
        &HashMap::from([(k.clone(), ok(20))]),
        false,
        &m,
    );
    let again = q.next_request(1, &settings(), &m);
    assert_eq!(again.len(), 1, "the failed batch goes again");
    assert_eq!(again[0].entry, b[0].entry);
    q.complete(
        &[(k.clone(), again[0].entry)],
        &HashMap::from([(k.clone(), ok(10))]),
        false,
        &m,
    );
    assert_eq!(q.positions()[0].acked_next, 30, "every batch acknowledged, in order");
}

#[tokio::test]
async fn a_refused_batch_stops_only_its_partition_naming_the_offset() {
    let mut q = Queue::new(STAMP);
    let m = Metrics::default();
    q.add_route(route("t", 0), 40, 0, Default::default());
    let k = key("t", 0);
    q.parts.get_mut(&k).unwrap().leader = 1;
    q.enqueue(&k, items(40, 2, 5).await);
    let a = q.next_request(1, &settings(), &m);
    q.complete(
        &[(k.clone(), a[0].entry)],
        &HashMap::from([(k.clone(), err(10))]),
        false,
        &m,
    );
    let p = &q.positions()[0];
    let reason = p.failed.clone().expect("stopped");
    assert!(
        reason.contains("source offset 40") && reason.contains("MessageTooLarge"),
        "{reason}"
    );
    assert_eq!(p.acked_next, 40, "the position does not move past a refused batch");
    assert_eq!(q.pending(), 0);
}

#[tokio::test]
async fn a_partition_missing_from_the_answer_is_retried_and_acks_write_the_offset_map() {
    let mut q = Queue::new(STAMP);
    let m = Metrics::default();
    q.add_route(route("t", 0), 0, 0, Default::default());
    let k = key("t", 0);
    q.parts.get_mut(&k).unwrap().leader = 1;
    q.enqueue(&k, items(0, 1, 4).await);
    q.enqueue(&k, vec![Item::Skip { src_last: 4 }]); // a transaction marker
    let a = q.next_request(1, &settings(), &m);
    q.complete(&[(k.clone(), a[0].entry)], &HashMap::new(), false, &m);
    let again = q.next_request(1, &settings(), &m);
    assert_eq!(again.len(), 1, "resent");
    q.complete(
        &[(k.clone(), again[0].entry)],
        &HashMap::from([(k.clone(), ok(70))]),
        false,
        &m,
    );
    let p = &q.positions()[0];
    assert_eq!(
        (p.acked_next, p.dst_next),
        (5, 74),
        "past the marker; next record lands at 74"
    );
    let map = q.take_map_entries();
    assert_eq!(
        (map[0].1[0].src_base, map[0].1[0].dst_base, map[0].1[0].dst_count),
        (0, 70, 4)
    );
}

/// A producer on the fake cluster with routes for `partitions` of topic "t".
async fn producer(fake: &FakeCluster, partitions: i32) -> (Arc<Producer>, Arc<Metrics>) {
    let client = Arc::new(Client::connect(ClientConfig::new(&fake.addr)).await.unwrap());
    let (pid, epoch) = client.init_producer_id(None, 60_000).await.unwrap();
    let metrics = Arc::new(Metrics::default());
    let stamp = ProducerStamp {
        producer_id: pid,
        producer_epoch: epoch,
        transactional: false,
    };
    let p = Producer::new(client, settings(), metrics.clone(), stamp);
    for part in 0..partitions {
        p.add_route(route("t", part), 0, 0, uuid::Uuid::from_u128(1));
    }
    (p, metrics)
}

async fn wait_acked(p: &Producer, partition: i32, next: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let pos = p
            .positions()
            .into_iter()
            .find(|x| x.route.partition == partition)
            .unwrap();
        if pos.acked_next >= next {
            return;
        }
        assert!(pos.failed.is_none(), "{:?}", pos.failed);
        assert!(
            tokio::time::Instant::now() < deadline,
            "acked {} of {next}",
            pos.acked_next
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// What the fake broker holds of a partition: (source offset of each record's
/// batch, in log order) must be exactly the batches sent, once each.
fn assert_once_in_order(fake: &FakeCluster, partition: i32, batches: i64, records: i32) {
    let written = fake.written("t", partition);
    assert_eq!(written.len() as i64, batches, "{written:?}");
    for (i, w) in written.iter().enumerate() {
        assert_eq!(w.base_offset, i as i64 * records as i64);
        assert_eq!(w.records, records);
    }
}

#[tokio::test]
async fn delivers_every_batch_once_in_order_through_a_real_client() {
    let fake = FakeCluster::start(&[("t", 2)]).await;
    let (p, metrics) = producer(&fake, 2).await;
    for part in 0..2 {
        p.enqueue(&Arc::from("t"), part, items(0, 30, 10).await);
    }
    wait_acked(&p, 0, 300).await;
    wait_acked(&p, 1, 300).await;
    assert_once_in_order(&fake, 0, 30, 10);
    assert_once_in_order(&fake, 1, 30, 10);
    assert_eq!(Metrics::get(&metrics.records), 600);
    assert!(
        fake.produce_requests() < 60,
        "partitions share requests: {}",
        fake.produce_requests()
    );
    p.stop();
}

#[tokio::test]
async fn retriable_errors_resend_in_order_without_duplicates() {
    let fake = FakeCluster::start(&[("t", 1)]).await;
    let (p, metrics) = producer(&fake, 1).await;
    p.enqueue(&Arc::from("t"), 0, items(0, 2, 10).await);
    wait_acked(&p, 0, 20).await;
    // Now with several batches in flight, the leader "moves" twice and a request times out.
    fake.inject("t", 0, code::NOT_LEADER_OR_FOLLOWER);
    fake.inject("t", 0, code::REQUEST_TIMED_OUT);
    fake.inject("t", 0, code::NOT_LEADER_OR_FOLLOWER);
    p.enqueue(&Arc::from("t"), 0, items(20, 40, 10).await);
    wait_acked(&p, 0, 420).await;
    assert_once_in_order(&fake, 0, 42, 10);
    assert!(Metrics::get(&metrics.produce_retries) >= 3);
    assert_eq!(Metrics::get(&metrics.records), 420, "no batch counted twice");
    p.stop();
}

#[tokio::test]
async fn lost_producer_state_renumbers_under_a_new_producer_id() {
    let fake = FakeCluster::start(&[("t", 1)]).await;
    let (p, _) = producer(&fake, 1).await;
    fake.inject("t", 0, code::UNKNOWN_PRODUCER_ID);
    p.enqueue(&Arc::from("t"), 0, items(0, 10, 10).await);
    wait_acked(&p, 0, 100).await;
    assert_eq!(fake.producer_ids(), 2, "a second InitProducerId");
    let written = fake.written("t", 0);
    assert_eq!(written.len(), 10);
    let pid = written[0].producer_id;
    for (i, w) in written.iter().enumerate() {
        assert_eq!(
            (w.producer_id, w.base_sequence),
            (pid, i as i32 * 10),
            "renumbered from 0"
        );
    }
    p.stop();
}

#[tokio::test]
async fn each_origin_gets_its_own_producer_id_and_sequence() {
    let fake = FakeCluster::start(&[("t", 1)]).await;
    let (p, _) = producer(&fake, 1).await;
    let east: Arc<str> = Arc::from("east");
    p.ensure_origin(&east).await.unwrap();
    p.ensure_origin(&east).await.unwrap(); // once per origin
    assert_eq!(fake.producer_ids(), 2);
    // Batches of the source and of the forwarded origin, interleaved.
    let mut all = items(0, 8, 10).await;
    for (i, item) in all.iter_mut().enumerate() {
        if let Item::Batch { origin, .. } = item {
            *origin = (i % 2 == 1).then(|| east.clone());
        }
    }
    p.enqueue(&Arc::from("t"), 0, all);
    wait_acked(&p, 0, 80).await;
    let written = fake.written("t", 0);
    assert_eq!(written.len(), 8, "in source order, once each");
    let pids: Vec<i64> = written.iter().map(|w| w.producer_id).collect();
    assert_ne!(pids[0], pids[1]);
    for (i, w) in written.iter().enumerate() {
        assert_eq!(w.producer_id, pids[i % 2]);
        assert_eq!(w.base_sequence, (i / 2) as i32 * 10, "each producer id's own sequence");
        assert_eq!(w.base_offset, i as i64 * 10);
    }
    p.stop();
}

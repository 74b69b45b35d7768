//! Building Fetch requests, in one place: the replication's fetch sessions
//! (KIP-227, incremental, with forgotten partitions) and the one-partition,
//! session-less reads of the offset map and tools. Every request reads
//! `READ_COMMITTED` as a consumer (`replica_id = -1`), and names topics both by
//! name (below Fetch v13) and by id (v13+); the encoder writes the one its
//! version has.

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

/// A fetch session's id and epoch, as the request carries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionRequest {
    /// No session (`session_epoch = -1`): every partition in every request.
    None,
    /// Open a new session with this full request (`session_id = 0`, epoch 0).
    Open,
    /// The next request of session `id` (only changed partitions, and forgotten ones).
    Continue {
        /// Session id the broker gave.
        id: i32,
        /// This request's epoch.
        epoch: i32,
    },
}

/// One partition to fetch.
#[derive(Debug, Clone, Copy)]
pub struct FetchAt<'a> {
    /// Topic name.
    pub topic: &'a str,
    /// Topic id.
    pub topic_id: Uuid,
    /// Partition.
    pub partition: i32,
    /// Offset to fetch from.
    pub offset: i64,
}

/// Sizes and wait of a Fetch request.
#[derive(Debug, Clone, Copy)]
pub struct FetchLimits {
    /// Long-poll wait, ms.
    pub max_wait_ms: i32,
    /// Bytes of the whole response.
    pub max_bytes: i32,
    /// Bytes of one partition.
    pub partition_max_bytes: i32,
}

fn name(t: &str) -> TopicName {
    TopicName(StrBytes::from_string(t.to_string()))
}

/// A Fetch request for `include` (and, in a continued session, the `forgotten`
/// partitions to drop from it: topic, id, partition).
pub fn fetch_request(
    limits: FetchLimits,
    session: SessionRequest,
    include: &[FetchAt<'_>],
    forgotten: &[(&str, Uuid, i32)],
) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for at in include {
        let part = FetchPartition::default()
            .with_partition(at.partition)
            .with_fetch_offset(at.offset)
            .with_current_leader_epoch(-1)
            .with_last_fetched_epoch(-1)
            .with_log_start_offset(-1)
            .with_partition_max_bytes(limits.partition_max_bytes);
        match topics.iter_mut().find(|t| t.topic.0.as_str() == at.topic) {
            Some(t) => t.partitions.push(part),
            None => topics.push(
                FetchTopic::default()
                    .with_topic(name(at.topic))
                    .with_topic_id(at.topic_id)
                    .with_partitions(vec![part]),
            ),
        }
    }
    let mut forgot: Vec<ForgottenTopic> = Vec::new();
    for (topic, id, partition) in forgotten {
        match forgot.iter_mut().find(|t| t.topic.0.as_str() == *topic) {
            Some(t) => t.partitions.push(*partition),
            None => forgot.push(
                ForgottenTopic::default()
                    .with_topic(name(topic))
                    .with_topic_id(*id)
                    .with_partitions(vec![*partition]),
            ),
        }
    }
    let (session_id, epoch) = match session {
        SessionRequest::None => (0, -1),
        SessionRequest::Open => (0, 0),
        SessionRequest::Continue { id, epoch } => (id, epoch),
    };
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(limits.max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(limits.max_bytes)
        .with_isolation_level(1) // READ_COMMITTED
        .with_session_id(session_id)
        .with_session_epoch(epoch)
        .with_topics(topics)
        .with_forgotten_topics_data(forgot)
}

/// A read_committed, session-less Fetch of one partition from `offset`.
pub fn single_fetch_request(
    topic: &str,
    topic_id: Uuid,
    partition: i32,
    offset: i64,
    max_wait_ms: i32,
    max_bytes: i32,
) -> FetchRequest {
    fetch_request(
        FetchLimits {
            max_wait_ms,
            max_bytes,
            partition_max_bytes: max_bytes,
        },
        SessionRequest::None,
        &[FetchAt {
            topic,
            topic_id,
            partition,
            offset,
        }],
        &[],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_group_by_topic_and_sessions_set_id_and_epoch() {
        let id = Uuid::from_u128(7);
        let at = |topic, partition, offset| FetchAt {
            topic,
            topic_id: id,
            partition,
            offset,
        };
        let limits = FetchLimits {
            max_wait_ms: 200,
            max_bytes: 1 << 20,
            partition_max_bytes: 1 << 16,
        };
        let r = fetch_request(
            limits,
            SessionRequest::Continue { id: 42, epoch: 3 },
            &[at("a", 0, 10), at("b", 1, 5), at("a", 2, 7)],
            &[("c", id, 4)],
        );
        assert_eq!((r.session_id, r.session_epoch, r.isolation_level), (42, 3, 1));
        assert_eq!(r.topics.len(), 2);
        assert_eq!(
            r.topics[0].partitions.iter().map(|p| p.partition).collect::<Vec<_>>(),
            [0, 2]
        );
        assert_eq!(r.topics[0].partitions[1].fetch_offset, 7);
        assert_eq!(r.topics[0].partitions[0].partition_max_bytes, 1 << 16);
        assert_eq!(r.forgotten_topics_data[0].partitions, [4]);
        let one = single_fetch_request("m", id, 0, 99, 100, 8 << 20);
        assert_eq!((one.session_id, one.session_epoch), (0, -1));
        assert_eq!(one.topics[0].partitions[0].fetch_offset, 99);
        assert_eq!(one.topics[0].topic_id, id);
        let open = fetch_request(limits, SessionRequest::Open, &[at("a", 0, 0)], &[]);
        assert_eq!((open.session_id, open.session_epoch), (0, 0));
    }
}

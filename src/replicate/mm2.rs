//! Taking over a running MirrorMaker 2 replication (`start_from = "mm2"`).
//!
//! MM2's `MirrorSourceConnector` keeps its positions as Kafka Connect source
//! offsets, in the Connect offsets topic on the destination cluster
//! (dedicated mode: `mm2-offsets.<source alias>.internal`). Each record is
//! keyed `["<connector>",{"cluster":"A","partition":0,"topic":"t"}]` and holds
//! `{"offset":N}`, N being the last source offset MM2 copied (its task resumes
//! at N+1: `MirrorSourceTask.initializeConsumer`); a null value deletes the
//! position. The newest record of a key wins. Records of an MM2 running
//! exactly-once are read read_committed, so an aborted commit is not taken for
//! a position.
//!
//! Connect commits these offsets every `offset.flush.interval.ms` (60 s by
//! default) and on a clean stop: after a crash, MM2 had copied records past its
//! last commit, and continuing from the commit copies them again. That window
//! is the only duplication of a takeover.

use std::collections::HashMap;

use serde_json::Value;
use tracing::{debug, warn};

use super::log;
use crate::client::admin::LATEST;
use crate::client::{Client, ClientError};
use crate::config::Mm2Takeover;

/// The next source offset to copy of each (source topic, partition) MM2 has a
/// position for.
pub type Positions = HashMap<SourcePartition, i64>;

/// A source partition: (topic, partition).
pub type SourcePartition = (String, i32);

/// Why MM2's positions cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Mm2Error {
    /// The offsets topic is not on the destination.
    #[error("MirrorMaker 2's offsets topic {topic} does not exist on the destination (set mm2_offsets_topic to the Connect offsets topic MM2 uses: offset.storage.topic)")]
    NoTopic {
        /// The topic looked for.
        topic: String,
    },
    /// Reading it failed.
    #[error("cannot read MirrorMaker 2's offsets topic {topic}: {source}")]
    Read {
        /// The topic.
        topic: String,
        /// What went wrong.
        #[source]
        source: ClientError,
    },
}

/// Reads MM2's positions for connector `m.connector` from `m.offsets_topic`
/// on the destination `dst`, every partition up to its last stable offset.
pub async fn read_positions(dst: &Client, m: &Mm2Takeover) -> Result<Positions, Mm2Error> {
    let topic = m.offsets_topic.as_str();
    let read_err = |source| Mm2Error::Read {
        topic: topic.to_string(),
        source,
    };
    let md = dst
        .refresh_metadata(Some(&[topic.to_string()]))
        .await
        .map_err(read_err)?;
    let Some(t) = md.topics.get(topic).filter(|t| t.error_code == 0) else {
        return Err(Mm2Error::NoTopic {
            topic: topic.to_string(),
        });
    };
    let partitions = t.partitions.len() as i32;
    // Newest record per key: (log order within a partition; a key lives in one partition).
    let mut newest: HashMap<Vec<u8>, Option<Vec<u8>>> = HashMap::new();
    for p in 0..partitions {
        let end = dst.list_offset(topic, p, LATEST, true).await.map_err(read_err)?;
        log::scan(dst, topic, p, 0, end, |r| {
            if let Some(k) = r.key {
                newest.insert(k.to_vec(), r.value.map(|v| v.to_vec()));
            }
        })
        .await
        .map_err(read_err)?;
    }
    let mut out = Positions::new();
    for (key, value) in newest {
        match parse(&key, value.as_deref(), &m.connector) {
            Ok(Some((tp, next))) => {
                out.insert(tp, next);
            }
            Ok(None) => {}
            Err(why) => warn!(
                topic,
                key = %String::from_utf8_lossy(&key),
                "skipping a record of MirrorMaker 2's offsets topic: {why}"
            ),
        }
    }
    debug!(topic, connector = %m.connector, positions = out.len(), "MirrorMaker 2 positions read");
    Ok(out)
}

/// One record of the offsets topic: `Some(((topic, partition), next offset))`
/// for a position of `connector`; `None` for another connector's record or a
/// deleted position; an error for a record of `connector` that is not a
/// MirrorSourceConnector position.
pub fn parse(key: &[u8], value: Option<&[u8]>, connector: &str) -> Result<Option<(SourcePartition, i64)>, String> {
    let key: Value = serde_json::from_slice(key).map_err(|e| format!("key is not JSON: {e}"))?;
    let Some([name, part]) = key.as_array().map(Vec::as_slice) else {
        return Err("key is not [connector, partition]".into());
    };
    if name.as_str() != Some(connector) {
        return Ok(None);
    }
    let topic = part["topic"].as_str().ok_or("key has no topic")?;
    let partition = part["partition"]
        .as_i64()
        .and_then(|p| i32::try_from(p).ok())
        .ok_or("key has no partition")?;
    let Some(value) = value else {
        return Ok(None); // tombstone: the position was deleted
    };
    let value: Value = serde_json::from_slice(value).map_err(|e| format!("value is not JSON: {e}"))?;
    let offset = value["offset"].as_i64().ok_or("value has no offset")?;
    if offset < 0 {
        return Ok(None);
    }
    Ok(Some(((topic.to_string(), partition), offset + 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = br#"["MirrorSourceConnector",{"cluster":"A","partition":3,"topic":"orders"}]"#;

    #[test]
    fn a_position_continues_after_the_last_copied_offset() {
        let got = parse(KEY, Some(br#"{"offset":41}"#), "MirrorSourceConnector").unwrap();
        assert_eq!(got, Some((("orders".to_string(), 3), 42)));
    }

    #[test]
    fn other_connectors_tombstones_and_bad_records() {
        assert_eq!(parse(KEY, Some(br#"{"offset":1}"#), "other").unwrap(), None);
        assert_eq!(parse(KEY, None, "MirrorSourceConnector").unwrap(), None);
        assert!(parse(b"not json", None, "x").unwrap_err().contains("not JSON"));
        assert!(parse(
            br#"["MirrorSourceConnector",{"topic":"t"}]"#,
            Some(b"{}"),
            "MirrorSourceConnector"
        )
        .unwrap_err()
        .contains("partition"));
        assert!(parse(KEY, Some(br#"{"x":1}"#), "MirrorSourceConnector")
            .unwrap_err()
            .contains("offset"));
    }
}

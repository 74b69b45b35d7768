//! The engine's metrics in Prometheus form: a `prometheus-client`
//! [`Collector`] that reads the counters, lags and histogram of every running
//! flow at scrape time, each sample labelled with its flow; and the
//! [`crate::ops`] endpoint wired to a replication ([`endpoints`]).
//!
//! Counter names lose their `_total` here: the OpenMetrics encoder appends it
//! (`strait_records` is exposed as `strait_records_total`). Replication latency
//! is a histogram (`prometheus-client` has no summary type): quantiles come
//! from `histogram_quantile()` over its buckets.

use std::sync::atomic::AtomicU64;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::metrics::{Histogram, Metrics, Stage};
use super::Handle;
use crate::client::error_name;
use crate::ops::{Endpoints, ProcessCollector};

/// Upper bounds of the replication latency histogram, seconds.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Every flow's metrics, collected at scrape time.
#[derive(Debug, Clone)]
pub struct Exposition {
    flows: Vec<Handle>,
}

impl Exposition {
    /// A collector over these running flows.
    pub fn new(flows: Vec<Handle>) -> Self {
        Self { flows }
    }
}

type Labels = Vec<(&'static str, String)>;
/// A counter of [`Metrics`]: name, help, field.
type CounterDef = (&'static str, &'static str, fn(&Metrics) -> &AtomicU64);
/// A gauge of a flow: name, help, value.
type GaugeDef = (&'static str, &'static str, fn(&Handle) -> f64);
/// A gauge of [`Metrics`] without a sample until it has a value: name, help, value.
type OptionalGaugeDef = (&'static str, &'static str, fn(&Metrics) -> Option<f64>);

/// One metric family: its descriptor once, then one sample per label set.
fn family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (Labels, M)>,
) -> Result<(), std::fmt::Error> {
    let mut metric: MetricEncoder = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, m) in samples {
        m.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn flow(h: &Handle) -> Labels {
    vec![("flow", h.flow.to_string()), ("member", h.instance_id().to_string())]
}

impl Collector for Exposition {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counters: [CounterDef; 9] = [
            ("strait_records", "Records acknowledged by the destination.", |m| {
                &m.records
            }),
            (
                "strait_bytes",
                "Record-batch bytes acknowledged by the destination.",
                |m| &m.bytes,
            ),
            (
                "strait_offsets_skipped",
                "Source offsets deleted by retention before they were replicated.",
                |m| &m.offsets_skipped,
            ),
            (
                "strait_topic_resets",
                "Topics started over because their source or destination topic was deleted and created again under strait.",
                |m| &m.topic_resets,
            ),
            (
                "strait_crc_refetches",
                "Fetched batches that failed their CRC and were fetched again.",
                |m| &m.crc_refetches,
            ),
            (
                "strait_malformed_refetches",
                "Fetched records the splitter refused (corrupted batch length, magic or offsets) and fetched again.",
                |m| &m.malformed_refetches,
            ),
            (
                "strait_produce_retries",
                "Batches produced again after a retriable error.",
                |m| &m.produce_retries,
            ),
            ("strait_checkpoints", "Checkpoints committed on the destination.", |m| {
                &m.checkpoints
            }),
            (
                "strait_group_offsets_synced",
                "Consumer-group partition offsets written on the destination.",
                |m| &m.group_offsets_synced,
            ),
        ];
        for (name, help, field) in counters {
            family(
                &mut e,
                name,
                help,
                MetricType::Counter,
                self.flows
                    .iter()
                    .map(|h| (flow(h), ConstCounter::new(Metrics::get(field(&h.metrics))))),
            )?;
        }
        family(
            &mut e,
            "strait_batches",
            "Source batches by path: fast (raw), slow (re-encoded or up-converted), coalesced (merged), dropped, skipped because strait replicated them into the source.",
            MetricType::Counter,
            self.flows.iter().flat_map(|h| {
                let m = &h.metrics;
                [
                    ("fast", &m.batches_fast),
                    ("slow", &m.batches_slow),
                    ("coalesced", &m.batches_coalesced),
                    ("dropped_control", &m.batches_control),
                    ("dropped_aborted", &m.batches_aborted),
                    ("dropped_empty", &m.batches_empty),
                    ("skipped_replicated", &m.batches_replicated),
                ]
                .map(|(path, v)| {
                    let mut l = flow(h);
                    l.push(("path", path.to_string()));
                    (l, ConstCounter::new(Metrics::get(v)))
                })
            }),
        )?;
        family(
            &mut e,
            "strait_errors",
            "Kafka error codes seen in responses.",
            MetricType::Counter,
            self.flows.iter().flat_map(|h| {
                h.metrics.errors().into_iter().map(|(code, n)| {
                    let mut l = flow(h);
                    l.push(("code", code.to_string()));
                    l.push(("name", error_name(code)));
                    (l, ConstCounter::new(n))
                })
            }),
        )?;
        family(
            &mut e,
            "strait_lag_records",
            "Source records (to the last stable offset) not yet acknowledged by the destination.",
            MetricType::Gauge,
            self.flows.iter().flat_map(|h| {
                h.partition_lag()
                    .into_iter()
                    .filter(|(_, _, lag)| *lag >= 0)
                    .map(|(topic, partition, lag)| {
                        let mut l = flow(h);
                        l.push(("topic", topic));
                        l.push(("partition", partition.to_string()));
                        (l, ConstGauge::new(lag))
                    })
            }),
        )?;
        let gauges: [GaugeDef; 9] = [
            (
                "strait_failed_over",
                "1 once this flow failed over by itself ([failover] auto = true): it replicates no more.",
                |h| Metrics::get(&h.metrics.failed_over) as f64,
            ),
            (
                "strait_checkpoint_age_seconds",
                "Seconds since the last checkpoint the destination acknowledged (-1: none yet).",
                |h| Metrics::age_ms(&h.metrics.last_checkpoint_ms).map_or(-1.0, |ms| ms as f64 / 1000.0),
            ),
            (
                "strait_buffered_bytes",
                "Bytes of fetched data held until the destination acknowledges them.",
                |h| h.buffered_bytes() as f64,
            ),
            (
                "strait_buffered_reserved_bytes",
                "Bytes of the memory budget reserved by fetches waiting for their response.",
                |h| h.reserved_bytes() as f64,
            ),
            (
                "strait_partitions_stopped",
                "Partitions stopped on unrecoverable errors.",
                |h| h.stopped_partitions() as f64,
            ),
            (
                "strait_member_partitions",
                "Source partitions the replication group's leader assigned this process.",
                |h| h.member_partitions() as f64,
            ),
            (
                "strait_group_generation",
                "The replication group's generation this process is a member of (-1: none).",
                |h| h.member()["generation"].as_i64().unwrap_or(-1) as f64,
            ),
            (
                "strait_group_leader",
                "1 when this process leads the flow's replication group (assigns partitions, manages topics, syncs groups).",
                |h| f64::from(u8::from(h.member()["leader"].as_bool().unwrap_or(false))),
            ),
            (
                "strait_ready",
                "1 when the flow is ready (both clusters answer, no partition stopped), else 0.",
                |h| f64::from(u8::from(h.readiness().is_ok())),
            ),
        ];
        for (name, help, value) in gauges {
            family(
                &mut e,
                name,
                help,
                MetricType::Gauge,
                self.flows.iter().map(|h| (flow(h), ConstGauge::new(value(h)))),
            )?;
        }
        // Heartbeat gauges: no sample before the first heartbeat is acknowledged.
        let heartbeat: [OptionalGaugeDef; 2] = [
            (
                "strait_heartbeat_latency_seconds",
                "The last acknowledged heartbeat's latency: written on the source to acknowledged by the destination.",
                Metrics::heartbeat_latency_seconds,
            ),
            (
                "strait_heartbeat_age_seconds",
                "Seconds since the destination last acknowledged a heartbeat.",
                Metrics::heartbeat_age_seconds,
            ),
        ];
        for (name, help, value) in heartbeat {
            family(
                &mut e,
                name,
                help,
                MetricType::Gauge,
                self.flows
                    .iter()
                    .filter_map(|h| value(&h.metrics).map(|v| (flow(h), ConstGauge::new(v)))),
            )?;
        }
        let flows: Vec<(Labels, &Metrics)> = self.flows.iter().map(|h| (flow(h), &*h.metrics)).collect();
        latency_families(&mut e, &flows)
    }
}

/// The replication latency histogram and its stages, one series per flow
/// (and stage), same buckets.
fn latency_families(e: &mut DescriptorEncoder, flows: &[(Labels, &Metrics)]) -> Result<(), std::fmt::Error> {
    let mut metric = e.encode_descriptor(
        "strait_replication_latency_seconds",
        "Source record timestamp to destination acknowledgement.",
        None,
        MetricType::Histogram,
    )?;
    for (labels, m) in flows {
        histogram(metric.encode_family(labels)?, &m.latency_histogram())?;
    }
    let mut metric = e.encode_descriptor(
        "strait_replication_latency_stage_seconds",
        "Replication latency by stage: fetch (source record timestamp to Fetch response received), queue (to Produce request sent), produce (to destination acknowledgement).",
        None,
        MetricType::Histogram,
    )?;
    for (labels, m) in flows {
        for stage in Stage::ALL {
            let mut l = labels.clone();
            l.push(("stage", stage.name().to_string()));
            histogram(metric.encode_family(&l)?, &m.stage_histogram(stage))?;
        }
    }
    Ok(())
}

/// One histogram sample over [`LATENCY_BUCKETS`].
fn histogram(mut metric: MetricEncoder, hist: &Histogram) -> Result<(), std::fmt::Error> {
    let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
        .iter()
        .map(|le| (*le, hist.count_at_most((le * 1e6) as u64)))
        .chain(std::iter::once((f64::INFINITY, hist.count())))
        .collect();
    metric.encode_histogram::<NoLabelSet>(
        hist.sum() as f64 / 1e6,
        hist.count(),
        &cumulative_to_per_bucket(&buckets),
        None,
    )
}

/// `prometheus-client` takes per-bucket counts and sums them itself.
fn cumulative_to_per_bucket(cumulative: &[(f64, u64)]) -> Vec<(f64, u64)> {
    let mut prev = 0;
    cumulative
        .iter()
        .map(|(le, c)| {
            let n = c.saturating_sub(prev);
            prev = prev.max(*c);
            (*le, n)
        })
        .collect()
}

/// The `/metrics`, `/healthz`, `/readyz` and `/status` endpoint of these flows,
/// with the process metrics beside theirs.
pub fn endpoints(flows: Vec<Handle>) -> Endpoints {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(ProcessCollector));
    registry.register_collector(Box::new(Exposition::new(flows.clone())));
    let ready_flows = flows.clone();
    Endpoints {
        registry,
        ready: Box::new(move || {
            for h in &ready_flows {
                h.readiness().map_err(|why| {
                    if ready_flows.len() > 1 {
                        format!("flow {}: {why}", h.flow)
                    } else {
                        why
                    }
                })?;
            }
            Ok(())
        }),
        status: Box::new(move || serde_json::json!({ "flows": flows.iter().map(Handle::status).collect::<Vec<_>>() })),
    }
}

/// Serves [`endpoints`] of `flows` on `listener` in a task of its own; abort
/// the task to stop serving.
pub fn spawn_endpoint(listener: tokio::net::TcpListener, flows: Vec<Handle>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(crate::ops::serve(listener, std::sync::Arc::new(endpoints(flows))))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The latency families of one flow whose metrics are `m`.
    #[derive(Debug)]
    struct Latency(std::sync::Arc<Metrics>);

    impl Collector for Latency {
        fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            let labels = vec![("flow", "f".to_string()), ("member", "m-1".to_string())];
            latency_families(&mut e, &[(labels, &*self.0)])
        }
    }

    #[test]
    fn latency_and_its_stages_are_histograms_per_flow() {
        let m = std::sync::Arc::new(Metrics::default());
        let fetched = std::time::Instant::now();
        let ts = super::super::metrics::now_ms() as i64 - 40;
        m.latency(
            ts,
            3,
            Some(super::super::metrics::BatchTimes { fetched, sent: fetched }),
        );
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Latency(m)));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("# TYPE strait_replication_latency_seconds histogram")
                && text.contains("# TYPE strait_replication_latency_stage_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains("strait_replication_latency_seconds_count{flow=\"f\",member=\"m-1\"} 3"),
            "{text}"
        );
        for stage in ["fetch", "queue", "produce"] {
            let series = format!(
                "strait_replication_latency_stage_seconds_count{{flow=\"f\",member=\"m-1\",stage=\"{stage}\"}} 3"
            );
            assert!(text.contains(&series), "{series} in {text}");
            let inf = format!("strait_replication_latency_stage_seconds_bucket{{le=\"+Inf\",flow=\"f\",member=\"m-1\",stage=\"{stage}\"}} 3");
            assert!(text.contains(&inf), "{inf} in {text}");
        }
        // Fetch took the ~40 ms: its samples are past the 25 ms bucket, queue and produce's are not.
        assert!(
            text.contains("strait_replication_latency_stage_seconds_bucket{le=\"0.025\",flow=\"f\",member=\"m-1\",stage=\"fetch\"} 0\n")
                && text.contains("strait_replication_latency_stage_seconds_bucket{le=\"0.025\",flow=\"f\",member=\"m-1\",stage=\"queue\"} 3\n"),
            "{text}"
        );
    }

    #[test]
    fn cumulative_counts_become_per_bucket_counts() {
        let got = cumulative_to_per_bucket(&[(0.1, 3), (1.0, 3), (10.0, 7), (f64::INFINITY, 9)]);
        assert_eq!(got, vec![(0.1, 3), (1.0, 0), (10.0, 4), (f64::INFINITY, 2)]);
    }
}

//! One flow's resolved settings, in sections: each engine part takes the
//! section it works with (the fetcher [`FetchSettings`], the producer
//! [`ProduceSettings`], topic mirroring [`TopicSettings`], group sync
//! [`GroupSettings`], transactions [`ExactlyOnce`]), so a reader sees what a
//! part may touch.

use std::time::Duration;

use regex::Regex;

use super::cluster::ClusterConfig;

/// Where to start a partition that has no checkpoint yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// The oldest retained record (default).
    Earliest,
    /// Only records produced after strait starts.
    Latest,
}

/// How destination topic names derive from source names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rename {
    /// Same name (default).
    Identity,
    /// `{source alias}.{topic}` (MM2's DefaultReplicationPolicy).
    Prefix,
    /// A template with `{topic}` and optionally `{source}`.
    Template(String),
    /// The reverse of `Prefix` (failback): `{alias}.{topic}` becomes `{topic}`.
    StripPrefix(String),
}

impl Rename {
    /// Destination name of `topic`.
    pub fn apply(&self, source_alias: &str, topic: &str) -> String {
        match self {
            Rename::Identity => topic.to_string(),
            Rename::Prefix => format!("{source_alias}.{topic}"),
            Rename::Template(t) => t.replace("{source}", source_alias).replace("{topic}", topic),
            Rename::StripPrefix(p) => topic.strip_prefix(&format!("{p}.")).unwrap_or(topic).to_string(),
        }
    }
}

/// Which source topics a flow replicates, under which names, and how their
/// destination twins are kept in step.
#[derive(Debug, Clone)]
pub struct TopicSettings {
    /// Alias of the source cluster (`rename = "prefix"`).
    pub source_alias: String,
    /// Alias of the destination cluster.
    pub destination_alias: String,
    /// Every cluster alias of the config (MirrorMaker 2's cycle rule for prefixes).
    pub cluster_aliases: Vec<String>,
    /// A source topic is replicated when one regex matches its whole name.
    pub topics: Vec<Regex>,
    /// Topics never replicated, even when matched by `topics`.
    pub topics_exclude: Vec<Regex>,
    /// Destination naming.
    pub rename: Rename,
    /// How often source topics are listed and destination topics reconciled.
    pub refresh_interval: Duration,
    /// Replication factor of topics strait creates (-1: the destination's default).
    pub replication_factor: i16,
    /// Copy topic configs and their changes from source to destination.
    pub sync_topic_configs: bool,
    /// Copy the ACLs of replicated topics and synced groups to the destination
    /// (WRITE and ALL as READ until failover; see `replicate::acls`).
    pub sync_acls: bool,
    /// The heartbeat topic when heartbeats are on: replicated whatever
    /// `topics` and `topics_exclude` say.
    pub heartbeats_topic: Option<String>,
}

impl TopicSettings {
    /// True when source topic `name` is to be replicated. Internal topics and every
    /// topic whose name starts with `__` (Kafka's and strait's own) never are.
    pub fn wants(&self, name: &str, is_internal: bool) -> bool {
        !is_internal
            && !name.starts_with("__")
            && (self.heartbeats_topic.as_deref() == Some(name)
                || self.topics.iter().any(|r| r.is_match(name))
                    && !self.topics_exclude.iter().any(|r| r.is_match(name)))
            && !self.is_cycle(name)
    }

    /// MirrorMaker 2's rule for prefixed names (`DefaultReplicationPolicy`,
    /// `MirrorSourceConnector.isCycle`): a topic whose prefixes name the
    /// destination cluster (`west.orders` on east, for a flow east → west; or
    /// `north.west.orders`) came from there, and never goes back.
    pub fn is_cycle(&self, name: &str) -> bool {
        if self.rename != Rename::Prefix {
            return false;
        }
        let mut rest = name;
        while let Some(alias) = self
            .cluster_aliases
            .iter()
            .find(|a| rest.len() > a.len() + 1 && rest.starts_with(a.as_str()) && rest.as_bytes()[a.len()] == b'.')
        {
            if *alias == self.destination_alias {
                return true;
            }
            rest = &rest[alias.len() + 1..];
        }
        false
    }

    /// Destination name of a source topic.
    pub fn destination(&self, source_topic: &str) -> String {
        self.rename.apply(&self.source_alias, source_topic)
    }

    /// When source and destination are one cluster: why copying `topics` into it
    /// would feed the copy back into itself, or `None` when it is a deliberate
    /// copy (a rename whose output the topic selection does not match).
    pub fn self_copy_problem<'a>(&self, topics: impl IntoIterator<Item = &'a str>) -> Option<String> {
        if self.rename == Rename::Identity {
            return Some(
                "source and destination are the same cluster and rename = \"identity\": every topic would be copied into itself"
                    .into(),
            );
        }
        let loops: Vec<String> = topics
            .into_iter()
            .filter(|t| self.wants(t, false))
            .filter_map(|t| {
                let d = self.destination(t);
                self.wants(&d, false).then(|| format!("{t} -> {d}"))
            })
            .collect();
        (!loops.is_empty()).then(|| {
            format!(
                "source and destination are the same cluster and the topic selection matches the renamed copies too ({}): each copy would be copied again; narrow `topics` or exclude the copies with `topics_exclude`",
                loops.join(", ")
            )
        })
    }
}

/// Heartbeats (MirrorMaker 2's `heartbeats` topic): a small record written to
/// the source every `interval` and replicated like any topic, so an idle
/// replication and a broken one look different.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatSettings {
    /// The source topic heartbeats are written to (and replicated from).
    pub topic: String,
    /// How often a heartbeat is written.
    pub interval: Duration,
}

/// Taking over from a running MirrorMaker 2 (`start_from = "mm2"`): where
/// its positions are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mm2Takeover {
    /// The Kafka Connect offsets topic MM2 keeps on the destination cluster
    /// (dedicated mode: `mm2-offsets.<source alias>.internal`).
    pub offsets_topic: String,
    /// The name of MM2's source connector, the first element of each key.
    pub connector: String,
}

/// The source side: where partitions start and how much one fetch brings.
#[derive(Debug, Clone)]
pub struct FetchSettings {
    /// Start of partitions without a checkpoint (with `mm2`: of those MM2
    /// never copied either), and where to continue after retention removed
    /// records before they were replicated.
    pub start_from: StartFrom,
    /// `start_from = "mm2"`: partitions without a checkpoint continue after
    /// the last offset MirrorMaker 2 committed.
    pub mm2: Option<Mm2Takeover>,
    /// `max_bytes` of one Fetch request.
    pub max_bytes: usize,
    /// Per-partition `partition_max_bytes` of a Fetch request.
    pub partition_max_bytes: usize,
    /// Fetch long-poll wait.
    pub max_wait: Duration,
    /// Cap on the uncompressed size of one batch on the slow paths.
    pub max_decompressed_batch_bytes: usize,
}

/// The destination side: how batches are packed, pipelined and, if so,
/// written in transactions.
#[derive(Debug, Clone)]
pub struct ProduceSettings {
    /// Produce batches of one partition in flight at once (the broker's idempotence window is 5).
    pub max_in_flight_per_partition: usize,
    /// Target size of one Produce request.
    pub max_request_bytes: usize,
    /// Queued source batches smaller than this are merged into larger ones
    /// before producing (0 turns coalescing off).
    pub coalesce_below_bytes: usize,
    /// Cap on the uncompressed size of one batch (coalescing decompresses).
    pub max_decompressed_batch_bytes: usize,
    /// Produce `timeout_ms`: two thirds of the destination's request timeout,
    /// so the broker answers (REQUEST_TIMED_OUT) before strait gives up on the connection.
    pub timeout_ms: i32,
    /// Exactly-once: the transactional id batches are written under.
    pub transactional_id: Option<String>,
}

/// Consumer-group offset sync.
#[derive(Debug, Clone)]
pub struct GroupSettings {
    /// Groups whose offsets are translated onto the destination (empty: off).
    pub groups: Vec<Regex>,
    /// Groups never synced.
    pub groups_exclude: Vec<Regex>,
    /// How often group offsets are synced.
    pub interval: Duration,
    /// A group's offset below the first one strait replicated of a partition
    /// is left alone: another replicator (MirrorMaker 2, `start_from =
    /// "mm2"`) copied those records and translated the group's offsets.
    pub leave_earlier: bool,
}

impl GroupSettings {
    /// True when sync is on.
    pub fn enabled(&self) -> bool {
        !self.groups.is_empty()
    }

    /// True when consumer group `group`'s offsets are synced to the destination.
    /// strait's own checkpoint groups (`strait-*`) never are.
    pub fn wants(&self, group: &str) -> bool {
        !group.starts_with("strait-")
            && self.groups.iter().any(|r| r.is_match(group))
            && !self.groups_exclude.iter().any(|r| r.is_match(group))
    }
}

/// Exactly-once mode: batches and positions in destination transactions.
#[derive(Debug, Clone)]
pub struct ExactlyOnce {
    /// A transaction commits at least this often.
    pub transaction_interval: Duration,
    /// A transaction commits once it holds this many batch bytes.
    pub transaction_max_bytes: usize,
    /// The coordinator aborts a transaction left open this long.
    pub transaction_timeout_ms: i32,
}

/// The process-wide settings every flow shares.
#[derive(Debug, Clone)]
pub struct OpsSettings {
    /// Cap on record bytes held between fetch and destination acknowledgement,
    /// for all flows together.
    pub max_buffered_bytes: usize,
    /// How far the budget may grow while fetchers across a long round trip
    /// want more bytes in flight: 128 MiB when `max_buffered_bytes` is not
    /// set, else `max_buffered_bytes` itself (a set value is a hard cap).
    pub max_buffered_bytes_ceiling: usize,
    /// `host:port` of the Prometheus/health HTTP endpoint (none: off).
    pub metrics_address: Option<std::net::SocketAddr>,
    /// `/readyz` fails once the destination has not acknowledged a checkpoint,
    /// or the source has not answered, for this long (idle or not).
    pub readiness_timeout: Duration,
    /// This process's static membership id in every flow's replication group.
    pub instance_id: String,
    /// `[failover] auto = true`: fail over by itself when the source is gone.
    pub auto_failover: Option<AutoFailover>,
}

/// Automated failover (`[failover]`, see `replicate::autofail`): when every
/// source broker has been unreachable for `source_unavailable` while the
/// destination answers, and the witness command confirms, the flow performs
/// an unplanned failover and runs the hook once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoFailover {
    /// How long every source broker must be unreachable.
    pub source_unavailable: Duration,
    /// The witness: a command (program and arguments) that exits 0 when the
    /// source is confirmed down (a probe from a third site, a cloud health API).
    pub confirm: Vec<String>,
    /// How long the witness may take.
    pub confirm_timeout: Duration,
    /// Run once after the failover (`{destination}`: the destination's
    /// bootstrap servers; `{flow}`: the flow's name); none: no hook.
    pub on_failover: Vec<String>,
}

/// Membership in the flow's replication group (every `strait run` of the
/// flow shares its partitions with the others through it).
#[derive(Debug, Clone)]
pub struct MemberSettings {
    /// Static membership id (`group.instance.id`, KIP-345).
    pub instance_id: String,
    /// The coordinator expels a member it has not heard from for this long;
    /// a member stops producing by itself after as long without an answer.
    pub session_timeout: Duration,
    /// How often a member heartbeats.
    pub heartbeat_interval: Duration,
    /// How long a rebalance waits for members to rejoin (and to hand over
    /// the partitions they give up).
    pub rebalance_timeout: Duration,
}

/// One validated flow: a replication from one cluster to another.
#[derive(Debug, Clone)]
pub struct Config {
    /// The flow's name: checkpoint group `strait-{name}`, offset-map topic
    /// `__strait.{name}.offsets`, transactional id `strait-{name}`.
    pub name: String,
    /// Source cluster.
    pub source: ClusterConfig,
    /// Destination cluster.
    pub destination: ClusterConfig,
    /// Topic selection, naming and mirroring.
    pub topics: TopicSettings,
    /// The source side.
    pub fetch: FetchSettings,
    /// The destination side.
    pub produce: ProduceSettings,
    /// How often acknowledged positions are committed to the destination.
    pub checkpoint_interval: Duration,
    /// Consumer-group offset sync.
    pub groups: GroupSettings,
    /// Exactly-once mode (none: at-least-once).
    pub exactly_once: Option<ExactlyOnce>,
    /// Origins (cluster aliases) whose records this flow forwards besides the
    /// records produced on its source (provenance; empty: local records only).
    pub forward_from: Vec<String>,
    /// This flow may write destination topics another flow writes too.
    pub merge: bool,
    /// Membership in the replication group.
    pub member: MemberSettings,
    /// Heartbeats written to the source and replicated (none: off).
    pub heartbeats: Option<HeartbeatSettings>,
    /// Process-wide settings.
    pub ops: OpsSettings,
}

impl Config {
    /// The consumer group on the destination that holds strait's source positions.
    pub fn checkpoint_group(&self) -> String {
        format!("strait-{}", self.name)
    }

    /// The `transactional.id` of exactly-once mode: one per flow and member
    /// instance id, so a restarted member fences its previous incarnation
    /// (and aborts its open transaction) while other members keep theirs.
    pub fn transactional_id(&self) -> String {
        format!("strait-{}-{}", self.name, self.member.instance_id)
    }

    /// Settings every member of the flow's replication group must share: a
    /// process whose values differ is refused by the leader, naming them.
    pub fn shared_settings(&self) -> std::collections::BTreeMap<String, String> {
        let list = |v: &[Regex]| {
            v.iter()
                .map(|r| super::pattern_text(r).to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut m = std::collections::BTreeMap::new();
        m.insert("source".into(), self.source.alias.clone());
        m.insert("destination".into(), self.destination.alias.clone());
        m.insert("topics".into(), list(&self.topics.topics));
        m.insert("topics_exclude".into(), list(&self.topics.topics_exclude));
        let rename = match &self.topics.rename {
            Rename::Identity => "identity".to_string(),
            Rename::Prefix => "prefix".to_string(),
            Rename::Template(t) => t.clone(),
            Rename::StripPrefix(p) => format!("without the {p}. prefix"),
        };
        m.insert("rename".into(), rename);
        m.insert("exactly_once".into(), self.exactly_once.is_some().to_string());
        let start_from = format!("{:?}", self.fetch.start_from).to_lowercase();
        let start_from = match &self.fetch.mm2 {
            Some(m) => format!(
                "after MirrorMaker 2's positions in {} (else {start_from})",
                m.offsets_topic
            ),
            None => start_from,
        };
        m.insert("start_from".into(), start_from);
        m.insert("groups".into(), list(&self.groups.groups));
        m.insert("forward_from".into(), self.forward_from.join(","));
        m
    }

    /// Sets this process's instance id (`--instance-id`), keeping the
    /// transactional id in step.
    pub fn set_instance_id(&mut self, id: &str) {
        self.member.instance_id = id.to_string();
        self.ops.instance_id = id.to_string();
        let eos = self.exactly_once.take();
        self.set_exactly_once(eos);
    }

    /// The destination topic holding the source→destination offset map.
    pub fn offset_map_topic(&self) -> String {
        format!("__strait.{}.offsets", self.name)
    }

    /// The topic on the destination recording the source ACLs as last synced
    /// (see `replicate::acls`).
    pub fn acl_topic(&self) -> String {
        format!("__strait.{}.acls", self.name)
    }

    /// The topic on the destination holding the failover record
    /// (see `replicate::failover_record`).
    pub fn failover_topic(&self) -> String {
        format!("__strait.{}.failover", self.name)
    }

    /// True when source topic `name` is to be replicated.
    pub fn wants_topic(&self, name: &str, is_internal: bool) -> bool {
        self.topics.wants(name, is_internal)
    }

    /// True when consumer group `group`'s offsets are synced to the destination.
    pub fn wants_group(&self, group: &str) -> bool {
        self.groups.wants(group)
    }

    /// Destination name of a source topic.
    pub fn destination_topic(&self, source_topic: &str) -> String {
        self.topics.destination(source_topic)
    }

    /// Switches exactly-once mode off or on (`settings`), keeping the producer's
    /// transactional id in step.
    pub fn set_exactly_once(&mut self, settings: Option<ExactlyOnce>) {
        self.produce.transactional_id = settings.as_ref().map(|_| self.transactional_id());
        self.exactly_once = settings;
    }

    /// When source and destination are one cluster: why copying `topics` into
    /// it would feed the copy back into itself ([`TopicSettings::self_copy_problem`]).
    pub fn self_copy_problem<'a>(&self, topics: impl IntoIterator<Item = &'a str>) -> Option<String> {
        self.topics.self_copy_problem(topics)
    }

    /// True when the two bootstrap lists name the same servers (in any order).
    pub fn same_bootstrap(&self) -> bool {
        self.source.bootstrap_set() == self.destination.bootstrap_set()
    }

    /// The reverse replication for failback: source and destination swapped,
    /// replicating the destination topics of `source_topics` back under their
    /// source names. Only `identity` and `prefix` renames can be reversed.
    pub fn reversed(&self, source_topics: &[String]) -> Result<Config, String> {
        let rename = match &self.topics.rename {
            Rename::Identity => Rename::Identity,
            Rename::Prefix => Rename::StripPrefix(self.source.alias.clone()),
            other => {
                return Err(format!(
                    "failback can reverse rename = \"identity\" or \"prefix\", not {other:?}"
                ))
            }
        };
        let topics = source_topics
            .iter()
            .map(|t| Regex::new(&format!("^{}$", regex::escape(&self.destination_topic(t)))).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut r = self.clone();
        r.name = format!("{}-failback", self.name);
        r.source = self.destination.clone();
        r.destination = self.source.clone();
        r.topics = TopicSettings {
            source_alias: self.destination.alias.clone(),
            destination_alias: self.source.alias.clone(),
            topics,
            topics_exclude: Vec::new(),
            rename,
            // The original source already has its own configs and ACLs.
            sync_topic_configs: false,
            sync_acls: false,
            ..self.topics.clone()
        };
        r.fetch.start_from = StartFrom::Latest;
        r.groups.groups = Vec::new();
        r.ops.metrics_address = None;
        r.forward_from = Vec::new();
        // The failback copies the listed topics only; heartbeats stay with the original flow.
        r.heartbeats = None;
        r.topics.heartbeats_topic = None;
        r.produce.timeout_ms = super::produce_timeout_ms(&r.destination);
        let eos = r.exactly_once.take();
        r.set_exactly_once(eos);
        Ok(r)
    }
}

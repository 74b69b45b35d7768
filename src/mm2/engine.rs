//! strait's engine keys from MM2's connector settings, MM2's defaults written
//! out where strait's differ. The defaults, as in Kafka's source (checked
//! against apache/kafka trunk, 2024-10):
//!
//! | MM2 key | default | where |
//! |---|---|---|
//! | `topics` | `.*` | `DefaultTopicFilter.TOPICS_INCLUDE_DEFAULT` |
//! | `topics.exclude` | `.*[\-\.]internal, .*\.replica, __.*` | `DefaultTopicFilter.TOPICS_EXCLUDE_DEFAULT` |
//! | `groups` | `.*` | `DefaultGroupFilter.GROUPS_INCLUDE_DEFAULT` |
//! | `groups.exclude` | `console-consumer-.*, connect-.*, __.*` | `DefaultGroupFilter.GROUPS_EXCLUDE_DEFAULT` |
//! | `sync.group.offsets.enabled` | `false` | `MirrorCheckpointConfig` |
//! | `sync.group.offsets.interval.seconds` | `60` | `MirrorCheckpointConfig` |
//! | `emit.checkpoints.enabled` | `true` | `MirrorCheckpointConfig` |
//! | `refresh.topics.interval.seconds` | `600` | `MirrorSourceConfig` |
//! | `sync.topic.configs.enabled`, `sync.topic.acls.enabled` | `true` | `MirrorSourceConfig` |
//! | `replication.factor` | `2` | `MirrorSourceConfig.REPLICATION_FACTOR_DEFAULT` |
//! | `emit.heartbeats.enabled` | `true` | `MirrorHeartbeatConfig` |
//! | `emit.heartbeats.interval.seconds` | `1` | `MirrorHeartbeatConfig` |
//! | `replication.policy.class` | `DefaultReplicationPolicy` | `MirrorClientConfig` |
//! | `replication.policy.separator` | `.` | `DefaultReplicationPolicy.SEPARATOR_DEFAULT` |
//! | offsets topic | `mm2-offsets.<source>.internal` on the target | `MirrorMakerConfig.workerConfig` |

use super::convert::{Conv, Entry, Val};
use super::{regex, ImportError, ReportKind};

const TOPICS_EXCLUDE_DEFAULT: &str = ".*[\\-\\.]internal, .*\\.replica, __.*";
const GROUPS_EXCLUDE_DEFAULT: &str = "console-consumer-.*, connect-.*, __.*";

/// The order of docs/configuration.md's top-level table.
const ORDER: &[&str] = &[
    "name",
    "topics",
    "topics_exclude",
    "rename",
    "start_from",
    "mm2_offsets_topic",
    "mm2_connector",
    "refresh_interval_ms",
    "replication_factor",
    "sync_acls",
    "sync_topic_configs",
    "groups",
    "groups_exclude",
    "group_sync_interval_ms",
    "heartbeats",
    "heartbeats_interval_ms",
    "exactly_once",
];

pub(crate) fn sort(entries: &mut [Entry]) {
    entries.sort_by_key(|e| ORDER.iter().position(|k| *k == e.key).unwrap_or(ORDER.len()));
}

pub(crate) struct Settings<'c, 'a> {
    conv: &'c mut Conv<'a>,
}

impl<'c, 'a> Settings<'c, 'a> {
    pub(crate) fn new(conv: &'c mut Conv<'a>) -> Self {
        Self { conv }
    }

    /// The engine keys of `flow` (`A->B`), or of the top level when `None`.
    pub(crate) fn engine(&mut self, flow: Option<&str>) -> Result<Vec<Entry>, ImportError> {
        let mut out = Vec::new();
        self.patterns(flow, &["topics"], ".*", "topics", false, &mut out)?;
        self.patterns(
            flow,
            &["topics.exclude", "topics.blacklist"],
            TOPICS_EXCLUDE_DEFAULT,
            "topics_exclude",
            true,
            &mut out,
        )?;
        self.rename(flow, &mut out)?;
        if let Some(i) = self.conv.setting(flow, "refresh.topics.enabled") {
            if self.boolean(i, true) {
                self.conv
                    .mark(i, ReportKind::Converted, "strait always refreshes topics");
            } else {
                self.conv.mark(
                    i,
                    ReportKind::Unsupported,
                    "strait always refreshes topics (refresh_interval_ms); new topics will be picked up",
                );
            }
        }
        self.seconds(
            flow,
            "refresh.topics.interval.seconds",
            600,
            "refresh_interval_ms",
            Some(10_000),
            &mut out,
        );
        match self.conv.setting(flow, "replication.factor") {
            Some(i) => match self.conv.value(i).trim().parse::<i16>() {
                Ok(v) if v == -1 || v > 0 => {
                    self.conv.mark(i, ReportKind::Converted, "replication_factor");
                    out.push(entry("replication_factor", Val::Int(v.into()), None));
                }
                _ => self.conv.mark(
                    i,
                    ReportKind::Unsupported,
                    "not -1 or a positive replication factor; left out",
                ),
            },
            None => out.push(entry(
                "replication_factor",
                Val::Int(2),
                Some("MM2's default replication.factor"),
            )),
        }
        self.flag(flow, "sync.topic.acls.enabled", "sync_acls", &mut out);
        self.flag(flow, "sync.topic.configs.enabled", "sync_topic_configs", &mut out);
        self.groups(flow, &mut out)?;
        self.heartbeats(flow, &mut out);
        if let Some(i) = self.conv.find("exactly.once.source.support") {
            if self.conv.value(i).trim().eq_ignore_ascii_case("enabled") {
                self.conv.mark(i, ReportKind::Converted, "exactly_once = true");
                out.push(entry("exactly_once", Val::Bool(true), None));
            } else {
                self.conv.mark(
                    i,
                    ReportKind::NotNeeded,
                    "exactly-once source support is off: strait's default (exactly_once = false)",
                );
            }
        }
        sort(&mut out);
        Ok(out)
    }

    /// `start_from = "mm2"` and the flow's MM2 offsets topic (on its destination).
    pub(crate) fn takeover(&mut self, entries: &mut Vec<Entry>, (s, d): &(String, String), with_start: bool) {
        if with_start {
            entries.push(start_from());
        }
        let topic = if let Some(t) = self.conv.input.offsets_topic.clone() {
            entries.push(entry(
                "mm2_offsets_topic",
                Val::Str(t),
                Some("the Connect cluster's offset.storage.topic (Strimzi)"),
            ));
            entries.push(entry(
                "mm2_connector",
                Val::Str(format!("{s}->{d}.MirrorSourceConnector")),
                Some("Strimzi names the source connector <source>-><target>.MirrorSourceConnector"),
            ));
            return sort(entries);
        } else {
            self.conv
                .find("offset.storage.topic")
                .or_else(|| self.conv.find(&format!("{d}.offset.storage.topic")))
        };
        match topic {
            Some(i) => {
                self.conv
                    .mark(i, ReportKind::Converted, format!("mm2_offsets_topic of flow {s}->{d}"));
                let v = self.conv.value(i).trim().to_string();
                entries.push(entry("mm2_offsets_topic", Val::Str(v), None));
            }
            None => entries.push(entry(
                "mm2_offsets_topic",
                Val::Str(format!("mm2-offsets.{s}.internal")),
                Some(&format!(
                    "MM2 dedicated mode's Connect offsets topic on {d} (default name)"
                )),
            )),
        }
        sort(entries);
    }

    pub(crate) fn takeover_top(&mut self, top: &mut Vec<Entry>) {
        top.push(start_from());
        sort(top);
    }

    fn boolean(&mut self, i: usize, default: bool) -> bool {
        match self.conv.value(i).trim().to_ascii_lowercase().as_str() {
            "true" => true,
            "false" => false,
            _ => {
                self.conv.mark(
                    i,
                    ReportKind::Unsupported,
                    format!("not true or false (MM2 refuses it); took MM2's default {default}"),
                );
                default
            }
        }
    }

    /// A boolean MM2 key whose default (true) is strait's too: written when set.
    fn flag(&mut self, flow: Option<&str>, key: &str, to: &'static str, out: &mut Vec<Entry>) {
        if let Some(i) = self.conv.setting(flow, key) {
            let v = self.boolean(i, true);
            self.conv.mark(i, ReportKind::Converted, to);
            out.push(entry(to, Val::Bool(v), None));
        }
    }

    /// Seconds → milliseconds; MM2's default written when it differs from strait's.
    fn seconds(
        &mut self,
        flow: Option<&str>,
        key: &str,
        default_s: i64,
        to: &'static str,
        strait_ms: Option<i64>,
        out: &mut Vec<Entry>,
    ) {
        let set = self.conv.setting(flow, key);
        let v = match set {
            Some(i) => match self.conv.value(i).trim().parse::<i64>() {
                Ok(v) if v >= 0 => {
                    self.conv.mark(i, ReportKind::Converted, to);
                    Some(v)
                }
                _ => {
                    self.conv.mark(
                        i,
                        ReportKind::Unsupported,
                        format!("not a number of seconds; took MM2's default {default_s}"),
                    );
                    None
                }
            },
            None => None,
        };
        match v {
            Some(v) => out.push(entry(to, Val::Int(v.saturating_mul(1000)), None)),
            None if strait_ms != Some(default_s * 1000) => {
                let c = format!("MM2's default {key} = {default_s}");
                out.push(entry(to, Val::Int(default_s * 1000), Some(&c)));
            }
            None => {}
        }
    }

    /// A list of Java regexes: each checked; an include entry strait cannot
    /// read is left out (reported), an exclude entry fails the import (leaving
    /// it out would replicate what MM2 did not).
    fn patterns(
        &mut self,
        flow: Option<&str>,
        keys: &[&str],
        default: &str,
        to: &'static str,
        exclude: bool,
        out: &mut Vec<Entry>,
    ) -> Result<(), ImportError> {
        let found: Vec<usize> = keys.iter().filter_map(|k| self.conv.setting(flow, k)).collect();
        let used = found.first().copied();
        for &o in found.iter().skip(1) {
            if Some(o) != used {
                let k = self.conv.key(used.unwrap_or(o)).to_string();
                self.conv.mark(
                    o,
                    ReportKind::NotNeeded,
                    format!("`{k}` is set too and takes precedence"),
                );
            }
        }
        let text = used.map_or(default.to_string(), |i| self.conv.value(i).to_string());
        let mut list = Vec::new();
        for p in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match regex::check(p) {
                Ok(r) => list.push(r),
                Err(why) => match used {
                    Some(i) if exclude => return Err(self.conv.invalid(i, format!("`{p}`: {why}; leaving it out would replicate what MM2 excludes: rewrite it without that feature"))),
                    Some(i) => {
                        let line = crate::mm2::ReportLine {
                            kind: ReportKind::Unsupported,
                            line: Some(self.conv.props[i].line),
                            key: self.conv.key(i).to_string(),
                            message: format!("`{p}`: {why}; left out of {to}"),
                        };
                        if !self.conv.report.contains(&line) {
                            self.conv.report.push(line);
                        }
                    }
                    None => {}
                },
            }
        }
        match used {
            Some(i) => {
                self.conv.mark(i, ReportKind::Converted, to);
                out.push(entry(to, Val::List(list), None));
            }
            None if default != ".*" => {
                let c = format!("MM2's default {}", keys[0]);
                out.push(entry(to, Val::List(list), Some(&c)));
            }
            None => {}
        }
        Ok(())
    }

    fn rename(&mut self, flow: Option<&str>, out: &mut Vec<Entry>) -> Result<(), ImportError> {
        let class = self.conv.setting(flow, "replication.policy.class");
        let sep = self.conv.setting(flow, "replication.policy.separator");
        let class_name = class.map_or("DefaultReplicationPolicy".to_string(), |i| {
            self.conv.value(i).trim().to_string()
        });
        let simple = class_name.rsplit('.').next().unwrap_or_default();
        let (value, comment) = match simple {
            "IdentityReplicationPolicy" => {
                if let Some(s) = sep {
                    self.conv.mark(
                        s,
                        ReportKind::NotNeeded,
                        "IdentityReplicationPolicy keeps topic names: no separator",
                    );
                }
                ("identity".to_string(), None)
            }
            "DefaultReplicationPolicy" => {
                let sep_v = sep.map_or(".".to_string(), |i| self.conv.value(i).to_string());
                if let Some(s) = sep {
                    self.conv.mark(s, ReportKind::Converted, "rename");
                }
                if sep_v == "." {
                    (
                        "prefix".to_string(),
                        class
                            .is_none()
                            .then_some("MM2's DefaultReplicationPolicy: <source alias>.<topic>"),
                    )
                } else if sep_v.contains(['{', '}']) || sep_v.is_empty() {
                    let i = sep.unwrap_or(0);
                    return Err(self.conv.invalid(i, "a separator strait's rename template cannot hold"));
                } else {
                    (
                        format!("{{source}}{sep_v}{{topic}}"),
                        Some("MM2's DefaultReplicationPolicy with replication.policy.separator"),
                    )
                }
            }
            _ => {
                let i = class.unwrap_or(0);
                return Err(self.conv.invalid(i, format!("replication policy `{class_name}`: strait cannot know the topic names it makes (it converts DefaultReplicationPolicy and IdentityReplicationPolicy)")));
            }
        };
        if let Some(i) = class {
            self.conv.mark(i, ReportKind::Converted, "rename");
        }
        out.push(entry("rename", Val::Str(value), comment));
        Ok(())
    }

    fn groups(&mut self, flow: Option<&str>, out: &mut Vec<Entry>) -> Result<(), ImportError> {
        let sync_i = self.conv.setting(flow, "sync.group.offsets.enabled");
        let mut sync = sync_i.is_some_and(|i| self.boolean(i, false));
        let cp = self.conv.setting(flow, "emit.checkpoints.enabled");
        let cp_on = cp.is_none_or(|i| self.boolean(i, true));
        let strimzi_cp = flow.and_then(|f| self.conv.input.checkpoints.get(f).copied());
        let mut why_off =
            "MM2's default sync.group.offsets.enabled = false: no group offsets are written on the destination"
                .to_string();
        if let Some(i) = sync_i {
            let msg = if sync {
                "groups (group offset sync on)"
            } else {
                "groups = [] (group offset sync off)"
            };
            self.conv.mark(i, ReportKind::Converted, msg);
            why_off = "sync.group.offsets.enabled = false: no group offsets are written on the destination".into();
        }
        if sync && !cp_on {
            sync = false;
            why_off = "emit.checkpoints.enabled = false: MM2 syncs no group offsets without checkpoints".into();
            if let Some(i) = cp {
                self.conv.mark(
                    i,
                    ReportKind::Converted,
                    "groups = [] (MM2 syncs group offsets from its checkpoints)",
                );
            }
        }
        if sync && strimzi_cp == Some(false) {
            sync = false;
            why_off = "no checkpointConnector: Strimzi syncs no group offsets".into();
        }
        if !sync {
            for k in [
                "groups",
                "groups.exclude",
                "groups.blacklist",
                "sync.group.offsets.interval.seconds",
            ] {
                if let Some(i) = self.conv.setting(flow, k) {
                    self.conv.mark(i, ReportKind::NotNeeded, "group offset sync is off (sync.group.offsets.enabled = false); `strait offsets translate` translates any group on demand");
                }
            }
            out.push(entry("groups", Val::List(vec![]), Some(&why_off)));
            return Ok(());
        }
        self.patterns(flow, &["groups"], ".*", "groups", false, out)?;
        if !out.iter().any(|e| e.key == "groups") {
            out.push(entry(
                "groups",
                Val::List(vec![".*".into()]),
                Some("MM2's default groups"),
            ));
        }
        self.patterns(
            flow,
            &["groups.exclude", "groups.blacklist"],
            GROUPS_EXCLUDE_DEFAULT,
            "groups_exclude",
            true,
            out,
        )?;
        self.seconds(
            flow,
            "sync.group.offsets.interval.seconds",
            60,
            "group_sync_interval_ms",
            Some(10_000),
            out,
        );
        Ok(())
    }

    fn heartbeats(&mut self, flow: Option<&str>, out: &mut Vec<Entry>) {
        if flow.and_then(|f| self.conv.input.heartbeats.get(f).copied()) == Some(false) {
            out.push(entry(
                "heartbeats",
                Val::Bool(false),
                Some("no heartbeatConnector (Strimzi)"),
            ));
            if let Some(i) = self.conv.setting(flow, "emit.heartbeats.enabled") {
                self.conv
                    .mark(i, ReportKind::NotNeeded, "no heartbeatConnector: heartbeats = false");
            }
        } else {
            self.flag(flow, "emit.heartbeats.enabled", "heartbeats", out);
        }
        self.seconds(
            flow,
            "emit.heartbeats.interval.seconds",
            1,
            "heartbeats_interval_ms",
            Some(1_000),
            out,
        );
    }
}

fn entry(key: &'static str, value: Val, comment: Option<&str>) -> Entry {
    Entry {
        key,
        value,
        comment: comment.map(String::from),
    }
}

fn start_from() -> Entry {
    entry(
        "start_from",
        Val::Str("mm2".into()),
        Some("continue exactly after the last offset MM2 committed"),
    )
}

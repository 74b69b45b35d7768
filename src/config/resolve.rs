//! Resolution of the file as written ([`super::raw`]) into typed settings:
//! defaults applied, values checked, and every error naming the key and its
//! line.

use super::*;

/// Resolves a [`RawFile`] into a [`Document`], naming file and line in errors.
pub(super) struct Resolver<'a> {
    pub(super) text: &'a str,
    pub(super) path: &'a str,
}

/// A key's value, or its default; with the key's span (0..0 for a default).
fn or<T: Clone>(v: &Option<Spanned<T>>, default: T) -> (T, Range<usize>) {
    match v {
        Some(s) => (s.get_ref().clone(), s.span()),
        None => (default, 0..0),
    }
}

impl Resolver<'_> {
    fn invalid(&self, span: Range<usize>, key: &str, problem: String) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_string(),
            line: line_of(self.text, span.start),
            key: key.to_string(),
            problem,
        }
    }

    fn parse_error(&self, message: String) -> ConfigError {
        ConfigError::Parse {
            path: self.path.to_string(),
            message,
        }
    }

    pub(super) fn document(&self, raw: RawFile) -> Result<Document, ConfigError> {
        let ops = self.ops(&raw)?;
        let top = raw.engine();
        let one_flow = raw.source.is_some() || raw.destination.is_some();
        let many = !raw.clusters.is_empty() || !raw.flows.is_empty();
        let mut clusters = BTreeMap::new();
        let mut flows = Vec::new();
        if one_flow && many {
            return Err(self.parse_error(
                "use either [source] and [destination] (one flow) or [clusters.<alias>] and [[flows]] (many flows), not both"
                    .into(),
            ));
        }
        if one_flow {
            let (Some(source), Some(destination)) = (raw.source, raw.destination) else {
                return Err(self.parse_error(
                    "a one-flow config needs both a [source] and a [destination] table with bootstrap_servers".into(),
                ));
            };
            let source = self.cluster("source", source.into_inner(), "source")?;
            let destination = self.cluster("destination", destination.into_inner(), "destination")?;
            let name = raw
                .name
                .clone()
                .unwrap_or_else(|| Spanned::new(0..0, defaults::NAME.to_string()));
            flows.push(self.flow(name, source.clone(), destination.clone(), &top, &ops)?);
            clusters.insert(source.alias.clone(), source);
            clusters.insert(destination.alias.clone(), destination);
        } else if many {
            if let Some(name) = &raw.name {
                return Err(self.invalid(
                    name.span(),
                    "name",
                    "names the flow of a one-flow config; with [[flows]], give each flow its own `name`".into(),
                ));
            }
            for (alias, c) in raw.clusters {
                let span = c.span();
                let mut c = c.into_inner();
                if !c.alias.is_empty() && c.alias != alias {
                    return Err(self.invalid(
                        span,
                        &format!("clusters.{alias}.alias"),
                        format!(
                            "is {:?}; a [clusters.<alias>] table takes its alias from its name",
                            c.alias
                        ),
                    ));
                }
                c.alias = alias.clone();
                valid_name(&alias).map_err(|p| self.invalid(span.clone(), &format!("clusters.{alias}"), p))?;
                clusters.insert(alias.clone(), self.cluster(&format!("clusters.{alias}"), c, &alias)?);
            }
            if raw.flows.is_empty() {
                return Err(self.parse_error(
                    "[clusters.*] tables but no [[flows]]: add a [[flows]] table with `source` and `destination` aliases"
                        .into(),
                ));
            }
            for f in raw.flows {
                let f = f.into_inner();
                let lookup = |key: &str, alias: &Spanned<String>| {
                    clusters.get(alias.get_ref()).cloned().ok_or_else(|| {
                        self.invalid(
                            alias.span(),
                            key,
                            format!(
                                "is {:?}, which no [clusters.<alias>] table defines; defined: {}",
                                alias.get_ref(),
                                clusters.keys().cloned().collect::<Vec<_>>().join(", ")
                            ),
                        )
                    })
                };
                let source = lookup("source", &f.source)?;
                let destination = lookup("destination", &f.destination)?;
                if source.alias == destination.alias {
                    return Err(self.invalid(
                        f.destination.span(),
                        "destination",
                        format!(
                            "is the flow's source too ({:?}); a flow copies between two clusters",
                            source.alias
                        ),
                    ));
                }
                let name = f.name.clone().unwrap_or_else(|| {
                    Spanned::new(f.source.span(), format!("{}-to-{}", source.alias, destination.alias))
                });
                let engine = top.overlaid(&f.engine());
                let mut flow = self.flow(name.clone(), source, destination, &engine, &ops)?;
                for origin in &f.forward_from {
                    if !clusters.contains_key(origin.get_ref()) {
                        return Err(self.invalid(
                            origin.span(),
                            "forward_from",
                            format!(
                                "names {:?}, which no [clusters.<alias>] table defines; defined: {}",
                                origin.get_ref(),
                                clusters.keys().cloned().collect::<Vec<_>>().join(", ")
                            ),
                        ));
                    }
                    if *origin.get_ref() == flow.source.alias || *origin.get_ref() == flow.destination.alias {
                        return Err(self.invalid(
                            origin.span(),
                            "forward_from",
                            format!(
                                "names {:?}, the flow's own {}: a flow always forwards its source's records and never sends records back to their origin",
                                origin.get_ref(),
                                if *origin.get_ref() == flow.source.alias { "source" } else { "destination" }
                            ),
                        ));
                    }
                    if flow.exactly_once.is_some() {
                        return Err(self.invalid(
                            origin.span(),
                            "forward_from",
                            "cannot be used with exactly_once = true: forwarding records of several origins needs one producer id per origin, and one transaction has one producer id".into(),
                        ));
                    }
                    flow.forward_from.push(origin.get_ref().clone());
                }
                flow.merge = f.merge;
                if flows.iter().any(|x: &Config| x.name == flow.name) {
                    return Err(self.invalid(
                        name.span(),
                        "name",
                        format!(
                            "{:?} names two flows; each flow needs its own name (its checkpoints and offset map are kept under it)",
                            flow.name
                        ),
                    ));
                }
                flows.push(flow);
            }
        } else {
            return Err(self.parse_error(
                "no clusters: add [source] and [destination] tables (one flow), or [clusters.<alias>] and [[flows]] tables"
                    .into(),
            ));
        }
        let aliases: Vec<String> = clusters.keys().cloned().collect();
        for f in &mut flows {
            f.topics.cluster_aliases = aliases.clone();
        }
        Ok(Document { clusters, flows, ops })
    }

    /// Checks a cluster table: its bootstrap list, TLS and SASL (`key` names it in errors).
    fn cluster(&self, key: &str, mut c: ClusterConfig, alias: &str) -> Result<ClusterConfig, ConfigError> {
        ClientConfig::new(c.bootstrap_servers.get_ref())
            .validate()
            .map_err(|e| {
                self.invalid(
                    c.bootstrap_servers.span(),
                    &format!("{key}.bootstrap_servers"),
                    format!("is invalid: {e}"),
                )
            })?;
        let invalid = |span: Range<usize>, key: &str, problem: String| self.invalid(span, key, problem);
        security::validate(key, c.tls.as_ref(), c.sasl.as_mut(), &invalid)?;
        for (name, v) in [
            ("socket_receive_buffer_bytes", &c.socket_receive_buffer_bytes),
            ("socket_send_buffer_bytes", &c.socket_send_buffer_bytes),
        ] {
            if let Some(v) = v {
                let max = crate::client::sockbuf::MAX_BUFFER_BYTES;
                if !(1..=max as i64).contains(v.get_ref()) {
                    return Err(self.invalid(
                        v.span(),
                        &format!("{key}.{name}"),
                        format!(
                            "is {}; allowed: 1 to {max} bytes (unset: the kernel's autotuning)",
                            v.get_ref()
                        ),
                    ));
                }
            }
        }
        if c.alias.is_empty() {
            c.alias = alias.to_string();
        }
        Ok(c)
    }

    fn ops(&self, raw: &RawFile) -> Result<OpsSettings, ConfigError> {
        let (buffered, span) = or(&raw.max_buffered_bytes, defaults::MAX_BUFFERED_BYTES);
        if buffered < 1024 * 1024 {
            return Err(self.invalid(
                span,
                "max_buffered_bytes",
                format!("is {buffered}; allowed: at least 1048576"),
            ));
        }
        let metrics_address = match &raw.metrics_address {
            None => None,
            Some(a) => Some(a.get_ref().parse::<std::net::SocketAddr>().map_err(|_| {
                self.invalid(
                    a.span(),
                    "metrics_address",
                    format!(
                        "is {:?}; allowed: an IP address and port such as \"0.0.0.0:9464\"",
                        a.get_ref()
                    ),
                )
            })?),
        };
        let (readiness, span) = or(&raw.readiness_timeout_ms, defaults::READINESS_TIMEOUT_MS);
        if readiness < 1_000 {
            return Err(self.invalid(
                span,
                "readiness_timeout_ms",
                format!("is {readiness}; allowed: at least 1000"),
            ));
        }
        let instance_id = match &raw.instance_id {
            None => defaults::instance_id(),
            Some(i) => {
                let id = i.get_ref();
                valid_name(id).map_err(|p| self.invalid(i.span(), "instance_id", p))?;
                id.clone()
            }
        };
        let auto_failover = match &raw.failover {
            Some(f) if f.get_ref().auto => {
                let r = f.get_ref();
                if r.confirm.is_empty() {
                    return Err(self.invalid(
                        f.span(),
                        "failover.confirm",
                        "is required with auto = true: strait alone cannot tell a dead source from a cut link, so a witness command (exit 0 = the source is down) must confirm".into(),
                    ));
                }
                let (secs, span) = or(&r.source_unavailable_s, 60);
                if secs < 5 {
                    return Err(self.invalid(
                        span,
                        "failover.source_unavailable_s",
                        format!("is {secs}; allowed: at least 5"),
                    ));
                }
                let (confirm_s, span) = or(&r.confirm_timeout_s, 30);
                if confirm_s == 0 {
                    return Err(self.invalid(span, "failover.confirm_timeout_s", "is 0; allowed: at least 1".into()));
                }
                Some(crate::config::flow::AutoFailover {
                    source_unavailable: Duration::from_secs(secs),
                    confirm: r.confirm.clone(),
                    confirm_timeout: Duration::from_secs(confirm_s),
                    on_failover: r.on_failover.clone(),
                })
            }
            _ => None,
        };
        Ok(OpsSettings {
            auto_failover,
            max_buffered_bytes: buffered,
            max_buffered_bytes_ceiling: if raw.max_buffered_bytes.is_some() {
                buffered
            } else {
                defaults::MAX_BUFFERED_BYTES_CEILING
            },
            metrics_address,
            readiness_timeout: Duration::from_millis(readiness),
            instance_id,
        })
    }

    fn regexes(
        &self,
        list: &Option<Spanned<Vec<Spanned<String>>>>,
        default: &[&str],
        key: &str,
    ) -> Result<Vec<Regex>, ConfigError> {
        let owned: Vec<Spanned<String>>;
        let items: &[Spanned<String>] = match list {
            Some(l) => l.get_ref(),
            None => {
                owned = default.iter().map(|d| Spanned::new(0..0, d.to_string())).collect();
                &owned
            }
        };
        items
            .iter()
            .map(|s| {
                Regex::new(&format!("^(?:{})$", s.get_ref()))
                    .map_err(|e| self.invalid(s.span(), key, format!("has an invalid regex {:?}: {e}", s.get_ref())))
            })
            .collect()
    }

    /// Resolves one flow's engine keys into its sections.
    fn flow(
        &self,
        name: Spanned<String>,
        source: ClusterConfig,
        destination: ClusterConfig,
        e: &RawEngine,
        ops: &OpsSettings,
    ) -> Result<Config, ConfigError> {
        valid_name(name.get_ref()).map_err(|p| self.invalid(name.span(), "name", p))?;
        let (rename, span) = or(&e.rename, "identity".to_string());
        let rename = match rename.as_str() {
            "identity" => Rename::Identity,
            "prefix" => Rename::Prefix,
            t if t.contains("{topic}") => Rename::Template(t.to_string()),
            other => {
                return Err(self.invalid(
                    span,
                    "rename",
                    format!("is {other:?}; allowed: \"identity\", \"prefix\", or a template containing {{topic}} (and optionally {{source}})"),
                ))
            }
        };
        let (start, span) = or(&e.start_from, "earliest".to_string());
        let (fallback, fallback_span) = or(&e.mm2_fallback, "earliest".to_string());
        let (start_from, mm2) = match start.as_str() {
            "earliest" => (StartFrom::Earliest, None),
            "latest" => (StartFrom::Latest, None),
            "mm2" => {
                let fallback = match fallback.as_str() {
                    "earliest" => StartFrom::Earliest,
                    "latest" => StartFrom::Latest,
                    other => {
                        return Err(self.invalid(
                            fallback_span,
                            "mm2_fallback",
                            format!("is {other:?}; allowed: \"earliest\", \"latest\""),
                        ))
                    }
                };
                let topic = or(&e.mm2_offsets_topic, format!("mm2-offsets.{}.internal", source.alias)).0;
                let connector = or(&e.mm2_connector, "MirrorSourceConnector".to_string()).0;
                (
                    fallback,
                    Some(Mm2Takeover {
                        offsets_topic: topic,
                        connector,
                    }),
                )
            }
            other => {
                return Err(self.invalid(
                    span,
                    "start_from",
                    format!("is {other:?}; allowed: \"earliest\", \"latest\", \"mm2\""),
                ))
            }
        };
        let took_over = mm2.is_some();
        if mm2.is_none() {
            for (key, set) in [
                ("mm2_offsets_topic", e.mm2_offsets_topic.as_ref().map(|s| s.span())),
                ("mm2_connector", e.mm2_connector.as_ref().map(|s| s.span())),
                ("mm2_fallback", e.mm2_fallback.as_ref().map(|s| s.span())),
            ] {
                if let Some(span) = set {
                    return Err(self.invalid(span, key, "applies only with start_from = \"mm2\"".to_string()));
                }
            }
        }
        let (in_flight, span) = or(&e.max_in_flight_per_partition, defaults::MAX_IN_FLIGHT);
        if !(1..=5).contains(&in_flight) {
            return Err(self.invalid(
                span,
                "max_in_flight_per_partition",
                format!("is {in_flight}; allowed: 1 to 5 (the broker's idempotent-producer window)"),
            ));
        }
        let (fetch, span) = or(&e.fetch_max_bytes, defaults::FETCH_MAX_BYTES);
        if fetch > ops.max_buffered_bytes {
            return Err(self.invalid(
                span,
                "fetch_max_bytes",
                format!(
                    "is {fetch}, above max_buffered_bytes ({}); allowed: at most max_buffered_bytes",
                    ops.max_buffered_bytes
                ),
            ));
        }
        let (max_plain, span) = or(&e.max_decompressed_batch_bytes, defaults::MAX_DECOMPRESSED_BATCH_BYTES);
        if max_plain < 1024 * 1024 {
            return Err(self.invalid(
                span,
                "max_decompressed_batch_bytes",
                format!("is {max_plain}; allowed: at least 1048576 (a default broker's largest batch)"),
            ));
        }
        let (txn_interval, _) = or(&e.transaction_interval_ms, defaults::TRANSACTION_INTERVAL_MS);
        let (txn_timeout, span) = or(&e.transaction_timeout_ms, defaults::TRANSACTION_TIMEOUT_MS);
        if !(1_000..=900_000).contains(&txn_timeout) || txn_timeout <= txn_interval.saturating_mul(2) {
            return Err(self.invalid(
                span,
                "transaction_timeout_ms",
                format!(
                    "is {txn_timeout}; allowed: 1000 to 900000 (the broker's default transaction.max.timeout.ms) \
                     and more than twice transaction_interval_ms ({txn_interval})"
                ),
            ));
        }
        let ms =
            |v: &Option<Spanned<u64>>, default: u64, floor: u64| Duration::from_millis(or(v, default).0.max(floor));
        let (session, span) = or(&e.session_timeout_ms, defaults::SESSION_TIMEOUT_MS);
        if !(1_000..=1_800_000).contains(&session) {
            return Err(self.invalid(
                span,
                "session_timeout_ms",
                format!("is {session}; allowed: 1000 to 1800000 (and within the broker's group.min/max.session.timeout.ms, 6000 to 1800000 by default)"),
            ));
        }
        let (heartbeat, span) = or(&e.heartbeat_interval_ms, defaults::HEARTBEAT_INTERVAL_MS);
        if heartbeat < 10 || heartbeat.saturating_mul(2) > session {
            return Err(self.invalid(
                span,
                "heartbeat_interval_ms",
                format!("is {heartbeat}; allowed: 10 to half of session_timeout_ms ({session})"),
            ));
        }
        let (rebalance, span) = or(&e.rebalance_timeout_ms, defaults::REBALANCE_TIMEOUT_MS);
        if !(1_000..=3_600_000).contains(&rebalance) {
            return Err(self.invalid(
                span,
                "rebalance_timeout_ms",
                format!("is {rebalance}; allowed: 1000 to 3600000"),
            ));
        }
        let member = MemberSettings {
            instance_id: ops.instance_id.clone(),
            session_timeout: Duration::from_millis(session),
            heartbeat_interval: Duration::from_millis(heartbeat),
            rebalance_timeout: Duration::from_millis(rebalance),
        };
        let heartbeats = self.heartbeats(e)?;
        let exactly_once = or(&e.exactly_once, false).0.then(|| ExactlyOnce {
            transaction_interval: Duration::from_millis(txn_interval.max(10)),
            transaction_max_bytes: or(&e.transaction_max_bytes, defaults::TRANSACTION_MAX_BYTES)
                .0
                .max(64 * 1024),
            transaction_timeout_ms: txn_timeout as i32,
        });
        let mut cfg = Config {
            name: name.get_ref().clone(),
            topics: TopicSettings {
                source_alias: source.alias.clone(),
                destination_alias: destination.alias.clone(),
                cluster_aliases: vec![source.alias.clone(), destination.alias.clone()],
                topics: self.regexes(&e.topics, &[defaults::TOPICS], "topics")?,
                topics_exclude: self.regexes(&e.topics_exclude, &[], "topics_exclude")?,
                rename,
                refresh_interval: ms(&e.refresh_interval_ms, defaults::REFRESH_INTERVAL_MS, 100),
                replication_factor: or(&e.replication_factor, defaults::REPLICATION_FACTOR).0,
                sync_topic_configs: or(&e.sync_topic_configs, true).0,
                sync_acls: or(&e.sync_acls, true).0,
                heartbeats_topic: heartbeats.as_ref().map(|h| h.topic.clone()),
            },
            fetch: FetchSettings {
                start_from,
                mm2,
                max_bytes: fetch,
                partition_max_bytes: or(&e.fetch_partition_max_bytes, defaults::FETCH_PARTITION_MAX_BYTES)
                    .0
                    .min(fetch),
                max_wait: ms(&e.fetch_max_wait_ms, defaults::FETCH_MAX_WAIT_MS, 0),
                max_decompressed_batch_bytes: max_plain,
            },
            produce: ProduceSettings {
                max_in_flight_per_partition: in_flight,
                max_request_bytes: or(&e.max_request_bytes, defaults::MAX_REQUEST_BYTES).0.max(64 * 1024),
                coalesce_below_bytes: or(&e.coalesce_below_bytes, defaults::COALESCE_BELOW_BYTES).0,
                max_decompressed_batch_bytes: max_plain,
                timeout_ms: produce_timeout_ms(&destination),
                transactional_id: None,
            },
            checkpoint_interval: ms(&e.checkpoint_interval_ms, defaults::CHECKPOINT_INTERVAL_MS, 10),
            groups: GroupSettings {
                groups: self.regexes(&e.groups, &[], "groups")?,
                groups_exclude: self.regexes(&e.groups_exclude, &[], "groups_exclude")?,
                interval: ms(&e.group_sync_interval_ms, defaults::GROUP_SYNC_INTERVAL_MS, 100),
                leave_earlier: took_over,
            },
            exactly_once: None,
            forward_from: Vec::new(),
            merge: false,
            member,
            heartbeats,
            ops: ops.clone(),
            source,
            destination,
        };
        cfg.set_exactly_once(exactly_once);
        Ok(cfg)
    }
}

impl Resolver<'_> {
    /// The heartbeat keys of one flow (none: `heartbeats = false`).
    fn heartbeats(&self, e: &RawEngine) -> Result<Option<HeartbeatSettings>, ConfigError> {
        let (topic, span) = or(&e.heartbeats_topic, defaults::HEARTBEATS_TOPIC.to_string());
        valid_name(&topic).map_err(|p| self.invalid(span.clone(), "heartbeats_topic", p))?;
        if topic.starts_with("__") || topic.len() > 249 {
            return Err(self.invalid(
                span,
                "heartbeats_topic",
                format!("is {topic:?}; allowed: a topic name of at most 249 characters not starting with \"__\" (strait never replicates those)"),
            ));
        }
        let (interval, span) = or(&e.heartbeats_interval_ms, defaults::HEARTBEATS_INTERVAL_MS);
        if !(100..=3_600_000).contains(&interval) {
            return Err(self.invalid(
                span,
                "heartbeats_interval_ms",
                format!("is {interval}; allowed: 100 to 3600000"),
            ));
        }
        Ok(or(&e.heartbeats, defaults::HEARTBEATS).0.then(|| HeartbeatSettings {
            topic,
            interval: Duration::from_millis(interval),
        }))
    }
}

/// Flow names and cluster aliases name topics and groups: letters, digits, `.`, `_`, `-`.
pub(super) fn valid_name(name: &str) -> Result<(), String> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)) {
        Err(format!("is {name:?}; allowed: letters, digits, '.', '_', '-'"))
    } else {
        Ok(())
    }
}

//! One flow's membership in its replication group: every `strait run` of a
//! flow joins the group that holds the flow's positions (`strait-<name>` on the
//! destination) with the classic group protocol and strait's own protocol
//! type, and replicates only the source partitions the leader assigns it
//! ([`super::assign`]).
//!
//! - Static membership (KIP-345): the member joins with its instance id, so a
//!   restarted process takes its place (and its partitions) back at once,
//!   without waiting a session timeout.
//! - Position commits carry the member id and generation ([`Membership::credentials`]):
//!   the coordinator refuses those of an expelled member.
//! - Produces are not fenced by the coordinator, so a member stops sending by
//!   itself ([`Membership::alive`]) once its last contact with the coordinator
//!   is a session timeout old: by then the coordinator may have expelled it and
//!   given its partitions to another member.
//! - Handoff is cooperative: a member told to give partitions up stops
//!   fetching them, lets their in-flight produces finish, commits their
//!   positions and only then rejoins, which lets the leader hand them on.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::Notify;
use tracing::{debug, error, info, warn};

use super::assign::{self, Assignment, Candidate, MemberMeta, Tp};
use crate::client::group::codes;
use crate::client::{Client, ClientError, GroupMember, JoinSpec};
use crate::config::MemberSettings;

/// What membership asks of the flow's engine.
pub trait Owner: Send + Sync + 'static {
    /// Partitions replicated now, with their recent bytes per second.
    fn owned(&self) -> BTreeMap<String, Vec<(i32, u64)>>;
    /// Every source partition of the flow (what the leader assigns).
    fn known(&self) -> BTreeSet<Tp>;
    /// Starts replicating `parts` (from their committed positions).
    fn take(&self, parts: BTreeSet<Tp>) -> impl Future<Output = ()> + Send;
    /// Stops replicating `parts`; with `commit`, after their in-flight produces
    /// finished and their positions were committed.
    fn release(&self, parts: BTreeSet<Tp>, commit: bool) -> impl Future<Output = ()> + Send;
    /// This member lost its group (expelled): holds every partition (nothing
    /// new fetched or sent, nothing claimed) until [`resolve`](Owner::resolve).
    fn suspend(&self) -> impl Future<Output = ()> + Send;
    /// Back in a generation assigned `target`: held partitions in it that
    /// nobody committed meanwhile go on where they stood; the rest are dropped.
    fn resolve(&self, target: &BTreeSet<Tp>) -> impl Future<Output = ()> + Send;
}

/// Why a member stopped for good.
#[derive(Debug, thiserror::Error)]
#[error("replication group {group}: {reason}")]
pub struct MembershipError {
    /// The group.
    pub group: String,
    /// What happened.
    pub reason: String,
}

#[derive(Debug, Default)]
struct State {
    member: Option<GroupMember>,
    leader: bool,
    members: usize,
    assigned: BTreeSet<Tp>,
    pending: usize,
    rebalances: u64,
}

/// A flow's membership in its replication group.
#[derive(Debug)]
pub struct Membership {
    client: Arc<Client>,
    group: String,
    settings: MemberSettings,
    /// The settings every member must share ([`MemberMeta::settings`]).
    shared: BTreeMap<String, String>,
    state: Mutex<State>,
    credentials: Arc<RwLock<Option<GroupMember>>>,
    /// Milliseconds since the UNIX epoch of the last answer from the
    /// coordinator that proves this member is in the group (0: never).
    last_contact_ms: Arc<AtomicU64>,
    rejoin: Notify,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Membership {
    /// Membership of `group` on a client of its own (a JoinGroup waits at the
    /// coordinator for the whole rebalance, and would hold back the requests
    /// behind it on a shared connection).
    pub fn new(client: Client, group: String, settings: MemberSettings, shared: BTreeMap<String, String>) -> Arc<Self> {
        Arc::new(Self {
            client: Arc::new(client),
            group,
            settings,
            shared,
            state: Mutex::new(State::default()),
            credentials: Arc::new(RwLock::new(None)),
            last_contact_ms: Arc::new(AtomicU64::new(0)),
            rejoin: Notify::new(),
        })
    }

    /// The member id and generation commits carry (none: not in a generation now).
    pub fn credentials(&self) -> Arc<RwLock<Option<GroupMember>>> {
        self.credentials.clone()
    }

    /// True while the coordinator answered this member within the session
    /// timeout: until then no other member can own its partitions.
    pub fn alive(&self) -> bool {
        self.gate().open()
    }

    /// The producer's gate: open while [`alive`](Self::alive).
    pub fn gate(&self) -> super::producer::Gate {
        super::producer::Gate {
            last_contact_ms: self.last_contact_ms.clone(),
            limit_ms: self.settings.session_timeout.as_millis() as u64,
        }
    }

    /// True when this member leads the current generation (and does the
    /// flow's shared chores: topic creation, config and group sync).
    pub fn is_leader(&self) -> bool {
        crate::sync::lock(&self.state).leader
    }

    /// The instance id this member joins with.
    pub fn instance_id(&self) -> &str {
        &self.settings.instance_id
    }

    /// Partitions the leader assigned this member.
    pub fn assigned_count(&self) -> usize {
        crate::sync::lock(&self.state).assigned.len()
    }

    /// Asks for a new generation (the leader saw the flow's partitions change).
    pub fn request_rejoin(&self) {
        self.rejoin.notify_one();
    }

    /// The member's view for `/status`.
    pub fn status(&self) -> serde_json::Value {
        let st = crate::sync::lock(&self.state);
        let parts: BTreeMap<&str, Vec<i32>> = st.assigned.iter().fold(BTreeMap::new(), |mut m, (t, p)| {
            m.entry(t.as_str()).or_insert_with(Vec::new).push(*p);
            m
        });
        serde_json::json!({
            "group": self.group,
            "instance_id": self.settings.instance_id,
            "member_id": st.member.as_ref().map(|m| m.member_id.clone()),
            "generation": st.member.as_ref().map(|m| m.generation),
            "leader": st.leader,
            "members": st.members,
            "partitions": parts,
            "partitions_waiting_for_handoff": st.pending,
            "rebalances": st.rebalances,
            "alive": self.alive(),
        })
    }

    fn contact(&self) {
        self.last_contact_ms.store(now_ms(), Ordering::Relaxed);
    }

    fn set_member(&self, member: Option<GroupMember>) {
        *self.credentials.write().unwrap_or_else(|e| e.into_inner()) = member.clone();
        let mut st = crate::sync::lock(&self.state);
        if member.is_none() {
            st.leader = false;
        }
        st.member = member;
    }

    fn fail(&self, reason: String) -> MembershipError {
        MembershipError {
            group: self.group.clone(),
            reason,
        }
    }

    /// Runs the membership until `stop` turns true (then returns; the caller
    /// commits its last positions and calls [`leave`](Self::leave)) or the
    /// member must stop for good (its settings differ from the group's,
    /// another process took its instance id).
    pub async fn run<O: Owner>(
        self: Arc<Self>,
        owner: Arc<O>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<(), MembershipError> {
        let mut member_id = String::new();
        let mut failures = 0u32;
        let stopped = |stop: &tokio::sync::watch::Receiver<bool>| *stop.borrow();
        'join: loop {
            if stopped(&stop) {
                return Ok(());
            }
            let meta = MemberMeta {
                instance: self.settings.instance_id.clone(),
                settings: self.shared.clone(),
                owned: owner.owned(),
            };
            let spec = JoinSpec {
                group: &self.group,
                protocol_type: assign::PROTOCOL_TYPE,
                protocol: (assign::PROTOCOL, meta.encode()),
                instance_id: Some(&self.settings.instance_id),
                session_timeout_ms: self.settings.session_timeout.as_millis() as i32,
                rebalance_timeout_ms: self.settings.rebalance_timeout.as_millis() as i32,
                reason: "strait member (re)joining",
            };
            let joined = tokio::select! {
                r = self.client.join_group(&spec, &member_id) => r,
                _ = stop.wait_for(|s| *s) => return Ok(()),
            };
            let joined = match joined {
                Ok(j) => j,
                Err(e) => {
                    self.on_error(&e, &owner, &mut member_id).await?;
                    failures += 1;
                    self.backoff(failures, &mut stop).await;
                    continue 'join;
                }
            };
            self.contact();
            member_id = joined.member.member_id.clone();
            // The coordinator is at the new generation from now on: commits go
            // under it at once (the old one's would be refused).
            *self.credentials.write().unwrap_or_else(|e| e.into_inner()) = Some(joined.member.clone());
            let assignments = if joined.is_leader() {
                let candidates: Vec<Candidate> = joined
                    .members
                    .iter()
                    .map(|m| Candidate {
                        member_id: m.member_id.clone(),
                        meta: MemberMeta::decode(&m.metadata),
                    })
                    .collect();
                let known = owner.known();
                let out = assign::assign(&known, &candidates, &self.shared);
                info!(
                    group = %self.group,
                    generation = joined.member.generation,
                    members = candidates.len(),
                    partitions = known.len(),
                    "leading the replication group: partitions assigned"
                );
                out.into_iter().map(|(m, a)| (m, a.encode())).collect()
            } else {
                Vec::new()
            };
            let synced = tokio::select! {
                r = self.client.sync_group(&self.group, &joined.member, assign::PROTOCOL_TYPE, assign::PROTOCOL, assignments) => r,
                _ = stop.wait_for(|s| *s) => return Ok(()),
            };
            let bytes = match synced {
                Ok(b) => b,
                Err(e) => {
                    self.on_error(&e, &owner, &mut member_id).await?;
                    continue 'join;
                }
            };
            failures = 0;
            self.contact();
            let a = Assignment::decode(&bytes).map_err(|e| self.fail(e))?;
            if let Some(err) = &a.error {
                owner.release(owner_set(&owner), true).await;
                let _ = self
                    .client
                    .leave_group(&self.group, &joined.member, "refused by the leader")
                    .await;
                return Err(self.fail(err.clone()));
            }
            let target = a.set();
            owner.resolve(&target).await;
            let owned = owner_set(&owner);
            let give: BTreeSet<Tp> = owned.difference(&target).cloned().collect();
            let take: BTreeSet<Tp> = target.difference(&owned).cloned().collect();
            self.set_member(Some(joined.member.clone()));
            {
                let mut st = crate::sync::lock(&self.state);
                st.leader = joined.is_leader();
                st.members = a.members;
                st.assigned = target.clone();
                st.pending = a.pending;
                st.rebalances += 1;
            }
            info!(
                group = %self.group,
                generation = joined.member.generation,
                member = %self.settings.instance_id,
                leader = joined.is_leader(),
                partitions = target.len(),
                giving_up = give.len(),
                taking = take.len(),
                "replication group generation"
            );
            // Handing over and starting partitions can take a while (1,000
            // partitions' positions and offsets): heartbeats go on meanwhile, or
            // the coordinator would expel this member.
            let work = async {
                if !give.is_empty() {
                    owner.release(give, true).await;
                }
                if !take.is_empty() {
                    owner.take(take).await;
                }
            };
            // Gave partitions up: rejoin at once so the leader can hand them on.
            let mut rejoin_now = owned.difference(&target).next().is_some();
            match self.heartbeating(&joined.member, work).await {
                Beat::Ok => {}
                Beat::Rejoin => rejoin_now = true,
                Beat::Failed(e) => {
                    self.on_error(&e, &owner, &mut member_id).await?;
                    continue 'join;
                }
            }
            loop {
                if rejoin_now {
                    continue 'join;
                }
                tokio::select! {
                    _ = tokio::time::sleep(self.settings.heartbeat_interval) => {}
                    _ = self.rejoin.notified() => { rejoin_now = true; continue; }
                    _ = stop.wait_for(|s| *s) => return Ok(()),
                }
                match self.client.heartbeat(&self.group, &joined.member).await {
                    Ok(()) => self.contact(),
                    Err(e) if e.code() == Some(codes::REBALANCE_IN_PROGRESS) => {
                        self.contact();
                        debug!(group = %self.group, "rebalance under way: rejoining");
                        rejoin_now = true;
                    }
                    Err(e) => {
                        self.on_error(&e, &owner, &mut member_id).await?;
                        if e.code().is_some() {
                            continue 'join;
                        }
                    }
                }
            }
        }
    }

    /// Runs `work` to its end while heartbeating every interval; says what the
    /// heartbeats answered (a rebalance under way, or a failure to handle).
    async fn heartbeating<F: Future<Output = ()>>(&self, member: &GroupMember, work: F) -> Beat {
        tokio::pin!(work);
        let mut beat = Beat::Ok;
        loop {
            tokio::select! {
                _ = &mut work => return beat,
                _ = tokio::time::sleep(self.settings.heartbeat_interval) => {
                    match self.client.heartbeat(&self.group, member).await {
                        Ok(()) => self.contact(),
                        Err(e) if e.code() == Some(codes::REBALANCE_IN_PROGRESS) => {
                            self.contact();
                            if matches!(beat, Beat::Ok) {
                                beat = Beat::Rejoin;
                            }
                        }
                        Err(e) if e.code().is_none() => {
                            warn!(group = %self.group, error = %e, "heartbeat failed; retrying");
                        }
                        Err(e) => beat = Beat::Failed(e),
                    }
                }
            }
        }
    }

    /// Handles a failed membership call: fatal cases end the member; an
    /// expelled member gives every partition up without committing; a lost
    /// coordinator makes the member stop its partitions once its last contact
    /// is a session timeout old.
    async fn on_error<O: Owner>(
        &self,
        e: &ClientError,
        owner: &Arc<O>,
        member_id: &mut String,
    ) -> Result<(), MembershipError> {
        match e.code() {
            Some(codes::FENCED_INSTANCE_ID) => {
                owner.release(owner_set(owner), false).await;
                self.set_member(None);
                Err(self.fail(format!(
                    "another strait process joined with instance id {:?}, so this one stops (give each process its own `instance_id`, or `--instance-id`)",
                    self.settings.instance_id
                )))
            }
            Some(codes::INCONSISTENT_GROUP_PROTOCOL) => Err(self.fail(
                "the group is in use by clients of another protocol type (a consumer group with this name?): rename the flow".into(),
            )),
            Some(codes::INVALID_SESSION_TIMEOUT) => Err(self.fail(format!(
                "the broker refuses session_timeout_ms = {} (outside its group.min.session.timeout.ms .. group.max.session.timeout.ms)",
                self.settings.session_timeout.as_millis()
            ))),
            Some(codes::GROUP_MAX_SIZE_REACHED) => {
                Err(self.fail("the group has as many members as the broker's group.max.size allows".into()))
            }
            Some(codes::UNKNOWN_MEMBER_ID) | Some(codes::ILLEGAL_GENERATION) => {
                warn!(group = %self.group, error = %e, "no longer a member of the current generation: holding every partition without committing, rejoining");
                owner.suspend().await;
                self.set_member(None);
                if e.code() == Some(codes::UNKNOWN_MEMBER_ID) {
                    member_id.clear();
                }
                Ok(())
            }
            Some(codes::REBALANCE_IN_PROGRESS) => Ok(()),
            _ => {
                warn!(group = %self.group, error = %e, "group coordinator call failed; retrying");
                if !self.alive() && !owner.owned().is_empty() {
                    error!(group = %self.group, "no contact with the group coordinator for a session timeout: holding every partition (another member may own them now)");
                    owner.suspend().await;
                    self.set_member(None);
                }
                Ok(())
            }
        }
    }

    async fn backoff(&self, failures: u32, stop: &mut tokio::sync::watch::Receiver<bool>) {
        let delay = self.client.config().backoff.delay(failures).min(Duration::from_secs(2));
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|s| *s) => {}
        }
    }

    /// Leaves the group, so the others take this member's partitions at once.
    pub async fn leave(&self) {
        let member = crate::sync::lock(&self.state).member.clone();
        self.set_member(None);
        if let Some(m) = member {
            match self.client.leave_group(&self.group, &m, "strait stopping").await {
                Ok(()) => info!(group = %self.group, member = %self.settings.instance_id, "left the replication group"),
                Err(e) => {
                    warn!(group = %self.group, error = %e, "could not leave the replication group; the others take over after the session timeout")
                }
            }
        }
    }
}

/// What heartbeats sent during a handover said.
enum Beat {
    Ok,
    Rejoin,
    Failed(ClientError),
}

fn owner_set<O: Owner>(owner: &Arc<O>) -> BTreeSet<Tp> {
    owner
        .owned()
        .into_iter()
        .flat_map(|(t, ps)| ps.into_iter().map(move |(p, _)| (t.clone(), p)))
        .collect()
}

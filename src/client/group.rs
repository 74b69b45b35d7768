//! Group membership calls of the classic group protocol (JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup) and DescribeGroups, for strait's own protocol type.
//!
//! A JoinGroup waits at the coordinator until the rebalance completes (up to
//! the rebalance timeout), and a broker answers one request per connection at a
//! time: membership runs on a [`Client`] of its own, so a rebalance never holds
//! back produces or commits on the data path's connections.

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    DescribeGroupsRequest, GroupId, HeartbeatRequest, JoinGroupRequest, LeaveGroupRequest, SyncGroupRequest,
};
use kafka_protocol::protocol::StrBytes;

use super::{code, Client, ClientError, Result};

/// Error codes of group membership.
pub mod codes {
    /// The generation moved on: the member's view is stale.
    pub const ILLEGAL_GENERATION: i16 = 22;
    /// The coordinator does not know the member (expelled, or never joined).
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    /// The session timeout is outside the broker's allowed range.
    pub const INVALID_SESSION_TIMEOUT: i16 = 26;
    /// A rebalance is under way: rejoin.
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    /// First JoinGroup of a dynamic member: rejoin with the member id given.
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    /// The group has as many members as the broker allows.
    pub const GROUP_MAX_SIZE_REACHED: i16 = 81;
    /// Another process joined with this member's `group.instance.id`.
    pub const FENCED_INSTANCE_ID: i16 = 82;
    /// The group's members speak another protocol type (a consumer group of that name).
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
}

/// Who commits: a member of the current generation (offset commits are
/// validated against it, so an expelled member's commits are refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    /// The member id the coordinator gave.
    pub member_id: String,
    /// The generation the member joined.
    pub generation: i32,
    /// Static membership id (KIP-345).
    pub instance_id: Option<String>,
}

/// A JoinGroup answer.
#[derive(Debug, Clone)]
pub struct Joined {
    /// This member.
    pub member: GroupMember,
    /// The leader's member id.
    pub leader: String,
    /// The protocol chosen.
    pub protocol: String,
    /// Every member with its metadata (only the leader receives them).
    pub members: Vec<JoinedMember>,
}

impl Joined {
    /// True when this member leads the generation (and assigns).
    pub fn is_leader(&self) -> bool {
        self.leader == self.member.member_id
    }
}

/// One member as the leader sees it.
#[derive(Debug, Clone)]
pub struct JoinedMember {
    /// Member id.
    pub member_id: String,
    /// Static membership id.
    pub instance_id: Option<String>,
    /// The metadata it joined with.
    pub metadata: Bytes,
}

/// A group as DescribeGroups shows it.
#[derive(Debug, Clone, Default)]
pub struct GroupDescription {
    /// `Empty`, `Stable`, `PreparingRebalance`, `CompletingRebalance`, `Dead`.
    pub state: String,
    /// The protocol type of its members ("" when empty).
    pub protocol_type: String,
    /// Members: (member id, instance id, client host, assignment bytes).
    pub members: Vec<DescribedMember>,
}

/// One member of a described group.
#[derive(Debug, Clone)]
pub struct DescribedMember {
    /// Member id.
    pub member_id: String,
    /// Static membership id.
    pub instance_id: Option<String>,
    /// The host the coordinator saw it connect from.
    pub client_host: String,
    /// Its metadata.
    pub metadata: Bytes,
    /// Its current assignment.
    pub assignment: Bytes,
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

/// Settings of one JoinGroup.
#[derive(Debug, Clone)]
pub struct JoinSpec<'a> {
    /// The group.
    pub group: &'a str,
    /// The protocol type (strait's own).
    pub protocol_type: &'a str,
    /// Protocol name and this member's metadata.
    pub protocol: (&'a str, Bytes),
    /// Static membership id.
    pub instance_id: Option<&'a str>,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// How long the coordinator waits for members to rejoin.
    pub rebalance_timeout_ms: i32,
    /// Why this member (re)joins, for the broker's log.
    pub reason: &'a str,
}

impl Client {
    /// Joins `spec.group` (rejoining as `member_id` when not empty). A dynamic
    /// member's first join is answered MEMBER_ID_REQUIRED with an id, and is
    /// repeated with it here.
    pub async fn join_group(&self, spec: &JoinSpec<'_>, member_id: &str) -> Result<Joined> {
        let mut member_id = member_id.to_string();
        for _ in 0..3 {
            let conn = self.find_coordinator(spec.group, 0).await?;
            let version = conn.version_of::<JoinGroupRequest>()?;
            if version < 5 && spec.instance_id.is_some() {
                return Err(ClientError::Invalid {
                    what: "group membership",
                    reason: format!(
                        "broker {} does not support static membership (JoinGroup v5, Kafka 2.3)",
                        conn.broker()
                    ),
                });
            }
            let req = JoinGroupRequest::default()
                .with_group_id(GroupId(s(spec.group)))
                .with_session_timeout_ms(spec.session_timeout_ms)
                .with_rebalance_timeout_ms(spec.rebalance_timeout_ms)
                .with_member_id(s(&member_id))
                .with_group_instance_id(spec.instance_id.map(s))
                .with_protocol_type(s(spec.protocol_type))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(s(spec.protocol.0))
                    .with_metadata(spec.protocol.1.clone())])
                .with_reason((version >= 8).then(|| s(spec.reason)));
            let resp = conn.request_at(version, &req).await?;
            if resp.error_code == codes::MEMBER_ID_REQUIRED {
                member_id = resp.member_id.to_string();
                continue;
            }
            if resp.error_code != code::NONE {
                self.note_error_code(resp.error_code);
                return Err(ClientError::kafka(
                    "JoinGroup",
                    conn.broker(),
                    format!("group {}", spec.group),
                    resp.error_code,
                    None,
                ));
            }
            return Ok(Joined {
                member: GroupMember {
                    member_id: resp.member_id.to_string(),
                    generation: resp.generation_id,
                    instance_id: spec.instance_id.map(str::to_string),
                },
                leader: resp.leader.to_string(),
                protocol: resp.protocol_name.map(|p| p.to_string()).unwrap_or_default(),
                members: resp
                    .members
                    .into_iter()
                    .map(|m| JoinedMember {
                        member_id: m.member_id.to_string(),
                        instance_id: m.group_instance_id.map(|i| i.to_string()),
                        metadata: m.metadata,
                    })
                    .collect(),
            });
        }
        Err(ClientError::kafka(
            "JoinGroup",
            "coordinator",
            format!("group {}", spec.group),
            codes::MEMBER_ID_REQUIRED,
            Some("the coordinator kept asking for a member id"),
        ))
    }

    /// Completes a generation: the leader sends every member's assignment,
    /// the others none. Returns this member's assignment.
    pub async fn sync_group(
        &self,
        group: &str,
        member: &GroupMember,
        protocol_type: &str,
        protocol: &str,
        assignments: Vec<(String, Bytes)>,
    ) -> Result<Bytes> {
        let conn = self.find_coordinator(group, 0).await?;
        let req = SyncGroupRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id(member.generation)
            .with_member_id(s(&member.member_id))
            .with_group_instance_id(member.instance_id.as_deref().map(s))
            .with_protocol_type(Some(s(protocol_type)))
            .with_protocol_name(Some(s(protocol)))
            .with_assignments(
                assignments
                    .into_iter()
                    .map(|(m, a)| {
                        SyncGroupRequestAssignment::default()
                            .with_member_id(s(&m))
                            .with_assignment(a)
                    })
                    .collect(),
            );
        let resp = conn.request(&req).await?;
        if resp.error_code != code::NONE {
            self.note_error_code(resp.error_code);
            return Err(ClientError::kafka(
                "SyncGroup",
                conn.broker(),
                format!("group {group}"),
                resp.error_code,
                None,
            ));
        }
        Ok(resp.assignment)
    }

    /// One heartbeat of `member`.
    pub async fn heartbeat(&self, group: &str, member: &GroupMember) -> Result<()> {
        let conn = self.find_coordinator(group, 0).await?;
        let req = HeartbeatRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id(member.generation)
            .with_member_id(s(&member.member_id))
            .with_group_instance_id(member.instance_id.as_deref().map(s));
        let resp = conn.request(&req).await?;
        if resp.error_code != code::NONE {
            return Err(ClientError::kafka(
                "Heartbeat",
                conn.broker(),
                format!("group {group}"),
                resp.error_code,
                None,
            ));
        }
        Ok(())
    }

    /// Leaves the group (a static member is removed too, so its partitions move
    /// at once instead of after the session timeout).
    pub async fn leave_group(&self, group: &str, member: &GroupMember, reason: &str) -> Result<()> {
        let conn = self.find_coordinator(group, 0).await?;
        let version = conn.version_of::<LeaveGroupRequest>()?;
        let req = if version >= 3 {
            LeaveGroupRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_members(vec![MemberIdentity::default()
                    .with_member_id(s(&member.member_id))
                    .with_group_instance_id(member.instance_id.as_deref().map(s))
                    .with_reason((version >= 5).then(|| s(reason)))])
        } else {
            LeaveGroupRequest::default()
                .with_group_id(GroupId(s(group)))
                .with_member_id(s(&member.member_id))
        };
        let resp = conn.request_at(version, &req).await?;
        let code = if resp.error_code != code::NONE {
            resp.error_code
        } else {
            resp.members.iter().map(|m| m.error_code).find(|c| *c != 0).unwrap_or(0)
        };
        if code != 0 {
            return Err(ClientError::kafka(
                "LeaveGroup",
                conn.broker(),
                format!("group {group}"),
                code,
                None,
            ));
        }
        Ok(())
    }

    /// Describes `group`: state, protocol type, members with their assignments.
    pub async fn describe_group(&self, group: &str) -> Result<GroupDescription> {
        self.retrying(|| async {
            let conn = self.find_coordinator(group, 0).await?;
            let req = DescribeGroupsRequest::default().with_groups(vec![GroupId(s(group))]);
            let resp = conn.request(&req).await?;
            let g = resp.groups.into_iter().next().ok_or_else(|| {
                ClientError::kafka("DescribeGroups", conn.broker(), group, -1, Some("empty response"))
            })?;
            if g.error_code == code::GROUP_ID_NOT_FOUND {
                // Kafka 4's coordinator: a group nobody created is not found.
                return Ok(GroupDescription {
                    state: "Dead".into(),
                    ..GroupDescription::default()
                });
            }
            if g.error_code != code::NONE {
                self.note_error_code(g.error_code);
                return Err(ClientError::kafka(
                    "DescribeGroups",
                    conn.broker(),
                    format!("group {group}"),
                    g.error_code,
                    g.error_message.as_deref(),
                ));
            }
            Ok(GroupDescription {
                state: g.group_state.to_string(),
                protocol_type: g.protocol_type.to_string(),
                members: g
                    .members
                    .into_iter()
                    .map(|m| DescribedMember {
                        member_id: m.member_id.to_string(),
                        instance_id: m.group_instance_id.map(|i| i.to_string()),
                        client_host: m.client_host.to_string(),
                        metadata: m.member_metadata,
                        assignment: m.member_assignment,
                    })
                    .collect(),
            })
        })
        .await
    }
}

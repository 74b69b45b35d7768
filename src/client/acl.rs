//! ACL calls (KIP-140): DescribeAcls, CreateAcls and DeleteAcls, and the
//! operations this client may perform on the cluster resource (DescribeCluster,
//! KIP-700), for ACL sync and `strait check`.
//!
//! Codes follow `org.apache.kafka.common.resource.ResourceType`,
//! `PatternType`, `acl.AclOperation` and `acl.AclPermissionType`.

use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest, DescribeClusterRequest};
use kafka_protocol::protocol::StrBytes;

use super::pool::Client;
use super::{ClientError, Result};

/// Resource types.
pub mod resource {
    /// Any resource type (filters only).
    pub const ANY: i8 = 1;
    /// A topic.
    pub const TOPIC: i8 = 2;
    /// A consumer group.
    pub const GROUP: i8 = 3;
    /// The cluster.
    pub const CLUSTER: i8 = 4;
}

/// Pattern types.
pub mod pattern {
    /// Any pattern type (filters only).
    pub const ANY: i8 = 1;
    /// The name exactly (`*` is the wildcard).
    pub const LITERAL: i8 = 3;
    /// Every name starting with it.
    pub const PREFIXED: i8 = 4;
}

/// Operations.
pub mod op {
    /// Any operation (filters only).
    pub const ANY: i8 = 1;
    /// Every operation.
    pub const ALL: i8 = 2;
    /// Read.
    pub const READ: i8 = 3;
    /// Write.
    pub const WRITE: i8 = 4;
    /// Create.
    pub const CREATE: i8 = 5;
    /// Alter (on the cluster: create and delete ACLs).
    pub const ALTER: i8 = 7;
    /// Describe (on the cluster: describe ACLs).
    pub const DESCRIBE: i8 = 8;

    /// The operation's name, as Kafka's tools print it.
    pub fn name(op: i8) -> &'static str {
        match op {
            ALL => "ALL",
            READ => "READ",
            WRITE => "WRITE",
            CREATE => "CREATE",
            6 => "DELETE",
            ALTER => "ALTER",
            DESCRIBE => "DESCRIBE",
            9 => "CLUSTER_ACTION",
            10 => "DESCRIBE_CONFIGS",
            11 => "ALTER_CONFIGS",
            12 => "IDEMPOTENT_WRITE",
            _ => "UNKNOWN",
        }
    }
}

/// Permission types.
pub mod permission {
    /// Any permission (filters only).
    pub const ANY: i8 = 1;
    /// Deny.
    pub const DENY: i8 = 2;
    /// Allow.
    pub const ALLOW: i8 = 3;
}

/// `SECURITY_DISABLED`: the cluster has no authorizer.
const SECURITY_DISABLED: i16 = 54;

/// One ACL: who may (or may not) do what on which resources, from where.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct AclBinding {
    /// [`resource`] type.
    pub resource_type: i8,
    /// Resource name (or prefix).
    pub name: String,
    /// [`pattern`] type.
    pub pattern: i8,
    /// `User:alice`.
    pub principal: String,
    /// `*` or an address.
    pub host: String,
    /// [`op`].
    pub operation: i8,
    /// [`permission`].
    pub permission: i8,
}

impl std::fmt::Display for AclBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.resource_type {
            resource::TOPIC => "topic",
            resource::GROUP => "group",
            resource::CLUSTER => "cluster",
            _ => "resource",
        };
        let pattern = if self.pattern == pattern::PREFIXED {
            " (prefixed)"
        } else {
            ""
        };
        let perm = if self.permission == permission::DENY {
            "deny"
        } else {
            "allow"
        };
        write!(
            f,
            "{perm} {} {} on {kind} {:?}{pattern} from {}",
            self.principal,
            op::name(self.operation),
            self.name,
            self.host
        )
    }
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

impl Client {
    /// Every ACL on resources of `resource_type` (any name and pattern);
    /// `None` when the cluster has no authorizer.
    pub async fn describe_acls(&self, resource_type: i8) -> Result<Option<Vec<AclBinding>>> {
        let req = DescribeAclsRequest::default()
            .with_resource_type_filter(resource_type)
            .with_resource_name_filter(None)
            .with_pattern_type_filter(pattern::ANY)
            .with_principal_filter(None)
            .with_host_filter(None)
            .with_operation(op::ANY)
            .with_permission_type(permission::ANY);
        let conn = self.any_broker().await?;
        let resp = conn.request(&req).await?;
        if resp.error_code == SECURITY_DISABLED {
            return Ok(None);
        }
        if resp.error_code != 0 {
            return Err(ClientError::kafka(
                "DescribeAcls",
                conn.broker(),
                "the cluster's ACLs",
                resp.error_code,
                resp.error_message.as_deref(),
            ));
        }
        Ok(Some(
            resp.resources
                .into_iter()
                .flat_map(|r| {
                    let (t, name, p) = (r.resource_type, r.resource_name.to_string(), r.pattern_type);
                    r.acls.into_iter().map(move |a| AclBinding {
                        resource_type: t,
                        name: name.clone(),
                        pattern: p,
                        principal: a.principal.to_string(),
                        host: a.host.to_string(),
                        operation: a.operation,
                        permission: a.permission_type,
                    })
                })
                .collect(),
        ))
    }

    /// Creates ACLs (an existing equal one is not an error).
    pub async fn create_acls(&self, acls: &[AclBinding]) -> Result<()> {
        if acls.is_empty() {
            return Ok(());
        }
        let req = CreateAclsRequest::default().with_creations(
            acls.iter()
                .map(|a| {
                    AclCreation::default()
                        .with_resource_type(a.resource_type)
                        .with_resource_name(s(&a.name))
                        .with_resource_pattern_type(a.pattern)
                        .with_principal(s(&a.principal))
                        .with_host(s(&a.host))
                        .with_operation(a.operation)
                        .with_permission_type(a.permission)
                })
                .collect(),
        );
        let conn = self.any_broker().await?;
        let resp = conn.request(&req).await?;
        for (r, a) in resp.results.iter().zip(acls) {
            if r.error_code != 0 {
                return Err(ClientError::kafka(
                    "CreateAcls",
                    conn.broker(),
                    format!("ACL {a}"),
                    r.error_code,
                    r.error_message.as_deref(),
                ));
            }
        }
        Ok(())
    }

    /// Deletes exactly these ACLs (filters that match only each one).
    pub async fn delete_acls(&self, acls: &[AclBinding]) -> Result<()> {
        if acls.is_empty() {
            return Ok(());
        }
        let req = DeleteAclsRequest::default().with_filters(
            acls.iter()
                .map(|a| {
                    DeleteAclsFilter::default()
                        .with_resource_type_filter(a.resource_type)
                        .with_resource_name_filter(Some(s(&a.name)))
                        .with_pattern_type_filter(a.pattern)
                        .with_principal_filter(Some(s(&a.principal)))
                        .with_host_filter(Some(s(&a.host)))
                        .with_operation(a.operation)
                        .with_permission_type(a.permission)
                })
                .collect(),
        );
        let conn = self.any_broker().await?;
        let resp = conn.request(&req).await?;
        for (r, a) in resp.filter_results.iter().zip(acls) {
            if r.error_code != 0 {
                return Err(ClientError::kafka(
                    "DeleteAcls",
                    conn.broker(),
                    format!("ACL {a}"),
                    r.error_code,
                    r.error_message.as_deref(),
                ));
            }
        }
        Ok(())
    }

    /// The operations this client may perform on the cluster resource
    /// (DescribeCluster with its authorized operations); `None` when the
    /// broker does not say (no authorizer, or an old broker).
    pub async fn cluster_operations(&self) -> Result<Option<Vec<i8>>> {
        let req = DescribeClusterRequest::default().with_include_cluster_authorized_operations(true);
        let conn = self.any_broker().await?;
        let resp = conn.request(&req).await?;
        if resp.error_code != 0 {
            return Err(ClientError::kafka(
                "DescribeCluster",
                conn.broker(),
                "the cluster",
                resp.error_code,
                resp.error_message.as_deref(),
            ));
        }
        let bits = resp.cluster_authorized_operations;
        if bits == i32::MIN {
            return Ok(None); // not requested or not known
        }
        Ok(Some((0..31i8).filter(|b| bits & (1 << b) != 0).collect()))
    }
}

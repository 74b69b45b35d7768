//! ApiVersions negotiation (KIP-35, KIP-511).
//!
//! strait's side of each range is the request type's `VERSIONS` constant from
//! `kafka-protocol`, never `ApiKey::valid_versions()`: the latter over-reports
//! OffsetCommit, OffsetFetch and InitProducerId by one version in 0.18.

use std::collections::HashMap;

use kafka_protocol::messages::ApiVersionsResponse;
use kafka_protocol::protocol::{Message, Request};

use super::{api_name, ProtocolError};

/// The version ranges one broker announced in its ApiVersions response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiVersionTable {
    ranges: HashMap<i16, (i16, i16)>,
}

impl ApiVersionTable {
    /// Builds the table from a decoded ApiVersions response.
    pub fn from_response(resp: &ApiVersionsResponse) -> Self {
        let ranges = resp
            .api_keys
            .iter()
            .map(|k| (k.api_key, (k.min_version, k.max_version)))
            .collect();
        Self { ranges }
    }

    /// Builds a table from explicit `(api_key, min, max)` ranges (tests, fakes).
    pub fn from_ranges(ranges: impl IntoIterator<Item = (i16, i16, i16)>) -> Self {
        Self {
            ranges: ranges.into_iter().map(|(k, lo, hi)| (k, (lo, hi))).collect(),
        }
    }

    /// The broker's announced range for an API key.
    pub fn broker_range(&self, api_key: i16) -> Option<(i16, i16)> {
        self.ranges.get(&api_key).copied()
    }

    /// The highest version of `R` both strait and the broker support.
    pub fn negotiate<R: Request>(&self) -> Result<i16, ProtocolError> {
        self.negotiate_capped::<R>(i16::MAX)
    }

    /// Like [`negotiate`](Self::negotiate), but never below `floor` (for requests
    /// strait builds with fields older versions lack).
    pub fn negotiate_at_least<R: Request>(&self, floor: i16) -> Result<i16, ProtocolError> {
        let v = self.negotiate::<R>()?;
        match self.broker_range(R::KEY) {
            Some((lo, hi)) if v < floor => Err(ProtocolError::NoCommonVersion {
                api: api_name(R::KEY),
                broker_min: lo,
                broker_max: hi,
                ours_min: floor.max(<R as Message>::VERSIONS.min),
                ours_max: <R as Message>::VERSIONS.max,
            }),
            _ => Ok(v),
        }
    }

    /// Like [`negotiate`](Self::negotiate), but never above `cap` (for callers that
    /// only implement part of an API's version history, e.g. name-addressed Fetch).
    pub fn negotiate_capped<R: Request>(&self, cap: i16) -> Result<i16, ProtocolError> {
        let ours = <R as Message>::VERSIONS;
        let ours_max = ours.max.min(cap);
        let (lo, hi) = self
            .broker_range(R::KEY)
            .ok_or(ProtocolError::ApiNotSupported { api: api_name(R::KEY) })?;
        let best = hi.min(ours_max);
        if best < lo.max(ours.min) {
            return Err(ProtocolError::NoCommonVersion {
                api: api_name(R::KEY),
                broker_min: lo,
                broker_max: hi,
                ours_min: ours.min,
                ours_max,
            });
        }
        Ok(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiKey, FetchRequest, InitProducerIdRequest, OffsetCommitRequest, ProduceRequest};

    #[test]
    fn picks_highest_common_version() {
        let t = ApiVersionTable::from_ranges([(ApiKey::Produce as i16, 0, 11), (ApiKey::Fetch as i16, 0, 99)]);
        assert_eq!(t.negotiate::<ProduceRequest>().unwrap(), 11);
        assert_eq!(t.negotiate::<FetchRequest>().unwrap(), FetchRequest::VERSIONS.max);
        assert_eq!(t.negotiate_capped::<FetchRequest>(12).unwrap(), 12);
    }

    #[test]
    fn uses_request_versions_not_valid_versions() {
        // A broker that announces far more than the crate can encode must get the
        // crate's own maximum for these three APIs, which valid_versions() over-reports.
        let t = ApiVersionTable::from_ranges([
            (ApiKey::OffsetCommit as i16, 0, 50),
            (ApiKey::InitProducerId as i16, 0, 50),
        ]);
        assert_eq!(
            t.negotiate::<OffsetCommitRequest>().unwrap(),
            OffsetCommitRequest::VERSIONS.max
        );
        assert_eq!(
            t.negotiate::<InitProducerIdRequest>().unwrap(),
            InitProducerIdRequest::VERSIONS.max
        );
    }

    #[test]
    fn disjoint_ranges_and_missing_api_are_errors() {
        let t = ApiVersionTable::from_ranges([(ApiKey::Produce as i16, 0, 2)]);
        assert!(matches!(
            t.negotiate::<ProduceRequest>(),
            Err(ProtocolError::NoCommonVersion { api: "Produce", .. })
        ));
        assert_eq!(
            t.negotiate::<FetchRequest>(),
            Err(ProtocolError::ApiNotSupported { api: "Fetch" })
        );
    }
}

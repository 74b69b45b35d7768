//! strait: a pure-Rust replicator for Apache Kafka.
//!
//! Record batches travel raw from source Fetch responses to destination Produce
//! requests; see `docs/design.md` in the repository for the data path, the
//! layers and the protocol rules they keep.
#![deny(unsafe_code)]
#![warn(missing_debug_implementations)]

pub mod batch;
pub mod client;
pub mod config;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod mm2;
pub mod ops;
pub mod protocol;
pub mod replicate;
pub mod sync;
pub mod topology;

#[cfg(test)]
mod layering;

//! fink: declarative redistribution of astronomical alert streams over Kafka.
//!
//! `config` reads `fink.toml`, `cluster` talks to the live cluster, `plan`
//! diffs and applies, `local` runs a local Kafka cluster.

pub mod cluster;
pub mod config;
pub mod local;
pub mod output;
pub mod plan;
pub mod rules;
pub mod simulate;
pub mod stream;
pub mod supervisor;

//! fink: declarative redistribution of astronomical alert streams over Kafka.
//!
//! Layers, each using only those below it:
//! - `config` (a leaf): fink.toml model, profiles, env, spans;
//! - `cluster` (Kafka admin, live state; FFI in `cluster/ffi.rs`), `local`
//!   (the local cluster), `stream` (source -> filter -> Avro -> sink);
//! - `check` (config checks that compile filters or read data), `plan`
//!   (desired vs live, apply), `supervisor` (`fink run`);
//! - `cli`: presentation, called by `main.rs`.

pub mod check;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod local;
pub mod output;
pub mod plan;
pub mod rules;
pub mod simulate;
pub mod stream;
pub mod supervisor;
pub mod sys;

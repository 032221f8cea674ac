//! What `fink run` reports about itself: the typed `/status` document, the
//! health rule `fink status` applies to it, and the Prometheus metrics.

use std::time::{Duration, SystemTime};

use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use crate::stream::runner::{RunningStream, State};
use crate::stream::{self, StatsSnapshot};

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct ReloadStatus {
    pub config_hash: String,
    /// When the running config was loaded (seconds since the epoch).
    pub loaded_at: u64,
    /// The same, RFC 3339 (UTC).
    #[serde(default)]
    pub loaded_at_time: String,
    pub reloads: u64,
    pub last_reload_at: Option<u64>,
    /// The same, RFC 3339 (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reload_time: Option<String>,
    pub last_reload_error: Option<String>,
    pub last_reload_changes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StreamStatus {
    pub name: String,
    pub topic: String,
    pub state: State,
    pub uptime_secs: u64,
    /// When this incarnation of the stream started (ms since the epoch):
    /// unchanged across reloads that do not touch the stream.
    pub started_at_ms: u128,
    pub stats: StatsSnapshot,
    /// Seconds without a delivery report while alerts are in flight, once
    /// that exceeds `[run] stall_after_s`; absent while the stream moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stalled_secs: Option<u64>,
    /// The Kafka client's latest error, shown while the stream is stalled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_error: Option<String>,
    /// How often the supervisor restarted this stream after a failure.
    #[serde(default)]
    pub restarts: u32,
    /// A failed stream's next restart, in seconds from now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_in_secs: Option<u64>,
}

impl StreamStatus {
    pub fn of(s: &RunningStream, stall_after: Duration) -> StreamStatus {
        let stalled = s.stats.stalled_for(stream::now_ms(), stall_after);
        StreamStatus {
            name: s.spec.name.clone(),
            topic: s.spec.topic.clone(),
            state: s.state(),
            uptime_secs: s.started.elapsed().as_secs(),
            started_at_ms: s.started_at.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis()).unwrap_or(0),
            stats: s.stats.snapshot(),
            stalled_secs: stalled.map(|d| d.as_secs()),
            client_error: stalled.and_then(|_| {
                let source = s.stats.source_error.lock().unwrap().clone();
                source.or_else(|| s.stats.last_client_error.lock().unwrap().clone())
            }),
            restarts: 0,
            restart_in_secs: None,
        }
    }

    pub fn failed(&self) -> bool {
        matches!(self.state, State::Failed(_))
    }

    /// Healthy: not failed, not stalled.
    pub fn healthy(&self) -> bool {
        !self.failed() && self.stalled_secs.is_none()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Status {
    pub streams: Vec<StreamStatus>,
    pub config: ReloadStatus,
    /// This instance (`HOST:PID`).
    #[serde(default)]
    pub instance: String,
    /// `exactly-once` or `at-least-once`.
    #[serde(default)]
    pub delivery: String,
    /// Declared streams other instances of the group run (exactly-once).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub elsewhere: Vec<String>,
    /// The group's instances and their streams (exactly-once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<super::members::GroupView>,
}

impl Status {
    /// The health-check rule of `fink status`: every stream healthy.
    pub fn healthy(&self) -> bool {
        self.streams.iter().all(StreamStatus::healthy)
    }

    /// Why this instance is not ready (`GET /readyz`): a stream it runs is
    /// failed or stalled, or the config on disk was rejected. Empty: ready.
    pub fn not_ready(&self) -> Vec<String> {
        let mut why: Vec<String> = self
            .streams
            .iter()
            .filter(|s| !s.healthy())
            .map(|s| match s.stalled_secs {
                Some(secs) if !s.failed() => format!("stream {}: stalled {secs} s", s.name),
                _ => format!("stream {}: failed", s.name),
            })
            .collect();
        if let Some(e) = &self.config.last_reload_error {
            why.push(format!("last reload rejected: {}", e.lines().next().unwrap_or_default()));
        }
        why
    }
}

/// Export every stream's counters to the Prometheus recorder.
pub fn export_metrics(status: &Status) {
    for s in &status.streams {
        let l = [("stream", s.name.clone())];
        metrics::counter!("fink_stream_alerts_read_total", &l).absolute(s.stats.read);
        metrics::counter!("fink_stream_alerts_passed_total", &l).absolute(s.stats.passed);
        metrics::counter!("fink_stream_alerts_filtered_total", &l).absolute(s.stats.filtered);
        metrics::counter!("fink_stream_alerts_published_total", &l).absolute(s.stats.published);
        metrics::counter!("fink_stream_published_bytes_total", &l).absolute(s.stats.bytes);
        metrics::counter!("fink_stream_errors_total", &l).absolute(s.stats.errors);
        metrics::counter!("fink_stream_quarantined_total", &l).absolute(s.stats.quarantined);
        metrics::counter!("fink_stream_restarts_total", &l).absolute(s.restarts as u64);
        metrics::counter!("fink_stream_notifications_sent_total", &l).absolute(s.stats.notified);
        metrics::counter!("fink_stream_notifications_failed_total", &l).absolute(s.stats.notify_failed);
        metrics::counter!("fink_stream_notifications_dropped_total", &l).absolute(s.stats.notify_dropped);
        metrics::counter!("fink_source_bytes_read_total", &l).absolute(s.stats.source_bytes);
        metrics::counter!("fink_source_changed_files_total", &l).absolute(s.stats.changed_files);
        metrics::counter!("fink_source_files_read_alone_total", &l).absolute(s.stats.files_read_alone);
        // With the histogram fink_stream_file_latency_seconds (recorded by
        // the stream): the share of files within [run] latency_objective_s.
        metrics::counter!("fink_stream_files_committed_total", &l).absolute(s.stats.files_committed);
        metrics::counter!("fink_stream_files_within_objective_total", &l).absolute(s.stats.files_within_objective);
        metrics::gauge!("fink_stream_lag_files", &l).set(s.stats.backlog_files as f64);
        metrics::gauge!("fink_stream_up", &l).set(if s.failed() { 0.0 } else { 1.0 });
        metrics::gauge!("fink_stream_in_flight", &l).set(s.stats.in_flight as f64);
        metrics::gauge!("fink_stream_stalled", &l).set(if s.stalled_secs.is_some() { 1.0 } else { 0.0 });
        metrics::gauge!("fink_stream_owned", &l).set(1.0);
        for (stage, secs) in &s.stats.stage_seconds {
            let l = [("stream", s.name.clone()), ("stage", stage.clone())];
            metrics::gauge!("fink_stream_busy_seconds", &l).set(*secs);
        }
    }
    for name in &status.elsewhere {
        metrics::gauge!("fink_stream_owned", &[("stream", name.clone())]).set(0.0);
    }
    for (name, f) in crate::stream::python::all_filter_stats() {
        let l = [("filter", name)];
        metrics::counter!("fink_python_filter_batches_total", &l).absolute(f.batches.load(Ordering::Relaxed));
        metrics::counter!("fink_python_filter_rows_in_total", &l).absolute(f.rows_in.load(Ordering::Relaxed));
        metrics::counter!("fink_python_filter_rows_kept_total", &l).absolute(f.rows_kept.load(Ordering::Relaxed));
        metrics::counter!("fink_python_filter_errors_total", &l).absolute(f.errors.load(Ordering::Relaxed));
        metrics::gauge!("fink_python_filter_seconds_total", &l).set(f.python_us.load(Ordering::Relaxed) as f64 / 1e6);
        metrics::gauge!("fink_python_filter_convert_seconds_total", &l)
            .set(f.convert_us.load(Ordering::Relaxed) as f64 / 1e6);
        metrics::counter!("fink_python_filter_columns_reused_total", &l)
            .absolute(f.columns_reused.load(Ordering::Relaxed));
    }
    metrics::counter!("fink_python_worker_restarts_total")
        .absolute(crate::stream::python::WORKER_RESTARTS.load(Ordering::Relaxed));
    let r = &status.config;
    metrics::gauge!("fink_config_last_reload_success").set(if r.last_reload_error.is_some() { 0.0 } else { 1.0 });
    metrics::counter!("fink_config_reloads_total").absolute(r.reloads);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(state: State, stalled: Option<u64>) -> StreamStatus {
        StreamStatus {
            name: "s".into(),
            topic: "t".into(),
            state,
            uptime_secs: 1,
            started_at_ms: 0,
            stats: StatsSnapshot::default(),
            stalled_secs: stalled,
            client_error: None,
            restarts: 0,
            restart_in_secs: None,
        }
    }

    #[test]
    fn failed_or_stalled_streams_are_unhealthy_and_the_document_round_trips() {
        let mut st = Status {
            streams: vec![stream(State::Running, None), stream(State::Idle, None)],
            config: Default::default(),
            instance: "h:1".into(),
            delivery: "exactly-once".into(),
            elsewhere: vec!["other".into()],
            group: None,
        };
        assert!(st.healthy());
        st.streams.push(stream(State::Running, Some(61)));
        assert!(!st.healthy());
        st.streams.pop();
        st.streams.push(stream(State::Failed("boom".into()), None));
        assert!(!st.healthy());
        let back: Status = serde_json::from_str(&serde_json::to_string(&st).unwrap()).unwrap();
        assert_eq!(back, st);
    }
}

//! `[[notify]]`: a short message per published alert of a stream, posted
//! to Slack, Telegram or any JSON endpoint, as Fink's early SN, KN and TNS
//! filters do.
//!
//! A notification never slows or blocks the Kafka stream: the stream only
//! offers the rendered text to a bounded queue (dropped and counted when
//! full), and one thread per notifier posts them, rate limited, with
//! retries. A receiver that hangs costs that thread its request timeout,
//! nothing else. Messages are offered when an alert is handed to Kafka, so
//! an exactly-once transaction that is aborted and sent again may notify an
//! alert twice; no Kafka alert depends on a notification.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{Array, RecordBatch};

use super::Stats;
use crate::config::{NotifyConfig, NotifyFormat, Secret};

/// Messages waiting to be posted, at most.
const QUEUE: usize = 1000;
/// One request, at most (a hanging receiver).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts per message (a 5xx or a connection error is tried again).
const ATTEMPTS: u32 = 3;
/// How long a stopping stream lets its queued messages go out.
const DRAIN: Duration = Duration::from_secs(5);

/// A notifier as declared, for one stream.
#[derive(Debug, Clone, PartialEq)]
pub struct NotifySpec {
    pub url: Secret,
    pub base: PathBuf,
    pub format: NotifyFormat,
    pub chat_id: Option<String>,
    pub template: String,
    pub max_per_minute: u32,
}

impl NotifySpec {
    pub fn new(n: &NotifyConfig, base: PathBuf) -> NotifySpec {
        NotifySpec {
            url: n.url.clone(),
            base,
            format: n.format,
            chat_id: n.chat_id.clone(),
            template: n.template.clone(),
            max_per_minute: n.max_per_minute.max(1),
        }
    }
}

/// A template split once: text, and `{field.path}` to fill per alert.
#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Field(Vec<String>),
}

fn parse_template(t: &str) -> Vec<Part> {
    let mut out = Vec::new();
    let mut rest = t;
    while let Some(start) = rest.find('{') {
        if start > 0 {
            out.push(Part::Text(rest[..start].to_string()));
        }
        match rest[start..].find('}') {
            Some(len) => {
                let path = rest[start + 1..start + len].trim();
                out.push(Part::Field(path.split('.').map(str::to_string).collect()));
                rest = &rest[start + len + 1..];
            }
            None => {
                out.push(Part::Text(rest[start..].to_string()));
                rest = "";
            }
        }
    }
    if !rest.is_empty() {
        out.push(Part::Text(rest.to_string()));
    }
    out
}

/// One notifier: its queue and the thread that posts.
pub struct Notifier {
    tx: SyncSender<String>,
    /// Closed when the posting thread ends.
    done: Receiver<()>,
    parts: Vec<Part>,
    stats: Arc<Stats>,
}

impl Notifier {
    /// Start posting for `stream`. The URL is resolved here; errors never
    /// show it (it carries the token).
    pub fn start(spec: &NotifySpec, stream: &str, topic: &str, stats: Arc<Stats>) -> Result<Notifier, String> {
        let url = spec.url.resolve(&spec.base).map_err(|e| format!("notify for stream {stream:?}: url: {e}"))?;
        let (tx, rx) = sync_channel::<String>(QUEUE);
        let (done_tx, done) = sync_channel::<()>(0);
        let poster = Poster {
            url: url.expose().to_string(),
            format: spec.format,
            chat_id: spec.chat_id.clone(),
            stream: stream.to_string(),
            topic: topic.to_string(),
            max_per_minute: spec.max_per_minute as usize,
            stats: stats.clone(),
        };
        std::thread::Builder::new()
            .name(format!("notify-{stream}"))
            .spawn(move || {
                poster.run(rx);
                drop(done_tx);
            })
            .map_err(|e| format!("notify for stream {stream:?}: cannot start: {e}"))?;
        Ok(Notifier { tx, done, parts: parse_template(&spec.template), stats })
    }

    /// The stream stopped: what is queued gets [`DRAIN`] to go out, then
    /// is given up (the thread ends on its own; nothing waits for it).
    pub fn finish(self) {
        drop(self.tx);
        let _ = self.done.recv_timeout(DRAIN);
    }

    /// Offer the message for row `row` of `batch`; never waits.
    pub fn offer(&self, batch: &RecordBatch, row: usize) {
        let text = self.render(batch, row);
        match self.tx.try_send(text) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.notify_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn render(&self, batch: &RecordBatch, row: usize) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => out.push_str(t),
                Part::Field(path) => out.push_str(&field_text(batch, row, path)),
            }
        }
        out
    }
}

/// The value at `path` (top-level column, then struct fields) as text.
fn field_text(batch: &RecordBatch, row: usize, path: &[String]) -> String {
    let Some(mut col) = batch.column_by_name(&path[0]).cloned() else { return "?".into() };
    for name in &path[1..] {
        let Some(s) = col.as_any().downcast_ref::<arrow_array::StructArray>() else { return "?".into() };
        if s.is_null(row) {
            return "null".into();
        }
        let Some(c) = s.column_by_name(name) else { return "?".into() };
        col = c.clone();
    }
    match super::filter::to_cel(&col, row, &Default::default()) {
        None => "null".into(),
        Some(cel::Value::String(s)) => s.to_string(),
        Some(cel::Value::Int(i)) => i.to_string(),
        Some(cel::Value::UInt(u)) => u.to_string(),
        Some(cel::Value::Float(f)) => {
            let t = format!("{f:.4}");
            t.trim_end_matches('0').trim_end_matches('.').to_string()
        }
        Some(cel::Value::Bool(b)) => b.to_string(),
        Some(_) => "…".into(),
    }
}

struct Poster {
    url: String,
    format: NotifyFormat,
    chat_id: Option<String>,
    stream: String,
    topic: String,
    max_per_minute: usize,
    stats: Arc<Stats>,
}

impl Poster {
    fn run(self, rx: Receiver<String>) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(REQUEST_TIMEOUT))
            .http_status_as_error(false)
            .build()
            .into();
        let mut recent: VecDeque<Instant> = VecDeque::new();
        let mut limited_since_log = 0u64;
        let mut last_log = Instant::now() - Duration::from_secs(60);
        while let Ok(text) = rx.recv() {
            let now = Instant::now();
            while recent.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60)) {
                recent.pop_front();
            }
            if recent.len() >= self.max_per_minute {
                self.stats.notify_dropped.fetch_add(1, Ordering::Relaxed);
                limited_since_log += 1;
                if last_log.elapsed() >= Duration::from_secs(60) {
                    tracing::warn!(
                        stream = %self.stream,
                        dropped = limited_since_log,
                        "notifications over max_per_minute ({}) are dropped",
                        self.max_per_minute
                    );
                    limited_since_log = 0;
                    last_log = Instant::now();
                }
                continue;
            }
            recent.push_back(now);
            let body = self.body(&text);
            let mut attempt = 0;
            loop {
                attempt += 1;
                match self.post(&agent, &body) {
                    Ok(()) => {
                        self.stats.notified.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Err((why, retriable)) if retriable && attempt < ATTEMPTS => {
                        tracing::debug!(stream = %self.stream, attempt, "notification not delivered ({why}); trying again");
                        std::thread::sleep(Duration::from_millis(500 * 2u64.pow(attempt - 1)));
                    }
                    Err((why, _)) => {
                        self.stats.notify_failed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(stream = %self.stream, attempts = attempt, "notification not delivered: {why}");
                        break;
                    }
                }
            }
        }
    }

    fn body(&self, text: &str) -> serde_json::Value {
        match self.format {
            NotifyFormat::Slack => serde_json::json!({ "text": text }),
            NotifyFormat::Telegram => serde_json::json!({ "chat_id": self.chat_id, "text": text }),
            NotifyFormat::Json => serde_json::json!({ "stream": self.stream, "topic": self.topic, "text": text }),
        }
    }

    /// Post once: Err((why, retriable)). `why` never contains the URL.
    fn post(&self, agent: &ureq::Agent, body: &serde_json::Value) -> Result<(), (String, bool)> {
        match agent.post(&self.url).send_json(body) {
            Ok(r) if r.status().is_success() => Ok(()),
            Ok(r) => {
                let code = r.status().as_u16();
                Err((format!("HTTP {code}"), code >= 500 || code == 429))
            }
            Err(ureq::Error::Timeout(_)) => Err(("timed out".into(), true)),
            Err(ureq::Error::Io(e)) => Err((format!("{}", e.kind()), true)),
            Err(ureq::Error::ConnectionFailed) => Err(("connection failed".into(), true)),
            Err(ureq::Error::HostNotFound) => Err(("host not found".into(), true)),
            Err(_) => Err(("request failed".into(), false)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_split_into_text_and_fields() {
        let p = parse_template("{objectId} at {candidate.magpsf} mag");
        assert!(matches!(&p[0], Part::Field(f) if f == &["objectId"]));
        assert!(matches!(&p[1], Part::Text(t) if t == " at "));
        assert!(matches!(&p[2], Part::Field(f) if f == &["candidate", "magpsf"]));
        assert!(matches!(&p[3], Part::Text(t) if t == " mag"));
    }
}

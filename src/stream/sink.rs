//! The Kafka side of a stream: an idempotent producer (acks=all) whose
//! delivery reports, and only those, mark alerts as delivered. Every wait
//! here (a free partition, room in librdkafka's queue, a report) is woken by
//! a stop request, so a stream stops within its deadline even when the
//! broker is away.

use std::cell::Cell;
use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, PurgeConfig, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message};

use super::error::StreamError;
use crate::cluster::Connection;
use crate::config::{Compression, ProducerConfig};
use crate::stream::Stats;

/// How long a stream waits for a missing or leaderless topic to appear
/// before failing: long enough for a topic `fink apply` just created.
const TOPIC_SETTLE: Duration = Duration::from_secs(5);

/// What the delivery callback tells the stream.
#[derive(Default)]
pub struct Deliveries {
    /// (file, source row) sent and still waiting for their report; files
    /// are numbered per stream as they are opened. Several files can be in
    /// flight: a stream does not wait at a file's end.
    pub pending: BTreeSet<(u64, u64)>,
    /// Rows the broker refused for their size: (file, row, reason).
    pub too_large: Vec<(u64, u64, String)>,
    /// An error that stops the stream (authorization, missing topic, ...).
    pub fatal: Option<(RDKafkaErrorCode, String)>,
    /// Offset of the last state record written (exactly-once).
    pub state_offset: Option<i64>,
}

/// The tag of a state record (not an alert: no file, no pacing).
const STATE_TAG: u64 = u64::MAX;

/// How long a transaction may stay open before the broker aborts it (and
/// the longest an alert may wait for a broker): a stream stalled longer
/// than this fails and is restarted, re-sending the aborted transaction.
/// Read-committed consumers wait at most this long behind an instance that
/// died mid-transaction and is not replaced.
pub const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(crate::config::TRANSACTION_TIMEOUT_S);

/// What a stream's thread, its producer's callback and the supervisor
/// share: the delivery state, the partition pacing, and the stop request.
#[derive(Default)]
pub struct Control {
    stop: AtomicBool,
    deadline: Mutex<Option<Instant>>,
    deliveries: Mutex<Deliveries>,
    /// Signalled on every delivery report and on a stop request.
    reported: Condvar,
    pacing: Pacing,
}

/// The stream was asked to stop while it waited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

impl Control {
    /// Stop reading, and give what is in flight until `deadline`. An
    /// earlier deadline wins; every wait wakes now.
    pub fn request_stop(&self, deadline: Instant) {
        {
            let mut d = self.deadline.lock().unwrap();
            *d = Some(d.map_or(deadline, |x| x.min(deadline)));
        }
        self.stop.store(true, Ordering::SeqCst);
        // Taking each lock before notifying means no waiter misses it.
        drop(self.deliveries.lock().unwrap());
        self.reported.notify_all();
        drop(self.pacing.outstanding.lock().unwrap());
        self.pacing.freed.notify_all();
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// A stop was requested and its deadline has passed.
    pub fn past_deadline(&self) -> bool {
        self.stopping() && self.deadline.lock().unwrap().is_some_and(|d| Instant::now() >= d)
    }

    /// Time left until the stop deadline (zero if past, a day if none).
    pub fn deadline_left(&self) -> Duration {
        match *self.deadline.lock().unwrap() {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => Duration::from_secs(86_400),
        }
    }

    pub fn deliveries(&self) -> MutexGuard<'_, Deliveries> {
        self.deliveries.lock().unwrap()
    }

    /// Wait up to `max` for a delivery report (or a stop request).
    pub fn wait_report(&self, max: Duration) {
        let g = self.deliveries.lock().unwrap();
        if !self.stopping() {
            let _ = self.reported.wait_timeout(g, max).unwrap();
        }
    }
}

pub struct SinkContext {
    pub control: Arc<Control>,
    /// The stream's live counters: published, in flight, last progress.
    pub stats: Arc<Stats>,
}

impl ClientContext for SinkContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        crate::cluster::librdkafka_log(level, fac, log_message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", %error, "{reason}");
        *self.stats.last_client_error.lock().unwrap() = Some(reason.to_string());
    }
}

/// The opaque carried by each message: (file number, source row).
pub type Tag = Box<(u64, u64)>;

impl ProducerContext for SinkContext {
    type DeliveryOpaque = Tag;

    fn delivery(&self, result: &DeliveryResult<'_>, tag: Tag) {
        let (file, row) = *tag;
        if file == STATE_TAG {
            let mut st = self.control.deliveries.lock().unwrap();
            match result {
                Ok(m) => st.state_offset = Some(m.offset()),
                Err((e, _)) => {
                    let code = e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail);
                    if !matches!(code, RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight)
                        && st.fatal.is_none()
                    {
                        st.fatal = Some((code, format!("state record: {e}")));
                    }
                }
            }
            drop(st);
            self.control.reported.notify_all();
            return;
        }
        let partition = match result {
            Ok(m) | Err((_, m)) => m.partition(),
        };
        self.control.pacing.reported(partition);
        let mut st = self.control.deliveries.lock().unwrap();
        self.stats.reported();
        match result {
            Ok(m) => {
                st.pending.remove(&(file, row));
                self.stats.published.fetch_add(1, Ordering::Relaxed);
                self.stats.bytes.fetch_add(m.payload_len() as u64, Ordering::Relaxed);
            }
            Err((e, _)) => match e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail) {
                RDKafkaErrorCode::MessageSizeTooLarge => {
                    st.pending.remove(&(file, row));
                    st.too_large.push((file, row, format!("the broker refused the record: {e}")));
                }
                // Purged at the stop deadline: unconfirmed, stays pending
                // so the checkpoint never passes it.
                RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight => {}
                code => {
                    if st.fatal.is_none() {
                        st.fatal = Some((code, e.to_string()));
                    }
                }
            },
        }
        drop(st);
        self.control.reported.notify_all();
    }
}

pub struct Sink {
    out: Out,
    pub control: Arc<Control>,
    pub topic: String,
    spread: Option<Spread>,
    stats: Arc<Stats>,
}

/// Where a sink's alerts go.
enum Out {
    Kafka(ThreadedProducer<SinkContext>),
    Memory(Arc<MemoryTopic>),
}

/// A topic held in memory, for running the engine without a broker: each
/// alert is confirmed as it is handed over, as a delivery report would.
#[derive(Default)]
pub struct MemoryTopic {
    records: Mutex<Vec<(Vec<u8>, Vec<u8>)>>,
    /// The process "crashes" (the stream thread panics, nothing is saved
    /// on the way out) when a send would make the topic this long.
    crash_at: Mutex<Option<usize>>,
}

impl MemoryTopic {
    /// Every (key, value) published so far.
    pub fn records(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.records.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Crash the stream that would publish the `n`th record (`None`: never).
    pub fn crash_at(&self, n: Option<usize>) {
        *self.crash_at.lock().unwrap_or_else(|p| p.into_inner()) = n;
    }

    fn publish(&self, key: &[u8], payload: &[u8]) {
        let len = self.records.lock().unwrap_or_else(|p| p.into_inner()).len();
        let crash = {
            let mut c = self.crash_at.lock().unwrap_or_else(|p| p.into_inner());
            let now = c.is_some_and(|n| len + 1 >= n);
            if now {
                *c = None;
            }
            now
        };
        if crash {
            panic!("simulated crash before record {}", len + 1);
        }
        self.records.lock().unwrap_or_else(|p| p.into_inner()).push((key.to_vec(), payload.to_vec()));
    }
}

/// Why one alert was not handed to the producer.
#[derive(Debug)]
pub enum SendError {
    Stopped,
    TooLarge(String),
    Kafka(RDKafkaErrorCode, String),
}

/// Which partition the next alert goes to. Every alert carries the same key
/// (the schema), so key hashing would put a whole stream on one partition:
/// one consumer of a group would get everything, and the producer could only
/// keep one partition's worth of requests in flight. Instead alerts fill one
/// producer batch (`batch.size`) on a partition, then move to the next, like
/// Kafka's sticky partitioner. A `partitioner` property turns this off.
///
/// A new batch only starts on a partition with fewer than
/// [`BATCHES_PER_PARTITION`] batches not yet acknowledged. librdkafka's
/// idempotent producer busy-polls while ready batches wait behind its
/// in-flight cap (burning a core and starving a broker on the same
/// machine), so the queue per partition is kept short; but one batch
/// filling while the one before it is in flight keeps the producer busy
/// when batches are a few large alerts (Rubin's ~176 KB: ~5 a batch), where
/// waiting for each acknowledgement left the stream idle half the time.
struct Spread {
    current: Cell<i32>,
    bytes: Cell<usize>,
    batch_bytes: usize,
    control: Arc<Control>,
}

/// Batches a partition may have started and not fully acknowledged: one
/// in flight, one filling behind it.
pub const BATCHES_PER_PARTITION: usize = 2;

/// Per partition, the alerts of each batch handed to librdkafka and not
/// yet reported, oldest first (reports come back in order per partition).
#[derive(Default)]
struct Pacing {
    outstanding: Mutex<Vec<VecDeque<u64>>>,
    freed: Condvar,
}

impl Pacing {
    fn set_partitions(&self, n: usize) {
        self.outstanding.lock().unwrap().resize(n, VecDeque::new());
    }

    /// A report came in for an alert sent to `partition`.
    fn reported(&self, partition: i32) {
        self.take_one(partition, true);
    }

    /// One alert of `partition` is done with: of its oldest batch (a
    /// report) or of the batch being filled (`oldest` false: not sent
    /// after all). An emptied batch frees room for a new one.
    fn take_one(&self, partition: i32, oldest: bool) {
        let mut o = self.outstanding.lock().unwrap();
        let Some(batches) = o.get_mut(partition as usize) else { return };
        let count = if oldest { batches.front_mut() } else { batches.back_mut() };
        let Some(count) = count else { return };
        *count = count.saturating_sub(1);
        if *count == 0 {
            if oldest {
                batches.pop_front();
            } else {
                batches.pop_back();
            }
            self.freed.notify_all();
        }
    }
}

impl Spread {
    fn next(&self, len: usize) -> Result<Option<i32>, Stopped> {
        let pacing = &self.control.pacing;
        let mut o = pacing.outstanding.lock().unwrap();
        let n = o.len() as i32;
        if n <= 0 {
            return Ok(None);
        }
        let mut p = self.current.get() % n;
        // The batch ends before it would overflow: librdkafka would leave
        // the overflow queued behind the request, waiting for `linger.ms`.
        if self.bytes.get() > 0 && self.bytes.get() + len > self.batch_bytes {
            p = (p + 1) % n;
            self.bytes.set(0);
        }
        if self.bytes.get() == 0 {
            // A new batch: on the first free partition from here, or wait.
            loop {
                if let Some(free) = (0..n).map(|k| (p + k) % n).find(|q| o[*q as usize].len() < BATCHES_PER_PARTITION) {
                    p = free;
                    break;
                }
                if self.control.stopping() {
                    return Err(Stopped);
                }
                o = pacing.freed.wait(o).unwrap();
            }
            o[p as usize].push_back(0);
        }
        let batches = &mut o[p as usize];
        if batches.is_empty() {
            // The batch being filled was acknowledged whole already.
            batches.push_back(0);
        }
        *batches.back_mut().expect("a batch") += 1;
        self.current.set(p);
        self.bytes.set(self.bytes.get() + len);
        Ok(Some(p))
    }

    /// The alert chosen for `partition` was not produced after all: it is
    /// the last of the batch being filled.
    fn unsent(&self, partition: i32) {
        self.control.pacing.take_one(partition, false);
    }
}

impl Sink {
    pub fn new(
        conn: &Connection,
        topic: &str,
        opts: &ProducerConfig,
        stats: Arc<Stats>,
        control: Arc<Control>,
        transactional_id: Option<&str>,
    ) -> Result<Sink, StreamError> {
        let spreading = !opts.properties.contains_key("partitioner");
        let mut cfg: ClientConfig = conn.client_config();
        cfg.set("enable.idempotence", "true")
            .set("acks", "all")
            .set(
                "compression.type",
                match opts.compression {
                    Compression::None => "none",
                    Compression::Lz4 => "lz4",
                    Compression::Zstd => "zstd",
                },
            )
            // With the stream choosing partitions, batches are closed by
            // `Spread` (below) and only need a moment to gather; otherwise
            // linger for fuller, fewer requests. The backlog's tail is flushed.
            .set("linger.ms", opts.linger_ms.unwrap_or(if spreading { 2 } else { 100 }).to_string())
            // Bounded memory per stream: 8 MB is ~100 alerts of 70 KB queued, enough to fill batches.
            .set("queue.buffering.max.kbytes", "8192")
            // Never give up on an alert on our own: an overloaded or
            // restarting broker slows the stream (bounded by max_in_flight)
            // instead of failing it, and the idempotent producer makes the
            // retries safe. A stop bounds the wait instead: at its deadline
            // what is still queued is purged and left unconfirmed.
            .set("message.timeout.ms", "0");
        if let Some(b) = opts.batch_size {
            cfg.set("batch.size", b.to_string());
        }
        if opts.compression == Compression::Zstd {
            // Alerts are mostly gzip'd FITS cutouts: zstd level 1 saves as
            // much as the default level 3 (~32% on real ZTF alerts) for half
            // the CPU. `properties."compression.level"` overrides it.
            cfg.set("compression.level", "1");
        }
        if let Some(id) = transactional_id {
            let ms = TRANSACTION_TIMEOUT.as_millis().to_string();
            // librdkafka wants an alert's timeout within its transaction's.
            cfg.set("transactional.id", id).set("transaction.timeout.ms", &ms).set("message.timeout.ms", &ms);
        }
        for (k, v) in &opts.properties {
            cfg.set(k, v);
        }
        let ctx = SinkContext { control: control.clone(), stats: stats.clone() };
        let producer: ThreadedProducer<SinkContext> =
            cfg.create_with_context(ctx).map_err(|e| StreamError::Client(e.to_string()))?;
        let spread = spreading.then(|| Spread {
            control: control.clone(),
            // Streams and restarts start on different partitions.
            current: Cell::new((std::process::id() ^ topic.len() as u32) as i32 & 0xffff),
            bytes: Cell::new(0),
            batch_bytes: opts
                .properties
                .get("batch.size")
                .and_then(|v| v.parse().ok())
                .or(opts.batch_size.map(|b| b as usize))
                .unwrap_or(1_000_000)
                // Room for librdkafka's per-record overhead.
                .saturating_mul(19)
                / 20,
        });
        Ok(Sink { out: Out::Kafka(producer), control, topic: topic.to_string(), spread, stats })
    }

    /// A sink publishing to `memory` (at-least-once only: there are no
    /// transactions in memory).
    pub fn memory(memory: Arc<MemoryTopic>, topic: &str, stats: Arc<Stats>, control: Arc<Control>) -> Sink {
        Sink { out: Out::Memory(memory), control, topic: topic.to_string(), spread: None, stats }
    }

    /// The Kafka producer, for transactions.
    ///
    /// # Panics
    /// On an in-memory sink, which [`crate::stream::runner::Prepared`]
    /// never pairs with exactly-once delivery.
    pub fn producer(&self) -> &ThreadedProducer<SinkContext> {
        match &self.out {
            Out::Kafka(p) => p,
            Out::Memory(_) => panic!("an in-memory sink has no transactions"),
        }
    }

    /// Fail early and clearly if the topic is missing or not writable. A
    /// topic created a moment ago may not be served yet by every broker, so
    /// "unknown" and "no leader" are retried for a few seconds first. Asks
    /// in short steps, so a stop request is never kept waiting long.
    pub fn check_topic(&self, user: &str, timeout: Duration) -> Result<usize, StreamError> {
        let start = Instant::now();
        let settle = start + TOPIC_SETTLE.min(timeout);
        let (code, n) = loop {
            let step = Duration::from_secs(2).min(timeout);
            let md = match self.producer().client().fetch_metadata(Some(&self.topic), step) {
                Ok(md) => md,
                Err(e) if start.elapsed() < timeout && !self.control.stopping() => {
                    tracing::debug!(topic = %self.topic, "metadata: {e}; asking again");
                    continue;
                }
                Err(e) => return Err(StreamError::Unreachable { user: user.into(), message: e.to_string() }),
            };
            let Some(t) = md.topics().first() else {
                return Err(StreamError::Unreachable {
                    user: user.into(),
                    message: "no metadata for the topic".into(),
                });
            };
            let code: Option<RDKafkaErrorCode> = t.error().map(Into::into);
            let transient = matches!(
                code,
                Some(
                    RDKafkaErrorCode::UnknownTopicOrPartition
                        | RDKafkaErrorCode::UnknownTopic
                        | RDKafkaErrorCode::LeaderNotAvailable
                )
            ) || (code.is_none() && t.partitions().iter().any(|p| p.leader() < 0));
            if !transient || Instant::now() >= settle || self.control.stopping() {
                break (code, t.partitions().len());
            }
            self.control.wait_report(Duration::from_millis(200));
        };
        if let Some(code) = code {
            return Err(StreamError::from_kafka(user, &self.topic, code, code.to_string()));
        }
        self.control.pacing.set_partitions(n);
        Ok(n)
    }

    /// Queue one message; waits (until a stop request) while a partition
    /// batch or librdkafka's queue is full.
    pub fn send(&self, key: &[u8], payload: &[u8], file: u64, row: u64) -> Result<(), SendError> {
        let mut tag: Tag = Box::new((file, row));
        let partition = match &self.spread {
            Some(s) => s.next(key.len() + payload.len()).map_err(|Stopped| SendError::Stopped)?,
            None => None,
        };
        // Counted in flight before librdkafka has it: its report can reach
        // the callback (on the producer's thread) before `send` returns
        // here. Counted after, a fast report found nothing to take off and
        // the alert then stayed "in flight" for ever: an idle stream shown
        // stalled with in_flight=1.
        self.stats.sent();
        if let Out::Memory(m) = &self.out {
            m.publish(key, payload);
            let mut st = self.control.deliveries.lock().unwrap();
            self.stats.reported();
            st.pending.remove(&(file, row));
            self.stats.published.fetch_add(1, Ordering::Relaxed);
            self.stats.bytes.fetch_add(payload.len() as u64, Ordering::Relaxed);
            drop(st);
            self.control.reported.notify_all();
            return Ok(());
        }
        let producer = self.producer();
        let unsent = || {
            self.stats.unsent();
            if let (Some(s), Some(p)) = (&self.spread, partition) {
                s.unsent(p);
            }
        };
        loop {
            let mut rec = BaseRecord::with_opaque_to(&self.topic, tag).key(key).payload(payload);
            if let Some(p) = partition {
                rec = rec.partition(p);
            }
            match producer.send(rec) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), rec)) => {
                    if self.control.stopping() {
                        unsent();
                        return Err(SendError::Stopped);
                    }
                    tag = rec.delivery_opaque;
                    // A report frees room in the queue.
                    self.control.wait_report(Duration::from_millis(10));
                }
                Err((e, _)) => {
                    unsent();
                    let code = e.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail);
                    return Err(match code {
                        RDKafkaErrorCode::MessageSizeTooLarge => SendError::TooLarge(e.to_string()),
                        _ => SendError::Kafka(code, e.to_string()),
                    });
                }
            }
        }
    }

    /// Queue a state record (exactly-once, inside the open transaction);
    /// its offset comes back in [`Deliveries::state_offset`].
    pub fn send_state(&self, topic: &str, partition: i32, key: &str, value: &[u8]) -> Result<(), KafkaError> {
        self.control.deliveries().state_offset = None;
        let mut tag: Tag = Box::new((STATE_TAG, 0));
        loop {
            let rec = BaseRecord::with_opaque_to(topic, tag).partition(partition).key(key).payload(value);
            match self.producer().send(rec) {
                Ok(()) => return Ok(()),
                // The alerts just sent can fill the queue (a few Rubin alerts
                // do): a report frees room. Failing here failed the stream.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), rec))
                    if !self.control.past_deadline() =>
                {
                    tag = rec.delivery_opaque;
                    if self.control.stopping() {
                        std::thread::sleep(Duration::from_millis(5));
                    } else {
                        self.control.wait_report(Duration::from_millis(10));
                    }
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// Hand queued alerts to the broker now (not after `linger.ms`) and wait
    /// up to `max` for the queue to empty.
    pub fn flush(&self, max: Duration) -> bool {
        match &self.out {
            Out::Kafka(p) => p.flush(max).is_ok(),
            Out::Memory(_) => true,
        }
    }

    /// Give up on what is queued or in flight: their reports come back as
    /// purged and they stay pending (unconfirmed).
    pub fn purge(&self) {
        if let Out::Kafka(p) = &self.out {
            p.purge(PurgeConfig::default().queue().inflight());
            let _ = p.flush(Duration::from_millis(500));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spread(partitions: i32, batch_bytes: usize) -> Spread {
        let control = Arc::new(Control::default());
        control.pacing.set_partitions(partitions as usize);
        Spread { control, current: Cell::new(7), bytes: Cell::new(0), batch_bytes }
    }

    /// Report every alert sent so far, as the broker would.
    fn ack_all(s: &Spread) {
        s.control.pacing.outstanding.lock().unwrap().iter_mut().for_each(VecDeque::clear);
    }

    #[test]
    fn alerts_fill_one_batch_per_partition_in_turn() {
        let s = spread(3, 120);
        let parts: Vec<i32> = (0..12)
            .map(|_| {
                let p = s.next(40).unwrap().unwrap();
                ack_all(&s);
                p
            })
            .collect();
        // 40-byte alerts: three fill a 120-byte batch; the fourth would overflow it and starts the next partition.
        assert_eq!(parts, vec![1, 1, 1, 2, 2, 2, 0, 0, 0, 1, 1, 1]);
        // Over whole rounds (three batches of three), every partition gets the same share.
        let mut counts = [0; 3];
        for _ in 0..2700 {
            counts[s.next(40).unwrap().unwrap() as usize] += 1;
            ack_all(&s);
        }
        assert_eq!(counts, [900, 900, 900]);
    }

    #[test]
    fn a_new_batch_waits_for_a_partition_with_room() {
        let s = spread(2, 120);
        // Partition 1 fills a batch, then partition 0, then each a second
        // one behind the first (nothing acknowledged).
        let first: Vec<i32> = (0..12).map(|_| s.next(40).unwrap().unwrap()).collect();
        assert_eq!(first, vec![1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 0]);
        // Both have two batches unacknowledged: the next alert waits for
        // the reports of partition 0's first batch.
        let control = s.control.clone();
        let acked = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let acked2 = acked.clone();
        let broker = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            acked2.store(true, Ordering::SeqCst);
            for _ in 0..3 {
                control.pacing.reported(0);
            }
        });
        assert_eq!(s.next(40), Ok(Some(0)), "the freed partition takes the next batch");
        assert_eq!(s.control.pacing.outstanding.lock().unwrap()[0], VecDeque::from([3, 1]));
        assert!(acked.load(Ordering::SeqCst), "it waited for partition 0's reports");
        broker.join().unwrap();
        // A batch already started keeps going on its partition.
        assert_eq!(s.next(40), Ok(Some(0)));
    }

    #[test]
    fn a_stop_request_wakes_a_wait_for_a_free_partition() {
        let s = spread(1, 40);
        assert_eq!(s.next(40), Ok(Some(0)));
        assert_eq!(s.next(40), Ok(Some(0)));
        // The only partition has two batches in flight and no report will come.
        let control = s.control.clone();
        let stopper = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            control.request_stop(Instant::now() + Duration::from_secs(30));
        });
        assert_eq!(s.next(40), Err(Stopped));
        stopper.join().unwrap();
        assert!(s.control.stopping() && !s.control.past_deadline());
    }

    #[test]
    fn unknown_partition_count_leaves_the_choice_to_librdkafka() {
        assert_eq!(spread(0, 100).next(40), Ok(None));
        let s = spread(0, 100);
        s.unsent(3);
    }
}

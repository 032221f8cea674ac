//! How a stream's progress becomes durable with its alerts: one trait, two
//! implementations. The pipeline (list, read, filter, encode, send) is the
//! same for both; a [`Delivery`] decides when what was handed to the
//! producer counts as done (the model is Vector's acknowledgements).
//!
//! - [`AtLeastOnce`]: progress in a local file, advanced only from delivery
//!   reports; a crash re-sends at most `max_in_flight` alerts.
//! - [`Transactional`]: alerts and progress committed together in Kafka
//!   transactions; the state topic holds the progress; a newer producer
//!   with the stream's transactional id fences an older one.

use std::collections::{BTreeSet, VecDeque};

use super::*;

/// Whether to hand one alert to the producer.
pub(super) enum Admit {
    Send,
    /// Refused by the broker in an aborted transaction: quarantined, not
    /// sent again.
    Skip,
    Stopped,
}

pub(super) trait Delivery {
    /// Before (file `f`, `row`) is handed to the producer.
    fn admit(&mut self, cx: &mut Ctx<'_>, f: u64, file: &str, row: u64) -> Result<Admit, Outcome>;
    /// The alert admitted last was not handed over after all.
    fn not_sent(&mut self);
    /// Record progress now if due, or now with `force`.
    fn save_point(&mut self, cx: &mut Ctx<'_>, force: bool) -> Result<(), Outcome>;
    /// Progress changed without an alert (a quarantined file, a changed
    /// file reported): record it.
    fn progress_changed(&mut self, cx: &mut Ctx<'_>) -> Result<(), Outcome>;
    /// A delivery report failed with `code`: what the stream does.
    fn failed(&mut self, cx: &mut Ctx<'_>, code: RDKafkaErrorCode, msg: String) -> Outcome;
    /// Everything handed over is recorded: its reports waited for, or
    /// committed.
    fn drain(&mut self, cx: &mut Ctx<'_>) -> Result<(), Outcome>;
    /// The stream ends: deliver or commit what is in flight within the stop
    /// deadline; what is not is reported unconfirmed.
    fn finish(&mut self, cx: &mut Ctx<'_>, result: Result<(), StreamError>) -> Result<(), StreamError>;
    /// A transaction was aborted: forget what was handed over since the
    /// last commit; the next pass sends it again.
    fn rewind(&mut self, cx: &mut Ctx<'_>, a: Aborted);
    /// The stream is about to go a while without sending (a file's filters
    /// decided ahead): an open transaction that might not outlive the pause
    /// (`transaction.timeout.ms`) is committed first, rather than be
    /// aborted and sent again. `longest`: the longest such pause of this
    /// stream so far (None before the first); one that will outlive the
    /// next by far is left open, as a commit waits for every alert in flight.
    fn before_long_pause(&mut self, _cx: &mut Ctx<'_>, _longest: Option<Duration>) -> Result<(), Outcome> {
        Ok(())
    }
}

/// The failure a delivery report carries, if any.
fn reported_failure(cx: &Ctx<'_>) -> Option<(RDKafkaErrorCode, String)> {
    cx.control.deliveries().fatal.clone()
}

/// Progress in a local file, from delivery reports.
pub(super) struct AtLeastOnce {
    /// (file, row) sent at or after its file's saved `rows_done`, in order:
    /// what a crash could send again. Kept below `max_in_flight`, which
    /// bounds duplicates.
    unsaved: VecDeque<(u64, u64)>,
    last_save: Instant,
}

impl AtLeastOnce {
    pub(super) fn new() -> AtLeastOnce {
        AtLeastOnce { unsaved: VecDeque::new(), last_save: Instant::now() }
    }

    /// Record what the delivery reports allow: each open file's finished
    /// prefix, refused records in the quarantine log, and files whose last
    /// report came in as done. Throttled unless `force`.
    fn settle(&mut self, cx: &mut Ctx<'_>, force: bool) -> Result<(), Outcome> {
        if !force && self.last_save.elapsed() < Duration::from_millis(200) {
            return Ok(());
        }
        let (too_large, progress) = {
            let mut st = cx.control.deliveries();
            let too_large = std::mem::take(&mut st.too_large);
            // Per open file: its first row still in flight, if any.
            let progress: Vec<(u64, Option<u64>)> =
                cx.open.keys().map(|&f| (f, st.pending.range((f, 0)..(f + 1, 0)).next().map(|&(_, r)| r))).collect();
            (too_large, progress)
        };
        for (f, row, reason) in too_large {
            let name = cx.open.get(&f).map(|o| o.name.clone()).unwrap_or_default();
            quarantine(cx, &name, Some(row), &reason);
        }
        let mut changed = false;
        let mut finished = Vec::new();
        for (f, first_pending) in progress {
            let o = &cx.open[&f];
            if first_pending.is_none() && !o.reading {
                let o = cx.open.remove(&f).expect("open file");
                cx.ckpt.mark_done(&o.name, o.id);
                cx.stats.files_done.fetch_add(1, Ordering::Relaxed);
                finished.push(o);
                changed = true;
                continue;
            }
            let rows_done = first_pending.unwrap_or(o.handed);
            // An unchanged position is never rewritten.
            let (name, id) = (o.name.clone(), o.id);
            changed |= cx.ckpt.set_rows_done(&name, id, rows_done);
        }
        if changed {
            cx.ckpt.fold(&cx.listing, crate::stream::now_ms());
            save(cx)?;
        }
        // Durable once the checkpoint is saved.
        for o in &finished {
            o.committed(cx.spec, cx.stats);
        }
        while let Some(&(f, row)) = self.unsaved.front() {
            let saved = match cx.open.get(&f) {
                None => true,
                Some(o) => row < cx.ckpt.rows_done(&o.name),
            };
            if !saved {
                break;
            }
            self.unsaved.pop_front();
        }
        self.last_save = Instant::now();
        Ok(())
    }
}

impl Delivery for AtLeastOnce {
    fn admit(&mut self, cx: &mut Ctx<'_>, f: u64, _file: &str, row: u64) -> Result<Admit, Outcome> {
        // Checkpoint before more than max_in_flight rows could be re-sent
        // after a crash.
        while self.unsaved.len() >= cx.spec.max_in_flight {
            self.settle(cx, true)?;
            if self.unsaved.len() < cx.spec.max_in_flight {
                break;
            }
            if let Some((code, msg)) = reported_failure(cx) {
                return Err(self.failed(cx, code, msg));
            }
            if cx.control.stopping() {
                return Ok(Admit::Stopped);
            }
            cx.control.wait_report(Duration::from_millis(100));
        }
        self.unsaved.push_back((f, row));
        Ok(Admit::Send)
    }

    fn not_sent(&mut self) {
        self.unsaved.pop_back();
    }

    fn save_point(&mut self, cx: &mut Ctx<'_>, force: bool) -> Result<(), Outcome> {
        self.settle(cx, force)
    }

    fn progress_changed(&mut self, cx: &mut Ctx<'_>) -> Result<(), Outcome> {
        Ok(save(cx)?)
    }

    /// It fails, and is restarted from its checkpoint.
    fn failed(&mut self, cx: &mut Ctx<'_>, code: RDKafkaErrorCode, msg: String) -> Outcome {
        Outcome::Failed(StreamError::from_kafka(&cx.spec.user, &cx.spec.topic, code, msg))
    }

    /// Wait for every pending delivery report, then record them. Flushing
    /// sends the last batches now instead of after `linger.ms`. A stop
    /// whose deadline passes ends the wait: what is still pending stays
    /// unconfirmed.
    fn drain(&mut self, cx: &mut Ctx<'_>) -> Result<(), Outcome> {
        loop {
            if let Some((code, msg)) = reported_failure(cx) {
                return Err(self.failed(cx, code, msg));
            }
            if cx.control.deliveries().pending.is_empty() || cx.control.past_deadline() {
                break;
            }
            // flush returns once librdkafka's queue is empty (or after the
            // step, while the broker is slow or away); the last reports may
            // still be on their way to the callback.
            if cx.sink.flush(Duration::from_millis(100)) {
                cx.control.wait_report(Duration::from_millis(10));
            }
        }
        self.settle(cx, true)
    }

    fn finish(&mut self, cx: &mut Ctx<'_>, result: Result<(), StreamError>) -> Result<(), StreamError> {
        let drained = self.drain(cx).map_err(Outcome::into_error);
        let unconfirmed = cx.sink.control.deliveries().pending.len() as u64;
        if unconfirmed > 0 {
            cx.sink.purge();
            tracing::warn!(
                stream = %cx.spec.name,
                unconfirmed,
                "stopped with alerts unconfirmed after the shutdown deadline; the checkpoint stays before them, so they are sent again on the next start"
            );
        }
        cx.stats.unconfirmed.store(unconfirmed, Ordering::SeqCst);
        self.settle(cx, true).map_err(Outcome::into_error)?;
        result.and(drained)
    }

    /// Never called: nothing is aborted without transactions.
    fn rewind(&mut self, cx: &mut Ctx<'_>, _a: Aborted) {
        cx.open.clear();
        self.unsaved.clear();
    }
}

/// Alerts and progress in Kafka transactions.
pub(super) struct Transactional {
    spec: TxnSpec,
    /// The state topic partition of this stream's records.
    partition: i32,
    /// A transaction is open (alerts or state were sent in it).
    open: bool,
    /// When the open transaction began.
    opened_at: Instant,
    /// Progress changed without an alert (a quarantined file, an import):
    /// commit even if nothing is sent.
    dirty: bool,
    last_commit: Instant,
    /// The wall-clock tick (`now_ms / commit_interval_ms`) of the last commit.
    last_commit_tick: u64,
    /// Alerts sent in the open transaction.
    sent: u64,
    /// A local checkpoint imported at start, renamed once committed.
    imported: Option<std::path::PathBuf>,
    /// (file, row) the broker refused for their size in an aborted
    /// transaction: quarantined, and skipped when the rest is sent again.
    skip: BTreeSet<(String, u64)>,
}

impl Transactional {
    /// Fence older producers of this stream, claim it, and read its last
    /// committed progress (or import a local checkpoint once).
    pub(super) fn start(
        cx: &mut Ctx<'_>,
        conn: &Connection,
        reader: &state::Reader,
        t: TxnSpec,
        partitions: i32,
    ) -> Result<Transactional, StreamError> {
        let spec = cx.spec;
        let producer = cx.sink.producer();
        stepped(cx.control, conn.timeout, |d| producer.init_transactions(d))
            .map_err(|e| StreamError::from_txn(spec, &t.id, &e))?;
        let partition = state::partition_for(&t.state_key, partitions);
        // The claim: committed after any older producer was fenced, so
        // reading up to it sees every progress record committed before.
        let claim = serde_json::to_vec(&state::Claim {
            instance: crate::stream::instance_id().into(),
            at_ms: crate::stream::now_ms(),
        })
        .expect("claim serializes");
        producer.begin_transaction().map_err(|e| StreamError::from_txn(spec, &t.id, &e))?;
        cx.sink
            .send_state(&t.state_topic, partition, &state::claim_key(&t.state_key), &claim)
            .map_err(|e| StreamError::from_txn(spec, &t.id, &e))?;
        stepped(cx.control, conn.timeout, |d| producer.commit_transaction(d))
            .map_err(|e| StreamError::from_txn(spec, &t.id, &e))?;
        let claim_offset = cx.control.deliveries().state_offset.ok_or_else(|| {
            StreamError::State(format!(
                "the claim of stream {:?} in {:?} was not acknowledged",
                spec.name, t.state_topic
            ))
        })?;
        let read_for = crate::stream::sink::TRANSACTION_TIMEOUT + Duration::from_secs(15);
        let records = reader
            .read(&t.state_topic, &[partition], Some((partition, claim_offset)), read_for)
            .map_err(StreamError::State)?;
        let mut imported = None;
        cx.ckpt = match state::progress_of(&records, &t.state_key) {
            state::Found::Progress(p) => *p,
            state::Found::Corrupt(e) => {
                return Err(StreamError::State(format!(
                    "the committed progress of stream {:?} in state topic {:?} is unreadable ({e}); the stream was not \
                     started. Reset it with `fink state reset {} --to-start` (publish everything again) or `--to-end` \
                     (skip what is there now)",
                    spec.name, t.state_topic, spec.name
                )))
            }
            state::Found::Nothing if spec.checkpoint_path.exists() => {
                // Migration from at-least-once: nothing published is sent again.
                let p = Progress::load(&spec.checkpoint_path, &spec.name).map_err(StreamError::State)?;
                tracing::info!(
                    stream = %spec.name,
                    file = %spec.checkpoint_path.display(),
                    files_done = p.files_done,
                    "importing the local checkpoint into the state topic (once)"
                );
                imported = Some(spec.checkpoint_path.clone());
                p
            }
            state::Found::Nothing => Progress::new(&spec.name),
        };
        cx.stats.files_done.store(cx.ckpt.files_done, Ordering::Relaxed);
        Ok(Transactional {
            spec: t,
            partition,
            open: false,
            opened_at: Instant::now(),
            dirty: imported.is_some(),
            last_commit: Instant::now(),
            last_commit_tick: 0,
            sent: 0,
            imported,
            skip: BTreeSet::new(),
        })
    }

    /// Commits fall on wall-clock ticks of `commit_interval_ms`, the same
    /// for every stream: a commit pauses a stream while its last batches are
    /// confirmed, and streams sharing a source move together, so pauses
    /// that overlap cost the group one pause instead of one per stream.
    fn commit_due(&self) -> bool {
        let every = self.spec.commit_interval.as_millis().max(1) as u64;
        let elapsed = self.last_commit.elapsed();
        elapsed >= self.spec.commit_interval * 2
            || (elapsed >= self.spec.commit_interval / 2 && crate::stream::now_ms() / every != self.last_commit_tick)
    }

    /// Commit the open transaction with the progress it makes: files read
    /// to the end are done, the others are done up to the rows handed over.
    /// `Ok(false)`: the stop deadline passed before the commit was
    /// confirmed.
    fn commit(&mut self, cx: &mut Ctx<'_>) -> Result<bool, Outcome> {
        // Files finished or moved on without an alert (all filtered out, or
        // quarantined) are progress too.
        let moved = cx.open.values().any(|o| !o.reading || o.handed != cx.ckpt.rows_done(&o.name));
        if !self.open && !self.dirty && !moved {
            return Ok(true);
        }
        let spec = cx.spec;
        let id = self.spec.id.clone();
        let txn_err = |e: rdkafka::error::KafkaError| Outcome::Failed(StreamError::from_txn(spec, &id, &e));
        if !self.open {
            cx.sink.producer().begin_transaction().map_err(txn_err)?;
            self.open = true;
            self.opened_at = Instant::now();
        }
        let mut p = cx.ckpt.clone();
        let mut finished = Vec::new();
        for (f, o) in &cx.open {
            if o.reading {
                p.set_rows_done(&o.name, o.id, o.handed);
            } else {
                p.mark_done(&o.name, o.id);
                finished.push(*f);
            }
        }
        let now = crate::stream::now_ms();
        p.fold(&cx.listing, now);
        p.committed_at_ms = now;
        p.owner = Some(crate::stream::instance_id().to_string());
        cx.sink
            .send_state(&self.spec.state_topic, self.partition, &self.spec.state_key, &p.to_json())
            .map_err(txn_err)?;
        loop {
            // Short steps: a stop request is noticed within one.
            let step = TXN_STEP.min(cx.control.deadline_left()).max(Duration::from_millis(10));
            match cx.sink.producer().commit_transaction(step) {
                Ok(()) => break,
                Err(e) => {
                    let (retriable, abort) = match &e {
                        rdkafka::error::KafkaError::Transaction(re) => (re.is_retriable(), re.txn_requires_abort()),
                        // rdkafka flushes before committing: a step that
                        // ends with batches still in flight (a broker away,
                        // a leader moving) is a timeout to ask again.
                        e if step_timed_out(e) => (true, false),
                        _ => (false, false),
                    };
                    if abort {
                        let producer = cx.sink.producer();
                        let _ = stepped(cx.control, Duration::from_secs(30), |d| producer.abort_transaction(d));
                        return Err(Outcome::Aborted(Aborted(e.to_string())));
                    }
                    if retriable && !cx.control.past_deadline() {
                        tracing::debug!(stream = %spec.name, "commit not confirmed yet ({e}); asking again");
                        continue;
                    }
                    if retriable {
                        return Ok(false);
                    }
                    return Err(txn_err(e));
                }
            }
        }
        for f in &finished {
            if let Some(o) = cx.open.remove(f) {
                o.committed(cx.spec, cx.stats);
            }
        }
        cx.stats.files_done.store(p.files_done, Ordering::Relaxed);
        cx.ckpt = p;
        cx.control.deliveries().pending.clear();
        self.open = false;
        self.dirty = false;
        self.sent = 0;
        self.last_commit = Instant::now();
        self.last_commit_tick = crate::stream::now_ms() / (self.spec.commit_interval.as_millis().max(1) as u64);
        if let Some(path) = self.imported.take() {
            let mut done = path.clone().into_os_string();
            done.push(".imported");
            if let Err(e) = std::fs::rename(&path, &done) {
                tracing::warn!("cannot rename the imported checkpoint {}: {e}", path.display());
            }
        }
        Ok(true)
    }
}

/// Whether a transaction open for `age` is committed before a pause as
/// long as `longest` so far (None: no pause yet, length unknown): unless
/// its age plus twice that stays within a quarter of its timeout. Should a
/// pause still outlast it, the broker aborts the transaction and what it
/// held is sent again from the committed progress: nothing lost or
/// published twice.
fn commit_before_pause(age: Duration, longest: Option<Duration>) -> bool {
    !longest.is_some_and(|l| age + l * 2 < crate::stream::sink::TRANSACTION_TIMEOUT / 4)
}

impl Delivery for Transactional {
    fn before_long_pause(&mut self, cx: &mut Ctx<'_>, longest: Option<Duration>) -> Result<(), Outcome> {
        if self.open && commit_before_pause(self.opened_at.elapsed(), longest) {
            self.commit(cx)?;
        }
        Ok(())
    }

    fn admit(&mut self, cx: &mut Ctx<'_>, _f: u64, file: &str, row: u64) -> Result<Admit, Outcome> {
        if !self.skip.is_empty() && self.skip.contains(&(file.to_string(), row)) {
            return Ok(Admit::Skip);
        }
        if !self.open {
            cx.sink.producer().begin_transaction().map_err(|e| StreamError::from_txn(cx.spec, &self.spec.id, &e))?;
            self.open = true;
            self.opened_at = Instant::now();
        }
        self.sent += 1;
        Ok(Admit::Send)
    }

    fn not_sent(&mut self) {
        self.sent = self.sent.saturating_sub(1);
    }

    /// Commit every `commit_interval_ms`, or now with `force`.
    fn save_point(&mut self, cx: &mut Ctx<'_>, force: bool) -> Result<(), Outcome> {
        if force || self.commit_due() {
            self.commit(cx)?;
        }
        Ok(())
    }

    fn progress_changed(&mut self, _cx: &mut Ctx<'_>) -> Result<(), Outcome> {
        self.dirty = true;
        Ok(())
    }

    /// An error the cluster may get over (a leader moving, a timeout while
    /// a broker is away) aborts the open transaction, which is then sent
    /// again in place; only a definitive one (no ACL, no topic, fenced, a
    /// fatal producer) fails the stream.
    fn failed(&mut self, cx: &mut Ctx<'_>, code: RDKafkaErrorCode, msg: String) -> Outcome {
        let e = StreamError::from_kafka(&cx.spec.user, &cx.spec.topic, code, msg.clone());
        if !self.open || definitive(code) {
            return Outcome::Failed(e);
        }
        let producer = cx.sink.producer();
        match stepped(cx.control, Duration::from_secs(30), |d| producer.abort_transaction(d)) {
            Ok(()) => Outcome::Aborted(Aborted(format!("a delivery failed ({code}): {msg}"))),
            Err(abort) => {
                tracing::debug!(stream = %cx.spec.name, "cannot abort after a failed delivery: {abort}");
                Outcome::Failed(StreamError::from_txn(cx.spec, &self.spec.id, &abort))
            }
        }
    }

    fn drain(&mut self, cx: &mut Ctx<'_>) -> Result<(), Outcome> {
        self.commit(cx).map(|_| ())
    }

    /// A stopping stream commits what it handed over, within its deadline;
    /// what is not committed then stays unconfirmed (the broker aborts it,
    /// or the next start's fencing does).
    fn finish(&mut self, cx: &mut Ctx<'_>, result: Result<(), StreamError>) -> Result<(), StreamError> {
        let committed =
            if result.is_ok() { self.commit(cx) } else { Err(Outcome::Failed(StreamError::State(String::new()))) };
        let unconfirmed = if self.open { self.sent } else { 0 };
        if self.open {
            let left = cx.control.deadline_left();
            if let Err(e) = cx.sink.producer().abort_transaction(left.max(Duration::from_millis(100))) {
                tracing::debug!(stream = %cx.spec.name, "abort at stop: {e}");
            }
            if unconfirmed > 0 {
                tracing::warn!(
                    stream = %cx.spec.name,
                    unconfirmed,
                    "stopped with a transaction not committed; its alerts are invisible to read_committed consumers and are \
                     sent again on the next start"
                );
            }
        }
        cx.stats.unconfirmed.store(unconfirmed, Ordering::SeqCst);
        match (result, committed) {
            (Err(e), _) => Err(e),
            (Ok(()), Err(Outcome::Failed(e))) => Err(e),
            (Ok(()), _) => Ok(()),
        }
    }

    fn rewind(&mut self, cx: &mut Ctx<'_>, a: Aborted) {
        tracing::warn!(stream = %cx.spec.name, "transaction aborted, sending it again: {}", a.0);
        let too_large = {
            let mut d = cx.control.deliveries();
            d.pending.clear();
            d.fatal = None;
            std::mem::take(&mut d.too_large)
        };
        for (f, row, reason) in too_large {
            if let Some(o) = cx.open.get(&f) {
                let name = o.name.clone();
                quarantine(cx, &name, Some(row), &reason);
                self.skip.insert((name, row));
            }
        }
        cx.open.clear();
        self.open = false;
        self.sent = 0;
    }
}

#[cfg(test)]
mod pause_tests {
    use super::*;

    #[test]
    fn a_transaction_is_committed_before_a_pause_that_it_might_not_outlive() {
        let s = Duration::from_secs;
        // Unknown length: committed.
        assert!(commit_before_pause(s(0), None));
        // Quick decisions on a young transaction: left open.
        assert!(!commit_before_pause(s(1), Some(Duration::from_millis(30))));
        assert!(!commit_before_pause(s(20), Some(s(4))));
        // Old, or decisions that take long: committed.
        assert!(commit_before_pause(s(29), Some(s(1))));
        assert!(commit_before_pause(s(0), Some(s(15))));
    }
}

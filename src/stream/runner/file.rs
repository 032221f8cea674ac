//! One file through the stream: opened (shared with the other streams on
//! its source, or for its kept rows only), its batches filtered, encoded
//! and sent, and what cannot be read quarantined from the row it stopped at.

use super::*;
use crate::stream::error::SourceError;
use crate::stream::shared::SharedReader;
use crate::stream::source::{FileReader, KeptRead, KeptReads};

pub(super) fn process_file(cx: &mut Ctx<'_>, input: &Input) -> Result<Flow, Outcome> {
    let name = input.rel.clone();
    let start_row = cx.ckpt.rows_done(&name);
    let t0 = Instant::now();
    let opened = cx.follower.open(&cx.store, input, &cx.how);
    cx.stats.spent(Busy::Read, t0);
    let mut reader = match opened {
        Ok(r) => r,
        Err(e) if e.is_transient() => return Ok(Flow::Unavailable(e.to_string())),
        Err(e) => {
            quarantine(cx, &name, None, &e.to_string());
            cx.ckpt.mark_done(&name, input.identity());
            progress_changed(cx)?;
            return Ok(Flow::Go);
        }
    };
    cx.stats.source_down(None);
    let full_schema = reader.full_schema();
    if cx.decides_first {
        // The other streams on the file go on while the Python filters
        // decide it (up to seconds a Rubin file): held, they waited
        // LAGGARD_WAIT each file for it.
        reader.step_aside();
    }
    let ahead = match decide_ahead(cx, input, full_schema.as_deref(), start_row) {
        Ok(a) => a,
        Err(flow) => return flow,
    };
    cx.file_no += 1;
    let f = cx.file_no;
    cx.open.insert(
        f,
        OpenFile {
            name: name.clone(),
            id: input.identity(),
            handed: start_row,
            reading: true,
            seen_ms: cx.seen.get(&name).copied().unwrap_or_else(crate::stream::now_ms),
        },
    );
    // Every row decided: only the kept rows are read when the stream reads
    // on its own anyway (the other streams are done with this file), or
    // keeps so few (a quarter at most) that decoding them alone costs less
    // than keeping up with the streams that decode everything.
    let selected =
        ahead.as_ref().filter(|a| a.failed.is_none()).map(|a| a.kept_rows()).filter(|(kept, decided)| {
            !reader.is_shared() || kept.len() as u64 * 4 <= decided.saturating_sub(start_row)
        });
    let mut batches = Batches::All { reader, row_base: 0, start_row, ahead: ahead.as_ref() };
    if let Some((kept, decided)) = &selected {
        let t = Instant::now();
        let control = cx.control;
        let Some(turn) = KeptReads::global().enter(&|| control.stopping()) else {
            return Ok(Flow::Stopped);
        };
        let opened = crate::stream::source::open_rows(&cx.store, input, &cx.how, kept);
        cx.stats.spent(Busy::Read, t);
        if let Some(Ok(reader)) = opened {
            let skipped = decided.saturating_sub(start_row) - kept.len() as u64;
            cx.stats.read.fetch_add(skipped, Ordering::Relaxed);
            cx.stats.filtered.fetch_add(skipped, Ordering::Relaxed);
            // The shared reader leaves the window here: the others go on without it.
            batches = Batches::Kept { reader, kept, at: 0, decided: *decided, _turn: turn };
        }
    }
    let flow = read_batches(cx, f, &name, &mut batches, full_schema.as_ref())?;
    if flow != Flow::Go {
        // Stopped or unavailable: not done, the file is read again from
        // what was delivered (or committed).
        return Ok(flow);
    }
    if batches.read_alone() {
        cx.stats.files_read_alone.fetch_add(1, Ordering::Relaxed);
    }
    cx.open.get_mut(&f).expect("open file").reading = false;
    save_point(cx, false)?;
    let secs = t0.elapsed().as_secs_f64();
    match &batches {
        Batches::Kept { kept, .. } => {
            tracing::debug!(stream = %cx.spec.name, file = %name, rows = kept.len(), "read its kept rows in {secs:.2} s")
        }
        Batches::All { .. } => tracing::debug!(stream = %cx.spec.name, file = %name, "read in {secs:.2} s"),
    }
    Ok(flow)
}

/// Read, filter, encode and send the batches of open file `f` until its
/// end, a stop, or the row from which the rest is quarantined.
fn read_batches(
    cx: &mut Ctx<'_>,
    f: u64,
    name: &str,
    batches: &mut Batches<'_>,
    full_schema: Option<&SchemaRef>,
) -> Result<Flow, Outcome> {
    let mut counted = 0u64;
    let flow = loop {
        let t = Instant::now();
        let next = batches.next();
        cx.stats.spent(Busy::Read, t);
        let Some(batch) = next else { break Flow::Go };
        let now = batches.bytes_read();
        cx.stats.source_bytes.fetch_add(now.saturating_sub(counted), Ordering::Relaxed);
        counted = counted.max(now);
        if cx.control.stopping() {
            return Ok(Flow::Stopped);
        }
        let piece = match batch {
            Ok(b) => batches.piece(b),
            Err(e) if e.is_transient() => return Ok(Flow::Unavailable(e.to_string())),
            // A corrupt part: what was read so far stands.
            Err(e) => Err(e.to_string()),
        };
        let piece = match piece {
            Ok(Some(p)) => p,
            Ok(None) => continue,
            Err(reason) => break skip_rest(cx, name, Some(batches.position()), reason),
        };
        if let Err(reason) = ensure_pipeline(cx, &piece.batch.schema(), full_schema) {
            break skip_rest(cx, name, None, format!("does not fit stream {:?}: {reason}", cx.spec.name));
        }
        if piece.batch.num_rows() > 0 {
            let rows = &piece.rows;
            match send_rows_of(cx, f, name, &piece.batch, &|i| rows.row(i), piece.decided)? {
                // `handed` stays at the first row not sent.
                Flow::Stopped => return Ok(Flow::Stopped),
                Flow::Quarantined(reason) => break skip_rest(cx, name, Some(rows.row(0)), reason),
                _ => {}
            }
        }
        if let Some((at, reason)) = piece.then_skip {
            break skip_rest(cx, name, Some(at), reason);
        }
        cx.open.get_mut(&f).expect("open file").handed = piece.handed;
        save_point(cx, false)?;
        if let Some(o) = fatal(cx) {
            return Err(o);
        }
    };
    cx.stats.source_bytes.fetch_add(batches.bytes_read().saturating_sub(counted), Ordering::Relaxed);
    if let (Flow::Go, Some(handed)) = (&flow, batches.handed_at_end()) {
        cx.open.get_mut(&f).expect("open file").handed = handed;
    }
    Ok(flow)
}

/// The rest of a file is quarantined from row `from` (the whole file
/// without one); what came before it stands. The stream goes on.
fn skip_rest(cx: &Ctx<'_>, name: &str, from: Option<u64>, reason: String) -> Flow {
    match from {
        Some(at) => quarantine(cx, name, Some(at), &format!("{reason} (rows from {at} on are skipped)")),
        None => quarantine(cx, name, None, &reason),
    }
    Flow::Go
}

/// Where a file's batches come from.
enum Batches<'a> {
    /// Every row, shared with the other streams on the source; rows before
    /// `start_row` were handed over before and are skipped.
    All { reader: SharedReader, row_base: u64, start_row: u64, ahead: Option<&'a Ahead> },
    /// The kept rows only (`kept`, ascending; rows up to `decided` were
    /// decided ahead): batch row `i` is file row `kept[at + i]`.
    Kept { reader: FileReader, kept: &'a [u64], at: usize, decided: u64, _turn: KeptRead<'static> },
}

/// The file rows of a batch's rows.
enum Rows<'a> {
    From(u64),
    Listed(&'a [u64]),
}

impl Rows<'_> {
    fn row(&self, i: usize) -> u64 {
        match self {
            Rows::From(first) => first + i as u64,
            Rows::Listed(rows) => rows[i],
        }
    }
}

/// A batch to send.
struct Piece<'a> {
    batch: RecordBatch,
    rows: Rows<'a>,
    /// Its rows' verdicts when they were decided ahead.
    decided: Option<arrow_array::BooleanArray>,
    /// The file's rows before this are handed over once it is sent.
    handed: u64,
    /// A Python filter failed from this row on, deciding ahead: the rest
    /// of the file is quarantined once the rows before it are sent.
    then_skip: Option<(u64, String)>,
}

impl<'a> Batches<'a> {
    fn next(&mut self) -> Option<Result<RecordBatch, SourceError>> {
        match self {
            Batches::All { reader, .. } => reader.next(),
            Batches::Kept { reader, .. } => reader.next(),
        }
    }

    fn bytes_read(&self) -> u64 {
        match self {
            Batches::All { reader, .. } => reader.bytes_read(),
            Batches::Kept { reader, .. } => reader.bytes.load(Ordering::Relaxed),
        }
    }

    fn read_alone(&self) -> bool {
        matches!(self, Batches::All { reader, .. } if reader.read_alone())
    }

    /// The first file row not read yet: where a read error quarantines from.
    fn position(&self) -> u64 {
        match self {
            Batches::All { row_base, .. } => *row_base,
            Batches::Kept { kept, at, decided, .. } => kept.get(*at).copied().unwrap_or(*decided),
        }
    }

    /// Every row handed over once the reader ended well.
    fn handed_at_end(&self) -> Option<u64> {
        match self {
            Batches::All { .. } => None,
            Batches::Kept { kept, at, decided, .. } => (*at == kept.len()).then_some(*decided),
        }
    }

    /// What to send of a batch just read (None: nothing, it was handed
    /// over before), or why the rest of the file cannot be read.
    fn piece(&mut self, batch: RecordBatch) -> Result<Option<Piece<'a>>, String> {
        let n = batch.num_rows();
        match self {
            Batches::All { row_base, start_row, ahead, .. } => {
                let base = *row_base;
                *row_base += n as u64;
                if base + n as u64 <= *start_row {
                    return Ok(None);
                }
                let skip = start_row.saturating_sub(base) as usize;
                let batch = if skip > 0 { batch.slice(skip, n - skip) } else { batch };
                let first = base + skip as u64;
                let len = batch.num_rows();
                let handed = first + len as u64;
                // A Python filter failed on the call from `at`: what came
                // before it is decided and sent, the rest quarantined.
                if let Some((at, reason)) = ahead.and_then(|a| a.failed.clone()).filter(|(at, _)| *at < handed) {
                    let head = at.saturating_sub(first) as usize;
                    return Ok(Some(Piece {
                        batch: batch.slice(0, head),
                        rows: Rows::From(first),
                        decided: ahead.and_then(|a| a.mask(first, head)),
                        handed: first + head as u64,
                        then_skip: Some((first + head as u64, reason)),
                    }));
                }
                let decided = ahead.and_then(|a| a.mask(first, len));
                Ok(Some(Piece { batch, rows: Rows::From(first), decided, handed, then_skip: None }))
            }
            Batches::Kept { kept, at, decided, .. } => {
                if *at + n > kept.len() {
                    return Err(format!("{} rows read where {} were selected", *at + n, kept.len()));
                }
                let kept: &'a [u64] = kept;
                let rows = &kept[*at..*at + n];
                *at += n;
                // Every row before the next kept one is handed: sent or filtered.
                let handed = kept.get(*at).copied().unwrap_or(*decided);
                let all = arrow_array::BooleanArray::from(vec![true; n]);
                Ok(Some(Piece { batch, rows: Rows::Listed(rows), decided: Some(all), handed, then_skip: None }))
            }
        }
    }
}

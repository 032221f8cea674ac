//! Deciding a file's alerts before publishing them, for a stream with
//! Python filters when `[python] batch_rows` is above the source's batch
//! size.
//!
//! fink-filters' functions were written for Spark's Arrow batches (10,000
//! rows), and some pay a fixed cost per call: `magnetic_cvs` parses its
//! catalogue's coordinates on each (~90 ms), so on 256-row batches it cost
//! ~6.9 s per 20,000 ZTF alerts, on 4,096-row calls 0.35 s. So the stream
//! first reads only the columns its filters read (a few KB an alert, not
//! the 70-176 KB of cutouts and histories), runs its CEL filters and then
//! each Python filter on up to `batch_rows` rows at a time (Python still
//! sees only the rows CEL kept), and keeps one boolean per row. The alerts
//! are then read in ordinary batches, shared with the other streams on
//! the source, and published by that verdict.
//!
//! Whatever this read cannot do (a DataFrame filter, an argument that
//! binds to nothing, a file it cannot read whole) leaves the file to the
//! per-batch path, which reports it as before.

use std::collections::BTreeSet;
use std::sync::Arc;

use arrow_array::BooleanArray;
use arrow_schema::Schema;

use super::filter::FilterSet;
use super::python::{Stage, StageError};
use super::source::{self, Columns, How};
use super::store::{Input, Store};
use crate::config::SourceFormat;

/// A file's verdicts, row by row from its first.
#[derive(Debug, Default)]
pub struct Ahead {
    /// Rows decided so far; rows before the stream's start row are false.
    keep: Vec<bool>,
    /// A Python filter failed on the call starting at this row: the rows
    /// before it are decided, the file is quarantined from it on.
    pub failed: Option<(u64, String)>,
    /// CEL errors, by row of the file (the alert is not published).
    pub errors: Vec<(u64, String)>,
    /// Bytes fetched from the store for this read.
    pub bytes: u64,
}

impl Ahead {
    /// The rows kept, ascending, and how many rows were decided.
    pub fn kept_rows(&self) -> (Vec<u64>, u64) {
        let kept = self.keep.iter().enumerate().filter(|(_, k)| **k).map(|(i, _)| i as u64).collect();
        (kept, self.keep.len() as u64)
    }

    /// The verdicts of rows `first..first + len`, if all are decided.
    pub fn mask(&self, first: u64, len: usize) -> Option<BooleanArray> {
        let (a, b) = (first as usize, first as usize + len);
        (b <= self.keep.len()).then(|| BooleanArray::from(self.keep[a..b].to_vec()))
    }
}

pub enum Decided {
    Yes(Ahead),
    /// Not decided ahead: the per-batch path runs.
    No,
    Stopped,
    /// `max_failures` in a row: the stream fails.
    Fail(String),
}

/// Whether a stream with this Python stage may decide its files ahead.
pub fn decides_first(stage: &Stage, how: &How) -> bool {
    how.format == SourceFormat::Parquet && stage.batch_rows() > how.batch_size
}

/// Whether the stream decides files ahead, and reading which columns.
pub fn columns(stage: &Stage, filters: &FilterSet, how: &How, schema: &Schema) -> Option<Columns> {
    if !decides_first(stage, how) {
        return None;
    }
    let mut paths: BTreeSet<String> = stage.paths_read(schema)?.into_iter().collect();
    paths.extend(filters.filters.iter().flat_map(|f| f.variables.iter().cloned()));
    (!paths.is_empty()).then_some(Columns::Only(paths))
}

/// Read `columns` of the file and decide its rows from `start_row` on.
#[allow(clippy::too_many_arguments)]
pub fn decide(
    store: &Arc<Store>,
    input: &Input,
    columns: Columns,
    filters: &FilterSet,
    stage: &mut Stage,
    stream: &str,
    start_row: u64,
    stop: &dyn Fn() -> bool,
) -> Decided {
    let how = How { format: SourceFormat::Parquet, batch_size: stage.batch_rows(), columns };
    let Ok(reader) = source::open_file(store, input, &how) else { return Decided::No };
    let fetched = reader.bytes.clone();
    let mut out = Ahead::default();
    for item in reader {
        if stop() {
            return Decided::Stopped;
        }
        let Ok(batch) = item else { return Decided::No };
        let base = out.keep.len() as u64;
        let n = batch.num_rows() as u64;
        if base + n <= start_row {
            out.keep.resize((base + n) as usize, false);
            continue;
        }
        let skip = start_row.saturating_sub(base);
        out.keep.resize((base + skip) as usize, false);
        let batch = batch.slice(skip as usize, (n - skip) as usize);
        let first = base + skip;
        let (mask, errors) = filters.evaluate(&batch);
        out.errors.extend(errors.into_iter().map(|(row, e)| (first + row as u64, e)));
        match stage.apply(stream, &batch, mask, stop) {
            Ok(mask) => out.keep.extend(mask.iter().map(|k| k.unwrap_or(false))),
            Err(StageError::Stopped) => return Decided::Stopped,
            Err(StageError::Fail(reason)) => return Decided::Fail(reason),
            Err(StageError::Quarantine(reason)) => {
                out.failed = Some((first, reason));
                break;
            }
        }
    }
    out.bytes = fetched.load(std::sync::atomic::Ordering::Relaxed);
    Decided::Yes(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mask_is_given_only_for_decided_rows() {
        let a = Ahead { keep: vec![false, true, true, false], ..Default::default() };
        assert_eq!(a.mask(1, 2), Some(BooleanArray::from(vec![true, true])));
        assert_eq!(a.mask(0, 4).map(|m| m.true_count()), Some(2));
        assert_eq!(a.mask(3, 2), None, "row 4 is not decided");
    }
}

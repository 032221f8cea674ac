//! Sources: directory trees of Parquet files (Fink's science database, one
//! folder per night) or Avro object container files (`.avro`, `.avro.gz`),
//! read as Arrow record batches.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

use crate::config::SourceFormat;

/// Files younger than this may still be being written; they wait a moment.
pub const SETTLE: Duration = Duration::from_millis(300);

/// Does `path` look like an input file of `format`? Hidden files, temporary
/// files and Spark's markers (`_SUCCESS`, `.crc`) are not.
pub fn is_input(path: &Path, format: SourceFormat) -> bool {
    let name = match path.file_name().and_then(|n| n.to_str()) {
        Some(n) => n,
        None => return false,
    };
    if name.starts_with('.') || name.starts_with('_') || name.ends_with(".tmp") || name.ends_with(".crc") {
        return false;
    }
    match format {
        SourceFormat::Parquet => name.ends_with(".parquet"),
        SourceFormat::Avro => name.ends_with(".avro") || name.ends_with(".avro.gz"),
    }
}

/// Every input file under `root`, sorted (nights in order), skipping
/// hidden directories and files that have not settled yet.
pub fn list_files(root: &Path, format: SourceFormat) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let now = SystemTime::now();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if dir == root => return Err(e),
            Err(_) => continue,
        };
        for entry in rd.flatten() {
            let path = entry.path();
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                let hidden = path.file_name().and_then(|n| n.to_str()).map(|n| n.starts_with('.') || n.starts_with('_')).unwrap_or(true);
                if !hidden {
                    stack.push(path);
                }
            } else if is_input(&path, format) {
                let settled = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .map(|t| now.duration_since(t).unwrap_or_default() >= SETTLE)
                    .unwrap_or(true);
                if settled {
                    out.push(path);
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A file opened for reading: its schema and an iterator of batches.
pub struct FileReader {
    pub schema: SchemaRef,
    inner: Box<dyn Iterator<Item = Result<RecordBatch, String>> + Send>,
}

impl Iterator for FileReader {
    type Item = Result<RecordBatch, String>;
    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next()
    }
}

/// Open one file. Errors are strings fit for a quarantine reason.
pub fn open(path: &Path, format: SourceFormat, batch_size: usize) -> Result<FileReader, String> {
    let file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    match format {
        SourceFormat::Parquet => {
            let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                .map_err(|e| format!("not a readable Parquet file: {e}"))?;
            let reader = builder.with_batch_size(batch_size).build().map_err(|e| format!("cannot read Parquet: {e}"))?;
            let schema = arrow_array::RecordBatchReader::schema(&reader);
            Ok(FileReader { schema, inner: Box::new(reader.map(|r| r.map_err(|e| format!("corrupt Parquet data: {e}")))) })
        }
        SourceFormat::Avro => {
            let gz = path.to_string_lossy().ends_with(".gz");
            let read: Box<dyn std::io::BufRead + Send> = if gz {
                Box::new(BufReader::new(flate2::read::GzDecoder::new(file)))
            } else {
                Box::new(BufReader::new(file))
            };
            let reader = arrow_avro::reader::ReaderBuilder::new()
                .with_batch_size(batch_size)
                .build(read)
                .map_err(|e| format!("not a readable Avro container file: {e}"))?;
            let schema = reader.schema();
            Ok(FileReader { schema, inner: Box::new(reader.map(|r| r.map_err(|e| format!("corrupt Avro data: {e}")))) })
        }
    }
}

/// Read a whole file (tests, `filter test`, `validate --data`).
pub fn read_all(path: &Path, format: SourceFormat) -> Result<(SchemaRef, Vec<RecordBatch>), String> {
    let r = open(path, format, 1024)?;
    let schema = r.schema.clone();
    let batches = r.collect::<Result<Vec<_>, _>>()?;
    Ok((schema, batches))
}

/// Guess the format from a path (file or directory of files).
pub fn detect_format(path: &Path) -> Option<SourceFormat> {
    if path.is_file() {
        return [SourceFormat::Parquet, SourceFormat::Avro].into_iter().find(|f| is_input(path, *f));
    }
    for f in [SourceFormat::Parquet, SourceFormat::Avro] {
        if list_files(path, f).map(|v| !v.is_empty()).unwrap_or(false) {
            return Some(f);
        }
    }
    None
}

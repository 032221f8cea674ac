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
                let hidden = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .map(|n| n.starts_with('.') || n.starts_with('_'))
                    .unwrap_or(true);
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
            let reader =
                builder.with_batch_size(batch_size).build().map_err(|e| format!("cannot read Parquet: {e}"))?;
            let schema = arrow_array::RecordBatchReader::schema(&reader);
            Ok(FileReader {
                schema,
                inner: Box::new(reader.map(|r| r.map_err(|e| format!("corrupt Parquet data: {e}")))),
            })
        }
        SourceFormat::Avro => {
            let gz = path.to_string_lossy().ends_with(".gz");
            let mut bytes = Vec::new();
            let res = if gz {
                std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(file), &mut bytes)
            } else {
                std::io::Read::read_to_end(&mut BufReader::new(file), &mut bytes)
            };
            res.map_err(|e| format!("cannot read{}: {e}", if gz { " (gzip)" } else { "" }))?;
            let mut bytes = normalize_ocf_header(bytes);
            // A truncated tail is read up to its last whole block, then reported.
            let trailing = match complete_ocf_len(&bytes) {
                Some((len, missing)) if len < bytes.len() => {
                    bytes.truncate(len);
                    Some(format!("truncated Avro file: the last block is incomplete ({missing})"))
                }
                _ => None,
            };
            let read: Box<dyn std::io::BufRead + Send> = Box::new(std::io::Cursor::new(bytes));
            let reader = arrow_avro::reader::ReaderBuilder::new()
                .with_batch_size(batch_size)
                .build(read)
                .map_err(|e| format!("not a readable Avro container file: {e}"))?;
            let schema = reader.schema();
            let batches = reader.map(|r| r.map_err(|e| format!("corrupt Avro data: {e}")));
            Ok(FileReader { schema, inner: Box::new(batches.chain(trailing.map(Err))) })
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
    [SourceFormat::Parquet, SourceFormat::Avro]
        .into_iter()
        .find(|f| list_files(path, *f).map(|v| !v.is_empty()).unwrap_or(false))
}

/// Some writers (Spark, older ZTF tools) name records by full name
/// (`"name": "ztf.alert.cutout"`, no namespace). That is valid Avro, but the
/// Arrow reader resolves references only by name + namespace, so rewrite such
/// names in the file header before reading. Other files pass unchanged.
fn normalize_ocf_header(bytes: Vec<u8>) -> Vec<u8> {
    fn put_varint(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            let byte = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    fn fix(v: &mut serde_json::Value) -> bool {
        let mut changed = false;
        match v {
            serde_json::Value::Object(m) => {
                let named = matches!(m.get("type").and_then(|t| t.as_str()), Some("record" | "enum" | "fixed"));
                if named && !m.contains_key("namespace") {
                    if let Some((ns, name)) = m.get("name").and_then(|n| n.as_str()).and_then(|n| n.rsplit_once('.')) {
                        let (ns, name) = (ns.to_string(), name.to_string());
                        m.insert("namespace".into(), serde_json::Value::String(ns));
                        m.insert("name".into(), serde_json::Value::String(name));
                        changed = true;
                    }
                }
                for x in m.values_mut() {
                    changed |= fix(x);
                }
            }
            serde_json::Value::Array(a) => {
                for x in a {
                    changed |= fix(x);
                }
            }
            _ => {}
        }
        changed
    }
    let parse = || -> Option<Vec<u8>> {
        if bytes.get(..4)? != b"Obj\x01" {
            return None;
        }
        let mut pos = 4;
        let mut entries: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        loop {
            let mut n = read_varint(&bytes, &mut pos)?;
            if n == 0 {
                break;
            }
            if n < 0 {
                n = -n;
                read_varint(&bytes, &mut pos)?; // block size in bytes
            }
            for _ in 0..n {
                let kl = read_varint(&bytes, &mut pos)? as usize;
                let k = bytes.get(pos..pos + kl)?.to_vec();
                pos += kl;
                let vl = read_varint(&bytes, &mut pos)? as usize;
                let v = bytes.get(pos..pos + vl)?.to_vec();
                pos += vl;
                entries.push((k, v));
            }
        }
        let mut changed = false;
        for (k, v) in entries.iter_mut() {
            if k == b"avro.schema" {
                let mut json: serde_json::Value = serde_json::from_slice(v).ok()?;
                if fix(&mut json) {
                    *v = serde_json::to_vec(&json).ok()?;
                    changed = true;
                }
            }
        }
        if !changed {
            return None;
        }
        let mut out = b"Obj\x01".to_vec();
        put_varint(&mut out, entries.len() as i64);
        for (k, v) in &entries {
            put_varint(&mut out, k.len() as i64);
            out.extend_from_slice(k);
            put_varint(&mut out, v.len() as i64);
            out.extend_from_slice(v);
        }
        put_varint(&mut out, 0);
        out.extend_from_slice(&bytes[pos..]);
        Some(out)
    };
    parse().unwrap_or(bytes)
}

fn read_varint(b: &[u8], pos: &mut usize) -> Option<i64> {
    let mut v: u64 = 0;
    let mut shift = 0;
    loop {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= ((byte & 0x7f) as u64) << shift;
        if byte & 0x80 == 0 {
            return Some(((v >> 1) as i64) ^ -((v & 1) as i64));
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

/// Length of the object container file up to its last complete block, and
/// what is missing after it; `None` if the header itself is unreadable.
fn complete_ocf_len(b: &[u8]) -> Option<(usize, String)> {
    if b.get(..4)? != b"Obj\x01" {
        return None;
    }
    let mut pos = 4;
    loop {
        let mut n = read_varint(b, &mut pos)?;
        if n == 0 {
            break;
        }
        if n < 0 {
            n = -n;
            read_varint(b, &mut pos)?;
        }
        for _ in 0..n * 2 {
            let len = read_varint(b, &mut pos)? as usize;
            pos = pos.checked_add(len)?;
        }
    }
    let sync = b.get(pos..pos + 16)?.to_vec();
    pos += 16;
    let mut good = pos;
    while good < b.len() {
        let mut p = good;
        let Some(count) = read_varint(b, &mut p) else { return Some((good, "block header cut".into())) };
        let Some(size) = read_varint(b, &mut p) else { return Some((good, "block header cut".into())) };
        let end = p + size.max(0) as usize;
        if end + 16 > b.len() {
            return Some((
                good,
                format!("{count} alert(s) in a block cut after {} of {size} bytes", b.len().saturating_sub(p)),
            ));
        }
        if b[end..end + 16] != sync[..] {
            return Some((good, "sync marker mismatch".into()));
        }
        good = end + 16;
    }
    Some((good, String::new()))
}

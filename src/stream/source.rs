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
    Ok(list_files_changed(root, format)?.into_iter().map(|(p, _)| p).collect())
}

/// [`list_files`], with when each file's inode last changed (its content
/// written, or the file renamed into place), in ms since the epoch.
pub fn list_files_changed(root: &Path, format: SourceFormat) -> std::io::Result<Vec<(PathBuf, u64)>> {
    use std::os::unix::fs::MetadataExt;
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
                let Ok(meta) = entry.metadata() else { continue };
                let settled =
                    meta.modified().map(|t| now.duration_since(t).unwrap_or_default() >= SETTLE).unwrap_or(true);
                let mtime_ms = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0);
                let ctime_ms = (meta.ctime().max(0) as u64) * 1000 + (meta.ctime_nsec().max(0) as u64) / 1_000_000;
                if settled {
                    out.push((path, mtime_ms.max(ctime_ms)));
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

/// Parquet files up to this size are read into memory in one call.
pub const WHOLE_FILE_MAX: u64 = 4 << 20;

/// The batch size for a Parquet file: never more rows than it holds. Each
/// column reader reserves room for a whole batch, so a file of 4 alerts read
/// with batches of 1,000 would allocate (and free) 250 times what it needs,
/// for each of its ~180 columns.
fn fitted(batch_size: usize, meta: &parquet::file::metadata::ParquetMetaData) -> usize {
    let rows = meta.file_metadata().num_rows().max(1) as usize;
    batch_size.min(rows).max(1)
}

/// Open one file, taking it from the read-ahead if it was decoded there.
/// Errors are strings fit for a quarantine reason.
pub fn open(path: &Path, format: SourceFormat, batch_size: usize) -> Result<FileReader, String> {
    match super::prefetch::take(path, format, batch_size) {
        Some(decoded) => {
            let (schema, batches) = decoded?;
            Ok(FileReader { schema, inner: Box::new(batches.into_iter()) })
        }
        None => open_file(path, format, batch_size),
    }
}

/// Open one file from disk.
pub fn open_file(path: &Path, format: SourceFormat, batch_size: usize) -> Result<FileReader, String> {
    let file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    match format {
        SourceFormat::Parquet => {
            let len = file.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
            // A small file is read whole in one call: parquet's reader on a
            // `File` dups the descriptor, seeks and reads page headers a few
            // bytes at a time per column chunk (hundreds of syscalls per
            // file for Fink's ~300 columns), which dominated many small files.
            let reader = if len <= WHOLE_FILE_MAX {
                let mut buf = Vec::with_capacity(len as usize);
                std::io::Read::read_to_end(&mut { file }, &mut buf).map_err(|e| format!("cannot read: {e}"))?;
                let b = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(buf))
                    .map_err(|e| format!("not a readable Parquet file: {e}"))?;
                let rows = fitted(batch_size, b.metadata());
                b.with_batch_size(rows).build()
            } else {
                let b = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .map_err(|e| format!("not a readable Parquet file: {e}"))?;
                let rows = fitted(batch_size, b.metadata());
                b.with_batch_size(rows).build()
            };
            let reader = reader.map_err(|e| format!("cannot read Parquet: {e}"))?;
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
        let (mut entries, pos) = read_header(&bytes)?;
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

/// Reads Avro's zig-zag varints and lengths from untrusted bytes. Every
/// step is checked: crafted input gives `None`, never a panic or a huge
/// allocation.
struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn varint(&mut self) -> Option<i64> {
        let mut v: u64 = 0;
        let mut shift = 0u32;
        loop {
            let byte = *self.b.get(self.pos)?;
            self.pos += 1;
            v |= ((byte & 0x7f) as u64).checked_shl(shift)?;
            if byte & 0x80 == 0 {
                return Some(((v >> 1) as i64) ^ -((v & 1) as i64));
            }
            shift += 7;
            if shift > 63 {
                return None;
            }
        }
    }

    /// A length: a varint that must be non-negative.
    fn len(&mut self) -> Option<usize> {
        usize::try_from(self.varint()?).ok()
    }

    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.b.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    /// The item count of a block of a map or array (0 ends it); a negative
    /// count is followed by the block's size in bytes.
    fn block_count(&mut self) -> Option<u64> {
        let n = self.varint()?;
        if n < 0 {
            self.varint()?;
        }
        Some(n.unsigned_abs())
    }
}

/// The metadata map of an Avro object container file, and where the sync
/// marker after it starts.
type Header = (Vec<(Vec<u8>, Vec<u8>)>, usize);

fn read_header(b: &[u8]) -> Option<Header> {
    let mut c = Cursor { b, pos: 0 };
    if c.bytes(4)? != b"Obj\x01" {
        return None;
    }
    let mut entries = Vec::new();
    loop {
        let n = c.block_count()?;
        if n == 0 {
            break;
        }
        for _ in 0..n {
            let kl = c.len()?;
            let k = c.bytes(kl)?.to_vec();
            let vl = c.len()?;
            let v = c.bytes(vl)?.to_vec();
            entries.push((k, v));
        }
    }
    Some((entries, c.pos))
}

/// Length of the object container file up to its last complete block, and
/// what is missing after it; `None` if the header itself is unreadable.
fn complete_ocf_len(b: &[u8]) -> Option<(usize, String)> {
    let (_, pos) = read_header(b)?;
    let mut c = Cursor { b, pos };
    let sync = c.bytes(16)?;
    let mut good = c.pos;
    while good < b.len() {
        let mut c = Cursor { b, pos: good };
        let (Some(count), Some(size)) = (c.varint(), c.len()) else {
            return Some((good, "block header cut".into()));
        };
        let data_start = c.pos;
        match c.bytes(size).and_then(|_| c.bytes(16)) {
            None => {
                return Some((
                    good,
                    format!(
                        "{count} alert(s) in a block cut after {} of {size} bytes",
                        b.len().saturating_sub(data_start)
                    ),
                ))
            }
            Some(marker) if marker != sync => return Some((good, "sync marker mismatch".into())),
            Some(_) => good = c.pos,
        }
    }
    Some((good, String::new()))
}

#[cfg(test)]
mod header_tests {
    use super::*;
    use proptest::prelude::*;

    fn varint(v: i64) -> Vec<u8> {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        let mut out = Vec::new();
        loop {
            let byte = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    /// A container file: header with one entry, sync marker, `blocks`.
    fn ocf(key: &[u8], value: &[u8], blocks: &[(i64, Vec<u8>)]) -> Vec<u8> {
        let mut b = b"Obj\x01".to_vec();
        b.extend(varint(1));
        b.extend(varint(key.len() as i64));
        b.extend(key);
        b.extend(varint(value.len() as i64));
        b.extend(value);
        b.extend(varint(0));
        b.extend([7u8; 16]);
        for (count, data) in blocks {
            b.extend(varint(*count));
            b.extend(varint(data.len() as i64));
            b.extend(data);
            b.extend([7u8; 16]);
        }
        b
    }

    #[test]
    fn a_well_formed_file_is_complete_and_a_cut_block_is_found() {
        let f = ocf(b"avro.schema", b"\"long\"", &[(1, vec![2]), (2, vec![4, 6])]);
        assert_eq!(complete_ocf_len(&f), Some((f.len(), String::new())));
        let cut = &f[..f.len() - 5];
        let (good, why) = complete_ocf_len(cut).unwrap();
        assert!(good < cut.len() && why.contains("cut"), "{good} {why}");
        let (entries, _) = read_header(&f).unwrap();
        assert_eq!(entries, vec![(b"avro.schema".to_vec(), b"\"long\"".to_vec())]);
    }

    #[test]
    fn crafted_lengths_are_refused_not_panicked_on() {
        let header = |count: i64, len: i64| {
            let mut b = b"Obj\x01".to_vec();
            b.extend(varint(count));
            b.extend(varint(len));
            b.extend([b'a'; 8]);
            b
        };
        // Negative, huge and overflowing lengths and counts.
        for (count, len) in [(1, -1), (1, i64::MAX), (i64::MIN, 1), (i64::MAX, 1), (-1, i64::MIN), (1, 1 << 62)] {
            assert_eq!(read_header(&header(count, len)), None, "count {count} len {len}");
            assert_eq!(complete_ocf_len(&header(count, len)), None);
        }
        // A varint longer than 64 bits.
        let mut b = b"Obj\x01".to_vec();
        b.extend([0xff; 11]);
        assert_eq!(read_header(&b), None);
        // A block claiming more bytes than there are, or a negative size.
        let mut f = ocf(b"k", b"v", &[]);
        let good = f.len();
        f.extend(varint(1));
        f.extend(varint(i64::MAX));
        assert_eq!(complete_ocf_len(&f).map(|(g, _)| g), Some(good));
        let mut f = ocf(b"k", b"v", &[]);
        f.extend(varint(1));
        f.extend(varint(-5));
        assert_eq!(complete_ocf_len(&f), Some((good, "block header cut".into())));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut b = b"Obj\x01".to_vec();
            b.extend(&tail);
            let _ = read_header(&b);
            let _ = complete_ocf_len(&b);
            let _ = normalize_ocf_header(b);
        }

        #[test]
        fn mutated_files_never_panic(at in 0usize..64, byte in any::<u8>(), cut in 0usize..64) {
            let mut f = ocf(b"avro.schema", b"{\"type\":\"record\",\"name\":\"a.b\",\"fields\":[]}", &[(1, vec![2, 3]), (3, vec![1; 9])]);
            let at = at % f.len();
            f[at] = byte;
            f.truncate(f.len() - cut.min(f.len()));
            if let Some((good, _)) = complete_ocf_len(&f) {
                prop_assert!(good <= f.len());
            }
            let _ = normalize_ocf_header(f);
        }
    }
}

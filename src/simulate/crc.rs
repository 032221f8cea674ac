//! Page checksums in simulated Parquet files, as Spark (parquet-mr) writes
//! them: the parquet crate verifies them on read but does not write them,
//! so the file it wrote is rewritten here with a CRC-32 in every page
//! header (Thrift field 4, over the page's bytes as stored), and its footer
//! re-encoded by the parquet crate with the shifted offsets.
//!
//! Only what is needed is parsed by hand: a page header's first three
//! fields (type and sizes) and where the header ends. Everything in the
//! footer goes through the parquet crate's own metadata reader and writer.

use bytes::Bytes;
use parquet::file::metadata::page_index::{PageIndexBuilder, PageIndexProvider};
use parquet::file::metadata::{OffsetIndexBuilder, PageIndexPolicy, ParquetMetaDataReader, ParquetMetaDataWriter};
use parquet::file::page_index::offset_index::OffsetIndexMetaData;

/// Reads Thrift's compact protocol: varints, and skipping any value.
struct Compact<'a> {
    b: &'a [u8],
    pos: usize,
}

fn bad(what: &str) -> anyhow::Error {
    anyhow::anyhow!("cannot add page checksums: {what}")
}

impl Compact<'_> {
    fn byte(&mut self) -> anyhow::Result<u8> {
        let x = *self.b.get(self.pos).ok_or_else(|| bad("page header cut"))?;
        self.pos += 1;
        Ok(x)
    }

    fn varint(&mut self) -> anyhow::Result<u64> {
        let (mut v, mut shift) = (0u64, 0u32);
        loop {
            let x = self.byte()?;
            v |= ((x & 0x7f) as u64) << shift;
            if x < 0x80 {
                return Ok(v);
            }
            shift += 7;
            if shift > 63 {
                return Err(bad("varint too long"));
            }
        }
    }

    fn i32(&mut self) -> anyhow::Result<i32> {
        let v = self.varint()?;
        Ok(((v >> 1) as i64 ^ -((v & 1) as i64)) as i32)
    }

    fn skip(&mut self, t: u8) -> anyhow::Result<()> {
        match t {
            1 | 2 => {}
            3 => self.pos += 1,
            4..=6 => {
                self.varint()?;
            }
            7 => self.pos += 8,
            8 => self.pos += self.varint()? as usize,
            9 | 10 => {
                let h = self.byte()?;
                let n = if h >> 4 == 15 { self.varint()? as usize } else { (h >> 4) as usize };
                for _ in 0..n {
                    self.skip(h & 0x0f)?;
                }
            }
            11 => {
                let n = self.varint()? as usize;
                if n > 0 {
                    let kv = self.byte()?;
                    for _ in 0..n {
                        self.skip(kv >> 4)?;
                        self.skip(kv & 0x0f)?;
                    }
                }
            }
            12 => loop {
                let h = self.byte()?;
                if h == 0 {
                    break;
                }
                if h >> 4 == 0 {
                    self.varint()?;
                }
                self.skip(h & 0x0f)?;
            },
            _ => return Err(bad("unknown Thrift type")),
        }
        Ok(())
    }
}

/// One page header rewritten with its checksum, and the page's size.
fn page_with_crc(chunk: &[u8], at: usize, out: &mut Vec<u8>) -> anyhow::Result<usize> {
    let mut c = Compact { b: chunk, pos: at };
    // Fields 1 (type), 2 (uncompressed size), 3 (compressed size), each
    // written by the parquet crate as a short-form i32 header.
    let mut compressed = None;
    for id in 1..=3u8 {
        if c.byte()? != 0x15 {
            return Err(bad(&format!("unexpected header for field {id}")));
        }
        let v = c.i32()?;
        if id == 3 {
            compressed = Some(usize::try_from(v).map_err(|_| bad("negative page size"))?);
        }
    }
    let after_sizes = c.pos;
    let next = c.byte()?;
    if next & 0x0f != 12 || next >> 4 < 2 {
        return Err(bad("a page header already has a checksum, or an unexpected field"));
    }
    c.skip(12)?;
    if c.byte()? != 0 {
        return Err(bad("page header not closed"));
    }
    let header_end = c.pos;
    let size = compressed.expect("field 3 read");
    let data = chunk.get(header_end..header_end + size).ok_or_else(|| bad("page data cut"))?;
    let crc = crc32fast::hash(data) as i32;
    out.extend_from_slice(&chunk[at..after_sizes]);
    out.push(0x15); // field 4 (delta 1), i32
    crate::stream::source::put_varint(out, crc as i64);
    // The struct that followed field 3 now follows field 4.
    out.push(next - 0x10);
    out.extend_from_slice(&chunk[after_sizes + 1..header_end]);
    out.extend_from_slice(data);
    Ok(header_end + size - at)
}

/// `file` (a whole Parquet file the parquet crate wrote) with a checksum
/// in every page header. Its offset index, if it has one, moves with the
/// pages (readers use it to fetch only the pages of the rows they want);
/// a column index is dropped.
pub fn with_page_checksums(file: Vec<u8>) -> anyhow::Result<Vec<u8>> {
    let bytes = Bytes::from(file);
    let meta =
        ParquetMetaDataReader::new().with_offset_index_policy(PageIndexPolicy::Optional).parse_and_finish(&bytes)?;
    let old_index = meta.page_index().cloned();
    let mut index = old_index.as_ref().filter(|i| i.has_offset_indexes()).map(|_| {
        let columns = meta.row_groups().first().map_or(0, |rg| rg.columns().len());
        let mut b = PageIndexBuilder::default();
        b.allocate_offset_indexes(meta.num_row_groups(), columns);
        b
    });
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 100);
    out.extend_from_slice(b"PAR1");
    let mut row_groups = Vec::new();
    for (rg_no, rg) in meta.row_groups().iter().enumerate() {
        let mut columns = Vec::new();
        let (mut rg_start, mut grown_total) = (None, 0i64);
        for (col_no, cc) in rg.columns().iter().enumerate() {
            let (start, len) = cc.byte_range();
            // Old offset in the file -> (new offset, new size with header).
            let mut moved = std::collections::HashMap::new();
            let chunk =
                bytes.get(start as usize..(start + len) as usize).ok_or_else(|| bad("column chunk out of file"))?;
            let new_start = out.len() as i64;
            let before = out.len();
            let mut at = 0;
            let mut data_page = None;
            let dict = cc.dictionary_page_offset().is_some();
            let mut first = true;
            while at < chunk.len() {
                let page_at = out.len() as i64;
                if !(first && dict) && data_page.is_none() {
                    data_page = Some(page_at);
                }
                first = false;
                let old = start as i64 + at as i64;
                at += page_with_crc(chunk, at, &mut out)?;
                moved.insert(old, (page_at, (out.len() as i64 - page_at) as i32));
            }
            if let (Some(b), Some(old)) =
                (index.as_mut(), old_index.as_ref().and_then(|i| i.offset_index(rg_no, col_no)))
            {
                b.put_offset_index(moved_index(old, &moved, rg.num_rows())?, rg_no, col_no);
            }
            let new_len = (out.len() - before) as i64;
            let grown = new_len - len as i64;
            grown_total += grown;
            rg_start.get_or_insert(new_start);
            let mut b = cc
                .clone()
                .into_builder()
                .set_total_compressed_size(new_len)
                .set_total_uncompressed_size(cc.uncompressed_size() + grown)
                .set_data_page_offset(data_page.ok_or_else(|| bad("a column chunk without data pages"))?)
                .set_dictionary_page_offset(dict.then_some(new_start))
                .set_offset_index_offset(None)
                .set_offset_index_length(None)
                .set_column_index_offset(None)
                .set_column_index_length(None);
            if cc.index_page_offset().is_some() {
                b = b.set_index_page_offset(None);
            }
            columns.push(b.build()?);
        }
        let rg = rg
            .clone()
            .into_builder()
            .set_column_metadata(columns)
            .set_total_byte_size(rg.total_byte_size() + grown_total)
            .set_file_offset(rg_start.unwrap_or(4))
            .build()?;
        row_groups.push(rg);
    }
    let index = index.map(|b| std::sync::Arc::new(b.build()) as std::sync::Arc<dyn PageIndexProvider>);
    let meta = meta.into_builder().set_row_groups(row_groups).set_page_index(index).build();
    // The index's offsets count from the file's start: the writer must
    // have seen every byte before them.
    let mut file = Vec::with_capacity(out.len() + out.len() / 50);
    let mut w = parquet::file::writer::TrackedWrite::new(&mut file);
    std::io::Write::write_all(&mut w, &out)?;
    ParquetMetaDataWriter::new_with_tracked(w, &meta).with_preserve_page_index_locations(false).finish()?;
    Ok(file)
}

/// A column chunk's offset index with its pages where they moved to.
fn moved_index(
    old: &OffsetIndexMetaData,
    moved: &std::collections::HashMap<i64, (i64, i32)>,
    rows: i64,
) -> anyhow::Result<OffsetIndexMetaData> {
    let pages = old.page_locations();
    let mut b = OffsetIndexBuilder::new();
    for (i, p) in pages.iter().enumerate() {
        let (at, size) = moved.get(&p.offset).ok_or_else(|| bad("the offset index names no page"))?;
        b.append_offset_and_size(*at, *size);
        b.append_row_count(pages.get(i + 1).map_or(rows, |n| n.first_row_index) - p.first_row_index);
        b.append_unencoded_byte_array_data_bytes(old.unencoded_byte_array_data_bytes().and_then(|u| u.get(i).copied()));
    }
    Ok(b.build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
    use parquet::arrow::ArrowWriter;
    use std::sync::Arc;

    fn sample() -> (RecordBatch, Vec<u8>) {
        let n: ArrayRef = Arc::new(Int64Array::from_iter_values(0..1000));
        let s: ArrayRef = Arc::new(StringArray::from_iter_values((0..1000).map(|i| format!("alert {}", i % 7))));
        let batch = RecordBatch::try_from_iter([("n", n), ("s", s)]).unwrap();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(300))
            .set_statistics_enabled(parquet::file::properties::EnabledStatistics::Chunk)
            .set_offset_index_disabled(true)
            .build();
        let mut buf = Vec::new();
        let mut w = ArrowWriter::try_new(&mut buf, batch.schema(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        (batch, buf)
    }

    /// Where each page's data is, walking the page headers.
    fn page_data(b: &[u8]) -> Vec<(usize, usize)> {
        let footer = u32::from_le_bytes(b[b.len() - 8..b.len() - 4].try_into().unwrap()) as usize;
        let end = b.len() - 8 - footer;
        let mut c = Compact { b, pos: 4 };
        let mut out = Vec::new();
        while c.pos < end {
            let (mut id, mut size, mut crc) = (0i16, 0usize, false);
            loop {
                let h = c.byte().unwrap();
                if h == 0 {
                    break;
                }
                id += (h >> 4) as i16;
                match (id, h & 0x0f) {
                    (3, 5) => size = c.i32().unwrap() as usize,
                    (4, 5) => {
                        c.i32().unwrap();
                        crc = true;
                    }
                    (_, t) => c.skip(t).unwrap(),
                }
            }
            assert!(crc, "every page has a checksum");
            out.push((c.pos, c.pos + size));
            c.pos += size;
        }
        out
    }

    fn read(b: Vec<u8>) -> Result<Vec<RecordBatch>, parquet::errors::ParquetError> {
        let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(Bytes::from(b))?.build()?;
        r.collect::<Result<Vec<_>, _>>().map_err(|e| parquet::errors::ParquetError::General(e.to_string()))
    }

    #[test]
    fn checksummed_files_read_the_same_and_a_flipped_page_byte_fails() {
        let (batch, plain) = sample();
        let summed = with_page_checksums(plain.clone()).unwrap();
        let back = read(summed.clone()).unwrap();
        assert_eq!(arrow_select::concat::concat_batches(&batch.schema(), &back).unwrap(), batch);
        // A flipped byte in any page's data fails that page.
        let mut failed = 0;
        for (s, e) in page_data(&summed) {
            for at in [s, (s + e) / 2, e - 1] {
                let mut bad = summed.clone();
                bad[at] ^= 0x40;
                assert!(read(bad).is_err(), "byte {at} of page data {s}..{e} flipped, yet read");
                failed += 1;
            }
        }
        assert!(failed > 0);
    }

    #[test]
    fn the_offset_index_moves_with_the_pages_and_a_selection_reads_only_its_rows() {
        use parquet::arrow::arrow_reader::{ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection};
        let n: ArrayRef = Arc::new(Int64Array::from_iter_values(0..1000));
        let s: ArrayRef = Arc::new(StringArray::from_iter_values((0..1000).map(|i| format!("alert {i}"))));
        let batch = RecordBatch::try_from_iter([("n", n), ("s", s)]).unwrap();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_max_row_group_row_count(Some(300))
            .set_data_page_row_count_limit(40)
            .set_write_batch_size(40)
            .set_statistics_enabled(parquet::file::properties::EnabledStatistics::Chunk)
            .build();
        let mut plain = Vec::new();
        let mut w = ArrowWriter::try_new(&mut plain, batch.schema(), Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let summed = Bytes::from(with_page_checksums(plain).unwrap());
        let meta = ParquetMetaDataReader::new()
            .with_offset_index_policy(PageIndexPolicy::Required)
            .parse_and_finish(&summed)
            .unwrap();
        let index = meta.page_index().expect("an offset index");
        let mut pages = 0;
        for (r, rg) in meta.row_groups().iter().enumerate() {
            for (c, cc) in rg.columns().iter().enumerate() {
                let locs = index.offset_index(r, c).expect("every chunk indexed").page_locations();
                let (start, len) = cc.byte_range();
                assert!(locs.len() > 1, "several pages a chunk");
                for (i, p) in locs.iter().enumerate() {
                    // A data page header with its checksum starts there, and
                    // the page ends where the next one (or the chunk) starts.
                    let mut h = Compact { b: &summed, pos: p.offset as usize };
                    assert_eq!(h.byte().unwrap(), 0x15);
                    assert_eq!(h.i32().unwrap(), 0, "a data page (v1)");
                    let end = locs.get(i + 1).map_or((start + len) as i64, |n| n.offset);
                    assert_eq!(p.offset + p.compressed_page_size as i64, end);
                    pages += 1;
                }
            }
        }
        assert!(pages > 20);
        // A reader selecting rows 5 and 612 gets exactly those, through the index.
        let sel = RowSelection::from_consecutive_ranges([5..6, 612..613].into_iter(), 1000);
        let r = ParquetRecordBatchReaderBuilder::try_new_with_options(
            summed.clone(),
            ArrowReaderOptions::new().with_offset_index_policy(PageIndexPolicy::Required),
        )
        .unwrap()
        .with_row_selection(sel)
        .build()
        .unwrap();
        let got: Vec<i64> = r
            .flat_map(|b| b.unwrap().column(0).as_any().downcast_ref::<Int64Array>().unwrap().values().to_vec())
            .collect();
        assert_eq!(got, [5, 612]);
    }
}

//! Damaged copies among good files: bytes flipped inside checksummed pages,
//! bytes flipped anywhere, truncated, empty, and junk named `.parquet`.
//! Nothing hangs, every good alert is published once, a file whose page
//! checksum fails publishes nothing, and whatever is published is exactly a
//! source alert (never altered bytes). The source is Fink's own data,
//! written by Spark with page checksums (fink-filters' test night).

mod common;
use std::collections::BTreeMap;

use common::*;

/// Reads Thrift's compact protocol just enough to walk Parquet page
/// headers (an independent reader: not the parquet crate fink uses).
struct Compact<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Compact<'_> {
    fn byte(&mut self) -> u8 {
        let x = self.b[self.pos];
        self.pos += 1;
        x
    }
    fn varint(&mut self) -> u64 {
        let (mut v, mut s) = (0u64, 0);
        loop {
            let x = self.byte();
            v |= ((x & 0x7f) as u64) << s;
            if x < 0x80 {
                return v;
            }
            s += 7;
        }
    }
    fn zigzag(&mut self) -> i64 {
        let v = self.varint();
        ((v >> 1) as i64) ^ -((v & 1) as i64)
    }
    fn skip(&mut self, t: u8) {
        match t {
            1 | 2 => {}
            3 => self.pos += 1,
            4..=6 => {
                self.varint();
            }
            7 => self.pos += 8,
            8 => {
                let n = self.varint() as usize;
                self.pos += n;
            }
            9 | 10 => {
                let h = self.byte();
                let n = if h >> 4 == 15 { self.varint() as usize } else { (h >> 4) as usize };
                for _ in 0..n {
                    self.skip(h & 0x0f);
                }
            }
            11 => {
                let n = self.varint() as usize;
                if n > 0 {
                    let kv = self.byte();
                    for _ in 0..n {
                        self.skip(kv >> 4);
                        self.skip(kv & 0x0f);
                    }
                }
            }
            12 => self.strukt(|_, _, _| {}),
            _ => panic!("thrift type {t}"),
        }
    }
    /// Walk a struct's fields; `f(id, type, self)` must consume the value
    /// (or leave it to be skipped by returning without reading).
    fn strukt(&mut self, mut f: impl FnMut(i16, u8, &mut Self)) {
        let mut id: i16 = 0;
        loop {
            let h = self.byte();
            if h == 0 {
                return;
            }
            let t = h & 0x0f;
            id = if h >> 4 == 0 { self.zigzag() as i16 } else { id + (h >> 4) as i16 };
            let before = self.pos;
            f(id, t, self);
            if self.pos == before {
                self.skip(t);
            }
        }
    }
}

/// The data ranges of every page with a checksum: (start, end) of the
/// compressed bytes the CRC covers.
fn checksummed_pages(b: &[u8]) -> Vec<(usize, usize)> {
    let footer_len = u32::from_le_bytes(b[b.len() - 8..b.len() - 4].try_into().unwrap()) as usize;
    let data_end = b.len() - 8 - footer_len;
    let mut out = Vec::new();
    let mut c = Compact { b, pos: 4 };
    while c.pos < data_end {
        let (mut size, mut crc) = (0usize, false);
        c.strukt(|id, _, c| match id {
            3 => size = c.zigzag() as usize,
            4 => {
                c.zigzag();
                crc = true;
            }
            _ => {}
        });
        if crc {
            out.push((c.pos, c.pos + size));
        }
        c.pos += size;
    }
    out
}

/// A small deterministic random sequence.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

#[test]
fn damaged_copies_never_hang_and_never_publish_altered_alerts() {
    let w = Workspace::new();
    let topic = unique("dmg");
    let night = shared_data().join("ztf/filters_test/20211122");
    let good: Vec<_> = walk(&night);
    let src = w.path().join("src");
    std::fs::create_dir_all(src.join("good")).unwrap();
    for f in &good {
        std::fs::copy(f, src.join("good").join(f.file_name().unwrap())).unwrap();
    }
    let mut rng = Rng(0x5eed);
    let mut must_quarantine = Vec::new();
    let mut damaged = 0;
    let mut put = |name: String, bytes: Vec<u8>, sure: bool| {
        let d = src.join(format!("damaged{damaged:02}"));
        damaged += 1;
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join(&name), bytes).unwrap();
        if sure {
            must_quarantine.push(format!("{}/{name}", d.file_name().unwrap().to_string_lossy()));
        }
    };
    for k in 0..40 {
        let from = &good[k % good.len()];
        let mut b = std::fs::read(from).unwrap();
        let name = from.file_name().unwrap().to_string_lossy().to_string();
        match k % 5 {
            // A flipped byte inside a checksummed page: the checksum fails.
            0 | 1 => {
                let pages = checksummed_pages(&b);
                assert!(!pages.is_empty(), "Spark wrote page checksums");
                let (s, e) = pages[rng.below(pages.len())];
                let at = s + rng.below(e - s);
                b[at] ^= 1 << rng.below(8);
                put(name, b, true);
            }
            // A flipped byte anywhere after the magic (a page header, the
            // footer's statistics: maybe harmless, never altered alerts).
            2 => {
                let at = 4 + rng.below(b.len() - 4);
                b[at] ^= 0xff;
                put(name, b, false);
            }
            3 => {
                let cut = rng.below(b.len() - 1);
                b.truncate(cut);
                put(name, b, true);
            }
            _ => {
                if k % 2 == 0 {
                    put(name, Vec::new(), true);
                } else {
                    put("junk.parquet".into(), b"this is not parquet at all".repeat(40), true);
                }
            }
        }
    }
    settle_files(&src);
    w.config(&format!(
        "[run]\nstate_dir = \"state\"\nmetrics_addr = \"127.0.0.1:0\"\n\n[[topic]]\nname = \"{topic}\"\n\n[[stream]]\nname = \"s\"\nsource = {{ format = \"parquet\", path = \"src\" }}\ntopic = \"{topic}\"\n"
    ));
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    // Bounded: a hang fails the test instead of stalling the suite.
    let mut cmd = std::process::Command::new("timeout");
    let c = w.cmd();
    cmd.arg("300").arg(c.get_program()).args(["run", "--until-idle", "--no-progress"]).current_dir(w.path());
    for (k, v) in c.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    let r: Run = cmd.output().unwrap().into();
    assert_eq!(r.code, 0, "the run ended on its own (124: it hung)\n{}", r.all());

    let quarantined = std::fs::read_to_string(w.path().join("state/s.quarantine.jsonl")).unwrap_or_default();
    let qfiles: Vec<String> = quarantined
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["file"].as_str().map(str::to_string))
        .collect();
    for f in &must_quarantine {
        assert!(qfiles.iter().any(|q| q.ends_with(f.as_str())), "{f} not quarantined:\n{quarantined}");
    }

    // Published: each good alert, plus whole harmless copies; every value
    // equals the source record of its candid.
    let source: BTreeMap<i64, serde_json::Value> =
        source_records(&night).into_iter().map(|v| (v["candid"].as_i64().unwrap(), v)).collect();
    assert_eq!(source.len(), 124);
    let got = consume_all_decoded(&topic, 1);
    let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
    for (_, v) in &got {
        let candid = v["candid"].as_i64().unwrap();
        let want = source.get(&candid).unwrap_or_else(|| panic!("candid {candid} is not a source alert"));
        same(v, want, "").unwrap_or_else(|e| panic!("alert {candid} altered: {e}"));
        *counts.entry(candid).or_default() += 1;
    }
    assert_eq!(counts.len(), 124, "every good alert published");
    // A copy is published whole or not at all: the alerts of one source
    // file are all published the same number of times.
    for f in &good {
        let (_, batches) = fink::stream::source::read_all(f, fink::config::SourceFormat::Parquet).unwrap();
        let mut seen = std::collections::BTreeSet::new();
        for b in &batches {
            let col = b.column_by_name("candid").unwrap();
            let ids = col.as_any().downcast_ref::<arrow_array::Int64Array>().unwrap();
            for c in ids.values() {
                seen.insert(counts[c]);
            }
        }
        assert_eq!(seen.len(), 1, "{}: its alerts were published unequal times {seen:?}", f.display());
    }
    let copies: usize = counts.values().map(|n| n - 1).sum::<usize>();
    eprintln!("{} quarantined, {copies} alerts from harmless copies", qfiles.len());
}

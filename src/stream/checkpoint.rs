//! A stream's progress, kept small however long the history: a watermark
//! over the source's path order (every file at or before it is done), the
//! few done files after it, and the rows done of the files being read.
//!
//! Sources add files in path order (Fink's nights, Spark's part files of a
//! finished night), so the watermark follows the stream and the sets stay
//! near empty. A file that appears later *below* the watermark is still
//! read: a file is covered by the watermark only if its inode changed
//! (written, renamed in) before the listing that moved the watermark.
//!
//! Exactly-once streams commit this record to the state topic inside their
//! transactions; at-least-once streams write it to a local file atomically
//! (temp file, fsync, rename), only from delivery reports.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const VERSION: u32 = 2;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Progress {
    pub version: u32,
    pub stream: String,
    /// Every file whose relative path sorts at or before this is done
    /// (if it was there at `listed_at_ms`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watermark: Option<String>,
    /// When the listing that last moved the watermark started (ms since
    /// the epoch): files changed since are not covered by it.
    pub listed_at_ms: u64,
    /// Done files the watermark does not cover.
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub done: BTreeSet<String>,
    /// Files partly done: source rows `0..n` are finished.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub partial: BTreeMap<String, u64>,
    /// Files finished so far (delivered, filtered out or quarantined).
    pub files_done: u64,
    /// When this progress was committed (ms since the epoch).
    pub committed_at_ms: u64,
    /// The instance that committed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// The first format: one entry per file, forever.
#[derive(Deserialize)]
struct V1 {
    stream: String,
    files: BTreeMap<String, V1File>,
}

#[derive(Deserialize)]
struct V1File {
    rows_done: u64,
    done: bool,
}

/// A source file as listed: its path relative to the source root, and when
/// its inode last changed (ms since the epoch).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Listed {
    pub rel: String,
    pub changed_ms: u64,
}

impl Progress {
    pub fn new(stream: &str) -> Progress {
        Progress { version: VERSION, stream: stream.to_string(), ..Default::default() }
    }

    /// Parse a record of either format.
    pub fn parse(bytes: &[u8]) -> Result<Progress, String> {
        let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        match v.get("version").and_then(|x| x.as_u64()) {
            Some(1) => {
                let old: V1 = serde_json::from_value(v).map_err(|e| e.to_string())?;
                let mut p = Progress::new(&old.stream);
                for (name, f) in old.files {
                    if f.done {
                        p.done.insert(name);
                        p.files_done += 1;
                    } else if f.rows_done > 0 {
                        p.partial.insert(name, f.rows_done);
                    }
                }
                Ok(p)
            }
            Some(2) => serde_json::from_value(v).map_err(|e| e.to_string()),
            other => Err(format!("unknown progress format version {other:?}")),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("progress serializes")
    }

    pub fn is_done(&self, f: &Listed) -> bool {
        self.done.contains(&f.rel)
            || (self.watermark.as_deref().is_some_and(|w| f.rel.as_str() <= w) && f.changed_ms < self.listed_at_ms)
    }

    pub fn rows_done(&self, rel: &str) -> u64 {
        self.partial.get(rel).copied().unwrap_or(0)
    }

    pub fn set_rows_done(&mut self, rel: &str, rows: u64) -> bool {
        if self.rows_done(rel) == rows {
            return false;
        }
        self.partial.insert(rel.to_string(), rows);
        true
    }

    pub fn mark_done(&mut self, rel: &str) {
        self.partial.remove(rel);
        if self.done.insert(rel.to_string()) {
            self.files_done += 1;
        }
    }

    /// Move the watermark over the done prefix of `listing` (sorted by
    /// path, taken from `listed_at_ms` on) and forget what it now covers.
    pub fn advance(&mut self, listing: &[Listed], listed_at_ms: u64) {
        let mut mark: Option<&str> = None;
        for f in listing {
            if !self.is_done(f) {
                break;
            }
            mark = Some(&f.rel);
        }
        let Some(mark) = mark else { return };
        if self.watermark.as_deref().is_some_and(|w| w >= mark) {
            return;
        }
        // Everything listed up to `mark` is done; files not in this listing
        // at or below it came after `listed_at_ms` and stay readable.
        let mark = mark.to_string();
        self.watermark = Some(mark.clone());
        self.listed_at_ms = listed_at_ms;
        // Done files the new mark covers are forgotten, except one changed
        // while this listing ran (the mark does not cover it).
        let changed_late: BTreeSet<&str> =
            listing.iter().filter(|f| f.changed_ms >= listed_at_ms).map(|f| f.rel.as_str()).collect();
        self.done.retain(|r| r.as_str() > mark.as_str() || changed_late.contains(r.as_str()));
    }

    /// Local file (at-least-once): none yet is a fresh start.
    pub fn load(path: &Path, stream: &str) -> Result<Progress, String> {
        match std::fs::read(path) {
            Ok(bytes) => Progress::parse(&bytes).map_err(|e| {
                format!("checkpoint {} is unreadable ({e}); move it away to start over, or fix it", path.display())
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Progress::new(stream)),
            Err(e) => Err(format!("cannot read checkpoint {}: {e}", path.display())),
        }
    }

    /// Atomic replace: readers see the old or the new file, never a mix.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let tmp = tmp_path(path);
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".tmp");
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(rel: &str, changed_ms: u64) -> Listed {
        Listed { rel: rel.into(), changed_ms }
    }

    #[test]
    fn save_is_atomic_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.checkpoint.json");
        let mut c = Progress::load(&p, "s").unwrap();
        c.set_rows_done("n/a.parquet", 5);
        c.save(&p).unwrap();
        assert!(!dir.path().join("s.checkpoint.json.tmp").exists());
        let back = Progress::load(&p, "s").unwrap();
        assert_eq!(back.rows_done("n/a.parquet"), 5);
    }

    #[test]
    fn the_first_format_is_read() {
        let v1 =
            br#"{"version":1,"stream":"s","files":{"a":{"rows_done":3,"done":true},"b":{"rows_done":2,"done":false}}}"#;
        let p = Progress::parse(v1).unwrap();
        assert!(p.is_done(&listed("a", 0)));
        assert!(!p.is_done(&listed("b", 0)));
        assert_eq!(p.rows_done("b"), 2);
        assert_eq!(p.files_done, 1);
    }

    #[test]
    fn a_hundred_thousand_files_in_order_stay_small() {
        let mut p = Progress::new("s");
        let listing: Vec<Listed> =
            (0..100_000).map(|i| listed(&format!("night={:03}/part-{i:06}.parquet", i / 1000), 10)).collect();
        for (i, f) in listing.iter().enumerate() {
            p.mark_done(&f.rel);
            if i % 97 == 0 {
                p.advance(&listing, 20);
            }
        }
        p.advance(&listing, 20);
        let bytes = p.to_json();
        assert!(bytes.len() < 64 * 1024, "{} bytes", bytes.len());
        assert!(listing.iter().all(|f| p.is_done(f)));
        assert_eq!(p.files_done, 100_000);
        assert!(p.done.is_empty());
    }

    #[test]
    fn the_watermark_stops_at_the_first_unfinished_file() {
        let mut p = Progress::new("s");
        let listing = vec![listed("a", 1), listed("b", 1), listed("c", 1)];
        p.mark_done("a");
        p.mark_done("c");
        p.advance(&listing, 5);
        assert_eq!(p.watermark.as_deref(), Some("a"));
        assert!(p.done.contains("c") && !p.done.contains("a"));
        assert!(!p.is_done(&listed("b", 1)));
        p.mark_done("b");
        p.advance(&listing, 6);
        assert_eq!(p.watermark.as_deref(), Some("c"));
        assert!(p.done.is_empty());
    }

    #[test]
    fn a_file_appearing_below_the_watermark_is_still_read() {
        let mut p = Progress::new("s");
        let listing = vec![listed("b", 1), listed("d", 1)];
        p.mark_done("b");
        p.mark_done("d");
        p.advance(&listing, 5);
        // "a" and "c" arrive after the listing at 5 (renamed in at 7).
        assert!(!p.is_done(&listed("a", 7)));
        assert!(!p.is_done(&listed("c", 7)));
        assert!(p.is_done(&listed("b", 1)));
        p.mark_done("c");
        let listing = vec![listed("a", 7), listed("b", 1), listed("c", 7), listed("d", 1)];
        p.advance(&listing, 9);
        assert!(p.is_done(&listed("c", 7)), "kept in the done set");
        assert!(!p.is_done(&listed("a", 7)));
        p.mark_done("a");
        p.advance(&listing, 9);
        assert!(listing.iter().all(|f| p.is_done(f)));
    }
}

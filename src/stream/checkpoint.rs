//! Durable per-stream progress. For every source file: how many leading
//! source rows are finished (delivered, filtered out, or quarantined), and
//! whether the whole file is. Written atomically (temp file, fsync, rename),
//! only from delivery reports, so a crash never skips an undelivered alert.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FileProgress {
    /// Source rows `0..rows_done` are finished.
    pub rows_done: u64,
    /// The whole file is finished.
    pub done: bool,
    /// Set when the file was quarantined instead of read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantined: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Checkpoint {
    pub version: u32,
    pub stream: String,
    /// Keyed by the file's path relative to the source root.
    pub files: BTreeMap<String, FileProgress>,
}

impl Checkpoint {
    pub fn load(path: &Path, stream: &str) -> Result<Checkpoint, String> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                serde_json::from_str(&text).map_err(|e| format!("checkpoint {} is unreadable: {e}", path.display()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(Checkpoint { version: 1, stream: stream.to_string(), files: BTreeMap::new() })
            }
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

    #[test]
    fn save_is_atomic_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.checkpoint.json");
        let mut c = Checkpoint::load(&p, "s").unwrap();
        c.files.insert("n/a.parquet".into(), FileProgress { rows_done: 5, done: false, quarantined: None });
        c.save(&p).unwrap();
        assert!(!dir.path().join("s.checkpoint.json.tmp").exists());
        let back = Checkpoint::load(&p, "s").unwrap();
        assert_eq!(back.files["n/a.parquet"].rows_done, 5);
    }
}

//! A stream's progress: which source files it has finished, kept exact and
//! small however files arrive.
//!
//! # The rule
//! A file counts as done only if this stream finished it (delivered,
//! filtered out or quarantined it), or `fink state reset --to-end` skipped
//! it. Nothing is inferred from names, times or listings: a file that a
//! listing omitted, that landed under a name sorting before files already
//! read, that kept an old modification time through an HDFS rename, or that
//! came from a store whose clock differs from ours is simply not done yet.
//!
//! # Keeping it small
//! Done files are recorded per folder (a night, in Fink's science
//! database) by a 64-bit fingerprint of their path and a 32-bit one of
//! their identity ([`identity`]): 12 bytes a file. A folder whose files are
//! all done and whose listing has not changed for [`SEAL_QUIET_MS`]
//! (measured on fink's own clock, never the store's) is *sealed*: its set
//! becomes a count and two 64-bit digests (of the paths, of the
//! identities), plus, for the newest [`TABLES_KEPT`] sealed folders, an
//! invertible Bloom lookup table of [`CELLS`] cells. Files read later in a
//! sealed folder are added to it.
//!
//! While fink runs it knows every sealed folder's members in memory, so a
//! sealed folder is read exactly however many files land in it. After a
//! restart, a sealed folder whose listing has the sealed count and digest is
//! known again at once; one with files added since is told apart by its
//! table (a few files at once; more is rare in a folder quiet for minutes).
//! If it cannot be told apart (no table, or too many new files), fink reads
//! the whole folder again with a warning (duplicates rather than a loss);
//! when the listing shows fewer files than the seal holds (it may omit
//! some), only after it has been stable for [`SEAL_QUIET_MS`]. A folder
//! that never goes quiet is sealed once it holds [`SEAL_LARGE`] files.
//!
//! Members are never forgotten when a listing omits them: a file omitted
//! once and listed again is still done. 100 sealed nights of 1,000 files
//! take 36 KB; an open night of 1,000 Spark part files 16 KB (see the
//! tests). Of the choices (a digest of the names below a watermark, marks
//! over folders the writer closed, store times with a margin) this one
//! depends on neither the writer's names nor its markers nor any clock:
//! Spark's random part names and Fink's streaming writer (no `_SUCCESS` per
//! night) are covered alike.
//!
//! # File identity
//! A done file whose identity changed (rewritten in place, replaced under
//! the same name) is reported ([`Plan::changed`]), never read again and
//! never mixed with the version read: a file partly read and then changed is
//! not read on from where the first version stopped. chmod and chown change
//! nothing (ctime is never used).
//!
//! Exactly-once streams commit this record to the state topic inside their
//! transactions; at-least-once streams write it to a local file atomically
//! (temp file, fsync, rename), only from delivery reports.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::{Deserialize, Serialize};

pub const VERSION: u32 = 3;

/// How long a fully done folder's listing must stay the same before its
/// set is sealed; and how long an ambiguous sealed folder's listing must
/// stay the same before it is read again.
pub const SEAL_QUIET_MS: u64 = 5 * 60 * 1000;

/// An open folder of this many done files is sealed even if not quiet
/// (16 bytes a file in the record: 320 KB).
pub const SEAL_LARGE: usize = 20_000;

/// Cells of a sealed folder's table: three partitions of sixteen. A
/// difference of 10 files is told apart ~99% of the time.
pub const CELLS: usize = 48;
const PART: usize = CELLS / 3;

/// Sealed folders (the newest by name) that keep a table.
pub const TABLES_KEPT: usize = 24;

/// Changed files remembered for `fink state show` (the newest).
const CHANGED_KEPT: usize = 100;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Progress {
    pub version: u32,
    pub stream: String,
    /// Done files per folder (`""`: the source root).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub folders: BTreeMap<String, Folder>,
    /// Files partly done: source rows `0..n` are finished.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub partial: BTreeMap<String, u64>,
    /// The identity of each partly done file when it was read: another
    /// version is never read on from there (it would mix the two).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub partial_ids: BTreeMap<String, u32>,
    /// Done files found changed since (path, or `FOLDER/` when only the
    /// folder is known -> when seen, ms): reported, not read again.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub changed: BTreeMap<String, u64>,
    /// Files finished so far (delivered, filtered out or quarantined).
    pub files_done: u64,
    /// When this progress was committed (ms since the epoch).
    pub committed_at_ms: u64,
    /// The instance that committed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// A version-1/2 record, applied once to the first listing.
    #[serde(skip)]
    legacy: Option<Legacy>,
    /// In memory only (a restart starts them over):
    /// per folder, a digest of its last listing and since when it holds;
    #[serde(skip)]
    quiet: HashMap<String, (u64, u64)>,
    /// per sealed folder, its members as this process knows them;
    #[serde(skip)]
    known: HashMap<String, HashMap<u64, u32>>,
    /// per ambiguous sealed folder, a digest of its listing and since when.
    #[serde(skip)]
    waiting: HashMap<String, (u64, u64)>,
}

/// One folder's done files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Folder {
    /// Exact: (path fingerprint, identity), 12 bytes each, sorted, base64.
    Open {
        #[serde(with = "open_set")]
        files: BTreeMap<u64, u32>,
    },
    /// Sealed: how many files, the XOR of their path fingerprints and of
    /// their (path, identity) fingerprints, and maybe a table.
    Sealed {
        n: u64,
        #[serde(with = "hex64")]
        keys: u64,
        #[serde(with = "hex64")]
        ids: u64,
        #[serde(default, skip_serializing_if = "Option::is_none", with = "cells")]
        table: Option<Box<Table>>,
    },
}

/// The version-2 rule, kept only to carry old records over.
#[derive(Debug, Clone, PartialEq)]
struct Legacy {
    watermark: Option<String>,
    listed_at_ms: u64,
    done: std::collections::BTreeSet<String>,
}

/// A source file as listed: its path relative to the source root and its
/// identity ([`identity`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Listed {
    pub rel: String,
    pub id: u32,
    /// Modification time (ms), only to carry version-2 records over.
    pub modified_ms: u64,
}

/// What a listing means for a stream.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Indexes into the listing of the files to read, in listing order.
    pub read: Vec<usize>,
    /// Done files whose identity changed since (newly found): reported,
    /// not read.
    pub changed: Vec<usize>,
    /// Sealed folders in which a done file changed (newly found; which one
    /// the record cannot say), named `FOLDER/`.
    pub changed_folders: Vec<String>,
    /// Sealed folders that could not be told apart and are read again.
    pub unresolved: Vec<String>,
    /// Sealed folders not read this time: they cannot be told apart yet.
    pub waiting: Vec<String>,
    /// Files partly published that changed since (newly found): read again
    /// from their first row (also in `read`).
    pub restarted: Vec<usize>,
}

/// A file's identity: length and modification time, or the store's ETag
/// or version. Never ctime: chmod and chown are not changes.
pub fn identity(len: u64, modified_ms: u64, etag: Option<&str>) -> u32 {
    let mut h = Fnv::new();
    h.write(&len.to_le_bytes());
    match etag {
        Some(e) => h.write(e.as_bytes()),
        None => h.write(&modified_ms.to_le_bytes()),
    }
    (mix(h.0) >> 32) as u32
}

/// A path's fingerprint: stable across versions and machines (it is
/// persisted), so not std's hasher.
pub fn fingerprint(rel: &str) -> u64 {
    let mut h = Fnv::new();
    h.write(rel.as_bytes());
    mix(h.0)
}

/// A file's (path, identity) fingerprint, for a sealed folder's digest.
fn with_id(key: u64, id: u32) -> u64 {
    mix(key.rotate_left(29) ^ id as u64 ^ 0x2545_f491_4f6c_dd1d)
}

struct Fnv(u64);
impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn write(&mut self, b: &[u8]) {
        for &x in b {
            self.0 ^= x as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// splitmix64's finaliser: FNV's low bits avalanche poorly.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The folder of a relative path (`""` for the root).
pub fn folder_of(rel: &str) -> &str {
    rel.rsplit_once('/').map(|(d, _)| d).unwrap_or("")
}

/// An invertible Bloom lookup table over (path fingerprint, identity).
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub cells: [Cell; CELLS],
}

impl Default for Table {
    fn default() -> Self {
        Table { cells: [Cell::default(); CELLS] }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Cell {
    count: i32,
    key: u64,
    id: u32,
    check: u32,
}

fn check_of(key: u64) -> u32 {
    (mix(key ^ 0x9e37_79b9_7f4a_7c15) >> 32) as u32
}

impl Table {
    fn positions(key: u64) -> [usize; 3] {
        let h = mix(key.rotate_left(17) ^ 0x5851_f42d_4c95_7f2d);
        let p = PART as u64;
        [(h % p) as usize, PART + ((h >> 21) % p) as usize, 2 * PART + ((h >> 42) % p) as usize]
    }

    fn apply(&mut self, key: u64, id: u32, sign: i32) {
        let check = check_of(key);
        for p in Table::positions(key) {
            let c = &mut self.cells[p];
            c.count += sign;
            c.key ^= key;
            c.id ^= id;
            c.check ^= check;
        }
    }

    pub fn insert(&mut self, key: u64, id: u32) {
        self.apply(key, id, 1);
    }

    fn minus(&self, other: &Table) -> Table {
        let mut out = self.clone();
        for (a, b) in out.cells.iter_mut().zip(other.cells.iter()) {
            a.count -= b.count;
            a.key ^= b.key;
            a.id ^= b.id;
            a.check ^= b.check;
        }
        out
    }

    /// Peel a difference: the keys only in the minuend, those only in the
    /// subtrahend (with their identities), and whether an identity residue
    /// is left (a file in both with another identity). `None`: too many to
    /// tell apart.
    fn peel(mut self) -> Option<Peeled> {
        let mut out = Peeled::default();
        loop {
            let pure = self.cells.iter().find(|c| (c.count == 1 || c.count == -1) && c.check == check_of(c.key));
            let Some(&c) = pure else { break };
            if c.count == 1 {
                out.plus.push(c.key);
            } else {
                out.minus.push((c.key, c.id));
            }
            self.apply(c.key, c.id, -c.count);
            if out.plus.len() + out.minus.len() > CELLS * 4 {
                return None;
            }
        }
        let empty = self.cells.iter().all(|c| c.count == 0 && c.key == 0 && c.check == 0);
        out.residue = self.cells.iter().any(|c| c.id != 0);
        empty.then_some(out)
    }
}

#[derive(Default)]
struct Peeled {
    plus: Vec<u64>,
    minus: Vec<(u64, u32)>,
    residue: bool,
}

/// What one sealed folder's listing says.
enum Told {
    /// Its members are these (path fingerprint -> identity); the listed
    /// files that are not members are new.
    Members(HashMap<u64, u32>),
    /// It cannot be told apart yet.
    Unknown,
}

impl Progress {
    pub fn new(stream: &str) -> Progress {
        Progress { version: VERSION, stream: stream.to_string(), ..Default::default() }
    }

    /// Parse a record of any format.
    pub fn parse(bytes: &[u8]) -> Result<Progress, String> {
        let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        match v.get("version").and_then(|x| x.as_u64()) {
            Some(1) => {
                let old: V1 = serde_json::from_value(v).map_err(|e| e.to_string())?;
                let mut p = Progress::new(&old.stream);
                let mut legacy = Legacy { watermark: None, listed_at_ms: 0, done: Default::default() };
                for (name, f) in old.files {
                    if f.done {
                        legacy.done.insert(name);
                        p.files_done += 1;
                    } else if f.rows_done > 0 {
                        p.partial.insert(name, f.rows_done);
                    }
                }
                p.legacy = Some(legacy);
                Ok(p)
            }
            Some(2) => {
                let old: V2 = serde_json::from_value(v).map_err(|e| e.to_string())?;
                let mut p = Progress::new(&old.stream);
                p.partial = old.partial;
                p.files_done = old.files_done;
                p.committed_at_ms = old.committed_at_ms;
                p.owner = old.owner;
                p.legacy = Some(Legacy { watermark: old.watermark, listed_at_ms: old.listed_at_ms, done: old.done });
                Ok(p)
            }
            Some(3) => serde_json::from_value(v).map_err(|e| e.to_string()),
            other => Err(format!("unknown progress format version {other:?}")),
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("progress serializes")
    }

    /// Files recorded one by one (folders not sealed yet).
    pub fn open_files(&self) -> usize {
        self.folders.values().map(|f| if let Folder::Open { files } = f { files.len() } else { 0 }).sum()
    }

    pub fn sealed_folders(&self) -> usize {
        self.folders.values().filter(|f| matches!(f, Folder::Sealed { .. })).count()
    }

    /// Carry a version-1/2 record over: what its rule called done in this
    /// listing is recorded file by file, once.
    fn carry_legacy(&mut self, listing: &[Listed]) {
        let Some(l) = self.legacy.take() else { return };
        for f in listing {
            let by_mark = l.watermark.as_deref().is_some_and(|w| f.rel.as_str() <= w) && f.modified_ms < l.listed_at_ms;
            if l.done.contains(&f.rel) || by_mark {
                self.record(&f.rel, f.id);
            }
        }
    }

    /// What to do with a listing: the files to read, the done files that
    /// changed since.
    pub fn plan(&mut self, listing: &[Listed], now_ms: u64) -> Plan {
        self.carry_legacy(listing);
        let mut plan = Plan::default();
        // A file partly published, then changed: never read on from the
        // old position (two versions would mix), and the rest of it never
        // dropped either: the new version is read from its first row, and
        // reported (its first alerts are published again).
        for (i, f) in listing.iter().enumerate() {
            if self.partial_ids.get(&f.rel).is_some_and(|&id| id != f.id) {
                plan.restarted.push(i);
                self.partial.remove(&f.rel);
                self.partial_ids.remove(&f.rel);
            }
        }
        let mut by_folder: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, f) in listing.iter().enumerate() {
            by_folder.entry(folder_of(&f.rel)).or_default().push(i);
        }
        for (dir, idx) in &by_folder {
            let keyed: Vec<(u64, usize)> = idx.iter().map(|&i| (fingerprint(&listing[i].rel), i)).collect();
            let members: HashMap<u64, u32> = match self.folders.get(*dir) {
                None => {
                    plan.read.extend(idx);
                    continue;
                }
                Some(Folder::Open { files }) => files.iter().map(|(k, v)| (*k, *v)).collect(),
                Some(Folder::Sealed { .. }) => match self.tell(dir, listing, &keyed, now_ms, &mut plan) {
                    Told::Members(m) => m,
                    Told::Unknown => continue,
                },
            };
            for &(k, i) in &keyed {
                match members.get(&k) {
                    None => plan.read.push(i),
                    Some(&id) if id != listing[i].id && !self.changed.contains_key(&listing[i].rel) => {
                        plan.changed.push(i)
                    }
                    Some(_) => {}
                }
            }
        }
        plan.read.sort_unstable();
        plan.changed.sort_unstable();
        plan.changed.dedup();
        for &i in &plan.changed {
            self.note_changed(&listing[i].rel, now_ms);
        }
        for d in plan.changed_folders.clone() {
            self.note_changed(&d, now_ms);
        }
        for &i in &plan.restarted {
            self.note_changed(&listing[i].rel, now_ms);
        }
        plan
    }

    /// The members of sealed folder `dir` given its listing: known in
    /// memory, or found again from its digests or its table. Folders that
    /// stay ambiguous for [`SEAL_QUIET_MS`] are opened again and read.
    fn tell(&mut self, dir: &str, listing: &[Listed], keyed: &[(u64, usize)], now_ms: u64, plan: &mut Plan) -> Told {
        let Some(Folder::Sealed { n, keys, ids, table }) = self.folders.get(dir) else { return Told::Unknown };
        let (n, keys, ids, table) = (*n, *keys, *ids, table.clone());
        if let Some(m) = self.known.get(dir).filter(|m| m.len() as u64 == n) {
            return Told::Members(m.clone());
        }
        let listed_keys = keyed.iter().fold(0u64, |a, (k, _)| a ^ k);
        let found: Option<HashMap<u64, u32>> = if keyed.len() as u64 == n && listed_keys == keys {
            // Exactly its members (identities as listed).
            let listed_ids = keyed.iter().fold(0u64, |a, (k, i)| a ^ with_id(*k, listing[*i].id));
            if listed_ids != ids && !self.changed.contains_key(&format!("{dir}/")) {
                plan.changed_folders.push(format!("{dir}/"));
            }
            Some(keyed.iter().map(|(k, i)| (*k, listing[*i].id)).collect())
        } else if let Some(t) = table {
            let mut listed = Table::default();
            for (k, i) in keyed {
                listed.insert(*k, listing[*i].id);
            }
            listed.minus(&t).peel().map(|p| {
                if p.residue && !self.changed.contains_key(&format!("{dir}/")) {
                    plan.changed_folders.push(format!("{dir}/"));
                }
                let new: std::collections::HashSet<u64> = p.plus.iter().copied().collect();
                // Members: what is listed and not new, and what the listing
                // left out (omitted, or deleted: never forgotten).
                let mut m: HashMap<u64, u32> =
                    keyed.iter().filter(|(k, _)| !new.contains(k)).map(|(k, i)| (*k, listing[*i].id)).collect();
                m.extend(p.minus.iter().copied());
                m
            })
        } else {
            None
        };
        if let Some(m) = found.filter(|m| m.len() as u64 == n) {
            self.waiting.remove(dir);
            self.known.insert(dir.to_string(), m.clone());
            return Told::Members(m);
        }
        // Ambiguous. Fewer files listed than members may be a listing that
        // omits some: wait until it has been stable for the quiet time. As
        // many or more: files were added; read it all again now.
        let digest = keyed.iter().fold(listed_keys, |a, (k, i)| a ^ with_id(*k, listing[*i].id).rotate_left(7));
        let since = match self.waiting.get(dir) {
            Some(&(d, since)) if d == digest => since,
            _ => now_ms,
        };
        self.waiting.insert(dir.to_string(), (digest, since));
        if (keyed.len() as u64) < n && now_ms.saturating_sub(since) < SEAL_QUIET_MS {
            plan.waiting.push(dir.to_string());
            return Told::Unknown;
        }
        self.waiting.remove(dir);
        self.known.remove(dir);
        self.folders.insert(dir.to_string(), Folder::Open { files: BTreeMap::new() });
        plan.unresolved.push(dir.to_string());
        Told::Members(HashMap::new())
    }

    fn note_changed(&mut self, rel: &str, now_ms: u64) {
        self.changed.insert(rel.to_string(), now_ms);
        while self.changed.len() > CHANGED_KEPT {
            let oldest = self.changed.iter().min_by_key(|(_, t)| **t).map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                self.changed.remove(&k);
            }
        }
    }

    pub fn rows_done(&self, rel: &str) -> u64 {
        self.partial.get(rel).copied().unwrap_or(0)
    }

    pub fn set_rows_done(&mut self, rel: &str, id: u32, rows: u64) -> bool {
        if self.rows_done(rel) == rows {
            return false;
        }
        self.partial.insert(rel.to_string(), rows);
        self.partial_ids.insert(rel.to_string(), id);
        true
    }

    /// `rel` (with identity `id`) is finished.
    pub fn mark_done(&mut self, rel: &str, id: u32) {
        self.partial.remove(rel);
        self.partial_ids.remove(rel);
        if self.record(rel, id) {
            self.files_done += 1;
        }
    }

    /// Record a file as done; false if it was already.
    fn record(&mut self, rel: &str, id: u32) -> bool {
        let key = fingerprint(rel);
        let dir = folder_of(rel);
        match self.folders.entry(dir.to_string()).or_insert(Folder::Open { files: BTreeMap::new() }) {
            Folder::Open { files } => files.insert(key, id) != Some(id),
            Folder::Sealed { n, keys, ids, table } => {
                let known = self.known.get_mut(dir).filter(|m| m.len() as u64 == *n);
                if known.as_ref().is_some_and(|m| m.contains_key(&key)) {
                    return false;
                }
                *n += 1;
                *keys ^= key;
                *ids ^= with_id(key, id);
                if let Some(t) = table {
                    t.insert(key, id);
                }
                if let Some(m) = known {
                    m.insert(key, id);
                }
                true
            }
        }
    }

    /// Seal the folders that are done and quiet: every file listed is done,
    /// nothing is partly read, and the listing of the folder has not changed
    /// for [`SEAL_QUIET_MS`] of fink's clock.
    pub fn fold(&mut self, listing: &[Listed], now_ms: u64) {
        let mut by_folder: BTreeMap<&str, Vec<&Listed>> = BTreeMap::new();
        for f in listing {
            by_folder.entry(folder_of(&f.rel)).or_default().push(f);
        }
        let partial_dirs: std::collections::HashSet<&str> = self.partial.keys().map(|r| folder_of(r)).collect();
        let mut seen = HashMap::new();
        let mut sealed_any = false;
        for (dir, files) in by_folder {
            let mut digest = Fnv::new();
            for f in &files {
                digest.write(f.rel.as_bytes());
                digest.write(&f.id.to_le_bytes());
            }
            let since = match self.quiet.get(dir) {
                Some(&(d, since)) if d == digest.0 => since,
                _ => now_ms,
            };
            seen.insert(dir.to_string(), (digest.0, since));
            let Some(Folder::Open { files: done }) = self.folders.get(dir) else { continue };
            // A folder that never goes quiet (a flat source fed for ever) is
            // sealed once large, so the record stays well under Kafka's
            // message size.
            let large = done.len() >= SEAL_LARGE;
            if (now_ms.saturating_sub(since) < SEAL_QUIET_MS && !large) || partial_dirs.contains(dir) {
                continue;
            }
            if !files.iter().all(|f| done.contains_key(&fingerprint(&f.rel))) {
                continue;
            }
            // Every done file is a member, listed now or not (an omitted
            // one listed again later is still done).
            let mut table = Box::<Table>::default();
            let (mut keys, mut ids) = (0u64, 0u64);
            for (&k, &id) in done {
                table.insert(k, id);
                keys ^= k;
                ids ^= with_id(k, id);
            }
            let known: HashMap<u64, u32> = done.iter().map(|(k, v)| (*k, *v)).collect();
            let n = known.len() as u64;
            self.folders.insert(dir.to_string(), Folder::Sealed { n, keys, ids, table: Some(table) });
            self.known.insert(dir.to_string(), known);
            sealed_any = true;
        }
        self.quiet = seen;
        if sealed_any {
            // Tables for the newest sealed folders only: older nights are
            // told by their digests.
            let sealed: Vec<String> = self
                .folders
                .iter()
                .filter(|(_, f)| matches!(f, Folder::Sealed { table: Some(_), .. }))
                .map(|(d, _)| d.clone())
                .collect();
            for d in sealed.iter().rev().skip(TABLES_KEPT) {
                if let Some(Folder::Sealed { table, .. }) = self.folders.get_mut(d) {
                    *table = None;
                }
            }
        }
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

/// The second format: a watermark over path order and listing times.
#[derive(Deserialize, Default)]
#[serde(default)]
struct V2 {
    stream: String,
    watermark: Option<String>,
    listed_at_ms: u64,
    done: std::collections::BTreeSet<String>,
    partial: BTreeMap<String, u64>,
    files_done: u64,
    committed_at_ms: u64,
    owner: Option<String>,
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD_NO_PAD
}

mod hex64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{v:016x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let s = String::deserialize(d)?;
        u64::from_str_radix(&s, 16).map_err(serde::de::Error::custom)
    }
}

mod open_set {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(m: &BTreeMap<u64, u32>, s: S) -> Result<S::Ok, S::Error> {
        let mut b = Vec::with_capacity(m.len() * 12);
        for (k, v) in m {
            b.extend_from_slice(&k.to_le_bytes());
            b.extend_from_slice(&v.to_le_bytes());
        }
        s.serialize_str(&b64().encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<u64, u32>, D::Error> {
        let s = String::deserialize(d)?;
        let b = b64().decode(s.as_bytes()).map_err(serde::de::Error::custom)?;
        if b.len() % 12 != 0 {
            return Err(serde::de::Error::custom("a done-file set is not a whole number of entries"));
        }
        Ok(b.chunks_exact(12)
            .map(|c| (u64::from_le_bytes(c[..8].try_into().unwrap()), u32::from_le_bytes(c[8..].try_into().unwrap())))
            .collect())
    }
}

mod cells {
    use super::*;
    use serde::{Deserializer, Serializer};

    const CELL: usize = 20;

    pub fn serialize<S: Serializer>(t: &Option<Box<Table>>, s: S) -> Result<S::Ok, S::Error> {
        let Some(t) = t else { return s.serialize_none() };
        let mut b = Vec::with_capacity(CELLS * CELL);
        for c in &t.cells {
            b.extend_from_slice(&c.count.to_le_bytes());
            b.extend_from_slice(&c.key.to_le_bytes());
            b.extend_from_slice(&c.id.to_le_bytes());
            b.extend_from_slice(&c.check.to_le_bytes());
        }
        s.serialize_str(&b64().encode(b))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Box<Table>>, D::Error> {
        let Some(s) = Option::<String>::deserialize(d)? else { return Ok(None) };
        let b = b64().decode(s.as_bytes()).map_err(serde::de::Error::custom)?;
        if b.len() != CELLS * CELL {
            return Err(serde::de::Error::custom(format!(
                "a sealed table has {} bytes, not {}",
                b.len(),
                CELLS * CELL
            )));
        }
        let mut t = Box::<Table>::default();
        for (c, raw) in t.cells.iter_mut().zip(b.chunks_exact(CELL)) {
            c.count = i32::from_le_bytes(raw[0..4].try_into().unwrap());
            c.key = u64::from_le_bytes(raw[4..12].try_into().unwrap());
            c.id = u32::from_le_bytes(raw[12..16].try_into().unwrap());
            c.check = u32::from_le_bytes(raw[16..20].try_into().unwrap());
        }
        Ok(Some(t))
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

    fn listed(rel: &str, id: u32) -> Listed {
        Listed { rel: rel.into(), id, modified_ms: 0 }
    }

    fn to_read(p: &mut Progress, listing: &[Listed], now: u64) -> Vec<String> {
        p.plan(listing, now).read.iter().map(|&i| listing[i].rel.clone()).collect()
    }

    #[test]
    fn save_is_atomic_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.checkpoint.json");
        let mut c = Progress::load(&p, "s").unwrap();
        c.set_rows_done("n/a.parquet", 1, 5);
        c.mark_done("n/b.parquet", 7);
        c.save(&p).unwrap();
        assert!(!dir.path().join("s.checkpoint.json.tmp").exists());
        let mut back = Progress::load(&p, "s").unwrap();
        assert_eq!(back.rows_done("n/a.parquet"), 5);
        let l = [listed("n/a.parquet", 1), listed("n/b.parquet", 7)];
        assert_eq!(to_read(&mut back, &l, 0), ["n/a.parquet"]);
    }

    #[test]
    fn older_formats_are_carried_over_once() {
        let v1 =
            br#"{"version":1,"stream":"s","files":{"a":{"rows_done":3,"done":true},"b":{"rows_done":2,"done":false}}}"#;
        let mut p = Progress::parse(v1).unwrap();
        assert_eq!(to_read(&mut p, &[listed("a", 1), listed("b", 1)], 0), ["b"]);
        assert_eq!(p.rows_done("b"), 2);
        assert_eq!(p.files_done, 1);
        let v2 = br#"{"version":2,"stream":"s","watermark":"n/b","listed_at_ms":100,"done":["n/d"],"files_done":3}"#;
        let mut p = Progress::parse(v2).unwrap();
        let l = |t| vec![listed("n/0", t), listed("n/a", 1), listed("n/b", 1), listed("n/c", 1), listed("n/d", 1)];
        let mut l1 = l(200);
        for (f, t) in l1.iter_mut().zip([200, 50, 50, 50, 50]) {
            f.modified_ms = t;
        }
        // n/0 sorts below the mark but came after its listing: read.
        assert_eq!(to_read(&mut p, &l1, 0), ["n/0", "n/c"]);
        // In version 3 from now on.
        let mut back = Progress::parse(&p.to_json()).unwrap();
        assert_eq!(to_read(&mut back, &l(0), 0), ["n/0", "n/c"]);
    }

    #[test]
    fn a_file_is_done_only_once_finished_whatever_its_name_or_time() {
        let mut p = Progress::new("s");
        let l = vec![listed("n/b", 1), listed("n/d", 1)];
        assert_eq!(to_read(&mut p, &l, 0), ["n/b", "n/d"]);
        p.mark_done("n/b", 1);
        p.mark_done("n/d", 1);
        // Files landing below and between, with any time.
        let l = vec![listed("n/a", 1), listed("n/b", 1), listed("n/c", 1), listed("n/d", 1)];
        assert_eq!(to_read(&mut p, &l, 0), ["n/a", "n/c"]);
    }

    #[test]
    fn a_changed_file_is_reported_once_and_never_read_again() {
        let mut p = Progress::new("s");
        p.mark_done("n/a", 1);
        let l = [listed("n/a", 2)];
        let plan = p.plan(&l, 10);
        assert!(plan.read.is_empty());
        assert_eq!(plan.changed, [0]);
        assert!(p.changed.contains_key("n/a"));
        assert!(p.plan(&l, 11).changed.is_empty(), "reported once");
    }

    /// Done, quiet folders fold into a fixed-size table; files landing in
    /// them later are still found and read, in this process (members known
    /// in memory) and after a restart (the table told apart).
    #[test]
    fn sealed_folders_still_find_late_files() {
        for restarted in [false, true] {
            let mut p = Progress::new("s");
            let mut l: Vec<Listed> = (0..500).map(|i| listed(&format!("n1/part-{i:04}-x"), i)).collect();
            for f in &l {
                p.mark_done(&f.rel, f.id);
            }
            p.fold(&l, 0);
            assert_eq!(p.sealed_folders(), 0, "not quiet yet");
            p.fold(&l, SEAL_QUIET_MS);
            assert_eq!((p.sealed_folders(), p.open_files()), (1, 0));
            if restarted {
                p = Progress::parse(&p.to_json()).unwrap();
            }
            assert!(to_read(&mut p, &l, SEAL_QUIET_MS).is_empty());
            // Eight late files anywhere in the sealed night, one removed.
            let late: Vec<Listed> = (0..8).map(|i| listed(&format!("n1/part-{:04}-late", i * 60), 9)).collect();
            l.extend(late.iter().cloned());
            l.remove(3);
            l.sort();
            if restarted {
                p = Progress::parse(&p.to_json()).unwrap();
            }
            let mut want: Vec<String> = late.iter().map(|f| f.rel.clone()).collect();
            want.sort();
            assert_eq!(to_read(&mut p, &l, SEAL_QUIET_MS), want, "restarted: {restarted}");
            for f in &late {
                p.mark_done(&f.rel, f.id);
            }
            assert!(to_read(&mut p, &l, SEAL_QUIET_MS).is_empty());
            if restarted {
                p = Progress::parse(&p.to_json()).unwrap();
                assert!(to_read(&mut p, &l, SEAL_QUIET_MS).is_empty());
            }
            // A rewritten file is a change, not a read: named when the
            // members are known, its folder when only the table tells.
            l[10].id ^= 0xff;
            if restarted {
                p = Progress::parse(&p.to_json()).unwrap();
            }
            let plan = p.plan(&l, SEAL_QUIET_MS);
            assert!(plan.read.is_empty());
            let which = if restarted { "n1/".to_string() } else { l[10].rel.clone() };
            assert!(p.changed.contains_key(&which), "{:?}", p.changed);
        }
    }

    #[test]
    fn a_burst_into_a_sealed_folder_is_exact_while_running() {
        let mut p = Progress::new("s");
        let mut l: Vec<Listed> = (0..50).map(|i| listed(&format!("n/{i:03}"), 1)).collect();
        for f in &l {
            p.mark_done(&f.rel, 1);
        }
        p.fold(&l, 0);
        p.fold(&l, SEAL_QUIET_MS);
        l.extend((0..200).map(|i| listed(&format!("n/{i:03}-new"), 1)));
        let plan = p.plan(&l, SEAL_QUIET_MS);
        assert!(plan.unresolved.is_empty());
        assert_eq!(plan.read.len(), 200);
        // After a restart the table alone cannot tell 200 new files apart:
        // the folder is read again (duplicates rather than a loss).
        let mut q = Progress::parse(&p.to_json()).unwrap();
        let plan = q.plan(&l, 10 * SEAL_QUIET_MS);
        assert_eq!(plan.unresolved, ["n"]);
        assert_eq!(plan.read.len(), 250);
        // With members missing from the listing as well (an omission?),
        // it waits for a stable listing first.
        let mut q = Progress::parse(&p.to_json()).unwrap();
        let short: Vec<Listed> = l[..20].iter().chain(&l[50..60]).cloned().collect();
        let t0 = 10 * SEAL_QUIET_MS;
        let plan = q.plan(&short, t0);
        assert_eq!((plan.waiting.clone(), plan.read.len()), (vec!["n".to_string()], 0));
        assert!(q.plan(&short, t0 + SEAL_QUIET_MS - 1).read.is_empty());
        let plan = q.plan(&short, t0 + SEAL_QUIET_MS);
        assert_eq!(plan.unresolved, ["n"]);
        assert_eq!(plan.read.len(), 30);
    }

    /// A sealed folder's listing that omits some members: they stay done
    /// when listed again, in this process and after a restart.
    #[test]
    fn an_omitted_file_listed_again_is_still_done() {
        let mut p = Progress::new("s");
        let l: Vec<Listed> = (0..40).map(|i| listed(&format!("n/{i:03}"), 1)).collect();
        for f in &l {
            p.mark_done(&f.rel, 1);
        }
        p.fold(&l, 0);
        p.fold(&l, SEAL_QUIET_MS);
        let some: Vec<Listed> = l.iter().step_by(3).cloned().collect();
        assert!(to_read(&mut p, &some, SEAL_QUIET_MS).is_empty());
        assert!(to_read(&mut p, &l, SEAL_QUIET_MS).is_empty());
        let mut q = Progress::parse(&p.to_json()).unwrap();
        assert!(to_read(&mut q, &some, SEAL_QUIET_MS).is_empty(), "told by the table");
        assert!(to_read(&mut q, &l, SEAL_QUIET_MS).is_empty());
    }

    #[test]
    fn a_hundred_thousand_files_stay_small() {
        let mut p = Progress::new("s");
        let listing: Vec<Listed> = (0..100_000)
            .map(|i| {
                listed(&format!("night={:03}/part-{:05}-{:032x}-c000.snappy.parquet", i / 1000, i % 1000, i * 7919), i)
            })
            .collect();
        for f in &listing {
            p.mark_done(&f.rel, f.id);
        }
        p.fold(&listing, 0);
        p.fold(&listing, SEAL_QUIET_MS);
        let bytes = p.to_json();
        assert!(bytes.len() < 64 * 1024, "{} bytes", bytes.len());
        assert!(p.plan(&listing, SEAL_QUIET_MS).read.is_empty());
        assert_eq!(p.files_done, 100_000);
        // One open night of 1,000 Spark part files.
        let mut q = Progress::new("s");
        for f in &listing[..1000] {
            q.mark_done(&f.rel, f.id);
        }
        let n = q.to_json().len();
        assert!(n < 17 * 1024, "{n} bytes");
        eprintln!("100 sealed nights of 1,000 files: {} bytes; one open night: {n} bytes", bytes.len());
    }

    /// A model of a stream and a writer: files land in random folders
    /// under random names (so below names already read), are touched or
    /// rewritten, listings omit files, time jumps past the seal delay, and
    /// the stream crashes (its uncommitted publications and progress are
    /// lost together, as in a Kafka transaction). Checked: at every
    /// listing, no file counted done was left unpublished; at the end, every
    /// file was published exactly once (or, where a restart met more new
    /// files in a sealed folder than its table tells apart, at least once).
    mod model {
        use super::*;
        use proptest::collection::vec;
        use proptest::prelude::*;
        use std::collections::BTreeMap;
        use std::sync::atomic::{AtomicUsize, Ordering};

        #[derive(Debug, Clone)]
        enum Ev {
            Arrive { folder: u8, name: u32 },
            Touch { pick: u16 },
            List { omit: u64, take: u8 },
            Commit,
            Crash,
            Tick { secs: u16 },
        }

        fn ev() -> impl Strategy<Value = Ev> {
            prop_oneof![
                5 => (0u8..4, any::<u32>()).prop_map(|(folder, name)| Ev::Arrive { folder, name }),
                1 => any::<u16>().prop_map(|pick| Ev::Touch { pick }),
                4 => (any::<u64>(), 0u8..24).prop_map(|(omit, take)| Ev::List { omit, take }),
                2 => Just(Ev::Commit),
                1 => Just(Ev::Crash),
                2 => (0u16..400).prop_map(|secs| Ev::Tick { secs }),
            ]
        }

        static CASES_WITH_REREAD: AtomicUsize = AtomicUsize::new(0);

        struct World {
            files: BTreeMap<String, u32>,
            committed: BTreeMap<String, usize>,
            pending: Vec<String>,
            p: Progress,
            saved: Vec<u8>,
            now: u64,
            reread: bool,
        }

        impl World {
            fn list(&mut self, omit: u64, take: usize) -> usize {
                let listing: Vec<Listed> = self
                    .files
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| omit & (1 << (i % 64)) == 0)
                    .map(|(_, (rel, id))| listed(rel, *id))
                    .collect();
                let plan = self.p.plan(&listing, self.now);
                self.reread |= !plan.unresolved.is_empty();
                for (i, f) in listing.iter().enumerate() {
                    if !plan.read.contains(&i) && !plan.waiting.iter().any(|d| d == folder_of(&f.rel)) {
                        let published = self.committed.contains_key(&f.rel) || self.pending.contains(&f.rel);
                        assert!(published, "{} counted done but never published", f.rel);
                    }
                }
                let read: Vec<usize> = plan.read.iter().take(take).copied().collect();
                for &i in &read {
                    self.pending.push(listing[i].rel.clone());
                    self.p.mark_done(&listing[i].rel, listing[i].id);
                }
                self.p.fold(&listing, self.now);
                plan.read.len()
            }

            fn commit(&mut self) {
                for rel in self.pending.drain(..) {
                    *self.committed.entry(rel).or_default() += 1;
                }
                self.saved = self.p.to_json();
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(3000))]
            #[test]
            fn every_file_once_and_never_covered_unread(evs in vec(ev(), 1..160)) {
                let p = Progress::new("s");
                let saved = p.to_json();
                let mut w = World { files: BTreeMap::new(), committed: BTreeMap::new(), pending: vec![], p, saved, now: 1, reread: false };
                for e in evs {
                    match e {
                        Ev::Arrive { folder, name } => {
                            w.files.entry(format!("night={folder}/part-{name:08x}-c000.snappy.parquet")).or_insert(1);
                        }
                        Ev::Touch { pick } => {
                            let n = w.files.len();
                            if n > 0 {
                                if let Some((_, id)) = w.files.iter_mut().nth(pick as usize % n) {
                                    *id += 1;
                                }
                            }
                        }
                        Ev::List { omit, take } => {
                            w.list(omit, take as usize);
                        }
                        Ev::Commit => w.commit(),
                        Ev::Crash => {
                            w.pending.clear();
                            w.p = Progress::parse(&w.saved).unwrap();
                        }
                        Ev::Tick { secs } => w.now += secs as u64 * 1000,
                    }
                }
                // The writer stops; the stream catches up.
                for _ in 0..8 {
                    w.now += SEAL_QUIET_MS;
                    let left = w.list(0, usize::MAX);
                    w.commit();
                    if left == 0 {
                        break;
                    }
                }
                for rel in w.files.keys() {
                    let n = w.committed.get(rel).copied().unwrap_or(0);
                    prop_assert!(n >= 1, "{rel} never published");
                    prop_assert!(n == 1 || w.reread, "{rel} published {n} times");
                }
                if w.reread {
                    CASES_WITH_REREAD.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

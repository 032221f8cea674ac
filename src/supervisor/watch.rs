//! What `fink run` watches: its config files (edits reload it) and its
//! local source folders (a new file wakes the streams that read there).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

use anyhow::Result;
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache};

use super::Shared;
use crate::config::Loaded;

type Watcher = Debouncer<notify::RecommendedWatcher, RecommendedCache>;

/// The config file, its profile and includes: the folders they are in
/// (editors save by rename), and the folders of include globs (a new file
/// there may be one more include).
pub(super) struct ConfigWatch {
    watcher: Watcher,
    events: Receiver<DebounceEventResult>,
    files: Vec<PathBuf>,
    dirs: BTreeSet<PathBuf>,
    enabled: bool,
}

impl ConfigWatch {
    pub(super) fn start(current: &Loaded, enabled: bool) -> Result<ConfigWatch> {
        let (tx, events) = channel();
        let watcher = notify_debouncer_full::new_debouncer(Duration::from_millis(150), None, tx)?;
        let mut w = ConfigWatch { watcher, events, files: Vec::new(), dirs: BTreeSet::new(), enabled };
        w.follow(current);
        Ok(w)
    }

    /// Watch what `current` is made of (after a reload: its new includes).
    pub(super) fn follow(&mut self, current: &Loaded) {
        self.files = config_files(current);
        if !self.enabled {
            return;
        }
        for f in &self.files {
            let d = f.parent().map(Path::to_path_buf).unwrap_or_default();
            let d = if d.as_os_str().is_empty() { PathBuf::from(".") } else { d };
            if self.dirs.insert(d.clone()) {
                if let Err(e) = self.watcher.watch(&d, notify::RecursiveMode::NonRecursive) {
                    tracing::warn!("cannot watch {}: {e} (reload with SIGHUP)", d.display());
                }
            }
        }
    }

    /// Whether a file of `current` changed since the last call.
    pub(super) fn changed(&self, current: &Loaded) -> bool {
        let mut changed = false;
        while let Ok(ev) = self.events.try_recv() {
            let Ok(events) = ev else { continue };
            let include_dirs: Vec<PathBuf> =
                current.includes.iter().filter_map(|i| i.path.parent()).map(Path::to_path_buf).collect();
            let relevant = |p: &Path| {
                same_file(p, &self.files)
                    || (p.extension().is_some_and(|x| x == "toml")
                        && p.parent().is_some_and(|d| include_dirs.iter().any(|i| same_dir(d, i))))
            };
            changed |= events.iter().any(|e| is_content_change(e) && e.paths.iter().any(|p| relevant(p)));
        }
        changed
    }
}

/// The local source roots of the running streams.
pub(super) struct SourceWatch {
    watcher: Watcher,
    events: Receiver<DebounceEventResult>,
    roots: BTreeSet<PathBuf>,
    /// Events taken while waiting, for the next [`SourceWatch::wake`].
    early: Vec<DebounceEventResult>,
}

impl SourceWatch {
    pub(super) fn start(shared: &Shared) -> Result<SourceWatch> {
        let (tx, events) = channel();
        // Short: a complete file is read as soon as it is seen.
        let watcher = notify_debouncer_full::new_debouncer(Duration::from_millis(20), None, tx)?;
        let mut w = SourceWatch { watcher, events, roots: BTreeSet::new(), early: Vec::new() };
        w.follow(shared);
        Ok(w)
    }

    /// Watch the roots of the streams running now. Remote sources are
    /// listed every poll interval instead.
    pub(super) fn follow(&mut self, shared: &Shared) {
        for s in shared.streams.lock().unwrap().values() {
            let Some(root) = s.stream.spec.source.local().map(absolute) else { continue };
            if !self.roots.contains(&root) && root.is_dir() {
                if let Err(e) = self.watcher.watch(&root, notify::RecursiveMode::Recursive) {
                    tracing::warn!("cannot watch {}: {e} (falling back to rescans)", root.display());
                }
                self.roots.insert(root);
            }
        }
    }

    /// Wake the streams of a root where something changed. A file renamed
    /// into place or closed after writing is complete: it is read at once,
    /// without the settle wait of a file that may still grow.
    pub(super) fn wake(&mut self, shared: &Shared) {
        let early = std::mem::take(&mut self.early);
        for ev in early.into_iter().chain(std::iter::from_fn(|| self.events.try_recv().ok())) {
            let Ok(events) = ev else { continue };
            for e in &events {
                if let Some(p) = completed(e) {
                    crate::stream::store::mark_complete(p);
                }
            }
            let paths: Vec<PathBuf> = events.iter().flat_map(|e| e.paths.clone()).collect();
            for s in shared.streams.lock().unwrap().values() {
                // Events name absolute paths; a root may be relative to
                // the directory fink runs in.
                if s.stream.spec.source.local().is_some_and(|root| {
                    let root = absolute(root);
                    paths.iter().any(|p| p.starts_with(&root))
                }) {
                    s.stream.wake();
                }
            }
        }
    }
}

/// The file an event shows complete: the target of a rename, or a file
/// closed after writing.
fn completed(e: &notify_debouncer_full::DebouncedEvent) -> Option<&Path> {
    use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
    use notify::EventKind;
    match e.kind {
        EventKind::Modify(ModifyKind::Name(RenameMode::To)) => e.paths.first(),
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => e.paths.last(),
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => e.paths.first(),
        _ => None,
    }
    .map(PathBuf::as_path)
}

impl SourceWatch {
    /// Wait up to `max` for a change in a source folder (the supervisor's
    /// pause between two rounds, cut short so a new file is read at once).
    pub(super) fn wait(&mut self, max: Duration) {
        if let Ok(ev) = self.events.recv_timeout(max) {
            self.early.push(ev);
        }
    }
}

/// `p` made absolute against the working directory (no filesystem access).
fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

fn config_files(l: &Loaded) -> Vec<PathBuf> {
    let mut v = vec![l.config_path.clone()];
    if let Some(p) = &l.profile_path {
        v.push(p.clone());
    }
    v.extend(l.includes.iter().map(|i| i.path.clone()));
    // Python filters named by path: an edit reloads the streams using them.
    for (name, f) in &l.config.filters {
        if let Some(Ok(pf)) = f.python.as_ref().map(|p| crate::stream::python::PyFilter::parse(name, p, &l.base_dir)) {
            if let crate::stream::python::Target::File(path) = pf.target {
                v.push(path);
            }
        }
    }
    v
}

fn same_dir(a: &Path, b: &Path) -> bool {
    let canon = |x: &Path| std::fs::canonicalize(x).unwrap_or_else(|_| x.to_path_buf());
    canon(a) == canon(b)
}

fn is_content_change(e: &notify_debouncer_full::DebouncedEvent) -> bool {
    use notify::EventKind;
    matches!(e.kind, EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_))
}

fn same_file(p: &Path, files: &[PathBuf]) -> bool {
    let canon = |x: &Path| std::fs::canonicalize(x).unwrap_or_else(|_| x.to_path_buf());
    files.iter().any(|f| {
        p.file_name() == f.file_name()
            && canon(p.parent().unwrap_or(p))
                == canon(f.parent().filter(|x| !x.as_os_str().is_empty()).unwrap_or(Path::new(".")))
    })
}

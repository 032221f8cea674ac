//! Reload by per-stream diff, transactionally: the new and changed streams
//! are built and checked before any running stream is stopped.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use super::{now_secs, start_options, stop_all, RunOptions, Shared, Slot};
use crate::cluster::Connection;
use crate::config::Loaded;
use crate::stream::runner::{Prepared, RunningStream, STOP_GRACE};
use crate::stream::{self, StreamSpec};

/// What changed between two sets of stream specs.
#[derive(Debug, Default, PartialEq)]
pub struct Diff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
}

pub fn diff(old: &BTreeMap<String, StreamSpec>, new: &[StreamSpec]) -> Diff {
    let mut d = Diff::default();
    let new_names: BTreeSet<&str> = new.iter().map(|s| s.name.as_str()).collect();
    for s in new {
        match old.get(&s.name) {
            None => d.added.push(s.name.clone()),
            Some(o) if o == s => d.unchanged.push(s.name.clone()),
            Some(_) => d.changed.push(s.name.clone()),
        }
    }
    for name in old.keys() {
        if !new_names.contains(name.as_str()) {
            d.removed.push(name.clone());
        }
    }
    d
}

/// Build and check streams side by side (each logs in and looks up its
/// topic, which can take the cluster timeout); all of them, or an error
/// naming every one that failed.
fn prepare_all(bound: Vec<(StreamSpec, Connection)>) -> Result<Vec<Prepared>> {
    let results: Vec<(String, Result<Prepared, crate::stream::error::StreamError>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = bound
            .into_iter()
            .map(|(spec, conn)| {
                let name = spec.name.clone();
                (name, scope.spawn(move || Prepared::new(spec, &conn)))
            })
            .collect();
        handles
            .into_iter()
            .map(|(name, h)| {
                let r = h.join().unwrap_or_else(|_| {
                    Err(crate::stream::error::StreamError::Panicked("while preparing the stream".into()))
                });
                (name, r)
            })
            .collect()
    });
    let mut ready = Vec::new();
    let mut errors = Vec::new();
    for (name, r) in results {
        match r {
            Ok(p) => ready.push(p),
            Err(e) => errors.push(format!("stream {name:?}: {e}")),
        }
    }
    if errors.is_empty() {
        Ok(ready)
    } else {
        Err(anyhow!("{}", errors.join("\n")))
    }
}

/// Load, validate and apply a new config; on any error keep the old one
/// and every running stream untouched.
pub(super) fn reload_config(shared: &Shared, current: Arc<Loaded>, opts: &RunOptions) -> Arc<Loaded> {
    let mut st = shared.reload.lock().unwrap().clone();
    st.reloads += 1;
    st.last_reload_at = Some(now_secs());
    st.last_reload_time = Some(crate::output::rfc3339(now_secs() * 1000));
    tracing::info!("reloading the configuration");
    let result = (|| -> Result<(Loaded, Vec<String>)> {
        let new = crate::check::load(&opts.load).map_err(|e| anyhow!("{e}"))?;
        // Bound even when the file is unchanged: a SIGHUP after a password
        // rotation changes only the credentials' fingerprint.
        let bound = stream::specs(&new, opts.only.as_deref(), &opts.night)?
            .into_iter()
            .map(|s| stream::bind(&new, s))
            .collect::<Result<Vec<_>>>()?;
        let all: Vec<StreamSpec> = bound.iter().map(|(s, _)| s.clone()).collect();
        shared.set_declared(&all);
        // Streams another instance of the group owns are not started here.
        let bound: Vec<_> = bound.into_iter().filter(|(s, _)| shared.owns(s)).collect();
        let old: BTreeMap<String, StreamSpec> =
            shared.streams.lock().unwrap().iter().map(|(k, v)| (k.clone(), v.stream.spec.clone())).collect();
        let specs: Vec<StreamSpec> = bound.iter().map(|(s, _)| s.clone()).collect();
        let d = diff(&old, &specs);
        if d.added.is_empty() && d.changed.is_empty() && d.removed.is_empty() {
            return Ok((new, vec![]));
        }
        if opts.apply {
            apply_cluster_changes(&new)?;
        }
        // 1. Build and check what will start, while the old streams run.
        let to_start: Vec<_> =
            bound.into_iter().filter(|(s, _)| d.added.contains(&s.name) || d.changed.contains(&s.name)).collect();
        let prepared = prepare_all(to_start)?;
        // 2. Stop what goes away or is replaced (bounded). They stay in
        // /status while they deliver what is in flight.
        let leaving_names: Vec<&String> = d.removed.iter().chain(&d.changed).collect();
        let deadline = Instant::now() + Duration::from_secs(current.config.run.shutdown_timeout_s);
        for n in &leaving_names {
            if let Some(s) = shared.streams.lock().unwrap().get(*n) {
                s.stream.request_stop(deadline);
            }
        }
        while Instant::now() < deadline + STOP_GRACE {
            let streams = shared.streams.lock().unwrap();
            if leaving_names.iter().all(|n| streams.get(*n).map_or(true, |s| s.stream.is_finished())) {
                break;
            }
            drop(streams);
            std::thread::sleep(Duration::from_millis(20));
        }
        // 3. Swap them for their replacements.
        let leaving: Vec<RunningStream> = {
            let mut streams = shared.streams.lock().unwrap();
            leaving_names.iter().filter_map(|n| streams.remove(*n)).map(|s| s.stream).collect()
        };
        for s in stop_all(leaving, deadline, shared.stall_after()) {
            tracing::info!(stream = %s.name, state = ?s.state, unconfirmed = s.stats.unconfirmed, "stopped for reload");
        }
        let start = start_options(&new, opts);
        {
            // Checked under the map's lock: the stop takes the map under it.
            let mut streams = shared.streams.lock().unwrap();
            if shared.stopping.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(anyhow!("the run is stopping: the new streams are not started"));
            }
            for p in prepared {
                let rs = RunningStream::start_prepared(p, start);
                streams.insert(rs.spec.name.clone(), Slot::new(rs));
            }
        }
        let mut changes = Vec::new();
        changes.extend(d.added.iter().map(|n| format!("+ stream {n}")));
        changes.extend(d.changed.iter().map(|n| format!("~ stream {n}")));
        changes.extend(d.removed.iter().map(|n| format!("- stream {n}")));
        Ok((new, changes))
    })();
    let next = match result {
        Ok((new, changes)) => {
            if !changes.is_empty() {
                tracing::info!(changes = ?changes, "config reloaded");
            }
            st.config_hash = new.hash.clone();
            st.loaded_at = now_secs();
            st.loaded_at_time = crate::output::rfc3339(now_secs() * 1000);
            st.last_reload_error = None;
            st.last_reload_changes = changes;
            Arc::new(new)
        }
        Err(e) => {
            tracing::error!("config reload rejected, streams keep running unchanged:\n{e:#}");
            st.last_reload_error = Some(format!("{e:#}"));
            current
        }
    };
    *shared.reload.lock().unwrap() = st;
    next
}

/// `--apply`: create what the new config needs (never delete unless prune).
fn apply_cluster_changes(new: &Loaded) -> Result<()> {
    let admin = crate::cluster::connect_admin(&new.config, &new.base_dir)?;
    let plan = crate::plan::make_plan(new, &admin, false)?;
    if !plan.blockers.is_empty() {
        return Err(anyhow!("the cluster cannot be changed as fink.toml asks: {}", plan.blockers.join("; ")));
    }
    if plan.is_empty() {
        return Ok(());
    }
    // A reload never blocks on a replica move: it goes on in the background.
    let report = crate::plan::apply::execute(&plan, new, &admin, false, &|o| {
        tracing::info!(change = %o.change, ok = o.ok, error = ?o.error, "apply");
    })?;
    if report.failed() > 0 {
        return Err(anyhow!("apply failed for {} change(s); old streams keep running", report.failed()));
    }
    crate::plan::wait_converged(new, &admin, new.config.prune, Duration::from_secs(60), &|_| {})?;
    Ok(())
}

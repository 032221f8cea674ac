//! `fink state show [STREAM]` and `fink state reset STREAM --to-start|--to-end`:
//! each stream's committed progress (the state topic with exactly-once, the
//! local checkpoint with at-least-once).

use std::process::ExitCode;

use anyhow::{anyhow, bail, Result};
use serde::Serialize;

use super::Ctx;
use crate::config::Loaded;
use crate::output;
use crate::stream::checkpoint::Progress;
use crate::stream::{self, state, StreamSpec};

#[derive(Serialize)]
struct Row {
    stream: String,
    /// `None`: never committed.
    files_done: Option<u64>,
    /// Folders folded into a fixed-size record (done and quiet).
    sealed_folders: usize,
    /// Done files recorded one by one (in folders still active).
    open_files: usize,
    /// Files partly read, with the rows done.
    in_progress: Vec<(String, u64)>,
    /// Done files that changed after they were published (path, or
    /// `FOLDER/` when a sealed folder cannot say which), with when.
    changed_after_publish: Vec<(String, u64)>,
    committed_at_ms: Option<u64>,
    /// The instance that committed last.
    committed_by: Option<String>,
    /// The live instance that owns the stream now (exactly-once).
    running_on: Option<String>,
    /// Where the progress lives.
    store: String,
}

struct View {
    exactly_once: bool,
    progress: Vec<(StreamSpec, Result<Option<Progress>, String>)>,
    members: Vec<state::Member>,
    partitions: i32,
}

fn view(l: &Loaded, only: Option<&str>, night: &stream::night::Night) -> Result<View> {
    let specs = stream::specs(l, only, night)?;
    let run = &l.config.run;
    if !run.exactly_once() {
        let progress = specs
            .into_iter()
            .map(|s| {
                let p = if s.checkpoint_path.exists() {
                    Progress::load(&s.checkpoint_path, &s.name).map(Some)
                } else {
                    Ok(None)
                };
                (s, p)
            })
            .collect();
        return Ok(View { exactly_once: false, progress, members: vec![], partitions: 0 });
    }
    let conn = crate::cluster::user_connection(l, None)?;
    let reader = state::Reader::new(&conn, &run.group).map_err(|e| anyhow!(e))?;
    let partitions = reader.partitions(&run.state_topic).map_err(|e| anyhow!(e))?;
    let all: Vec<i32> = (0..partitions).collect();
    let timeout = crate::stream::sink::TRANSACTION_TIMEOUT + std::time::Duration::from_secs(15);
    let records = reader.read(&run.state_topic, &all, None, timeout).map_err(|e| anyhow!(e))?;
    let members = reader.members(&run.state_topic).unwrap_or_else(|e| {
        tracing::warn!("{e}");
        vec![]
    });
    let progress = specs
        .into_iter()
        .map(|s| {
            let p = match state::progress_of(&records, &run.state_key(&stream::progress_name(&s.name, &s.night))) {
                state::Found::Nothing => Ok(None),
                state::Found::Progress(p) => Ok(Some(*p)),
                state::Found::Corrupt(e) => Err(e),
            };
            (s, p)
        })
        .collect();
    Ok(View { exactly_once: true, progress, members, partitions })
}

fn owner(v: &View, l: &Loaded, spec: &StreamSpec) -> Option<String> {
    if !v.exactly_once {
        return None;
    }
    let key = l.config.run.state_key(&stream::progress_name(&spec.name, &spec.night));
    let p = state::partition_for(&key, v.partitions);
    v.members.iter().find(|m| m.partitions.contains(&p)).map(|m| m.instance.clone())
}

pub fn show(ctx: &Ctx, only: Option<String>) -> Result<ExitCode> {
    let night = ctx.night.clone();
    let l = crate::loaded_or_return!(ctx);
    let v = view(&l, only.as_deref(), &night)?;
    let store = if v.exactly_once {
        format!("state topic {}", l.config.run.state_topic)
    } else {
        "local checkpoint".to_string()
    };
    let mut rows = Vec::new();
    let mut bad = false;
    for (s, p) in &v.progress {
        let running_on = owner(&v, &l, s);
        let mut row = Row {
            stream: s.name.clone(),
            files_done: None,
            sealed_folders: 0,
            open_files: 0,
            in_progress: vec![],
            changed_after_publish: vec![],
            committed_at_ms: None,
            committed_by: None,
            running_on,
            store: store.clone(),
        };
        match p {
            Ok(Some(p)) => {
                row.files_done = Some(p.files_done);
                row.sealed_folders = p.sealed_folders();
                row.open_files = p.open_files();
                row.in_progress = p.partial.iter().map(|(k, v)| (k.clone(), *v)).collect();
                row.changed_after_publish = p.changed.iter().map(|(k, v)| (k.clone(), *v)).collect();
                row.committed_at_ms = (p.committed_at_ms > 0).then_some(p.committed_at_ms);
                row.committed_by = p.owner.clone();
            }
            Ok(None) => {}
            Err(e) => {
                bad = true;
                eprintln!(
                    "stream {:?}: its progress is unreadable ({e}); reset it with `fink state reset {} --to-start|--to-end`",
                    s.name, s.name
                );
            }
        }
        rows.push(row);
    }
    let code = if bad { ExitCode::from(1) } else { ExitCode::SUCCESS };
    if ctx.json() {
        output::print_json(&rows)?;
        return Ok(code);
    }
    let mut t =
        output::table(&["stream", "files done", "folders", "in progress", "changed", "last commit", "running on"]);
    for r in &rows {
        let inprog = r.in_progress.iter().map(|(f, n)| format!("{f} ({n} rows)")).collect::<Vec<_>>().join("\n");
        t.add_row(vec![
            r.stream.clone(),
            r.files_done.map(|n| n.to_string()).unwrap_or_else(|| "never committed".into()),
            format!("{} sealed, {} files open", r.sealed_folders, r.open_files),
            inprog,
            match r.changed_after_publish.len() {
                0 => String::new(),
                n => format!("{n} (see --output json)"),
            },
            r.committed_at_ms
                .map(|ms| {
                    format!(
                        "{}{}",
                        output::human_time(ms),
                        r.committed_by.as_deref().map(|b| format!("\nby {b}")).unwrap_or_default()
                    )
                })
                .unwrap_or_default(),
            r.running_on.clone().unwrap_or_else(|| if v.exactly_once { "-".into() } else { String::new() }),
        ]);
    }
    println!("{t}");
    println!("progress in {store}");
    Ok(code)
}

pub fn reset(ctx: &Ctx, name: String, to_start: bool, to_end: bool) -> Result<ExitCode> {
    let night = ctx.night.clone();
    let l = crate::loaded_or_return!(ctx);
    if to_start == to_end {
        bail!("say where to: --to-start (publish everything again) or --to-end (skip what is there now)");
    }
    let v = view(&l, Some(&name), &night)?;
    let spec = v.progress.first().map(|(s, _)| s.clone());
    if let Some(on) = spec.as_ref().and_then(|s| owner(&v, &l, s)) {
        eprintln!(
            "stream {name:?} is running on instance {on}: stop every `fink run` of group {:?} first (or remove the stream \
             from their fink.toml), then reset it",
            l.config.run.group
        );
        return Ok(ExitCode::from(1));
    }
    if !v.exactly_once {
        let addr = crate::supervisor::status_addr(&l);
        if !addr.is_empty()
            && crate::supervisor::fetch_status(&addr).is_ok_and(|b| b.contains(&format!("\"name\": \"{name}\"")))
        {
            eprintln!("stream {name:?} is running in the `fink run` on {addr}: stop it first, then reset it");
            return Ok(ExitCode::from(1));
        }
    }
    let (spec, _) = v.progress.into_iter().next().ok_or_else(|| anyhow!("no stream named {name:?}"))?;
    let mut p = Progress::new(&name);
    let listed_at = stream::now_ms();
    if to_end {
        let store = stream::store::Store::open(&spec.source).map_err(|e| anyhow!("{e}"))?;
        let files = store.list(spec.format).map_err(|e| anyhow!("listing {}: {e}", spec.source.display()))?;
        for f in &files {
            p.mark_done(&f.rel, f.identity());
        }
    }
    p.committed_at_ms = listed_at;
    p.owner = Some(format!("fink state reset ({})", stream::instance_id()));
    let run = &l.config.run;
    match &spec.txn {
        Some(t) => {
            let conn = crate::cluster::user_connection(&l, Some(&spec.user))?;
            state::write_progress(&conn, &t.id, &t.state_topic, v.partitions, &t.state_key, &p)
                .map_err(|e| anyhow!(e))?;
        }
        None => p.save(&spec.checkpoint_path)?,
    }
    let what = if to_end {
        format!("to the end: {} file(s) there now are skipped", p.files_done)
    } else {
        "to the start: every alert is published again".to_string()
    };
    let store = if run.exactly_once() { format!("state topic {}", run.state_topic) } else { "local checkpoint".into() };
    if ctx.json() {
        output::print_json(
            &serde_json::json!({ "stream": name, "reset": if to_end { "end" } else { "start" }, "files_done": p.files_done }),
        )?;
    } else {
        println!("stream {name}: reset {what} ({store})");
    }
    Ok(ExitCode::SUCCESS)
}

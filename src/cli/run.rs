//! `fink run` (its closing summary) and `fink status` (a running one's
//! streams, from its /status endpoint).

use std::process::ExitCode;

use anyhow::Result;

use super::Ctx;
use crate::output;
use crate::stream::runner::State;
use crate::supervisor::{self, Status};

#[allow(clippy::too_many_arguments)]
pub fn run(
    ctx: &Ctx,
    only: Option<String>,
    until_idle: bool,
    apply: bool,
    no_progress: bool,
    exit_after: Option<std::time::Duration>,
) -> Result<ExitCode> {
    use std::io::IsTerminal;
    let loaded = crate::loaded_or_return!(ctx);
    let opts = supervisor::RunOptions {
        load: ctx.load_options(),
        only,
        until_idle,
        apply,
        progress: !no_progress && std::io::stderr().is_terminal(),
        watch_config: !until_idle,
        night: ctx.night.clone(),
        exit_after,
    };
    crate::sys::limit_malloc_arenas();
    let started = std::time::Instant::now();
    let summary = supervisor::run(loaded, opts)?;
    let secs = started.elapsed().as_secs_f64();
    let unconfirmed: u64 = summary.iter().map(|s| s.stats.unconfirmed).sum();
    let failed = summary.iter().filter(|s| s.failed()).count();
    if ctx.json() {
        output::print_json(&serde_json::json!({ "elapsed_secs": secs, "streams": summary }))?;
    } else {
        // The topic under its stream: side by side, two names of up to 40
        // characters left the numbers a few columns to wrap into, digit
        // by digit, in a log (120 columns).
        let mut t = output::table(&[
            "stream\ntopic",
            "read",
            "published",
            "filtered",
            "errors",
            "quarantined",
            "unconfirmed",
            "MB",
            "source MB",
            "alerts/s",
            "state",
        ]);
        for s in &summary {
            let st = &s.stats;
            let state = match &s.state {
                State::Failed(e) => output::red(&format!("failed: {e}")),
                other => state_name(other).to_string(),
            };
            t.add_row(vec![
                format!("{}\n{}", s.name, s.topic),
                st.read.to_string(),
                st.published.to_string(),
                st.filtered.to_string(),
                st.errors.to_string(),
                st.quarantined.to_string(),
                st.unconfirmed.to_string(),
                format!("{:.1}", st.bytes as f64 / 1e6),
                format!("{:.1}", st.source_bytes as f64 / 1e6),
                format!("{:.0}", st.read as f64 / secs.max(1e-3)),
                state,
            ]);
        }
        // Numbers are never cut; their headers wrap instead.
        output::keep_whole(&mut t, &[0], 48);
        output::keep_whole(&mut t, &(1..11).collect::<Vec<_>>(), 40);
        println!("{t}");
        println!("{:.1}s", secs);
    }
    if unconfirmed > 0 {
        eprintln!(
            "{} {unconfirmed} alert(s) were still unconfirmed at the shutdown deadline; they will be sent again on the next start",
            output::yellow("warning:")
        );
    }
    crate::sys::exit_now(if failed == 0 && unconfirmed == 0 { 0 } else { 1 })
}

pub fn status(ctx: &Ctx, addr: Option<String>) -> Result<ExitCode> {
    let addr = match addr {
        Some(a) => a,
        None => match ctx.load() {
            Ok(l) => supervisor::status_addr(&l),
            Err(_) => crate::config::RunConfig::default().metrics_addr,
        },
    };
    let body = supervisor::fetch_status(&addr)?;
    let st: Status = serde_json::from_str(&body)
        .map_err(|e| anyhow::anyhow!("{addr} answered, but not with a fink run status: {e}"))?;
    // Health-check friendly: 1 when a stream has failed or is stalled.
    let code = if st.healthy() { ExitCode::SUCCESS } else { ExitCode::from(1) };
    if ctx.json() {
        println!("{}", body.trim_end());
        return Ok(code);
    }
    print!("{}", render_status(&st, crate::stream::now_ms() / 1000));
    Ok(code)
}

/// `fink status` as text: a table of streams, then notes on stalled and
/// failed ones and on the config.
pub fn render_status(st: &Status, now_secs: u64) -> String {
    use std::fmt::Write;
    let mut t = output::table(&[
        "stream",
        "topic",
        "state",
        "read",
        "published",
        "backlog files",
        "latency p50/p98 (10 min)",
        "uptime",
    ]);
    let mut notes = Vec::new();
    for s in &st.streams {
        let state = match (&s.state, s.stalled_secs) {
            (_, Some(secs)) => {
                let why = s.client_error.as_deref().unwrap_or("none reported");
                notes.push(format!(
                    "{} {}: {} alerts in flight, no delivery report for {secs} s; last client error: {why}",
                    output::red("stalled:"),
                    s.name,
                    s.stats.in_flight
                ));
                output::red(&format!("stalled {secs}s"))
            }
            (State::Failed(e), None) => {
                let retry = s.restart_in_secs.map(|r| format!("; restart in {r} s")).unwrap_or_default();
                notes.push(format!("{} {}: {e} ({} restart(s){retry})", output::red("failed:"), s.name, s.restarts));
                output::red("failed")
            }
            (other, None) => state_name(other).to_string(),
        };
        t.add_row(vec![
            s.name.clone(),
            s.topic.clone(),
            state,
            s.stats.read.to_string(),
            s.stats.published.to_string(),
            s.stats.backlog_files.to_string(),
            match (s.stats.latency_p50_s, s.stats.latency_p98_s) {
                (Some(p50), Some(p98)) => format!("{p50:.2}s / {p98:.2}s"),
                _ => "-".into(),
            },
            duration(s.uptime_secs),
        ]);
    }
    output::keep_whole(&mut t, &[0, 1, 2], 40);
    let mut out = format!("{t}\n");
    for n in notes {
        let _ = writeln!(out, "{n}");
    }
    let c = &st.config;
    let _ = now_secs;
    let _ = writeln!(
        out,
        "config {} loaded {} ({} reloads{})",
        c.config_hash.get(..12).unwrap_or(&c.config_hash),
        output::human_time(c.loaded_at * 1000),
        c.reloads,
        c.last_reload_at.map(|t| format!(", last {}", output::human_time(t * 1000))).unwrap_or_default()
    );
    if let Some(e) = &c.last_reload_error {
        let _ = writeln!(out, "{} {e}", output::red("last reload failed:"));
    }
    if let Some(g) = &st.group {
        let _ = writeln!(out, "group {} ({}), this instance {}:", g.group, st.delivery, g.instance);
        let mut t = output::table(&["instance", "host", "streams", "config"]);
        for i in &g.instances {
            let hash = i.config_hash.as_deref().map(|h| h.get(..12).unwrap_or(h).to_string()).unwrap_or_default();
            let hash = if g.config_mismatch.contains(&i.instance) {
                output::yellow(&format!("{hash} (differs)"))
            } else {
                hash
            };
            // A long list would make a row wider than the terminal: the
            // names are under `--output json`.
            let streams =
                if i.streams.len() <= 3 { i.streams.join(", ") } else { format!("{} streams", i.streams.len()) };
            t.add_row(vec![i.instance.clone(), i.host.clone(), streams, hash]);
        }
        let _ = writeln!(out, "{t}");
        if !g.config_mismatch.is_empty() {
            let _ = writeln!(
                out,
                "{} instance(s) {} run another config than this one: deploy the same fink.toml everywhere",
                output::yellow("warning:"),
                g.config_mismatch.join(", ")
            );
        }
    } else if !st.elsewhere.is_empty() {
        let _ = writeln!(out, "run by other instances: {}", st.elsewhere.join(", "));
    }
    out
}

fn state_name(s: &State) -> &'static str {
    match s {
        State::Starting => "starting",
        State::Running => "running",
        State::Idle => "idle",
        State::Stopped => "stopped",
        State::Failed(_) => "failed",
    }
}

/// 3725 s -> "1h2m5s".
fn duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

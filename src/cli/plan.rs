//! `fink plan` and `fink apply`: render the plan, ask, report outcomes.

use std::process::ExitCode;

use anyhow::Result;

use super::Ctx;
use crate::output::{self, Format};
use crate::{cluster, plan};

pub fn plan(ctx: &Ctx, prune: bool, detailed: bool, out: Option<&std::path::Path>) -> Result<ExitCode> {
    let loaded = crate::loaded_or_return!(ctx);
    let admin = cluster::connect_admin(&loaded.config, &loaded.base_dir)?;
    let p = plan::make_plan(&loaded, &admin, prune)?;
    match ctx.output {
        Format::Json => println!("{}", plan::render::json(&p)?),
        Format::Table => print!("{}", plan::render::human(&p)),
    }
    if let Some(path) = out {
        std::fs::write(path, plan::render::json(&p)?)?;
        eprintln!("Plan saved to {}; run `fink apply {}` to execute exactly it.", path.display(), path.display());
    }
    Ok(if !p.blockers.is_empty() {
        ExitCode::from(1)
    } else if detailed && !p.is_empty() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

pub fn apply(
    ctx: &Ctx,
    saved: Option<&std::path::Path>,
    auto_approve: bool,
    prune: bool,
    no_wait: bool,
) -> Result<ExitCode> {
    use std::io::IsTerminal;
    let loaded = crate::loaded_or_return!(ctx);
    let saved_plan = saved.map(plan::load_saved).transpose()?;
    let admin = cluster::connect_admin(&loaded.config, &loaded.base_dir)?;
    let prune = saved_plan.as_ref().map(|p| p.prune).unwrap_or(prune);
    let fresh = plan::make_plan(&loaded, &admin, prune)?;
    if let Some(saved) = &saved_plan {
        let drift = plan::drift(saved, &fresh);
        if !drift.is_empty() {
            eprintln!("{} the saved plan is stale; nothing was changed. What drifted:", output::red("error:"));
            for d in &drift {
                eprintln!("  - {d}");
            }
            eprintln!("Run `fink plan` again.");
            return Ok(ExitCode::from(1));
        }
    }
    let json = ctx.json();
    if !json {
        print!("{}", plan::render::human(&fresh));
    }
    if !fresh.blockers.is_empty() {
        if json {
            println!("{}", plan::render::json(&fresh)?);
        }
        eprintln!("{} nothing was changed: fix the problems above in fink.toml first.", output::red("error:"));
        return Ok(ExitCode::from(1));
    }
    if fresh.is_empty() {
        if json {
            println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "plan": fresh, "outcomes": [] }))?);
        }
        return Ok(ExitCode::SUCCESS);
    }
    // A saved plan was reviewed when it was made; otherwise ask.
    if saved_plan.is_none() && !auto_approve {
        if !std::io::stdin().is_terminal() {
            eprintln!("{} refusing to apply without confirmation: no terminal to ask on. Review with `fink plan`, then pass --auto-approve.", output::red("error:"));
            return Ok(ExitCode::from(1));
        }
        eprint!("\nApply these changes to {}? Only 'yes' is accepted: ", loaded.config.cluster.bootstrap.join(","));
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if answer.trim() != "yes" {
            eprintln!("Apply cancelled; nothing was changed.");
            return Ok(ExitCode::from(1));
        }
    }
    let report = plan::apply::execute(&fresh, &loaded, &admin, !no_wait, &|o| {
        if !json {
            let mark = if o.ok { output::green("done") } else { output::red("FAILED") };
            match &o.error {
                None => eprintln!("  {mark} {} {}", plan::symbol(o.action), o.change),
                Some(e) => eprintln!("  {mark} {} {}: {e}", plan::symbol(o.action), o.change),
            }
        }
    })?;
    // The controller has accepted the changes; brokers serve them once their
    // metadata catches up (seconds, for thousands of records). Wait for it,
    // so a plan right after an apply says "No changes."
    let mut pending = None;
    if report.failed() == 0 {
        pending = plan::wait_converged(&loaded, &admin, prune, std::time::Duration::from_secs(120), &|n| {
            if !json {
                eprintln!("  waiting for the brokers to show the last {n} change(s)...");
            }
        })?;
    }
    if json {
        let v = serde_json::json!({ "plan": fresh, "outcomes": report.outcomes, "not_yet_visible": pending });
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if let Some(n) = pending {
        let msg = format!(
            "Apply complete: {} change(s) made; {n} not yet visible on the brokers after 120s (run `fink plan` to check).",
            report.done()
        );
        println!("{}", output::yellow(&msg));
    } else if report.failed() == 0 {
        println!("{}", output::green(&format!("Apply complete: {} change(s) made.", report.done())));
    } else {
        println!(
            "{}",
            output::red(&format!(
                "Apply incomplete: {} change(s) made, {} failed (listed above); run `fink apply` again once fixed.",
                report.done(),
                report.failed()
            ))
        );
    }
    Ok(if report.failed() == 0 { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

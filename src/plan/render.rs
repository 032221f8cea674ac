//! Rendering a plan for people (Terraform-like) and machines (JSON).

use std::fmt::Write as _;

use super::{Action, Change, Plan};
use crate::output::{bold, green, red, yellow};

fn painted_symbol(a: Action) -> String {
    match a {
        Action::Create => green("+"),
        Action::Update => yellow("~"),
        Action::Delete => red("-"),
    }
}

fn show(v: &Option<super::Value>) -> String {
    v.as_ref().map(|v| v.to_string()).unwrap_or_else(|| "(none)".into())
}

fn change(out: &mut String, c: &Change) {
    let _ = writeln!(out, "  {} {}", painted_symbol(c.action), bold(&c.title()));
    let width = c.fields.iter().map(|f| f.name.len()).max().unwrap_or(0);
    for f in &c.fields {
        let line = match (c.action, f.is_secret()) {
            // Secrets: only markers, never values.
            (_, true) => match (&f.before, &f.after) {
                (None, _) => "(sensitive)".to_string(),
                (Some(_), Some(super::Value::Differs)) => "(differs)".to_string(),
                _ => "(sensitive) -> (sensitive)".to_string(),
            },
            (Action::Create, false) => show(&f.after),
            (Action::Delete, false) => show(&f.before),
            (Action::Update, false) => match (&f.before, &f.after) {
                (None, a) => format!("(unset) -> {}", show(a)),
                (b, None) => format!("{} -> (removed)", show(b)),
                (b, a) => format!("{} -> {}", show(b), show(a)),
            },
        };
        let _ = writeln!(out, "      {:width$}  {line}", f.name, width = width);
    }
}

/// The human plan, ending with the summary line.
pub fn human(plan: &Plan) -> String {
    let mut out = String::new();
    for b in &plan.blockers {
        let _ = writeln!(out, "{} {b}", red("cannot apply:"));
    }
    if !plan.blockers.is_empty() {
        out.push('\n');
    }
    if plan.changes.is_empty() {
        let _ = writeln!(out, "No changes. The cluster matches fink.toml.");
    } else {
        let _ = writeln!(out, "fink will make these changes:\n");
        for c in &plan.changes {
            change(&mut out, c);
        }
        out.push('\n');
    }
    for n in &plan.notes {
        let _ = writeln!(out, "{} {n}", yellow("note:"));
    }
    if !plan.changes.is_empty() {
        let s = plan.summary();
        let _ = writeln!(
            out,
            "{}",
            bold(&format!("Plan: {} to add, {} to change, {} to destroy.", s.add, s.change, s.destroy))
        );
    }
    out
}

pub fn json(plan: &Plan) -> anyhow::Result<String> {
    let mut v = serde_json::to_value(plan)?;
    v["summary"] = serde_json::to_value(plan.summary())?;
    Ok(serde_json::to_string_pretty(&v)?)
}

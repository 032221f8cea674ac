//! `fink filter test`: what each filter keeps on alert files.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{anyhow, Result};

use super::Ctx;
use crate::output;
use crate::stream::filter::Filter;
use crate::stream::filter_test::FilterReport;

pub fn filter_test(ctx: &Ctx, data: &Path, stream_name: Option<&str>, expr: Option<&str>) -> Result<ExitCode> {
    let mut python = Vec::new();
    let mut python_spec = None;
    let filters: Vec<Filter> = match expr {
        Some(e) => vec![Filter::compile("expr", e).map_err(|e| anyhow!("--expr: {e}"))?],
        None => {
            let loaded = crate::loaded_or_return!(ctx);
            python_spec = Some(crate::stream::python_spec(&loaded));
            match stream_name {
                Some(s) => {
                    let spec = crate::stream::specs(&loaded, Some(s), &ctx.night)?.remove(0);
                    python = spec.python.clone();
                    spec.compile_filters()?
                }
                None => {
                    let lib = crate::stream::library(&loaded.config);
                    let names: Vec<String> = loaded.config.filters.keys().cloned().collect();
                    python = crate::stream::python_filters(&loaded, &names)?;
                    loaded
                        .config
                        .filters
                        .iter()
                        .filter(|(_, f)| f.python.is_none())
                        .map(|(n, f)| {
                            Filter::compile_in(n, &f.expr, f.on_null, &lib).map_err(|e| anyhow!("filter {n:?}: {e}"))
                        })
                        .collect::<Result<_>>()?
                }
            }
        }
    };
    if filters.is_empty() && python.is_empty() {
        anyhow::bail!("no filters to test: declare [filter.NAME] or pass --expr");
    }
    // A remote --data URL uses the config's store settings when there is one.
    let loaded = ctx.load().ok();
    let mut report = crate::stream::filter_test::run_in(loaded.as_ref(), &filters, data)?;
    if let (false, Some(spec)) = (python.is_empty(), &python_spec) {
        report.extend(crate::stream::filter_test::run_python(loaded.as_ref(), spec, &python, data)?);
    }
    if ctx.json() {
        output::print_json(&report)?;
    } else {
        print(&report);
    }
    Ok(if report.iter().any(|r| r.errors > 0) { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

pub fn print(reports: &[FilterReport]) {
    let mut t = output::table(&["filter", "on null", "alerts", "kept", "errors", "kept ids"]);
    for r in reports {
        let ids = if r.kept_ids.len() > 8 {
            format!("{}, ... ({} more)", r.kept_ids[..8].join(", "), r.kept_ids.len() - 8)
        } else {
            r.kept_ids.join(", ")
        };
        t.add_row(vec![
            r.filter.clone(),
            r.on_null.to_string(),
            r.alerts.to_string(),
            r.kept.to_string(),
            r.errors.to_string(),
            ids,
        ]);
    }
    println!("{t}");
    let mut fields: BTreeMap<String, (String, usize)> = BTreeMap::new();
    for r in reports {
        for f in &r.fields {
            fields.insert(f.field.clone(), (f.status.clone(), f.nulls));
        }
        for e in &r.first_errors {
            println!("{} {}: {e}", output::red("error:"), r.filter);
        }
    }
    let mut ft = output::table(&["field", "status", "null in"]);
    for (k, (s, n)) in fields {
        ft.add_row(vec![k, s, n.to_string()]);
    }
    println!("{ft}");
}

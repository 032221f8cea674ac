//! `fink validate`: the config's errors with file:line:column, or a summary.

use std::process::ExitCode;

use anyhow::Result;

use super::Ctx;
use crate::output;
use crate::stream;

pub fn validate(ctx: &Ctx, data: Option<&std::path::Path>) -> Result<ExitCode> {
    let mut result = ctx.load();
    if let (Ok(l), Some(d)) = (&result, data) {
        let format = stream::source::detect_format(d)
            .ok_or_else(|| anyhow::anyhow!("{}: no Parquet or Avro alert files", d.display()))?;
        let file = if d.is_file() { d.to_path_buf() } else { stream::source::list_files(d, format)?.remove(0) };
        let reader = stream::source::open(&file, format, 16).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        let errs = crate::check::against_schema(l, &reader.schema, &format!("sample {}", file.display()));
        if !errs.is_empty() {
            result = Err(crate::config::ConfigErrors(errs));
        }
    }
    if ctx.json() {
        let (valid, errors, warnings) = match &result {
            Ok(l) => (true, vec![], l.warnings.clone()),
            Err(e) => (false, e.0.clone(), vec![]),
        };
        output::print_json(&serde_json::json!({ "valid": valid, "errors": errors, "warnings": warnings }))?;
        return Ok(if valid { ExitCode::SUCCESS } else { ExitCode::from(1) });
    }
    match result {
        Ok(l) => {
            for w in &l.warnings {
                eprintln!("{}", output::yellow(&w.to_string()));
            }
            let c = &l.config;
            let profile = l.profile.as_deref().map(|p| format!(" + profiles/{p}.toml")).unwrap_or_default();
            println!(
                "{}{}: valid ({} topics, {} users, {} ACL entries, {} filters, {} streams)",
                l.config_path.display(),
                profile,
                c.topics.len(),
                c.users.len(),
                c.acls.len(),
                c.filters.len(),
                c.streams.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(errs) => {
            for d in &errs.0 {
                eprintln!("{}", output::red(&d.to_string()));
            }
            eprintln!("{} error(s)", errs.0.len());
            Ok(ExitCode::from(1))
        }
    }
}

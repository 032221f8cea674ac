//! `fink validate`: the config's errors with file:line:column, or a summary.

use std::process::ExitCode;

use anyhow::Result;

use super::Ctx;
use crate::output;
use crate::stream;

pub fn validate(ctx: &Ctx, data: Option<&std::path::Path>) -> Result<ExitCode> {
    let mut result = ctx.load();
    if let (Ok(l), Some(d)) = (&result, data) {
        let (store, format, inputs) = stream::data_inputs(Some(l), d)?;
        let input = inputs.first().ok_or_else(|| anyhow::anyhow!("{}: no alert files", d.display()))?;
        let how = stream::source::How::all(format, 16);
        let reader = stream::source::open_file(&store, input, &how)
            .map_err(|e| anyhow::anyhow!("{}: {e}", store.url_of(&input.rel)))?;
        let sample = format!("sample {}", store.url_of(&input.rel));
        let mut errs = crate::check::against_schema(l, &reader.schema, &sample);
        errs.extend(crate::check::python(l, Some((&reader.schema, &sample))));
        if !errs.is_empty() {
            result = Err(crate::config::ConfigErrors(errs));
        }
    } else if let Ok(l) = &result {
        let errs = crate::check::python(l, None);
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

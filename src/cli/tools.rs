//! `fink simulate` and `fink import-rules`: tools that need no cluster.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{anyhow, Result};

use crate::output;
use crate::simulate::SimulateOptions;

pub fn simulate(opts: SimulateOptions) -> Result<ExitCode> {
    let bar = super::progress_bar(opts.alerts as u64);
    let files = crate::simulate::simulate(&opts, &|n| bar.set_position(n as u64))?;
    bar.finish_and_clear();
    println!("Wrote {} alerts in {} Parquet file(s) under {}.", opts.alerts, files.len(), opts.out.display());
    Ok(ExitCode::SUCCESS)
}

pub fn import_rules(file: &Path, name: Option<String>, topic: &str, source: &str) -> Result<ExitCode> {
    let xml = std::fs::read_to_string(file).map_err(|e| anyhow!("{}: {e}", file.display()))?;
    match crate::rules::import(&xml) {
        Ok(imported) => {
            let default =
                file.file_stem().map(|s| s.to_string_lossy().replace(['-', '.'], "_")).unwrap_or("imported".into());
            let name = name.unwrap_or(default);
            print!("{}", crate::rules::to_toml(&imported, &name, topic, source, &file.display().to_string()));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{} {}: {e}", output::red("error:"), file.display());
            Ok(ExitCode::from(1))
        }
    }
}

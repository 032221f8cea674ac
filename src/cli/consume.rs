//! `fink consume TOPIC`: decoded alerts as a table, JSON lines, or (with
//! `--follow`) table rows printed as they arrive.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Result;

use super::Ctx;
use crate::output;
use crate::stream::consume::{self, path, ConsumeOptions};

pub fn consume(ctx: &Ctx, user: Option<&str>, opts: &ConsumeOptions, columns: &[String]) -> Result<ExitCode> {
    let loaded = crate::loaded_or_return!(ctx);
    let conn = crate::cluster::user_connection(&loaded, user)?;
    let mut out = std::io::stdout().lock();
    if ctx.json() {
        consume::consume(&conn, opts, &mut |alert| Ok(writeln!(out, "{alert}")?))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut cols: Vec<String> = columns.to_vec();
    if opts.follow {
        // A table cannot be laid out before its last row: print each row
        // as it comes, in fixed-width columns under one header line.
        let mut header = false;
        consume::consume(&conn, opts, &mut |alert| {
            if cols.is_empty() {
                cols = default_columns(Some(&alert));
            }
            if !std::mem::replace(&mut header, true) {
                writeln!(out, "{}", line(cols.iter().map(String::as_str)))?;
            }
            writeln!(
                out,
                "{}",
                line(cols.iter().map(|c| cell(path(&alert, c))).collect::<Vec<_>>().iter().map(String::as_str))
            )?;
            Ok(out.flush()?)
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut rows = Vec::new();
    consume::consume(&conn, opts, &mut |alert| {
        rows.push(alert);
        Ok(())
    })?;
    if cols.is_empty() {
        cols = default_columns(rows.first());
    }
    let headers: Vec<&str> = cols.iter().map(String::as_str).collect();
    let mut tab = output::table(&headers);
    for r in &rows {
        tab.add_row(cols.iter().map(|c| cell(path(r, c))).collect::<Vec<_>>());
    }
    if rows.is_empty() {
        println!("No messages in {}.", opts.topic);
    } else {
        println!("{tab}");
        println!("{} alert(s) from {}", rows.len(), opts.topic);
    }
    Ok(ExitCode::SUCCESS)
}

/// Cells padded to a fixed width (by characters, not bytes).
fn line<'a>(cells: impl Iterator<Item = &'a str>) -> String {
    cells.map(|c| format!("{c:<20}")).collect::<Vec<_>>().join(" ").trim_end().to_string()
}

/// A JSON value as a table cell: long text cut (at a character boundary).
pub fn cell(v: Option<&serde_json::Value>) -> String {
    const MAX: usize = 40;
    match v {
        None | Some(serde_json::Value::Null) => "-".into(),
        Some(serde_json::Value::String(s)) => {
            if s.chars().count() > MAX {
                format!("{}...", s.chars().take(MAX - 3).collect::<String>())
            } else {
                s.clone()
            }
        }
        Some(serde_json::Value::Array(a)) => format!("[{} items]", a.len()),
        Some(serde_json::Value::Object(_)) => "{...}".into(),
        Some(other) => other.to_string(),
    }
}

fn default_columns(first: Option<&serde_json::Value>) -> Vec<String> {
    let preferred = ["objectId", "candid", "candidate.jd", "candidate.magpsf", "candidate.rb", "cdsxmatch"];
    let Some(first) = first else { return vec!["objectId".into()] };
    let mut cols: Vec<String> = preferred.iter().filter(|c| path(first, c).is_some()).map(|c| c.to_string()).collect();
    if cols.is_empty() {
        if let Some(obj) = first.as_object() {
            cols =
                obj.iter().filter(|(_, v)| !v.is_object() && !v.is_array()).map(|(k, _)| k.clone()).take(6).collect();
        }
    }
    cols
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_multibyte_text_is_cut_at_a_character() {
        let s = "é☄".repeat(30);
        let c = cell(Some(&serde_json::Value::String(s)));
        assert_eq!(c.chars().count(), 40);
        assert!(c.ends_with("...") && c.starts_with("é☄"), "{c}");
        assert_eq!(cell(Some(&serde_json::json!("ZTF21aaxtctv"))), "ZTF21aaxtctv");
        assert_eq!(line(["ü", "x"].into_iter()), format!("ü{} x", " ".repeat(19)));
    }
}

//! Output conventions shared by every command: tables for people, JSON for
//! machines, colour only on a terminal and never with NO_COLOR.

use std::io::IsTerminal;

use comfy_table::presets::UTF8_BORDERS_ONLY;
use comfy_table::{ContentArrangement, Table};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum Format {
    /// Human-readable tables and text.
    #[default]
    Table,
    /// JSON for scripts.
    Json,
}

/// Colour is on for a terminal unless NO_COLOR is set (https://no-color.org).
pub fn color_enabled() -> bool {
    std::env::var_os("NO_COLOR").map(|v| v.is_empty()).unwrap_or(true) && std::io::stdout().is_terminal()
}

pub fn paint(text: &str, ansi: &str) -> String {
    if color_enabled() {
        format!("\x1b[{ansi}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

pub fn green(t: &str) -> String {
    paint(t, "32")
}
pub fn yellow(t: &str) -> String {
    paint(t, "33")
}
pub fn red(t: &str) -> String {
    paint(t, "31")
}
pub fn bold(t: &str) -> String {
    paint(t, "1")
}

pub fn table(headers: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY).set_content_arrangement(ContentArrangement::Dynamic).set_header(headers.to_vec());
    if !color_enabled() {
        t.force_no_tty();
    }
    // Piped output has no terminal width: wrap at 120 columns rather than
    // letting one long cell (a list of streams, a config) make a row of
    // hundreds.
    if t.width().is_none() {
        t.set_width(120);
    }
    t
}

/// Keep these columns' cells whole (names, topics: up to `max` wide) when
/// a table must wrap to fit; the numbers and headers beside them wrap first.
pub fn keep_whole(t: &mut Table, columns: &[usize], max: u16) {
    for &i in columns {
        let widest = t
            .column_cells_iter(i)
            .flatten()
            .map(|c| c.content().lines().map(|l| l.chars().count()).max().unwrap_or(0))
            .max()
            .unwrap_or(0)
            .min(max as usize) as u16
            // The boundary counts the cell's padding, one space each side.
            + 2;
        if let Some(col) = t.column_mut(i) {
            col.set_constraint(comfy_table::ColumnConstraint::LowerBoundary(comfy_table::Width::Fixed(widest)));
        }
    }
}

pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// `2026-11-28 23:10:39 UTC (3 min ago)` for a time in ms since the epoch.
pub fn human_time(ms: u64) -> String {
    if ms == 0 {
        return "never".into();
    }
    let secs = (ms / 1000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = crate::stream::night::civil_from_days(days);
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let ago = now - secs;
    let rel = match ago {
        i64::MIN..=-1 => "in the future".to_string(),
        0..=59 => format!("{ago} s ago"),
        60..=3599 => format!("{} min ago", ago / 60),
        3600..=86_399 => format!("{} h ago", ago / 3600),
        _ => format!("{} days ago", ago / 86_400),
    };
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC ({rel})", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// `2026-11-28T23:10:39Z` (RFC 3339, UTC) for a time in ms since the epoch.
pub fn rfc3339(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = crate::stream::night::civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod time_tests {
    #[test]
    fn rfc3339_in_utc() {
        assert_eq!(super::rfc3339(1_795_906_239_000), "2026-11-28T22:50:39Z");
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn utc_dates() {
        assert!(
            super::human_time(1_795_906_239_000).starts_with("2026-11-28 "),
            "{}",
            super::human_time(1_795_906_239_000)
        );
        assert!(super::human_time(951_782_400_000).starts_with("2000-02-29 00:00:00 UTC"));
        assert_eq!(super::human_time(0), "never");
    }
}

#[cfg(test)]
mod table_tests {
    #[test]
    fn a_long_cell_wraps_within_120_columns() {
        let mut t = super::table(&["instance", "streams"]);
        let streams: Vec<String> = (0..40).map(|i| format!("stream_number_{i}")).collect();
        t.add_row(vec!["host:1234".to_string(), streams.join(", ")]);
        let text = t.to_string();
        assert!(text.lines().all(|l| l.chars().count() <= 120), "{text}");
        assert!(text.contains("stream_number_39"), "{text}");
    }
}

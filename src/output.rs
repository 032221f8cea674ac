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
    t
}

pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

//! Presentation: what each command prints (tables, JSON, progress) and its
//! exit code. `main.rs` parses arguments and calls one function here; the
//! work itself is done by the domain modules.

pub mod cluster;
pub mod consume;
pub mod docs;
pub mod filter_test;
pub mod plan;
pub mod run;
pub mod state;
pub mod tools;
pub mod validate;
pub mod views;

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{ConfigErrors, LoadOptions, Loaded};
use crate::output::Format;

/// The global options every command shares.
pub struct Ctx {
    pub config: PathBuf,
    pub profile: Option<String>,
    pub output: Format,
    /// What `{night}` in source paths and topic names stands for.
    pub night: crate::stream::night::Night,
}

impl Ctx {
    pub fn load_options(&self) -> LoadOptions {
        let mut opts = LoadOptions::new(&self.config);
        opts.profile = self.profile.clone();
        opts.night = Some(self.night.to_string());
        opts
    }

    pub fn load(&self) -> Result<Loaded, ConfigErrors> {
        crate::check::load(&self.load_options())
    }

    /// The config, its warnings logged; or its errors printed and exit 1.
    pub fn load_or_exit(&self) -> Result<Loaded, ExitCode> {
        match self.load() {
            Ok(l) => {
                for w in &l.warnings {
                    tracing::warn!("{w}");
                }
                Ok(l)
            }
            Err(errs) => {
                eprintln!("{errs}");
                Err(ExitCode::from(1))
            }
        }
    }

    pub fn json(&self) -> bool {
        self.output == Format::Json
    }
}

/// Load the config or return the exit code its errors call for.
#[macro_export]
macro_rules! loaded_or_return {
    ($ctx:expr) => {
        match $ctx.load_or_exit() {
            Ok(l) => l,
            Err(code) => return Ok(code),
        }
    };
}

/// A progress bar on a terminal, hidden otherwise.
pub fn progress_bar(len: u64) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let b = indicatif::ProgressBar::new(len);
    b.set_style(indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} eta {eta}").unwrap());
    b
}

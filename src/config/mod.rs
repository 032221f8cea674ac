//! Loading `fink.toml` (+ profile + environment) into a validated [`Config`],
//! with every error located at file:line:column.

pub mod include;
pub mod model;
mod secret;
pub mod span;
pub mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Toml};
use figment::Figment;

pub use model::*;
pub use secret::{Secret, SecretValue};
use span::{KeyPath, Seg, SourceDoc};

/// A problem found in the configuration, with where it was declared.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Diagnostic {
    /// File as the user named it (relative paths stay relative).
    pub file: Option<String>,
    pub line: Option<usize>,
    pub column: Option<usize>,
    /// Dotted key path, e.g. `topic[1].partitions`.
    pub key: Option<String>,
    pub message: String,
    pub severity: Severity,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}")?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
                if let Some(col) = self.column {
                    write!(f, ":{col}")?;
                }
            }
            f.write_str(": ")?;
        }
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Errors that stop loading; always at least one.
#[derive(Debug)]
pub struct ConfigErrors(pub Vec<Diagnostic>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Where to load from.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub config: PathBuf,
    pub profile: Option<String>,
    /// Take `FINK_SECTION__KEY` overrides from the environment.
    pub env_overrides: bool,
    /// The night (`YYYYMMDD`) topic names with `{night}` are for
    /// (`fink_ztf_{night}`); `None`: they stay as written.
    pub night: Option<String>,
}

impl LoadOptions {
    pub fn new(config: impl Into<PathBuf>) -> Self {
        LoadOptions { config: config.into(), profile: None, env_overrides: true, night: None }
    }
}

struct SourceFile {
    shown: String,
    doc: SourceDoc,
    /// For an included file: the item indexes it added.
    slots: Option<include::Slots>,
}

/// A loaded, validated configuration and where it came from.
#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    /// Directory that relative paths in the config are resolved against.
    pub base_dir: PathBuf,
    pub config_path: PathBuf,
    pub profile: Option<String>,
    pub profile_path: Option<PathBuf>,
    /// Files named by `include`, in the order their items were added.
    pub includes: Vec<Include>,
    /// Non-fatal findings (inline passwords, ...).
    pub warnings: Vec<Diagnostic>,
    /// sha256 of the merged, normalised config (for status/reload).
    pub hash: String,
}

impl Loaded {
    /// Resolve a path written in the config relative to the config's folder.
    pub fn path(&self, p: &str) -> PathBuf {
        self.base_dir.join(p)
    }
}

/// The top-level keys an environment variable may override:
/// `FINK_<KEY>` for a scalar, `FINK_<SECTION>__<KEY>` for a table's key.
/// Every other `FINK_*` variable is not config: FINK_CONFIG, FINK_PROFILE
/// and FINK_LOG drive fink itself, and secrets may be read from any name
/// (`password = { env = "FINK_ADMIN_PASSWORD" }`).
/// How long a stream's Kafka transaction may stay open before the broker
/// aborts it (and the longest an alert may wait for a broker).
pub const TRANSACTION_TIMEOUT_S: u64 = 120;

pub const ENV_OVERRIDE_ROOTS: &[&str] = &["cluster", "local", "defaults", "run", "prune"];

/// `FINK_X__Y` variables that look like overrides of a key fink does not
/// let the environment set: said, never silently ignored.
fn ignored_env_overrides(vars: impl Iterator<Item = String>) -> Vec<String> {
    vars.filter_map(|k| {
        let rest = k.strip_prefix("FINK_")?;
        let (root, _) = rest.split_once("__")?;
        (!ENV_OVERRIDE_ROOTS.iter().any(|r| root.eq_ignore_ascii_case(r))).then_some(k)
    })
    .collect()
}

pub fn valid_profile_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn read_source(path: &Path, shown: &str) -> Result<SourceFile, Diagnostic> {
    let bytes = std::fs::read(path).map_err(|e| Diagnostic {
        file: Some(shown.to_string()),
        line: None,
        column: None,
        key: None,
        message: format!("cannot read: {}", e.kind().to_string().replace("entity not found", "not found")),
        severity: Severity::Error,
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        // TOML is UTF-8: say where the first byte that is not is.
        let at = e.utf8_error().valid_up_to();
        let good = &e.as_bytes()[..at];
        let line = good.iter().filter(|b| **b == b'\n').count() + 1;
        let line_start = good.iter().rposition(|b| *b == b'\n').map(|p| p + 1).unwrap_or(0);
        let column = std::str::from_utf8(&good[line_start..]).map(|l| l.chars().count() + 1).unwrap_or(1);
        Diagnostic {
            file: Some(shown.to_string()),
            line: Some(line),
            column: Some(column),
            key: None,
            message: format!(
                "not UTF-8 text: byte 0x{:02x} at byte offset {at} (TOML files are UTF-8)",
                e.as_bytes()[at]
            ),
            severity: Severity::Error,
        }
    })?;
    let starts = span::line_starts(&text);
    SourceDoc::parse(text).map(|doc| SourceFile { shown: shown.to_string(), doc, slots: None }).map_err(|e| {
        let (line, column) =
            e.span().map(|s| span::position(&starts, s.start)).map(|(l, c)| (Some(l), Some(c))).unwrap_or((None, None));
        Diagnostic {
            file: Some(shown.to_string()),
            line,
            column,
            key: None,
            message: format!("TOML syntax error: {}", e.message().trim()),
            severity: Severity::Error,
        }
    })
}

/// Load and validate. All errors found are returned together.
pub fn load(opts: &LoadOptions) -> Result<Loaded, ConfigErrors> {
    let config_path = opts.config.clone();
    let shown = config_path.display().to_string();
    let base_dir = config_path
        .parent()
        .map(|p| if p.as_os_str().is_empty() { Path::new(".") } else { p })
        .unwrap_or(Path::new("."))
        .to_path_buf();

    let mut sources = Vec::new();
    let mut errors = Vec::new();
    match read_source(&config_path, &shown) {
        Ok(s) => sources.push(s),
        Err(d) => errors.push(d),
    }

    let mut profile_path = None;
    if let Some(name) = &opts.profile {
        if !valid_profile_name(name) {
            errors.push(plain_error(format!(
                "invalid profile name {name:?}: use letters, digits, '-' and '_' (it names profiles/{name}.toml)"
            )));
        } else {
            let p = base_dir.join("profiles").join(format!("{name}.toml"));
            if !p.exists() {
                let available = list_profiles(&base_dir);
                errors.push(plain_error(format!(
                    "profile {name:?} not found: no file {} (available: {})",
                    p.display().to_string().trim_start_matches("./"),
                    if available.is_empty() { "none".to_string() } else { available.join(", ") }
                )));
            } else {
                let shown =
                    if base_dir == Path::new(".") { format!("profiles/{name}.toml") } else { p.display().to_string() };
                match read_source(&p, &shown) {
                    Ok(s) => sources.push(s),
                    Err(d) => errors.push(d),
                }
                profile_path = Some(p);
            }
        }
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }

    // Profile values replace the base file's (arrays are replaced whole).
    let mut fig = Figment::from(Toml::file_exact(&config_path));
    if let Some(p) = &profile_path {
        fig = fig.merge(Toml::file_exact(p));
    }
    if opts.env_overrides {
        fig = fig.merge(
            Env::prefixed("FINK_")
                .filter(|k| {
                    let root = k.as_str().split("__").next().unwrap_or("");
                    ENV_OVERRIDE_ROOTS.iter().any(|r| root.eq_ignore_ascii_case(r))
                })
                .split("__"),
        );
    }

    let mut config: Config = match fig.extract() {
        Ok(c) => c,
        Err(e) => {
            let diags = e.into_iter().map(|err| figment_diag(err, &sources)).collect();
            return Err(ConfigErrors(diags));
        }
    };
    let includes = include::load(&mut config, &config_path, &mut sources).map_err(ConfigErrors)?;
    if let Some(night) = &opts.night {
        // A topic per night (`fink_ztf_{night}`): named for this night
        // everywhere a topic name appears. Source paths are expanded per
        // stream, which also keeps their progress per night.
        let x = |s: &mut String| *s = validate::expand_night(s, night);
        config.topics.iter_mut().for_each(|t| x(&mut t.name));
        config.streams.iter_mut().for_each(|s| x(&mut s.topic));
        config.acls.iter_mut().for_each(|a| a.topic.iter_mut().for_each(x));
    }

    let located = validate::validate(&config, &base_dir);
    let mut errs = Vec::new();
    let mut warnings = Vec::new();
    if opts.env_overrides {
        for var in ignored_env_overrides(std::env::vars().map(|(k, _)| k)) {
            warnings.push(Diagnostic {
                file: Some("environment (FINK_*)".into()),
                line: None,
                column: None,
                key: None,
                message: format!(
                    "{var} is ignored: only these sections can be overridden from the environment: {}",
                    ENV_OVERRIDE_ROOTS.join(", ")
                ),
                severity: Severity::Warning,
            });
        }
    }
    for (path, severity, message) in located {
        let message = place_refs(&sources, message);
        let d = locate(&sources, &path, severity, message);
        match severity {
            Severity::Error => errs.push(d),
            Severity::Warning => warnings.push(d),
        }
    }
    if !errs.is_empty() {
        return Err(ConfigErrors(errs));
    }
    let hash = config_hash(&config, &sources);
    let includes = includes
        .into_iter()
        .zip(sources.iter().filter(|s| s.slots.is_some()))
        .map(|(path, s)| Include { path, shown: s.shown.clone(), slots: s.slots.clone().unwrap_or_default() })
        .collect();
    Ok(Loaded { config, base_dir, config_path, profile: opts.profile.clone(), profile_path, includes, warnings, hash })
}

/// An included file, as loaded.
#[derive(Debug, Clone)]
pub struct Include {
    pub path: PathBuf,
    shown: String,
    slots: include::Slots,
}

/// Replace `@@array/index@@` references in a message by the file:line of
/// that item's name.
fn place_refs(sources: &[SourceFile], message: String) -> String {
    let mut out = String::new();
    let mut rest = message.as_str();
    while let Some(start) = rest.find("@@") {
        let Some(len) = rest[start + 2..].find("@@") else { break };
        let inner = &rest[start + 2..start + 2 + len];
        let placed = inner.split_once('/').and_then(|(array, i)| {
            let path = vec![Seg::Key(array.to_string()), Seg::Index(i.parse().ok()?), Seg::Key("name".into())];
            let d = locate(sources, &path, Severity::Error, String::new());
            Some(format!("{}:{}", d.file?, d.line?))
        });
        out.push_str(&rest[..start]);
        out.push_str(&placed.unwrap_or_else(|| inner.to_string()));
        rest = &rest[start + 2 + len + 2..];
    }
    out.push_str(rest);
    out
}

fn config_hash(config: &Config, sources: &[SourceFile]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    // The merged model plus the raw text: env-resolved secrets are not part of it.
    h.update(serde_json::to_vec(config).unwrap_or_default());
    for s in sources {
        h.update(s.doc.doc.raw().as_bytes());
    }
    let out = h.finalize();
    out.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

pub fn list_profiles(base_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(base_dir.join("profiles"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().to_string();
                    name.strip_suffix(".toml").map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn plain_error(message: String) -> Diagnostic {
    Diagnostic { file: None, line: None, column: None, key: None, message, severity: Severity::Error }
}

/// Find the file that declares `path` (the profile wins, it was merged last).
fn locate(sources: &[SourceFile], path: &KeyPath, severity: Severity, message: String) -> Diagnostic {
    locate_with(sources, path, severity, message, false)
}

fn locate_with(
    sources: &[SourceFile],
    path: &KeyPath,
    severity: Severity,
    message: String,
    key_pos: bool,
) -> Diagnostic {
    for src in sources.iter().rev() {
        // An included file holds its own items under its own indexes.
        let local;
        let path_here = match &src.slots {
            Some(slots) => match slots.local(path) {
                Some(p) => {
                    local = p;
                    &local
                }
                None => continue,
            },
            None => path,
        };
        let found = if key_pos { src.doc.locate_key(path_here) } else { src.doc.locate(path_here) };
        if let Some((line, column)) = found {
            return Diagnostic {
                file: Some(src.shown.clone()),
                line: Some(line),
                column: Some(column),
                key: Some(span::render(path)),
                message,
                severity,
            };
        }
    }
    Diagnostic {
        file: sources.first().map(|s| s.shown.clone()),
        line: None,
        column: None,
        key: Some(span::render(path)),
        message,
        severity,
    }
}

fn figment_diag(err: figment::Error, sources: &[SourceFile]) -> Diagnostic {
    use figment::error::Kind;
    let mut path = span::from_strings(&err.path);
    // Unknown keys point at the key itself, other errors at the value.
    let mut key_pos = false;
    let message = match &err.kind {
        Kind::UnknownField(field, expected) => {
            if path.last() != Some(&Seg::Key(field.clone())) {
                path.push(Seg::Key(field.clone()));
            }
            key_pos = true;
            let hint = if expected.is_empty() {
                String::new()
            } else {
                format!(" (expected one of: {})", expected.join(", "))
            };
            format!("unknown key `{field}`{hint}")
        }
        Kind::MissingField(field) => format!("missing required key `{field}`"),
        Kind::Message(m) if m.contains("untagged enum Secret") => {
            "a password must be a string, { env = \"VAR\" } or { file = \"path\" }".to_string()
        }
        Kind::Message(m) if m.contains("untagged enum ConfigValue") => {
            "a topic config value must be a string, number or boolean".to_string()
        }
        other => shorten(&other.to_string()),
    };
    let key = span::render(&path);
    let message = if key.is_empty() { message } else { format!("{key}: {message}") };
    // An environment override has no file to point at.
    let from_env = err.metadata.as_ref().map(|m| m.name.contains("environment")).unwrap_or(false);
    if from_env {
        return Diagnostic {
            file: Some("environment (FINK_*)".into()),
            line: None,
            column: None,
            key: Some(key),
            message,
            severity: Severity::Error,
        };
    }
    let mut d = locate_with(sources, &path, Severity::Error, message, key_pos);
    if let Some(figment::Source::File(p)) = err.metadata.as_ref().and_then(|m| m.source.as_ref()) {
        if let Some(src) = sources.iter().find(|s| Path::new(&s.shown) == p || p.ends_with(&s.shown)) {
            if let Some((line, column)) = if key_pos { src.doc.locate_key(&path) } else { src.doc.locate(&path) } {
                d.file = Some(src.shown.clone());
                d.line = Some(line);
                d.column = Some(column);
            }
        }
    }
    d
}

/// A message quoting a value can be as long as the value (a 1 MB string):
/// keep its head and tail.
fn shorten(m: &str) -> String {
    const MAX: usize = 300;
    if m.len() <= MAX {
        return m.to_string();
    }
    let head: String = m.chars().take(MAX - 60).collect();
    let tail: String = m.chars().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect();
    format!("{head}... ({} bytes) ...{tail}", m.len())
}

impl Loaded {
    /// Places diagnostics of checks made after loading at file:line:column
    /// in the config file or profile; the files are read once, here.
    pub fn locator(&self) -> Locator {
        let mut sources = Vec::new();
        let mut files = vec![self.config_path.clone()];
        files.extend(self.profile_path.clone());
        for f in files {
            if let Ok(s) = read_source(&f, f.display().to_string().trim_start_matches("./")) {
                sources.push(s);
            }
        }
        for inc in &self.includes {
            if let Ok(mut s) = read_source(&inc.path, &inc.shown) {
                s.slots = Some(inc.slots.clone());
                sources.push(s);
            }
        }
        Locator { sources }
    }
}

/// See [`Loaded::locator`].
pub struct Locator {
    sources: Vec<SourceFile>,
}

impl Locator {
    pub fn locate(&self, path: &KeyPath, severity: Severity, message: String) -> Diagnostic {
        locate(&self.sources, path, severity, message)
    }
}

#[cfg(test)]
mod tests;

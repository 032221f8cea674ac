//! `include = ["conf/fink/*.toml"]`: topics, users, ACLs, filters, streams
//! and constants declared in other files, added to the deployment's own.
//!
//! Included items come after the file's own, in include order (files of a
//! glob in name order). Each included file keeps the range of item indexes
//! it added, so a diagnostic on `stream[14]` is placed at its own line in
//! its own file.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use super::model::{Config, Included};
use super::span::{self, KeyPath, Seg};
use super::{read_source, Diagnostic, Severity, SourceFile};

/// The item indexes an included file added, per array.
#[derive(Debug, Clone, Default)]
pub struct Slots {
    pub ranges: BTreeMap<&'static str, Range<usize>>,
}

impl Slots {
    /// `path` as written in the included file, if the item is one of its.
    pub fn local(&self, path: &KeyPath) -> Option<KeyPath> {
        match path.as_slice() {
            [Seg::Key(k), Seg::Index(i), rest @ ..] => {
                let r = self.ranges.get(k.as_str())?;
                r.contains(i).then(|| {
                    let mut p = vec![Seg::Key(k.clone()), Seg::Index(i - r.start)];
                    p.extend(rest.iter().cloned());
                    p
                })
            }
            // Keyed items (filters, constants) are found by name.
            _ => Some(path.clone()),
        }
    }
}

/// A file name pattern: `*` any run of characters, `?` one (`globset`).
fn name_matches(pattern: &str, name: &str) -> bool {
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map(|g| g.compile_matcher().is_match(name))
        .unwrap_or(pattern == name)
}

/// The files a pattern names, relative to `dir`. Wildcards are allowed in
/// the file name (`conf/fink/*.toml`); a pattern with none must exist.
fn expand(dir: &Path, pattern: &str) -> Result<Vec<PathBuf>, String> {
    let full = dir.join(pattern);
    let name = full.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    if !name.contains(['*', '?']) {
        return if full.is_file() { Ok(vec![full]) } else { Err(format!("included file {pattern:?} not found")) };
    }
    let parent = full.parent().unwrap_or(Path::new("."));
    if parent.to_string_lossy().contains(['*', '?']) {
        return Err(format!("include {pattern:?}: wildcards are allowed in the file name only"));
    }
    let mut out: Vec<PathBuf> = std::fs::read_dir(parent)
        .map_err(|e| format!("include {pattern:?}: cannot list {}: {e}", parent.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.file_name().is_some_and(|n| name_matches(&name, &n.to_string_lossy())))
        .collect();
    out.sort();
    Ok(out)
}

/// Parts an included file may not declare: the deployment's own.
const OWN: &[&str] = &["cluster", "local", "run", "prune", "ignore", "scope", "defaults"];

/// Read every included file (and theirs), append their items to `config`,
/// and add them to `sources`. Returns the files read, for hot reload.
pub(super) fn load(
    config: &mut Config,
    root: &Path,
    sources: &mut Vec<SourceFile>,
) -> Result<Vec<PathBuf>, Vec<Diagnostic>> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    let root_dir = root.parent().map(Path::to_path_buf).unwrap_or_default();
    let patterns = std::mem::take(&mut config.include);
    let mut stack = vec![root.canonicalize().unwrap_or_else(|_| root.to_path_buf())];
    walk(config, &root_dir, &patterns, &mut stack, sources, &mut files, &mut errors, &root.display().to_string());
    config.include = patterns;
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(errors)
    }
}

#[allow(clippy::too_many_arguments)]
fn walk(
    config: &mut Config,
    dir: &Path,
    patterns: &[String],
    stack: &mut Vec<PathBuf>,
    sources: &mut Vec<SourceFile>,
    files: &mut Vec<PathBuf>,
    errors: &mut Vec<Diagnostic>,
    from: &str,
) {
    let error = |message: String| Diagnostic {
        file: Some(from.to_string()),
        line: None,
        column: None,
        key: Some("include".into()),
        message,
        severity: Severity::Error,
    };
    for pattern in patterns {
        let paths = match expand(dir, pattern) {
            Ok(p) => p,
            Err(e) => {
                errors.push(locate_include(sources, from, pattern).unwrap_or_else(|| error(e.clone())).with(e));
                continue;
            }
        };
        for path in paths {
            let canonical = path.canonicalize().unwrap_or_else(|_| path.clone());
            if stack.contains(&canonical) {
                let chain: Vec<String> = stack.iter().chain([&canonical]).map(|p| p.display().to_string()).collect();
                let msg = format!("include cycle: {}", chain.join(" -> "));
                errors.push(locate_include(sources, from, pattern).unwrap_or_else(|| error(msg.clone())).with(msg));
                continue;
            }
            if files.contains(&canonical) {
                continue; // included twice by different patterns: once is enough
            }
            let shown = path.display().to_string().trim_start_matches("./").to_string();
            let src = match read_source(&path, &shown) {
                Ok(s) => s,
                Err(d) => {
                    errors.push(d);
                    continue;
                }
            };
            let mut bad_part = false;
            for own in OWN {
                if let Some((line, column)) = src.doc.locate_key(&[Seg::Key(own.to_string())]) {
                    bad_part = true;
                    errors.push(Diagnostic {
                        file: Some(shown.clone()),
                        line: Some(line),
                        column: Some(column),
                        key: Some(own.to_string()),
                        message: format!(
                            "an included file may not declare `{own}`: it belongs to the deployment's own fink.toml"
                        ),
                        severity: Severity::Error,
                    });
                }
            }
            if bad_part {
                continue;
            }
            let inc: Included = match toml::from_str(src.doc.doc.raw()) {
                Ok(i) => i,
                Err(e) => {
                    let (line, column) = e
                        .span()
                        .map(|s| src.doc.position(s.start))
                        .map(|(l, c)| (Some(l), Some(c)))
                        .unwrap_or((None, None));
                    errors.push(Diagnostic {
                        file: Some(shown.clone()),
                        line,
                        column,
                        key: None,
                        message: e.message().trim().to_string(),
                        severity: Severity::Error,
                    });
                    continue;
                }
            };
            files.push(canonical.clone());
            let mut slots = Slots::default();
            let mut add = |name: &'static str, start: usize, n: usize| {
                slots.ranges.insert(name, start..start + n);
            };
            add("topic", config.topics.len(), inc.topics.len());
            add("user", config.users.len(), inc.users.len());
            add("acl", config.acls.len(), inc.acls.len());
            add("stream", config.streams.len(), inc.streams.len());
            config.topics.extend(inc.topics);
            config.users.extend(inc.users);
            config.acls.extend(inc.acls);
            config.streams.extend(inc.streams);
            let mut dup = Vec::new();
            merge_named(&mut config.filters, inc.filters, "filter", &mut dup);
            merge_named(&mut config.consts, inc.consts, "const", &mut dup);
            let mut src = src;
            src.slots = Some(slots);
            for path in dup {
                let here = src.doc.locate_key(&path);
                let before = sources.iter().find_map(|s| s.doc.locate_key(&path).map(|p| (s.shown.clone(), p)));
                let (line, column) = here.map(|(l, c)| (Some(l), Some(c))).unwrap_or((None, None));
                let first = before.map(|(f, (l, _))| format!("{f}:{l}")).unwrap_or_else(|| "another file".into());
                errors.push(Diagnostic {
                    file: Some(shown.clone()),
                    line,
                    column,
                    key: Some(span::render(&path)),
                    message: format!("{} is declared twice: here and at {first}", span::render(&path)),
                    severity: Severity::Error,
                });
            }
            let nested = inc.include;
            let nested_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            sources.push(src);
            stack.push(canonical);
            walk(config, &nested_dir, &nested, stack, sources, files, errors, &shown);
            stack.pop();
        }
    }
}

/// Add `from`'s named items to `into`; names already there are duplicates.
fn merge_named<V>(into: &mut BTreeMap<String, V>, from: BTreeMap<String, V>, kind: &str, dup: &mut Vec<KeyPath>) {
    for (k, v) in from {
        match into.entry(k) {
            std::collections::btree_map::Entry::Occupied(e) => {
                dup.push(vec![Seg::Key(kind.into()), Seg::Key(e.key().clone())])
            }
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(v);
            }
        }
    }
}

/// The `include` entry naming `pattern` in the file shown as `from`.
fn locate_include(sources: &[SourceFile], from: &str, pattern: &str) -> Option<Diagnostic> {
    let src = sources.iter().find(|s| s.shown == from)?;
    let list = src.doc.doc.get("include")?.as_array()?;
    let idx = list.iter().position(|v| v.as_str() == Some(pattern))?;
    let (line, column) = src.doc.locate(&[Seg::Key("include".into()), Seg::Index(idx)])?;
    Some(Diagnostic {
        file: Some(from.to_string()),
        line: Some(line),
        column: Some(column),
        key: Some(format!("include[{idx}]")),
        message: String::new(),
        severity: Severity::Error,
    })
}

impl Diagnostic {
    fn with(mut self, message: String) -> Diagnostic {
        self.message = message;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_name_patterns() {
        assert!(name_matches("*.toml", "ztf.toml"));
        assert!(name_matches("z?f.toml", "ztf.toml"));
        assert!(!name_matches("*.toml", "ztf.toml.bak"));
        assert!(name_matches("*", ""));
    }
}

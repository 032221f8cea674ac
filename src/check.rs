//! Checks of a loaded config that need more than the config: compiling its
//! CEL filters, and matching its fields against sample data. This layer
//! sits above `config` (a leaf: loading and schema checks only) and
//! `stream`.

use crate::config::span::{KeyPath, Seg};
use crate::config::{self, ConfigErrors, Diagnostic, LoadOptions, Loaded, Severity};
use crate::stream::filter::{Filter, OnNull, Use};
use crate::stream::project::{self, type_at};

/// Load the config and compile every filter; all errors together, each
/// with file:line:column.
pub fn load(opts: &LoadOptions) -> Result<Loaded, ConfigErrors> {
    let loaded = config::load(opts)?;
    let mut errors = filters(&loaded);
    errors.extend(producer_properties(&loaded));
    if errors.is_empty() {
        Ok(loaded)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Every named and inline filter compiles.
pub fn filters(loaded: &Loaded) -> Vec<Diagnostic> {
    let cfg = &loaded.config;
    let key = |k: &str| Seg::Key(k.to_string());
    let mut out: Vec<(KeyPath, String)> = Vec::new();
    let lib = crate::stream::library(cfg);
    for (name, f) in &cfg.filters {
        if f.expr.trim().is_empty() {
            continue;
        }
        if let Err(e) = Filter::compile_in(name, &f.expr, f.on_null, &lib) {
            let at = vec![key("filter"), key(name), key("expr")];
            out.push((at, format!("filter {name:?}: {e}")));
        }
    }
    for (i, s) in cfg.streams.iter().enumerate() {
        if let Some(expr) = &s.filter {
            if let Err(e) = Filter::compile_in("inline", expr, OnNull::Error, &lib) {
                let at = vec![key("stream"), Seg::Index(i), key("filter")];
                out.push((at, format!("stream {:?}: inline filter: {e}", s.name)));
            }
        }
    }
    if out.is_empty() {
        // The common case reads nothing more.
        return Vec::new();
    }
    let loc = loaded.locator();
    out.into_iter().map(|(at, msg)| loc.locate(&at, Severity::Error, msg)).collect()
}

/// Every `producer.properties` key is one librdkafka knows, with a value
/// it accepts (checked on a bare configuration, without connecting).
pub fn producer_properties(loaded: &Loaded) -> Vec<Diagnostic> {
    let key = |k: &str| Seg::Key(k.to_string());
    let mut out = Vec::new();
    for (i, s) in loaded.config.streams.iter().enumerate() {
        for (k, v) in &s.producer.properties {
            // Checked with the config itself (validate.rs).
            if config::validate::OWNED_PRODUCER_PROPERTIES.contains(&k.as_str()) {
                continue;
            }
            if let Err(e) = crate::cluster::ffi::check_producer_property(k, v) {
                let at = vec![key("stream"), Seg::Index(i), key("producer"), key("properties"), key(k)];
                out.push((at, format!("stream {:?}: producer property {k:?}: {e}", s.name)));
            }
        }
    }
    if out.is_empty() {
        return Vec::new();
    }
    let loc = loaded.locator();
    out.into_iter().map(|(at, msg)| loc.locate(&at, Severity::Error, msg)).collect()
}

/// `fink validate --data`: every field a stream selects, drops or filters
/// on must exist in the sample schema, with a type that fits its use.
pub fn against_schema(loaded: &Loaded, schema: &arrow_schema::Schema, sample: &str) -> Vec<Diagnostic> {
    let fields = schema.fields();
    let mut out = Vec::new();
    let cfg = &loaded.config;
    let loc = loaded.locator();
    let lib = crate::stream::library(cfg);
    let check_filter = |expr: &str, name: &str, on_null: OnNull, at: KeyPath, ctx: &str| -> Vec<Diagnostic> {
        let mut out = Vec::new();
        let Ok(f) = Filter::compile_in(name, expr, on_null, &lib) else { return out };
        let mut missing = std::collections::BTreeSet::new();
        for (path, usage) in f.field_uses() {
            match type_at(fields, &path) {
                Err(_) if !missing.insert(path.clone()) => {}
                Err(e) => out.push(loc.locate(&at, Severity::Error, format!("{ctx}: reads {path}: {e} ({sample})"))),
                Ok(dt) => {
                    let numeric = dt.is_numeric();
                    let text = matches!(
                        dt,
                        arrow_schema::DataType::Utf8
                            | arrow_schema::DataType::LargeUtf8
                            | arrow_schema::DataType::Utf8View
                    );
                    let bad = match usage {
                        Use::Numeric => !numeric,
                        Use::Text => !text,
                        Use::Any => false,
                    };
                    if bad {
                        let what = if usage == Use::Numeric { "a number" } else { "a string" };
                        out.push(loc.locate(
                            &at,
                            Severity::Error,
                            format!("{ctx}: compares {path} ({dt}) with {what} ({sample})"),
                        ));
                    }
                }
            }
        }
        out
    };
    for (name, f) in &cfg.filters {
        let used = cfg.streams.iter().any(|s| s.filters.contains(name));
        if used {
            out.extend(check_filter(
                &f.expr,
                name,
                f.on_null,
                vec![Seg::Key("filter".into()), Seg::Key(name.clone()), Seg::Key("expr".into())],
                &format!("filter {name:?}"),
            ));
        }
    }
    for (i, s) in cfg.streams.iter().enumerate() {
        let ctx = format!("stream {:?}", s.name);
        if let Some(expr) = &s.filter {
            out.extend(check_filter(
                expr,
                "inline",
                OnNull::Error,
                vec![Seg::Key("stream".into()), Seg::Index(i), Seg::Key("filter".into())],
                &ctx,
            ));
        }
        for (key, list) in [("select", &s.select), ("drop", &s.drop)] {
            for (j, p) in list.iter().enumerate() {
                if let Err(e) = project::check_path(fields, p) {
                    let at = vec![Seg::Key("stream".into()), Seg::Index(i), Seg::Key(key.into()), Seg::Index(j)];
                    out.push(loc.locate(&at, Severity::Error, format!("{ctx}: {key} {p:?}: {e} ({sample})")));
                }
            }
        }
    }
    out
}

/// `fink validate`: every Python filter imports in a worker of `[python]
/// interpreter`, and with a sample schema its arguments resolve to columns.
pub fn python(loaded: &Loaded, sample: Option<(&arrow_schema::Schema, &str)>) -> Vec<Diagnostic> {
    let cfg = &loaded.config;
    let names: Vec<String> = cfg.filters.iter().filter(|(_, f)| f.python.is_some()).map(|(n, _)| n.clone()).collect();
    if names.is_empty() {
        return Vec::new();
    }
    let Ok(filters) = crate::stream::python_filters(loaded, &names) else {
        // A malformed `python =` is reported by the config checks.
        return Vec::new();
    };
    let spec = crate::stream::python_spec(loaded);
    let loc = loaded.locator();
    let mut out = Vec::new();
    let empty = sample.map(|(s, _)| arrow_array::RecordBatch::new_empty(std::sync::Arc::new(s.clone())));
    for (f, (name, r)) in filters.iter().zip(crate::stream::python::check(&spec, &filters)) {
        let at = vec![Seg::Key("filter".into()), Seg::Key(name.clone()), Seg::Key("python".into())];
        match r {
            Err(e) => {
                let msg = format!("filter {name:?}: {} {e} (interpreter {})", f.describe(), spec.interpreter.display());
                out.push(loc.locate(&at, Severity::Error, msg));
            }
            Ok((params, optional)) => {
                if let (Some(batch), Some((_, what))) = (&empty, sample) {
                    if f.dataframe {
                        continue;
                    }
                    if let Err(e) = crate::stream::python::bind::arguments(batch, &params, optional, f.args.as_deref())
                    {
                        out.push(loc.locate(&at, Severity::Error, format!("filter {name:?}: {e} ({what})")));
                    }
                }
            }
        }
    }
    out
}

//! `fink filter test`: evaluate filters on alert files without Kafka and
//! report what they keep and how the fields they read look.

use std::path::Path;

use anyhow::{anyhow, Result};
use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use serde::Serialize;

use super::filter::{Filter, FilterSet, Verdict};
use super::source;

#[derive(Debug, Serialize)]
pub struct FieldReport {
    pub field: String,
    /// present (with its type), absent, or null in some alerts.
    pub status: String,
    pub nulls: usize,
}

#[derive(Debug, Serialize)]
pub struct FilterReport {
    pub filter: String,
    pub expr: String,
    /// What a null field means: "false" (as pandas) or "error".
    pub on_null: &'static str,
    pub alerts: usize,
    pub kept: usize,
    pub errors: usize,
    /// Ids of kept alerts (`objectId`, else the first scalar column).
    pub kept_ids: Vec<String>,
    pub first_errors: Vec<String>,
    pub fields: Vec<FieldReport>,
}

fn id_of(batch: &RecordBatch, row: usize) -> String {
    // Rubin alerts are told apart by their source id.
    let dia_source = batch.column_by_name("diaSource").and_then(|c| c.as_struct_opt()?.column_by_name("diaSourceId"));
    let col = batch
        .column_by_name("objectId")
        .or_else(|| batch.column_by_name("diaSourceId"))
        .or(dia_source)
        .or_else(|| {
            batch.columns().iter().find(|c| matches!(c.data_type(), DataType::Utf8 | DataType::Int64 | DataType::Int32))
        })
        .cloned();
    match col {
        Some(c) if !c.is_null(row) => match c.data_type() {
            DataType::Utf8 => c.as_string::<i32>().value(row).to_string(),
            DataType::Int64 => c.as_primitive::<arrow_array::types::Int64Type>().value(row).to_string(),
            DataType::Int32 => c.as_primitive::<arrow_array::types::Int32Type>().value(row).to_string(),
            _ => format!("row {row}"),
        },
        _ => format!("row {row}"),
    }
}

/// Fields a filter reads: its variables, and named children of structs
/// (also inside lists) under them.
fn field_report(f: &Filter, batches: &[RecordBatch]) -> Vec<FieldReport> {
    let mut out = Vec::new();
    let Some(schema) = batches.first().map(|b| b.schema()) else { return out };
    for var in &f.variables {
        let Some((idx, field)) = schema.column_with_name(var) else {
            out.push(FieldReport { field: var.clone(), status: "absent from the data".into(), nulls: 0 });
            continue;
        };
        let nulls = batches.iter().map(|b| b.column(idx).null_count()).sum();
        out.push(FieldReport {
            field: var.clone(),
            status: format!("present ({})", short_type(field.data_type())),
            nulls,
        });
        let mut dt = field.data_type().clone();
        if let DataType::List(item) | DataType::LargeList(item) = &dt {
            dt = item.data_type().clone();
        }
        if let DataType::Struct(children) = dt {
            for name in f.field_names() {
                if let Some(pos) = children.iter().position(|c| c.name() == name) {
                    let child = &children[pos];
                    let nulls = batches
                        .iter()
                        .map(|b| {
                            let col = b.column(idx);
                            match col.data_type() {
                                DataType::Struct(_) => col.as_struct().column(pos).null_count(),
                                DataType::List(_) => col.as_list::<i32>().values().as_struct().column(pos).null_count(),
                                _ => 0,
                            }
                        })
                        .sum();
                    let numeric = child.data_type().is_numeric();
                    out.push(FieldReport {
                        field: format!("{var}.{name}"),
                        status: format!(
                            "present ({}{})",
                            short_type(child.data_type()),
                            if numeric { "" } else { ", not numeric" }
                        ),
                        nulls,
                    });
                }
            }
        }
    }
    out
}

fn short_type(dt: &DataType) -> String {
    match dt {
        DataType::Struct(f) => format!("struct of {} fields", f.len()),
        DataType::List(i) | DataType::LargeList(i) => format!("list of {}", short_type(i.data_type())),
        DataType::Map(_, _) => "map".into(),
        other => other.to_string(),
    }
}

pub fn run(filters: &[Filter], data: &Path) -> Result<Vec<FilterReport>> {
    run_in(None, filters, data)
}

/// [`run`], with the config whose store settings a remote `data` URL uses.
pub fn run_in(loaded: Option<&crate::config::Loaded>, filters: &[Filter], data: &Path) -> Result<Vec<FilterReport>> {
    let (store, format, inputs) = super::data_inputs(loaded, data)?;
    let mut batches = Vec::new();
    for i in &inputs {
        let (_, b) = source::read_input(&store, i, format).map_err(|e| anyhow!("{}: {e}", store.url_of(&i.rel)))?;
        batches.extend(b);
    }
    let mut reports = Vec::new();
    for f in filters {
        let single = FilterSet::new(vec![f.clone()]);
        let mut r = FilterReport {
            filter: f.name.clone(),
            expr: f.expr.clone(),
            on_null: f.on_null.as_str(),
            alerts: 0,
            kept: 0,
            errors: 0,
            kept_ids: Vec::new(),
            first_errors: Vec::new(),
            fields: field_report(f, &batches),
        };
        for b in &batches {
            for row in 0..b.num_rows() {
                r.alerts += 1;
                match single.eval_one(&single.filters[0], b, row) {
                    Verdict::Pass => {
                        r.kept += 1;
                        r.kept_ids.push(id_of(b, row));
                    }
                    Verdict::Reject => {}
                    Verdict::Error(e) => {
                        r.errors += 1;
                        if r.first_errors.len() < 5 {
                            r.first_errors.push(format!("{}: {e}", id_of(b, row)));
                        }
                    }
                }
            }
        }
        reports.push(r);
    }
    Ok(reports)
}

/// Python filters on the same files, each on its own, in a worker of
/// `[python]`: what each keeps, and which column each argument bound to.
pub fn run_python(
    loaded: Option<&crate::config::Loaded>,
    spec: &super::python::PythonSpec,
    filters: &[super::python::PyFilter],
    data: &Path,
) -> Result<Vec<FilterReport>> {
    let (store, format, inputs) = super::data_inputs(loaded, data)?;
    // Calls on `batch_rows` rows of a file, as a stream makes them
    // (per batch of the default `[run] batch_size` when it is 0).
    let rows = if spec.batch_rows > 0 { spec.batch_rows } else { 256 };
    let mut batches = Vec::new();
    for i in &inputs {
        let (_, b) =
            source::read_input_in(&store, i, format, rows).map_err(|e| anyhow!("{}: {e}", store.url_of(&i.rel)))?;
        batches.extend(b);
    }
    let pool = super::python::Pool::new(spec.clone());
    let mut reports = Vec::new();
    for f in filters {
        let mut r = FilterReport {
            filter: f.name.clone(),
            expr: format!("python {}", f.describe()),
            on_null: "error",
            alerts: 0,
            kept: 0,
            errors: 0,
            kept_ids: Vec::new(),
            first_errors: Vec::new(),
            fields: Vec::new(),
        };
        match pool.load(f, &|| false) {
            Err(e) => {
                let tb = e.traceback().map(|t| format!("\n{t}")).unwrap_or_default();
                return Err(anyhow!("python filter {:?} ({}): {e}{tb}", f.name, f.describe()));
            }
            Ok((params, optional)) => {
                if let (Some(b), false) = (batches.first(), f.dataframe) {
                    let flat = super::python::bind::flatten(b.schema().fields());
                    for (i, p) in params.iter().enumerate() {
                        let path = match &f.args {
                            Some(a) => a.get(i).cloned().ok_or_else(|| "(default)".to_string()),
                            None => super::python::bind::resolve(p, &flat),
                        };
                        let status = match (path, i >= params.len() - optional) {
                            (Ok(path), _) => format!("bound to {path}"),
                            (Err(_), true) => "left to its default".into(),
                            (Err(_), false) if p.len() > 2 && p.starts_with('c') && p.ends_with('c') => {
                                "history then current value (c<field>c)".into()
                            }
                            (Err(e), false) => e,
                        };
                        r.fields.push(FieldReport { field: p.clone(), status, nulls: 0 });
                    }
                }
            }
        }
        for b in &batches {
            r.alerts += b.num_rows();
            match pool.call(f, b, None, &|| false) {
                Ok(super::python::Verdict { keep: mask, .. }) => {
                    for row in 0..b.num_rows() {
                        if mask.is_valid(row) && mask.value(row) {
                            r.kept += 1;
                            r.kept_ids.push(id_of(b, row));
                        }
                    }
                }
                Err(e) => {
                    r.errors += b.num_rows();
                    if r.first_errors.len() < 5 {
                        let tb = e.traceback().map(|t| format!("\n{t}")).unwrap_or_default();
                        r.first_errors.push(format!("batch of {} alerts: {e}{tb}", b.num_rows()));
                    }
                }
            }
        }
        reports.push(r);
    }
    Ok(reports)
}

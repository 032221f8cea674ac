//! Which columns a Python filter's arguments are, found as Fink's Spark
//! runner finds them (`fink_utils.spark.utils.get_cols_from_args`), and the
//! history columns (`cjdc`, `cmagpsfc`, ...) that Fink's distribution adds
//! before it runs filters (`fink_utils.spark.utils.concat_col`).

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, ListArray, RecordBatch, UInt32Array};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field, Fields, Schema};

/// (current struct, history list of structs) pairs: ZTF's and Rubin's.
const HISTORY: &[(&str, &str)] = &[("candidate", "prv_candidates"), ("diaSource", "prvDiaSources")];

/// Every column path as `return_flatten_names` lists them: top-level names,
/// then struct fields at any depth; never inside lists.
pub fn flatten(fields: &Fields) -> Vec<String> {
    fn walk(prefix: &str, fields: &Fields, out: &mut Vec<String>) {
        for f in fields {
            let path = if prefix.is_empty() { f.name().clone() } else { format!("{prefix}.{}", f.name()) };
            out.push(path.clone());
            if let DataType::Struct(children) = f.data_type() {
                walk(&path, children, out);
            }
        }
    }
    let mut out = Vec::new();
    walk("", fields, &mut out);
    out
}

/// `get_cols_from_args`: the path that ends with `arg`; among several, the
/// one whose last segment is `arg`, else the one at the root.
pub fn resolve(arg: &str, flat: &[String]) -> Result<String, String> {
    let found: Vec<&String> = flat.iter().filter(|p| p.ends_with(arg)).collect();
    match found.len() {
        0 => Err(format!("no column ends with {arg:?}")),
        1 => Ok(found[0].clone()),
        _ => {
            let exact: Vec<&&String> = found.iter().filter(|p| p.rsplit('.').next() == Some(arg)).collect();
            if exact.len() == 1 {
                return Ok(exact[0].to_string());
            }
            let root: Vec<&&&String> = exact.iter().filter(|p| !p.contains('.')).collect();
            if root.len() == 1 {
                return Ok(root[0].to_string());
            }
            Err(format!(
                "{arg:?} matches several columns ({}); name one with args = [...]",
                found.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ))
        }
    }
}

/// The column at a dotted path; through a list of structs, the list of that
/// field (`prv_candidates.magpsf`).
pub fn column_at(batch: &RecordBatch, path: &str) -> Result<ArrayRef, String> {
    let mut parts = path.split('.');
    let first = parts.next().unwrap_or_default();
    let mut col = batch.column_by_name(first).cloned().ok_or_else(|| format!("no column {first:?}"))?;
    for p in parts {
        col = field_of(&col, p).ok_or_else(|| format!("no field {p:?} in {path:?}"))?;
    }
    Ok(col)
}

fn field_of(col: &ArrayRef, name: &str) -> Option<ArrayRef> {
    match col.data_type() {
        DataType::Struct(_) => {
            let s = col.as_struct();
            let child = s.column_by_name(name)?.clone();
            // A null struct makes its fields null, as Spark reads them.
            match s.nulls() {
                Some(n) if n.null_count() > 0 => {
                    let merged = arrow_buffer::NullBuffer::union(Some(n), child.nulls());
                    let data = child.to_data().into_builder().nulls(merged).build().ok()?;
                    Some(arrow_array::make_array(data))
                }
                _ => Some(child),
            }
        }
        DataType::List(_) => {
            let l = col.as_list::<i32>();
            let inner = field_of(l.values(), name)?;
            let field = Arc::new(Field::new("item", inner.data_type().clone(), true));
            Some(Arc::new(ListArray::try_new(field, l.offsets().clone(), inner, l.nulls().cloned()).ok()?))
        }
        _ => None,
    }
}

/// `c<name>c`: the history's values of `name` followed by the current one
/// (`concat_col`, renamed as Fink's distribution renames it), or
/// `cstampDatac`: the science cutout's stamp.
fn derived(batch: &RecordBatch, arg: &str) -> Option<Result<ArrayRef, String>> {
    let name = arg.strip_prefix('c')?.strip_suffix('c')?;
    if name.is_empty() {
        return None;
    }
    if name == "stampData" && batch.column_by_name("cutoutScience").is_some() {
        return Some(column_at(batch, "cutoutScience.stampData"));
    }
    let (current, history) = HISTORY.iter().find(|(c, h)| {
        batch.column_by_name(c).is_some_and(|a| field_of(a, name).is_some()) && batch.column_by_name(h).is_some()
    })?;
    Some(concat_history(batch, current, history, name))
}

fn concat_history(batch: &RecordBatch, current: &str, history: &str, name: &str) -> Result<ArrayRef, String> {
    let now = column_at(batch, &format!("{current}.{name}"))?;
    let hist = batch.column_by_name(history).ok_or_else(|| format!("no column {history:?}"))?;
    let list = hist.as_list_opt::<i32>().ok_or_else(|| format!("{history} is not a list"))?;
    let values = field_of(list.values(), name).ok_or_else(|| format!("no field {name:?} in {history}"))?;
    let values = if values.data_type() == now.data_type() { values } else { arrow_cast(&values, now.data_type())? };
    let both = arrow_select::concat::concat(&[values.as_ref(), now.as_ref()]).map_err(|e| e.to_string())?;
    let mut idx = Vec::with_capacity(both.len());
    let mut offsets = Vec::with_capacity(batch.num_rows() + 1);
    offsets.push(0i32);
    let base = values.len() as u32;
    for row in 0..batch.num_rows() {
        if list.is_valid(row) {
            let (a, b) = (list.value_offsets()[row] as u32, list.value_offsets()[row + 1] as u32);
            idx.extend(a..b);
        }
        idx.push(base + row as u32);
        offsets.push(idx.len() as i32);
    }
    let taken = arrow_select::take::take(&both, &UInt32Array::from(idx), None).map_err(|e| e.to_string())?;
    let field = Arc::new(Field::new("item", taken.data_type().clone(), true));
    Ok(Arc::new(ListArray::try_new(field, OffsetBuffer::new(offsets.into()), taken, None).map_err(|e| e.to_string())?))
}

fn arrow_cast(a: &ArrayRef, to: &DataType) -> Result<ArrayRef, String> {
    // Histories and current values of one field share a type in ZTF and
    // Rubin; anything else is a schema fink should not guess about.
    Err(format!("history values are {} and current ones {to}", a.data_type()))
}

/// The argument columns for a filter, named as its parameters. `optional`:
/// how many trailing parameters have defaults (left out when no column
/// matches). `explicit`: `args = [...]` paths, one per parameter.
pub fn arguments(
    batch: &RecordBatch,
    params: &[String],
    optional: usize,
    explicit: Option<&[String]>,
) -> Result<RecordBatch, String> {
    let flat = flatten(batch.schema().fields());
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    let required = params.len().saturating_sub(optional);
    if let Some(paths) = explicit {
        if paths.len() < required || paths.len() > params.len() {
            return Err(format!(
                "args names {} columns; the function takes {} ({})",
                paths.len(),
                if optional > 0 { format!("{required} to {}", params.len()) } else { params.len().to_string() },
                params.join(", ")
            ));
        }
    }
    for (i, p) in params.iter().enumerate() {
        let col = match explicit {
            Some(paths) if i >= paths.len() => break,
            Some(paths) => match derived(batch, &paths[i]).filter(|_| batch.column_by_name(&paths[i]).is_none()) {
                Some(d) => d,
                None => column_at(batch, &paths[i]),
            }
            .map_err(|e| format!("argument {p} (args[{i}] = {:?}): {e}", paths[i]))?,
            None => match resolve(p, &flat) {
                Ok(path) => column_at(batch, &path).map_err(|e| format!("argument {p}: {e}"))?,
                Err(e) => match derived(batch, p) {
                    Some(d) => d.map_err(|e| format!("argument {p}: {e}"))?,
                    None if i >= required => break,
                    None => return Err(format!("argument {p}: {e}")),
                },
            },
        };
        fields.push(Field::new(p, col.data_type().clone(), true));
        columns.push(col);
    }
    RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        columns,
        &arrow_array::RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
    .map_err(|e| e.to_string())
}

/// The column paths [`arguments`] reads on a file of `schema` (narrowed to
/// `fields` where given): what a read of only the filters' columns needs.
/// None when an argument binds to nothing (the call would fail anyway).
pub fn paths_read(
    schema: &Schema,
    params: &[String],
    optional: usize,
    explicit: Option<&[String]>,
    fields: &[(String, Vec<String>)],
) -> Option<Vec<String>> {
    let flat = flatten(schema.fields());
    let required = params.len().saturating_sub(optional);
    let mut out = Vec::new();
    for (i, p) in params.iter().enumerate() {
        let path = match explicit {
            Some(paths) if i >= paths.len() => break,
            Some(paths) => {
                match derived_paths(schema, &paths[i]).filter(|_| schema.field_with_name(&paths[i]).is_err()) {
                    Some(d) => {
                        out.extend(d);
                        continue;
                    }
                    None => paths[i].clone(),
                }
            }
            None => match resolve(p, &flat) {
                Ok(path) => path,
                Err(_) => match derived_paths(schema, p) {
                    Some(d) => {
                        out.extend(d);
                        continue;
                    }
                    None if i >= required => break,
                    None => return None,
                },
            },
        };
        match fields.iter().find(|(n, _)| n == p) {
            Some((_, wanted)) => out.extend(wanted.iter().map(|f| format!("{path}.{f}"))),
            None => out.push(path),
        }
    }
    Some(out)
}

/// The paths a derived argument ([`derived`]) is built from.
fn derived_paths(schema: &Schema, arg: &str) -> Option<Vec<String>> {
    let name = arg.strip_prefix('c')?.strip_suffix('c')?;
    if name.is_empty() {
        return None;
    }
    if name == "stampData" && schema.field_with_name("cutoutScience").is_ok() {
        return Some(vec!["cutoutScience.stampData".into()]);
    }
    let has_field = |col: &str| match schema.field_with_name(col).map(|f| f.data_type()) {
        Ok(DataType::Struct(fs)) => fs.find(name).is_some(),
        _ => false,
    };
    let (current, history) = HISTORY.iter().find(|(c, h)| has_field(c) && schema.field_with_name(h).is_ok())?;
    Some(vec![format!("{current}.{name}"), format!("{history}.{name}")])
}

/// `fields = {...}`: each named column reduced to the struct fields listed
/// (of its items, for a list of structs), in the listed order.
pub fn keep_fields(args: RecordBatch, keep: &[(String, Vec<String>)]) -> Result<RecordBatch, String> {
    if keep.is_empty() {
        return Ok(args);
    }
    let schema = args.schema();
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    let mut columns = args.columns().to_vec();
    for (name, wanted) in keep {
        // An optional argument left out has no column: nothing to reduce.
        let Some(i) = schema.index_of(name).ok() else { continue };
        let col = only_fields(&columns[i], wanted).map_err(|e| format!("fields.{name}: {e}"))?;
        fields[i] = Field::new(name, col.data_type().clone(), true);
        columns[i] = col;
    }
    RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        columns,
        &arrow_array::RecordBatchOptions::new().with_row_count(Some(args.num_rows())),
    )
    .map_err(|e| e.to_string())
}

fn only_fields(col: &ArrayRef, wanted: &[String]) -> Result<ArrayRef, String> {
    match col.data_type() {
        DataType::Struct(all) => {
            let s = col.as_struct();
            let mut fields = Vec::new();
            let mut arrays = Vec::new();
            for w in wanted {
                let (i, f) = all.find(w).ok_or_else(|| {
                    format!(
                        "no field {w:?} (it has {})",
                        all.iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ")
                    )
                })?;
                fields.push(f.as_ref().clone());
                arrays.push(s.column(i).clone());
            }
            let out = arrow_array::StructArray::try_new(Fields::from(fields), arrays, s.nulls().cloned())
                .map_err(|e| e.to_string())?;
            Ok(Arc::new(out))
        }
        DataType::List(item) => {
            let l = col.as_list::<i32>();
            let values = only_fields(l.values(), wanted)?;
            let item = Arc::new(Field::new(item.name(), values.data_type().clone(), true));
            let out =
                ListArray::try_new(item, l.offsets().clone(), values, l.nulls().cloned()).map_err(|e| e.to_string())?;
            Ok(Arc::new(out))
        }
        other => Err(format!("is {other}, not a struct or a list of structs")),
    }
}

/// The top-level columns an argument may read, before any file's schema is
/// known: its explicit path's root, or for a history column both roots.
pub fn roots_of(path: &str) -> Vec<String> {
    let root = path.split('.').next().unwrap_or(path).to_string();
    let mut out = vec![root];
    if let Some(name) = path.strip_prefix('c').and_then(|r| r.strip_suffix('c')) {
        if !name.is_empty() && !path.contains('.') {
            for (c, h) in HISTORY {
                out.push(c.to_string());
                out.push(h.to_string());
            }
            out.push("cutoutScience".into());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Float64Array, StringArray, StructArray};

    fn ztf_like() -> RecordBatch {
        let cand = StructArray::from(vec![
            (
                Arc::new(Field::new("magpsf", DataType::Float64, true)),
                Arc::new(Float64Array::from(vec![18.0, 19.0])) as ArrayRef,
            ),
            (
                Arc::new(Field::new("ra", DataType::Float64, true)),
                Arc::new(Float64Array::from(vec![1.0, 2.0])) as ArrayRef,
            ),
        ]);
        let prv_values = StructArray::from(vec![(
            Arc::new(Field::new("magpsf", DataType::Float64, true)),
            Arc::new(Float64Array::from(vec![Some(17.0), None, Some(16.5)])) as ArrayRef,
        )]);
        let prv_field = Arc::new(Field::new("item", prv_values.data_type().clone(), true));
        // Row 0 has two earlier points, row 1 has none (null history).
        let prv = ListArray::new(
            prv_field,
            OffsetBuffer::new(vec![0, 2, 2].into()),
            Arc::new(prv_values),
            Some(arrow_buffer::NullBuffer::from(vec![true, false])),
        );
        let schema = Schema::new(vec![
            Field::new("objectId", DataType::Utf8, true),
            Field::new("candidate", cand.data_type().clone(), true),
            Field::new("prv_candidates", prv.data_type().clone(), true),
            Field::new("anomaly_score_ra", DataType::Float64, true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from(vec!["ZTF1", "ZTF2"])),
                Arc::new(cand),
                Arc::new(prv),
                Arc::new(Float64Array::from(vec![0.1, 0.2])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn the_paths_read_are_those_the_arguments_bind_to() {
        let b = ztf_like();
        let schema = b.schema();
        let params: Vec<String> = ["magpsf", "cmagpsfc", "objectId"].iter().map(|s| s.to_string()).collect();
        assert_eq!(
            paths_read(&schema, &params, 0, None, &[]).unwrap(),
            vec!["candidate.magpsf", "candidate.magpsf", "prv_candidates.magpsf", "objectId"]
        );
        // Explicit paths, and `fields` narrowing a history to its fields.
        let one = vec!["history".to_string()];
        let fields = vec![("history".to_string(), vec!["magpsf".to_string()])];
        assert_eq!(
            paths_read(&schema, &one, 0, Some(&["prv_candidates".to_string()]), &fields).unwrap(),
            vec!["prv_candidates.magpsf"]
        );
        // An optional argument with no column is left out; a required one
        // that binds to nothing says so.
        let p = vec!["objectId".to_string(), "nowhere".to_string()];
        assert_eq!(paths_read(&schema, &p, 1, None, &[]).unwrap(), vec!["objectId"]);
        assert_eq!(paths_read(&schema, &p, 0, None, &[]), None);
    }

    #[test]
    fn arguments_resolve_as_fink_spark_runner_resolves_them() {
        let b = ztf_like();
        let flat = flatten(b.schema().fields());
        assert!(
            flat.contains(&"candidate.magpsf".to_string()) && !flat.iter().any(|p| p.starts_with("prv_candidates."))
        );
        // `ra` ends two paths; the exact last segment wins (fink_utils' own example).
        assert_eq!(resolve("ra", &flat).unwrap(), "candidate.ra");
        assert_eq!(resolve("magpsf", &flat).unwrap(), "candidate.magpsf");
        assert!(resolve("nosuch", &flat).unwrap_err().contains("no column"));

        let params: Vec<String> = ["objectId", "magpsf", "cmagpsfc"].map(String::from).to_vec();
        let args = arguments(&b, &params, 0, None).unwrap();
        assert_eq!(args.schema().field(1).name(), "magpsf");
        let hist = args.column(2).as_list::<i32>();
        let row0 = hist.value(0);
        let row0 = row0.as_primitive::<arrow_array::types::Float64Type>();
        // History then the current value; a null history is just the current one.
        assert_eq!(row0.iter().collect::<Vec<_>>(), vec![Some(17.0), None, Some(18.0)]);
        let row1 = hist.value(1);
        assert_eq!(row1.as_primitive::<arrow_array::types::Float64Type>().values().to_vec(), vec![19.0]);

        let explicit: Vec<String> = ["objectId", "candidate.ra"].map(String::from).to_vec();
        let two: Vec<String> = ["a", "b"].map(String::from).to_vec();
        let e = arguments(&b, &two, 0, Some(&explicit)).unwrap();
        assert_eq!(e.schema().field(1).name(), "b");
        assert!(arguments(&b, &params, 0, Some(&explicit)).unwrap_err().contains("args names 2 columns"));
        // A trailing parameter with a default and no column is left out.
        let opt: Vec<String> = ["magpsf", "flavor"].map(String::from).to_vec();
        assert_eq!(arguments(&b, &opt, 1, None).unwrap().num_columns(), 1);
        assert!(arguments(&b, &opt, 0, None).unwrap_err().contains("argument flavor"));
    }

    #[test]
    fn fields_keep_only_the_listed_struct_fields_of_an_argument() {
        let b = ztf_like();
        let keep = |k: &[(&str, &[&str])]| {
            let k: Vec<(String, Vec<String>)> =
                k.iter().map(|(a, f)| (a.to_string(), f.iter().map(|s| s.to_string()).collect())).collect();
            keep_fields(b.clone(), &k)
        };
        let out = keep(&[("candidate", &["ra"]), ("prv_candidates", &["magpsf"])]).unwrap();
        let cand = out.column_by_name("candidate").unwrap().as_struct();
        assert_eq!(cand.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>(), ["ra"]);
        assert_eq!(cand.column(0).as_primitive::<arrow_array::types::Float64Type>().values(), &[1.0, 2.0]);
        // A list of structs keeps its offsets and its null rows.
        let prv = out.column_by_name("prv_candidates").unwrap().as_list::<i32>();
        assert_eq!(prv.value_offsets(), &[0, 2, 2]);
        assert!(prv.is_null(1));
        assert_eq!(out.num_columns(), 4, "other arguments as they were");
        // An absent argument is skipped; a wrong field or a scalar is named.
        assert!(keep(&[("nowhere", &["x"])]).is_ok());
        let e = keep(&[("candidate", &["dec"])]).unwrap_err();
        assert!(e.contains("fields.candidate") && e.contains("\"dec\"") && e.contains("magpsf, ra"), "{e}");
        let e = keep(&[("objectId", &["x"])]).unwrap_err();
        assert!(e.contains("not a struct"), "{e}");
    }
}

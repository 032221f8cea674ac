//! `select` / `drop` of top-level columns and nested fields
//! (`candidate.magpsf`, `prv_candidates.magpsf`) on Arrow batches. Nested
//! selections keep the structure: selecting `candidate.magpsf` keeps a
//! `candidate` struct holding only `magpsf`, so consumers' paths still work.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, ListArray, RecordBatch, StructArray};
use arrow_schema::{ArrowError, DataType, Field, FieldRef, Fields, Schema, SchemaRef};

/// A tree of field names; `whole` means the entire field (and wins over
/// deeper paths given for it).
#[derive(Debug, Default, Clone, PartialEq)]
struct Tree {
    whole: bool,
    children: BTreeMap<String, Tree>,
}

impl Tree {
    fn from_paths(paths: &[String]) -> Tree {
        let mut t = Tree::default();
        for p in paths {
            let mut node = &mut t;
            for part in p.split('.') {
                if node.whole {
                    break;
                }
                node = node.children.entry(part.to_string()).or_default();
            }
            node.whole = true;
            node.children.clear();
        }
        t
    }
}

/// A projection checked against a source schema.
#[derive(Debug, Clone)]
pub struct Projection {
    select: Option<Tree>,
    drop: Tree,
}

impl Projection {
    /// Check every path exists in `schema`; errors name the missing path.
    pub fn new(select: &[String], drop: &[String], schema: &Schema) -> Result<Projection, String> {
        for p in select.iter().chain(drop) {
            check_path(schema.fields(), p)?;
        }
        Ok(Projection {
            select: if select.is_empty() { None } else { Some(Tree::from_paths(select)) },
            drop: Tree::from_paths(drop),
        })
    }

    pub fn is_identity(&self) -> bool {
        self.select.is_none() && self.drop.children.is_empty()
    }

    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
        if self.is_identity() {
            return Ok(batch.clone());
        }
        let (fields, columns) =
            project_fields(batch.schema().fields(), batch.columns(), self.select.as_ref(), Some(&self.drop))?;
        // The source's Avro schema (metadata) no longer describes the result.
        let schema = Schema::new(fields);
        RecordBatch::try_new(Arc::new(schema), columns)
    }

    /// The schema `apply` produces for `schema`.
    pub fn output_schema(&self, schema: &SchemaRef) -> Result<SchemaRef, ArrowError> {
        let empty = RecordBatch::new_empty(schema.clone());
        Ok(self.apply(&empty)?.schema())
    }
}

/// The type at `path` (through structs and lists of structs).
pub fn type_at(fields: &Fields, path: &str) -> Result<DataType, String> {
    check_path(fields, path)?;
    let mut current = fields.clone();
    let mut dt = DataType::Null;
    for part in path.split('.') {
        let f = current.iter().find(|f| f.name() == part).expect("checked");
        dt = f.data_type().clone();
        if let Some(fs) = struct_fields(&dt) {
            current = fs;
        }
    }
    Ok(dt)
}

/// Verify `path` names a field, descending through structs and lists of structs.
pub fn check_path(fields: &Fields, path: &str) -> Result<(), String> {
    let mut current = fields.clone();
    let parts: Vec<&str> = path.split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let Some(f) = current.iter().find(|f| f.name() == part) else {
            let prefix = parts[..i].join(".");
            let available: Vec<&str> = current.iter().map(|f| f.name().as_str()).take(12).collect();
            return Err(format!(
                "no field {:?}{} in the source schema (has: {}{})",
                part,
                if prefix.is_empty() { String::new() } else { format!(" under {prefix:?}") },
                available.join(", "),
                if current.len() > 12 { ", ..." } else { "" }
            ));
        };
        if i + 1 < parts.len() {
            current = match struct_fields(f.data_type()) {
                Some(fs) => fs,
                None => {
                    return Err(format!("{:?} is not a struct; {path:?} cannot go inside it", parts[..=i].join(".")))
                }
            };
        }
    }
    Ok(())
}

fn struct_fields(dt: &DataType) -> Option<Fields> {
    match dt {
        DataType::Struct(fs) => Some(fs.clone()),
        DataType::List(item) | DataType::LargeList(item) => struct_fields(item.data_type()),
        _ => None,
    }
}

fn project_fields(
    fields: &Fields,
    columns: &[ArrayRef],
    select: Option<&Tree>,
    drop: Option<&Tree>,
) -> Result<(Vec<FieldRef>, Vec<ArrayRef>), ArrowError> {
    let mut out_f = Vec::new();
    let mut out_c = Vec::new();
    for (f, c) in fields.iter().zip(columns) {
        let sel = match select {
            None => None,
            Some(t) => match t.children.get(f.name()) {
                None => continue,
                Some(sub) => Some(sub),
            },
        };
        let dr = drop.and_then(|t| t.children.get(f.name()));
        if dr.map(|d| d.whole).unwrap_or(false) {
            continue;
        }
        let sel_sub = sel.filter(|s| !s.whole);
        if sel_sub.is_none() && dr.is_none() {
            out_f.push(f.clone());
            out_c.push(c.clone());
            continue;
        }
        let (nf, nc) = project_nested(f, c, sel_sub, dr)?;
        out_f.push(nf);
        out_c.push(nc);
    }
    Ok((out_f, out_c))
}

fn project_nested(
    field: &FieldRef,
    col: &ArrayRef,
    select: Option<&Tree>,
    drop: Option<&Tree>,
) -> Result<(FieldRef, ArrayRef), ArrowError> {
    match field.data_type() {
        DataType::Struct(fs) => {
            let s = col.as_struct();
            let (nf, nc) = project_fields(fs, s.columns(), select, drop)?;
            let fields = Fields::from(nf);
            let arr = StructArray::try_new(fields.clone(), nc, s.nulls().cloned())?;
            Ok((Arc::new(Field::new(field.name(), DataType::Struct(fields), field.is_nullable())), Arc::new(arr)))
        }
        DataType::List(item) => {
            let l = col.as_list::<i32>();
            let values = l.values().clone();
            let (ni, nv) = project_nested(item, &values, select, drop)?;
            let arr = ListArray::try_new(ni.clone(), l.offsets().clone(), nv, l.nulls().cloned())?;
            Ok((Arc::new(Field::new(field.name(), DataType::List(ni), field.is_nullable())), Arc::new(arr)))
        }
        other => Err(ArrowError::SchemaError(format!("cannot select inside {:?} of type {other}", field.name()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Float32Array, Int64Array, StringArray};

    fn batch() -> RecordBatch {
        let cf = Fields::from(vec![
            Field::new("magpsf", DataType::Float32, true),
            Field::new("rb", DataType::Float32, true),
        ]);
        let cand = StructArray::new(
            cf.clone(),
            vec![
                Arc::new(Float32Array::from(vec![17.0, 18.0])) as ArrayRef,
                Arc::new(Float32Array::from(vec![0.9, 0.1])),
            ],
            None,
        );
        let schema = Schema::new(vec![
            Field::new("objectId", DataType::Utf8, false),
            Field::new("candid", DataType::Int64, false),
            Field::new("candidate", DataType::Struct(cf), true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![Arc::new(StringArray::from(vec!["a", "b"])), Arc::new(Int64Array::from(vec![1, 2])), Arc::new(cand)],
        )
        .unwrap()
    }

    fn names(b: &RecordBatch) -> String {
        fn walk(f: &Field, out: &mut Vec<String>, prefix: &str) {
            let name = format!("{prefix}{}", f.name());
            if let DataType::Struct(fs) = f.data_type() {
                for c in fs {
                    walk(c, out, &format!("{name}."));
                }
            } else {
                out.push(name);
            }
        }
        let mut out = Vec::new();
        for f in b.schema().fields() {
            walk(f, &mut out, "");
        }
        out.join(",")
    }

    #[test]
    fn select_and_drop_top_level_and_nested() {
        let b = batch();
        let p = |s: &[&str], d: &[&str]| {
            let s: Vec<String> = s.iter().map(|x| x.to_string()).collect();
            let d: Vec<String> = d.iter().map(|x| x.to_string()).collect();
            Projection::new(&s, &d, &b.schema()).unwrap().apply(&b).unwrap()
        };
        assert_eq!(names(&p(&[], &[])), "objectId,candid,candidate.magpsf,candidate.rb");
        assert_eq!(names(&p(&["objectId", "candidate.magpsf"], &[])), "objectId,candidate.magpsf");
        assert_eq!(names(&p(&[], &["candid", "candidate.rb"])), "objectId,candidate.magpsf");
        assert_eq!(names(&p(&["objectId", "candidate"], &["candidate.rb"])), "objectId,candidate.magpsf");
        let out = p(&["candidate.rb"], &[]);
        assert_eq!(out.num_rows(), 2);
        assert_eq!(out.column(0).as_struct().column(0).as_primitive::<arrow_array::types::Float32Type>().value(1), 0.1);
    }

    #[test]
    fn unknown_paths_are_errors() {
        let b = batch();
        let e = Projection::new(&["candidate.nope".into()], &[], &b.schema()).unwrap_err();
        assert!(e.contains("no field \"nope\" under \"candidate\""), "{e}");
        let e = Projection::new(&[], &["objectId.x".into()], &b.schema()).unwrap_err();
        assert!(e.contains("is not a struct"), "{e}");
    }
}

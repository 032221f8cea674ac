//! CEL filters over alerts. An expression is compiled once; for each row,
//! only the top-level columns it names are turned into CEL values, and
//! struct fields only if some `.field` in the expression names them, so a
//! filter on `candidate.magpsf` never copies cutouts or light curves.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::*;
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow_schema::{DataType, TimeUnit};
use cel::common::ast::Expr;
use cel::objects::{Key, Map};
use cel::{Context, IdedExpr, Value};

pub use crate::config::OnNull;
use expand::expand;
pub use expand::Library;

mod expand;
pub mod functions;

/// A filter that failed to compile, with the position inside the expression.
#[derive(Debug, Clone)]
pub struct CompileError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl std::fmt::Display for CompileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} (expression line {}, column {})", self.message, self.line, self.column)
    }
}

#[derive(Clone)]
pub struct Filter {
    pub name: String,
    pub expr: String,
    pub on_null: OnNull,
    /// The expression as evaluated: constants and referenced filters
    /// substituted, operators rewritten for mixed numbers and nulls.
    ast: IdedExpr,
    /// Top-level variables the expression reads.
    pub variables: Vec<String>,
    /// Every field name selected anywhere (`x.name`, `has(x.name)`).
    fields: Arc<BTreeSet<String>>,
    /// Constants and filters it uses, directly or through other filters.
    pub uses: BTreeSet<String>,
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Filter").field("name", &self.name).field("expr", &self.expr).finish()
    }
}

/// Names bound by macros (`p` in `exists(p, ...)`): not alert columns.
fn collect_iter_vars(e: &Expr, out: &mut BTreeSet<String>) {
    match e {
        Expr::Comprehension(c) => {
            out.insert(c.iter_var.clone());
            out.insert(c.accu_var.clone());
            for x in [&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result] {
                collect_iter_vars(&x.expr, out);
            }
        }
        Expr::Select(s) => collect_iter_vars(&s.operand.expr, out),
        Expr::Call(c) => {
            if let Some(t) = &c.target {
                collect_iter_vars(&t.expr, out);
            }
            for a in &c.args {
                collect_iter_vars(&a.expr, out);
            }
        }
        _ => {}
    }
}

fn collect_fields(e: &Expr, out: &mut BTreeSet<String>) {
    match e {
        Expr::Select(s) => {
            out.insert(s.field.clone());
            collect_fields(&s.operand.expr, out);
        }
        Expr::Call(c) => {
            if let Some(t) = &c.target {
                collect_fields(&t.expr, out);
            }
            for a in &c.args {
                collect_fields(&a.expr, out);
            }
        }
        Expr::Comprehension(c) => {
            for x in [&c.iter_range, &c.accu_init, &c.loop_cond, &c.loop_step, &c.result] {
                collect_fields(&x.expr, out);
            }
        }
        Expr::List(l) => {
            for x in &l.elements {
                collect_fields(&x.expr, out);
            }
        }
        Expr::Map(m) => {
            for entry in &m.entries {
                if let cel::common::ast::EntryExpr::MapEntry(me) = &entry.expr {
                    collect_fields(&me.key.expr, out);
                    collect_fields(&me.value.expr, out);
                }
            }
        }
        _ => {}
    }
}

impl Filter {
    /// A filter on its own: no constants, no other filters, nulls are errors.
    pub fn compile(name: &str, expr: &str) -> Result<Filter, CompileError> {
        Filter::compile_in(name, expr, OnNull::Error, &Library::default())
    }

    /// A filter that may use the constants and filters of `lib`.
    pub fn compile_in(name: &str, expr: &str, on_null: OnNull, lib: &Library) -> Result<Filter, CompileError> {
        let mut uses = BTreeSet::new();
        let ast = expand(name, expr, on_null, lib, &mut vec![name.to_string()], &mut uses)?;
        let mut fields = BTreeSet::new();
        collect_fields(&ast.expr, &mut fields);
        let mut bound = BTreeSet::new();
        collect_iter_vars(&ast.expr, &mut bound);
        let variables =
            ast.references().variables().into_iter().filter(|v| !bound.contains(*v)).map(|s| s.to_string()).collect();
        Ok(Filter {
            name: name.to_string(),
            expr: expr.to_string(),
            on_null,
            ast,
            variables,
            fields: Arc::new(fields),
            uses,
        })
    }

    /// Field paths (`candidate.magpsf`) the expression reads, for checks
    /// against a source schema. Nested names under comprehensions are
    /// reported by their last segment only.
    pub fn field_names(&self) -> &BTreeSet<String> {
        &self.fields
    }
}

/// How an expression uses a field: compared with a number, with a string, or otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    Any,
    Numeric,
    Text,
}

fn path_of(e: &Expr, env: &HashMap<String, String>) -> Option<String> {
    match e {
        Expr::Ident(n) => match env.get(n) {
            Some(p) if p.is_empty() => None,
            Some(p) => Some(p.clone()),
            None => Some(n.clone()),
        },
        Expr::Select(s) => path_of(&s.operand.expr, env).map(|p| format!("{p}.{}", s.field)),
        _ => None,
    }
}

fn collect_uses(e: &Expr, env: &HashMap<String, String>, out: &mut Vec<(String, Use)>) {
    use cel::common::ast::LiteralValue as L;
    match e {
        Expr::Ident(_) | Expr::Select(_) => {
            if let Some(p) = path_of(e, env) {
                out.push((p, Use::Any));
            }
        }
        Expr::Call(c) => {
            let cmp = matches!(
                c.func_name.as_str(),
                "_<_" | "_>_" | "_<=_" | "_>=_" | "_==_" | "_!=_" | "fink_lt" | "fink_le" | "fink_gt" | "fink_ge"
            );
            if cmp && c.args.len() == 2 {
                for (x, y) in [(0, 1), (1, 0)] {
                    if let Some(p) = path_of(&c.args[x].expr, env) {
                        match &c.args[y].expr {
                            Expr::Literal(L::Int(_) | L::UInt(_) | L::Double(_)) => out.push((p, Use::Numeric)),
                            Expr::Literal(L::String(_)) => out.push((p, Use::Text)),
                            _ => {}
                        }
                    }
                }
            }
            if let Some(t) = &c.target {
                collect_uses(&t.expr, env, out);
            }
            for a in &c.args {
                collect_uses(&a.expr, env, out);
            }
        }
        Expr::Comprehension(c) => {
            collect_uses(&c.iter_range.expr, env, out);
            let mut inner = env.clone();
            // The iteration variable stands for an element of the range; the accumulator for nothing.
            inner.insert(c.iter_var.clone(), path_of(&c.iter_range.expr, env).unwrap_or_default());
            inner.insert(c.accu_var.clone(), String::new());
            for x in [&c.accu_init, &c.loop_cond, &c.loop_step, &c.result] {
                collect_uses(&x.expr, &inner, out);
            }
        }
        Expr::List(l) => {
            for x in &l.elements {
                collect_uses(&x.expr, env, out);
            }
        }
        _ => {}
    }
}

impl Filter {
    /// Every field path the expression reads (`candidate.magpsf`,
    /// `prv_candidates.magpsf` inside `exists`), with how it is used.
    pub fn field_uses(&self) -> Vec<(String, Use)> {
        let mut out = Vec::new();
        collect_uses(&self.ast.expr, &HashMap::new(), &mut out);
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.dedup();
        out
    }
}

/// Outcome of a filter on one row.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Pass,
    Reject,
    /// The expression could not be evaluated (missing field, wrong type).
    Error(String),
}

/// All filters of a stream; a row passes when every filter passes.
pub struct FilterSet {
    pub filters: Vec<Filter>,
    root: Context<'static, 'static>,
}

impl FilterSet {
    pub fn new(filters: Vec<Filter>) -> FilterSet {
        let mut root = Context::default();
        functions::register(&mut root);
        FilterSet { filters, root }
    }

    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// Evaluate every filter on each row; returns the keep-mask and, per
    /// row that errored, the message (error rows are not kept).
    pub fn evaluate(&self, batch: &RecordBatch) -> (BooleanArray, Vec<(usize, String)>) {
        if self.filters.is_empty() {
            return (BooleanArray::from(vec![true; batch.num_rows()]), Vec::new());
        }
        let mut keep = Vec::with_capacity(batch.num_rows());
        let mut errors = Vec::new();
        for row in 0..batch.num_rows() {
            let mut pass = true;
            for f in &self.filters {
                match self.eval_one(f, batch, row) {
                    Verdict::Pass => {}
                    Verdict::Reject => {
                        pass = false;
                        break;
                    }
                    Verdict::Error(e) => {
                        errors.push((row, format!("filter {}: {e}", f.name)));
                        pass = false;
                        break;
                    }
                }
            }
            keep.push(pass);
        }
        (BooleanArray::from(keep), errors)
    }

    /// One filter on one row.
    pub fn eval_one(&self, f: &Filter, batch: &RecordBatch, row: usize) -> Verdict {
        let mut ctx = self.root.new_inner_scope();
        let nulls = f.on_null == OnNull::False;
        for var in &f.variables {
            match batch.column_by_name(var) {
                Some(col) => match to_cel_with(col, row, &f.fields, nulls) {
                    Some(v) => ctx.add_variable_from_value(var.clone(), v),
                    None if nulls => ctx.add_variable_from_value(var.clone(), null_of(col.data_type(), &f.fields)),
                    None => {}
                },
                // A column the data does not have is missing: null too.
                None if nulls => ctx.add_variable_from_value(var.clone(), Value::Null),
                None => {}
            }
        }
        match Value::resolve(&f.ast, &ctx) {
            Ok(Value::Bool(true)) => Verdict::Pass,
            Ok(Value::Bool(false)) => Verdict::Reject,
            Ok(other) => Verdict::Error(format!("returned {other:?}, not a boolean")),
            Err(e) => Verdict::Error(e.to_string()),
        }
    }
}

/// One Arrow value as a CEL value; `None` for null (absent to `has()`).
pub fn to_cel(array: &ArrayRef, row: usize, fields: &BTreeSet<String>) -> Option<Value> {
    to_cel_with(array, row, fields, false)
}

/// A null as a filter with `on_null = "false"` sees it: a struct is a map
/// of null fields (so `diaObject.nDiaSources >= 2` is false when
/// `diaObject` is null, as in pandas), anything else is `null`.
fn null_of(dt: &DataType, fields: &BTreeSet<String>) -> Value {
    match dt {
        DataType::Struct(children) => {
            let mut m: HashMap<Key, Value> = children
                .iter()
                .filter(|c| fields.contains(c.name()))
                .map(|c| (Key::String(Arc::new(c.name().clone())), null_of(c.data_type(), fields)))
                .collect();
            for name in fields {
                m.entry(Key::String(Arc::new(name.clone()))).or_insert(Value::Null);
            }
            Value::Map(Map { map: Arc::new(m) })
        }
        _ => Value::Null,
    }
}

/// [`to_cel`]; with `nulls`, null struct fields are present as nulls.
fn to_cel_with(array: &ArrayRef, row: usize, fields: &BTreeSet<String>, nulls: bool) -> Option<Value> {
    if array.is_null(row) {
        return None;
    }
    let a = array.as_ref();
    Some(match a.data_type() {
        DataType::Boolean => Value::Bool(a.as_boolean().value(row)),
        DataType::Int8 => Value::Int(a.as_primitive::<Int8Type>().value(row) as i64),
        DataType::Int16 => Value::Int(a.as_primitive::<Int16Type>().value(row) as i64),
        DataType::Int32 => Value::Int(a.as_primitive::<Int32Type>().value(row) as i64),
        DataType::Int64 => Value::Int(a.as_primitive::<Int64Type>().value(row)),
        DataType::UInt8 => Value::UInt(a.as_primitive::<UInt8Type>().value(row) as u64),
        DataType::UInt16 => Value::UInt(a.as_primitive::<UInt16Type>().value(row) as u64),
        DataType::UInt32 => Value::UInt(a.as_primitive::<UInt32Type>().value(row) as u64),
        DataType::UInt64 => Value::UInt(a.as_primitive::<UInt64Type>().value(row)),
        DataType::Float32 => Value::Float(a.as_primitive::<Float32Type>().value(row) as f64),
        DataType::Float64 => Value::Float(a.as_primitive::<Float64Type>().value(row)),
        DataType::Utf8 => Value::String(Arc::new(a.as_string::<i32>().value(row).to_string())),
        DataType::LargeUtf8 => Value::String(Arc::new(a.as_string::<i64>().value(row).to_string())),
        DataType::Utf8View => Value::String(Arc::new(a.as_string_view().value(row).to_string())),
        DataType::Binary => Value::Bytes(Arc::new(a.as_binary::<i32>().value(row).to_vec())),
        DataType::LargeBinary => Value::Bytes(Arc::new(a.as_binary::<i64>().value(row).to_vec())),
        DataType::BinaryView => Value::Bytes(Arc::new(a.as_binary_view().value(row).to_vec())),
        DataType::FixedSizeBinary(_) => Value::Bytes(Arc::new(a.as_fixed_size_binary().value(row).to_vec())),
        DataType::Timestamp(unit, _) => {
            let v = match unit {
                TimeUnit::Second => a.as_primitive::<TimestampSecondType>().value(row),
                TimeUnit::Millisecond => a.as_primitive::<TimestampMillisecondType>().value(row),
                TimeUnit::Microsecond => a.as_primitive::<TimestampMicrosecondType>().value(row),
                TimeUnit::Nanosecond => a.as_primitive::<TimestampNanosecondType>().value(row),
            };
            Value::Int(v)
        }
        DataType::Date32 => Value::Int(a.as_primitive::<Date32Type>().value(row) as i64),
        DataType::Struct(_) => {
            let s = a.as_struct();
            let mut m: HashMap<Key, Value> = HashMap::new();
            for (name, col) in s.column_names().iter().zip(s.columns()) {
                if fields.contains(*name) {
                    match to_cel_with(col, row, fields, nulls) {
                        Some(v) => {
                            m.insert(Key::String(Arc::new(name.to_string())), v);
                        }
                        None if nulls => {
                            m.insert(Key::String(Arc::new(name.to_string())), null_of(col.data_type(), fields));
                        }
                        None => {}
                    }
                }
            }
            if nulls {
                // Fields named in the expression that this struct lacks are
                // missing: null too (extra keys elsewhere are never read).
                for name in fields {
                    m.entry(Key::String(Arc::new(name.clone()))).or_insert(Value::Null);
                }
            }
            Value::Map(Map { map: Arc::new(m) })
        }
        DataType::List(_) => {
            let l = a.as_list::<i32>();
            let values = l.value(row);
            Value::List(Arc::new(
                (0..values.len()).map(|i| to_cel_with(&values, i, fields, nulls).unwrap_or(Value::Null)).collect(),
            ))
        }
        DataType::LargeList(_) => {
            let l = a.as_list::<i64>();
            let values = l.value(row);
            Value::List(Arc::new(
                (0..values.len()).map(|i| to_cel_with(&values, i, fields, nulls).unwrap_or(Value::Null)).collect(),
            ))
        }
        DataType::Map(_, _) => {
            let m = a.as_map();
            let entries = m.value(row);
            let keys = entries.column(0).clone();
            let vals = entries.column(1).clone();
            let mut out: HashMap<Key, Value> = HashMap::new();
            for i in 0..entries.len() {
                let k = match to_cel(&keys, i, fields) {
                    Some(Value::String(s)) => Key::String(s),
                    Some(Value::Int(n)) => Key::Int(n),
                    _ => continue,
                };
                if let Some(v) = to_cel(&vals, i, &all_fields()) {
                    out.insert(k, v);
                }
            }
            Value::Map(Map { map: Arc::new(out) })
        }
        // Types a filter cannot meaningfully read are treated as absent.
        _ => return None,
    })
}

fn all_fields() -> BTreeSet<String> {
    BTreeSet::new()
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Float32Array, Int32Array, ListArray, StringArray, StructArray};
    use arrow_schema::{Field, Fields, Schema};

    fn batch() -> RecordBatch {
        let cand_fields = Fields::from(vec![
            Field::new("magpsf", DataType::Float32, true),
            Field::new("rb", DataType::Float32, true),
            Field::new("sgscore1", DataType::Float32, true),
        ]);
        let cand = StructArray::new(
            cand_fields.clone(),
            vec![
                Arc::new(Float32Array::from(vec![Some(17.0), Some(19.0), Some(18.0)])) as ArrayRef,
                Arc::new(Float32Array::from(vec![Some(0.9), Some(0.9), Some(0.2)])),
                Arc::new(Float32Array::from(vec![Some(0.1), None, Some(0.9)])),
            ],
            None,
        );
        let prv_item = Field::new("item", DataType::Struct(cand_fields.clone()), true);
        let prv_values = StructArray::new(
            cand_fields.clone(),
            vec![
                Arc::new(Float32Array::from(vec![Some(16.0), Some(20.0), Some(20.5)])) as ArrayRef,
                Arc::new(Float32Array::from(vec![Some(0.5), Some(0.5), Some(0.5)])),
                Arc::new(Float32Array::from(vec![None, None, None])),
            ],
            None,
        );
        let prv = ListArray::new(
            Arc::new(prv_item.clone()),
            arrow_buffer::OffsetBuffer::new(vec![0, 1, 3, 3].into()),
            Arc::new(prv_values),
            None,
        );
        let schema = Schema::new(vec![
            Field::new("objectId", DataType::Utf8, false),
            Field::new("candidate", DataType::Struct(cand_fields), true),
            Field::new("prv_candidates", DataType::List(Arc::new(prv_item)), true),
            Field::new("ndet", DataType::Int32, true),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from(vec!["A", "B", "C"])),
                Arc::new(cand),
                Arc::new(prv),
                Arc::new(Int32Array::from(vec![Some(1), None, Some(3)])),
            ],
        )
        .unwrap()
    }

    fn kept(expr: &str) -> Vec<bool> {
        let set = FilterSet::new(vec![Filter::compile("t", expr).unwrap()]);
        let (mask, _) = set.evaluate(&batch());
        mask.iter().map(|b| b.unwrap()).collect()
    }

    #[test]
    fn scalar_nested_and_float32_semantics() {
        assert_eq!(kept("candidate.magpsf < 18.5 && candidate.rb > 0.55"), vec![true, false, false]);
        assert_eq!(kept("objectId == 'B' || objectId.startsWith('C')"), vec![false, true, true]);
    }

    #[test]
    fn null_safety_with_has_and_short_circuit() {
        assert_eq!(kept("has(candidate.sgscore1) && candidate.sgscore1 < 0.5"), vec![true, false, false]);
        // Without has(), reading a null field is an error: the row is not kept and is reported.
        let set = FilterSet::new(vec![Filter::compile("t", "candidate.sgscore1 < 0.5").unwrap()]);
        let (mask, errors) = set.evaluate(&batch());
        assert_eq!(mask.iter().map(|b| b.unwrap()).collect::<Vec<_>>(), vec![true, false, false]);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].0, 1);
    }

    #[test]
    fn list_macros_over_prv_candidates() {
        assert_eq!(kept("prv_candidates.exists(p, p.magpsf < 17.0)"), vec![true, false, false]);
        assert_eq!(kept("size(prv_candidates) >= 2"), vec![false, true, false]);
        assert_eq!(kept("prv_candidates.all(p, p.magpsf > 19.0)"), vec![false, true, true]);
    }

    #[test]
    fn compile_errors_have_positions() {
        let e = Filter::compile("t", "candidate.magpsf <").unwrap_err();
        assert_eq!(e.line, 1);
        assert_eq!(e.column, 19, "{e}");
    }

    #[test]
    fn only_named_fields_are_materialised() {
        let f = Filter::compile("t", "candidate.magpsf < 18.5").unwrap();
        assert_eq!(f.variables, vec!["candidate".to_string()]);
        assert!(f.field_names().contains("magpsf"));
        assert!(!f.field_names().contains("rb"));
    }

    fn lib() -> Library {
        use crate::config::{ConstScalar, ConstValue};
        let mut l = Library::default();
        l.consts.insert(
            "NAMES".into(),
            ConstValue::List(vec![ConstScalar::Text("A".into()), ConstScalar::Text("B".into())]),
        );
        l.consts.insert("BRIGHT".into(), ConstValue::Float(18.5));
        l.filters.insert("bright".into(), ("candidate.magpsf < BRIGHT".into(), OnNull::Error));
        l.filters.insert("named".into(), ("objectId in NAMES".into(), OnNull::Error));
        l.filters.insert("loop_a".into(), ("filter('loop_b')".into(), OnNull::Error));
        l.filters.insert("loop_b".into(), ("filter('loop_a')".into(), OnNull::Error));
        l
    }

    fn kept_in(expr: &str, on_null: OnNull) -> (Vec<bool>, usize) {
        let set = FilterSet::new(vec![Filter::compile_in("t", expr, on_null, &lib()).unwrap()]);
        let (mask, errors) = set.evaluate(&batch());
        (mask.iter().map(|b| b.unwrap()).collect(), errors.len())
    }

    #[test]
    fn constants_and_filter_references() {
        assert_eq!(kept_in("objectId in NAMES", OnNull::Error).0, vec![true, true, false]);
        assert_eq!(kept_in("filter('bright') && !filter('named')", OnNull::Error).0, vec![false, false, true]);
        let f = Filter::compile_in("t", "filter('bright')", OnNull::Error, &lib()).unwrap();
        assert_eq!(f.uses.iter().cloned().collect::<Vec<_>>(), vec!["BRIGHT".to_string(), "bright".to_string()]);
        let e = Filter::compile_in("t", "objectId in NAMEZ", OnNull::Error, &lib()).unwrap_err();
        assert!(e.message.contains("unknown constant NAMEZ") && e.column == 13, "{e}");
        let e = Filter::compile_in("t", "filter('nope')", OnNull::Error, &lib()).unwrap_err();
        assert!(e.message.contains("unknown filter \"nope\""), "{e}");
        let e = Filter::compile_in("loop_a", "filter('loop_b')", OnNull::Error, &lib()).unwrap_err();
        assert!(e.message.contains("loop_a -> loop_b -> loop_a"), "{e}");
    }

    #[test]
    fn unknown_functions_and_wrong_arity_are_compile_errors() {
        let e = Filter::compile("t", "nosuchfunc(candidate.magpsf) > 1").unwrap_err();
        assert!(e.message.contains("unknown function nosuchfunc()") && e.column == 1, "{e}");
        let e = Filter::compile("t", "candidate.rb > 0.5 && pow(candidate.magpsf) > 1").unwrap_err();
        assert!(e.message.contains("pow() takes 2 argument(s), not 1"), "{e}");
        let e = Filter::compile("t", "objectId.nosuch('x')").unwrap_err();
        assert!(e.message.contains("unknown function x.nosuch()"), "{e}");
    }

    #[test]
    fn numbers_mix_and_functions_evaluate() {
        assert_eq!(kept("ndet <= 1.0 || ndet > 2"), vec![true, false, true]);
        assert_eq!(kept_in("candidate.magpsf - 1 < 17", OnNull::Error).0, vec![true, false, false]);
        assert_eq!(
            kept_in("abs(candidate.magpsf - 18) < 0.5 && sqrt(4) == 2.0 && pow(2, 3) == 8", OnNull::Error).0,
            vec![false, false, true]
        );
        assert_eq!(
            kept_in("log10(100) == 2.0 && galactic_b(0.0, 0.0) < -60.0", OnNull::Error).0,
            vec![true, true, true]
        );
    }

    #[test]
    fn on_null_false_reads_nulls_as_pandas_does() {
        // ndet is null in row 1: an error by default, false with "false".
        assert_eq!(kept_in("ndet > 0", OnNull::Error), (vec![true, false, true], 1));
        assert_eq!(kept_in("ndet > 0", OnNull::False), (vec![true, false, true], 0));
        // ... so its negation keeps the null row, as `~(x > 0)` in pandas.
        assert_eq!(kept_in("!(ndet > 0)", OnNull::False), (vec![false, true, false], 0));
        // Arithmetic with a null gives null, and the comparison is false.
        assert_eq!(kept_in("ndet + 1 >= 2", OnNull::False), (vec![true, false, true], 0));
        // A null nested field: has() is false, comparisons false.
        assert_eq!(kept_in("has(candidate.sgscore1)", OnNull::False), (vec![true, false, true], 0));
        assert_eq!(kept_in("candidate.sgscore1 < 0.5", OnNull::False), (vec![true, false, false], 0));
        // A missing column or struct field reads as null.
        assert_eq!(kept_in("nosuch > 1 || candidate.nosuch < 1", OnNull::False), (vec![false, false, false], 0));
        assert_eq!(kept_in("!(nosuch > 1)", OnNull::False), (vec![true, true, true], 0));
        // == and != with a null: as pandas, not equal.
        assert_eq!(kept_in("ndet != 3", OnNull::False), (vec![true, true, false], 0));
    }
}

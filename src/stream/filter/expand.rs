//! From the expression as written to the expression as evaluated.
//!
//! CEL parses; this pass then, on the parsed tree:
//! - substitutes `[const]` names by their values;
//! - splices `filter("name")` by the named filter's own expanded tree
//!   (rejecting unknown names and cycles);
//! - checks every function call against what fink registers, with arity;
//! - rewrites arithmetic to fink's functions (int and double mix freely, a
//!   null operand gives null), and, for `on_null = "false"`, ordering
//!   comparisons (false with a null operand) and `has()` (false for null).

use std::collections::{BTreeMap, BTreeSet};

use cel::common::ast::{CallExpr, Expr, IdedExpr, ListExpr, LiteralValue, SelectExpr};
use cel::common::types::{CelBool, CelDouble, CelInt, CelString};
use cel::Program;

use super::functions;
use super::{CompileError, OnNull};
use crate::config::{ConstScalar, ConstValue};

/// What filters may use besides alert fields.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Library {
    pub consts: BTreeMap<String, ConstValue>,
    /// name -> (expression, on_null)
    pub filters: BTreeMap<String, (String, OnNull)>,
}

impl Library {
    /// Only what `uses` names: two streams' libraries compare equal when
    /// what their filters use is the same.
    pub fn restricted(&self, uses: &BTreeSet<String>) -> Library {
        fn only<V: Clone>(m: &BTreeMap<String, V>, uses: &BTreeSet<String>) -> BTreeMap<String, V> {
            m.iter().filter(|(k, _)| uses.contains(*k)).map(|(k, v)| (k.clone(), v.clone())).collect()
        }
        Library { consts: only(&self.consts, uses), filters: only(&self.filters, uses) }
    }
}

/// A constant's name: upper case, digits and `_`, starting with a letter.
/// An identifier of that shape that is not declared is an error (a typo
/// would otherwise read a missing alert field).
pub fn is_const_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// Ids for nodes this pass adds: far above the parser's.
const FIRST_NEW_ID: u64 = 1 << 40;

struct Pass<'a> {
    program: &'a Program,
    on_null: OnNull,
    lib: &'a Library,
    stack: &'a mut Vec<String>,
    uses: &'a mut BTreeSet<String>,
    next_id: u64,
    /// Names bound by comprehensions around the node being rewritten.
    bound: Vec<String>,
}

pub fn expand(
    _name: &str,
    expr: &str,
    on_null: OnNull,
    lib: &Library,
    stack: &mut Vec<String>,
    uses: &mut BTreeSet<String>,
) -> Result<IdedExpr, CompileError> {
    let program = Program::compile(expr).map_err(|errs| {
        let e = errs.errors.first();
        CompileError {
            line: e.map(|e| e.pos.0.max(1) as usize).unwrap_or(1),
            column: e.map(|e| e.pos.1.max(1) as usize).unwrap_or(1),
            message: e.map(|e| e.msg.clone()).unwrap_or_else(|| errs.to_string()),
        }
    })?;
    let mut pass = Pass { program: &program, on_null, lib, stack, uses, next_id: FIRST_NEW_ID, bound: Vec::new() };
    pass.rewrite(program.expression().clone())
}

impl Pass<'_> {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn node(&mut self, expr: Expr) -> IdedExpr {
        IdedExpr { id: self.id(), expr }
    }

    fn call(&mut self, func: &str, args: Vec<IdedExpr>) -> IdedExpr {
        self.node(Expr::Call(CallExpr { func_name: func.to_string(), target: None, args }))
    }

    /// An error at the node's place in the expression.
    fn error(&self, id: u64, message: String) -> CompileError {
        self.error_back(id, 0, message)
    }

    /// An error `back` characters before the node's place (a call's node is
    /// placed at its `(`; the error names the function before it).
    fn error_back(&self, id: u64, back: usize, message: String) -> CompileError {
        let text = self.program_text();
        let (line, column) = self
            .program
            .source_info()
            .offset_for(id)
            .map(|(start, _)| position(&text, (start as usize).saturating_sub(back)))
            .unwrap_or((1, 1));
        CompileError { line, column, message }
    }

    fn program_text(&self) -> String {
        self.program.source_info().source.clone()
    }

    fn rewrite(&mut self, e: IdedExpr) -> Result<IdedExpr, CompileError> {
        let id = e.id;
        Ok(match e.expr {
            Expr::Ident(name) if !self.bound.contains(&name) && is_const_name(&name) => {
                let Some(v) = self.lib.consts.get(&name) else {
                    return Err(self.error(id, format!("unknown constant {name} (declare it in [const])")));
                };
                self.uses.insert(name);
                let v = v.clone();
                self.constant(&v)
            }
            Expr::Select(s) if s.test && self.on_null == OnNull::False => {
                // has(x.f) && x.f != null: a null field is not there.
                let operand = self.rewrite(*s.operand)?;
                let has = IdedExpr {
                    id,
                    expr: Expr::Select(SelectExpr {
                        operand: Box::new(operand.clone()),
                        field: s.field.clone(),
                        test: true,
                    }),
                };
                let get =
                    self.node(Expr::Select(SelectExpr { operand: Box::new(operand), field: s.field, test: false }));
                let null = self.node(Expr::Literal(LiteralValue::Null));
                let not_null = self.call("_!=_", vec![get, null]);
                self.call("_&&_", vec![has, not_null])
            }
            Expr::Select(s) => {
                IdedExpr { id, expr: Expr::Select(SelectExpr { operand: Box::new(self.rewrite(*s.operand)?), ..s }) }
            }
            Expr::Call(c) if c.target.is_none() && c.func_name == "filter" => self.reference(id, c)?,
            Expr::Call(c) => {
                self.check_call(id, &c)?;
                let target = match c.target {
                    Some(t) => Some(Box::new(self.rewrite(*t)?)),
                    None => None,
                };
                let args = c.args.into_iter().map(|a| self.rewrite(a)).collect::<Result<Vec<_>, _>>()?;
                let func_name = match c.func_name.as_str() {
                    "_+_" => functions::ADD.to_string(),
                    "_-_" if args.len() == 2 => functions::SUB.to_string(),
                    "_*_" => functions::MUL.to_string(),
                    "_/_" => functions::DIV.to_string(),
                    "_<_" if self.on_null == OnNull::False => functions::LT.to_string(),
                    "_<=_" if self.on_null == OnNull::False => functions::LE.to_string(),
                    "_>_" if self.on_null == OnNull::False => functions::GT.to_string(),
                    "_>=_" if self.on_null == OnNull::False => functions::GE.to_string(),
                    _ => c.func_name,
                };
                IdedExpr { id, expr: Expr::Call(CallExpr { func_name, target, args }) }
            }
            Expr::Comprehension(mut c) => {
                c.iter_range = self.rewrite(c.iter_range)?;
                self.bound.push(c.iter_var.clone());
                if let Some(v2) = &c.iter_var2 {
                    self.bound.push(v2.clone());
                }
                self.bound.push(c.accu_var.clone());
                let inner = (|| -> Result<(), CompileError> {
                    c.accu_init = self.rewrite(std::mem::take(&mut c.accu_init))?;
                    c.loop_cond = self.rewrite(std::mem::take(&mut c.loop_cond))?;
                    c.loop_step = self.rewrite(std::mem::take(&mut c.loop_step))?;
                    c.result = self.rewrite(std::mem::take(&mut c.result))?;
                    Ok(())
                })();
                self.bound.truncate(self.bound.len() - if c.iter_var2.is_some() { 3 } else { 2 });
                inner?;
                IdedExpr { id, expr: Expr::Comprehension(c) }
            }
            Expr::List(l) => IdedExpr {
                id,
                expr: Expr::List(ListExpr {
                    elements: l.elements.into_iter().map(|x| self.rewrite(x)).collect::<Result<_, _>>()?,
                    optional_indices: l.optional_indices,
                }),
            },
            other => IdedExpr { id, expr: other },
        })
    }

    /// `filter("name")`: the named filter's expanded tree, in place.
    fn reference(&mut self, id: u64, c: CallExpr) -> Result<IdedExpr, CompileError> {
        let name = match c.args.as_slice() {
            [IdedExpr { expr: Expr::Literal(LiteralValue::String(s)), .. }] => std::string::String::from(s.clone()),
            _ => {
                return Err(self.error_back(
                    id,
                    6,
                    "filter() takes the name of a [filter.NAME] as a string literal".into(),
                ));
            }
        };
        let Some((expr, on_null)) = self.lib.filters.get(&name) else {
            return Err(self.error_back(
                id,
                6,
                format!("unknown filter {name:?} in filter(): declare [filter.{name}]"),
            ));
        };
        if let Some(at) = self.stack.iter().position(|n| *n == name) {
            let mut cycle = self.stack[at..].to_vec();
            cycle.push(name);
            return Err(self.error(id, format!("filters refer to each other in a cycle: {}", cycle.join(" -> "))));
        }
        self.uses.insert(name.clone());
        self.stack.push(name.clone());
        let inner = expand(&name, expr, *on_null, self.lib, self.stack, self.uses);
        self.stack.pop();
        let mut inner = inner.map_err(|e| self.error(id, format!("in filter {name:?}: {}", e.message)))?;
        // Its ids are its own parser's: renumber so they cannot clash.
        self.renumber(&mut inner);
        Ok(inner)
    }

    fn renumber(&mut self, e: &mut IdedExpr) {
        e.id = self.id();
        match &mut e.expr {
            Expr::Call(c) => {
                if let Some(t) = &mut c.target {
                    self.renumber(t);
                }
                for a in &mut c.args {
                    self.renumber(a);
                }
            }
            Expr::Select(s) => self.renumber(&mut s.operand),
            Expr::List(l) => {
                for x in &mut l.elements {
                    self.renumber(x);
                }
            }
            Expr::Comprehension(c) => {
                for x in [&mut c.iter_range, &mut c.accu_init, &mut c.loop_cond, &mut c.loop_step, &mut c.result] {
                    self.renumber(x);
                }
            }
            _ => {}
        }
    }

    fn check_call(&self, id: u64, c: &CallExpr) -> Result<(), CompileError> {
        let name = c.func_name.as_str();
        if name.starts_with('_') || name.starts_with('@') || name.starts_with('!') || name.starts_with('-') {
            return Ok(()); // operators
        }
        let n = c.args.len();
        let arity = if c.target.is_some() { functions::member_arity(name) } else { functions::global_arity(name) };
        match arity {
            None => {
                let known = if c.target.is_some() { functions::MEMBER } else { functions::GLOBAL };
                let names: Vec<&str> = known.iter().map(|(n, _, _)| *n).collect();
                let form = if c.target.is_some() { format!("x.{name}()") } else { format!("{name}()") };
                Err(self.error_back(
                    id,
                    name.chars().count(),
                    format!("unknown function {form} (known: {})", names.join(", ")),
                ))
            }
            Some((min, max)) if n < min || n > max => {
                let want = if min == max { format!("{min}") } else { format!("{min} to {max}") };
                Err(self.error_back(id, name.chars().count(), format!("{name}() takes {want} argument(s), not {n}")))
            }
            Some(_) => Ok(()),
        }
    }

    fn constant(&mut self, v: &ConstValue) -> IdedExpr {
        match v {
            ConstValue::Bool(b) => self.scalar(&ConstScalar::Bool(*b)),
            ConstValue::Int(i) => self.scalar(&ConstScalar::Int(*i)),
            ConstValue::Float(f) => self.scalar(&ConstScalar::Float(*f)),
            ConstValue::Text(t) => self.scalar(&ConstScalar::Text(t.clone())),
            ConstValue::List(items) => {
                let elements = items.iter().map(|x| self.scalar(x)).collect();
                self.node(Expr::List(ListExpr { elements, optional_indices: Vec::new() }))
            }
        }
    }

    fn scalar(&mut self, v: &ConstScalar) -> IdedExpr {
        let lit = match v {
            ConstScalar::Bool(b) => LiteralValue::Boolean(CelBool::from(*b)),
            ConstScalar::Int(i) => LiteralValue::Int(CelInt::from(*i)),
            ConstScalar::Float(f) => LiteralValue::Double(CelDouble::from(*f)),
            ConstScalar::Text(t) => LiteralValue::String(CelString::from(t.clone())),
        };
        self.node(Expr::Literal(lit))
    }
}

/// Line and column (1-based) of the parser's offset (in characters).
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before: String = text.chars().take(offset).collect();
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map(|l| l.chars().count()).unwrap_or(0) + 1;
    (line, column)
}

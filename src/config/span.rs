//! Map a key path (`topic[2].partitions`) back to a line and column in the
//! TOML source that declared it, so errors point at the right place.

use toml_edit::{ImDocument, Item, Table, Value};

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    Index(usize),
}

pub type KeyPath = Vec<Seg>;

/// Build a path from figment's string segments (array indices are digits).
pub fn from_strings(parts: &[String]) -> KeyPath {
    parts
        .iter()
        .map(|p| match p.parse::<usize>() {
            Ok(i) => Seg::Index(i),
            Err(_) => Seg::Key(p.clone()),
        })
        .collect()
}

/// `topic[2].config."retention.ms"` style rendering.
pub fn render(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                if k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
                    out.push_str(k);
                } else {
                    out.push_str(&format!("{k:?}"));
                }
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// A parsed source file with the byte offsets of its line starts.
pub struct SourceDoc {
    pub doc: ImDocument<String>,
    line_starts: Vec<usize>,
}

impl SourceDoc {
    pub fn parse(text: String) -> Result<Self, toml_edit::TomlError> {
        let line_starts = line_starts(&text);
        let doc = ImDocument::parse(text)?;
        Ok(SourceDoc { doc, line_starts })
    }

    /// 1-based (line, column) of the value at `path`, or of the deepest
    /// ancestor that exists. `None` when even the first key is absent.
    pub fn locate(&self, path: &[Seg]) -> Option<(usize, usize)> {
        let offset = locate_in_table(self.doc.as_table(), path)?;
        Some(self.position(offset))
    }

    /// Like [`locate`](Self::locate) but points at the last key, not its value.
    pub fn locate_key(&self, path: &[Seg]) -> Option<(usize, usize)> {
        let (last, parent) = path.split_last()?;
        let Seg::Key(k) = last else {
            return self.locate(path);
        };
        let key_span = container_at(Container::Table(self.doc.as_table()), parent).and_then(|c| match c {
            Container::Table(t) => t.get_key_value(k).and_then(|(key, _)| key.span()),
            Container::Inline(t) => t.get_key_value(k).and_then(|(key, _)| key.span()),
        });
        match key_span {
            Some(s) => Some(self.position(s.start)),
            None => self.locate(path),
        }
    }

    pub fn position(&self, offset: usize) -> (usize, usize) {
        position(&self.line_starts, offset)
    }
}

pub fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect()
}

pub fn position(line_starts: &[usize], offset: usize) -> (usize, usize) {
    let line = match line_starts.binary_search(&offset) {
        Ok(i) => i,
        Err(i) => i - 1,
    };
    (line + 1, offset - line_starts[line] + 1)
}

/// A table-like node that can hold keys.
enum Container<'a> {
    Table(&'a Table),
    Inline(&'a toml_edit::InlineTable),
}

fn container_at<'a>(c: Container<'a>, path: &[Seg]) -> Option<Container<'a>> {
    let Some((seg, rest)) = path.split_first() else {
        return Some(c);
    };
    let Seg::Key(k) = seg else { return None };
    let item = match c {
        Container::Table(t) => t.get(k)?,
        Container::Inline(t) => t.get_key_value(k)?.1,
    };
    match (item, rest.split_first()) {
        (Item::Table(t), _) => container_at(Container::Table(t), rest),
        (Item::Value(Value::InlineTable(t)), _) => container_at(Container::Inline(t), rest),
        (Item::ArrayOfTables(a), Some((Seg::Index(i), rest2))) => container_at(Container::Table(a.get(*i)?), rest2),
        _ => None,
    }
}

fn locate_in_table(table: &Table, path: &[Seg]) -> Option<usize> {
    let Some((Seg::Key(k), rest)) = path.split_first() else {
        return None;
    };
    let (key, item) = table.get_key_value(k)?;
    let here = key.span().map(|s| s.start);
    match locate_in_item(item, rest) {
        Some(off) => Some(off),
        None => here.or_else(|| item.span().map(|s| s.start)),
    }
}

fn locate_in_item(item: &Item, path: &[Seg]) -> Option<usize> {
    if path.is_empty() {
        return item.span().map(|s| s.start);
    }
    match item {
        Item::Table(t) => locate_in_table(t, path),
        Item::ArrayOfTables(a) => match path.split_first() {
            Some((Seg::Index(i), rest)) => {
                let t = a.get(*i)?;
                locate_in_table(t, rest).or_else(|| t.span().map(|s| s.start))
            }
            _ => a.span().map(|s| s.start),
        },
        Item::Value(v) => locate_in_value(v, path),
        Item::None => None,
    }
}

fn locate_in_value(value: &Value, path: &[Seg]) -> Option<usize> {
    if path.is_empty() {
        return value.span().map(|s| s.start);
    }
    match (value, &path[0]) {
        (Value::InlineTable(t), Seg::Key(k)) => {
            let (key, item) = t.get_key_value(k)?;
            item.as_value().and_then(|v| locate_in_value(v, &path[1..])).or_else(|| key.span().map(|s| s.start))
        }
        (Value::Array(a), Seg::Index(i)) => {
            let v = a.get(*i)?;
            locate_in_value(v, &path[1..]).or_else(|| v.span().map(|s| s.start))
        }
        _ => value.span().map(|s| s.start),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Seg {
        Seg::Key(s.into())
    }

    #[test]
    fn locates_values_in_arrays_of_tables_and_inline_tables() {
        let src = "[cluster]\nbootstrap = [\"a:1\"]\n\n[[topic]]\nname = \"a\"\n\n[[topic]]\nname = \"b\"\npartitions = -1\nconfig = { \"retention.ms\" = 5 }\n";
        let doc = SourceDoc::parse(src.to_string()).unwrap();
        assert_eq!(doc.locate(&[k("topic"), Seg::Index(1), k("partitions")]), Some((9, 14)));
        assert_eq!(doc.locate(&[k("cluster"), k("bootstrap")]), Some((2, 13)));
        assert_eq!(doc.locate(&[k("topic"), Seg::Index(1), k("config"), k("retention.ms")]), Some((10, 29)));
        // Missing leaf: falls back to the nearest ancestor that exists.
        assert_eq!(doc.locate(&[k("topic"), Seg::Index(0), k("partitions")]), Some((4, 1)));
        assert_eq!(doc.locate(&[k("nothing")]), None);
        assert_eq!(
            render(&[k("topic"), Seg::Index(1), k("config"), k("retention.ms")]),
            "topic[1].config.\"retention.ms\""
        );
    }
}

#[cfg(test)]
mod key_tests {
    use super::*;
    #[test]
    fn key_position() {
        let doc = SourceDoc::parse("[local]\nbrokers = 1\nbrokres = 2\n".to_string()).unwrap();
        assert_eq!(doc.locate_key(&[Seg::Key("local".into()), Seg::Key("brokres".into())]), Some((3, 1)));
    }
}

//! `fink import-rules`: Fink's legacy distribution rules (XML with
//! `<select>`, `<drop>`, `<filter>` of `<column name= subcol= operator=
//! value=>`) as the equivalent `[[stream]]` select/drop and CEL filter.

#[derive(Debug, Clone, PartialEq)]
pub struct Imported {
    pub select: Vec<String>,
    pub drop: Vec<String>,
    /// CEL, `None` when the file has no filter rules.
    pub filter: Option<String>,
}

fn column_path(node: roxmltree::Node<'_, '_>, section: &str, doc: &roxmltree::Document<'_>) -> Result<String, String> {
    let pos = doc.text_pos_at(node.range().start);
    let name = node
        .attribute("name")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("line {}: <column> in <{section}> has no name", pos.row))?;
    Ok(match node.attribute("subcol").filter(|s| !s.is_empty()) {
        Some(sub) => format!("{name}.{sub}"),
        None => name.to_string(),
    })
}

/// Does `path` survive select-then-drop?
fn kept(path: &str, select: &[String], drop: &[String]) -> bool {
    let covers = |p: &String| path == p || path.starts_with(&format!("{p}."));
    let selected = select.iter().any(covers) || select.iter().any(|s| s.starts_with(&format!("{path}.")));
    selected && !drop.iter().any(covers)
}

/// A CEL literal for a rule value: quoted strings stay strings, numbers
/// become doubles (alert columns compared this way are floating point).
fn literal(value: &str) -> Result<String, String> {
    let v = value.trim();
    if let Some(s) = v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        return Ok(serde_json::to_string(s).expect("a string serialises"));
    }
    match v.parse::<f64>() {
        Ok(n) if v.contains('.') || v.contains('e') || v.contains('E') => Ok(format!("{n:?}")),
        Ok(n) => Ok(format!("{n:.1}")),
        Err(_) => Err(format!("value {value:?} is neither a number nor a 'quoted string'")),
    }
}

pub fn import(xml: &str) -> Result<Imported, String> {
    let opts = roxmltree::ParsingOptions { allow_dtd: true, ..Default::default() };
    let doc = roxmltree::Document::parse_with_options(xml, opts).map_err(|e| format!("malformed XML: {e}"))?;
    let root = doc.root_element();
    if root.tag_name().name() != "distribution-rules" {
        return Err(format!("the root element is <{}>, not <distribution-rules>", root.tag_name().name()));
    }
    let section = |name: &str| root.children().find(|n| n.is_element() && n.tag_name().name() == name);
    for child in root.children().filter(|n| n.is_element()) {
        let n = child.tag_name().name();
        if !matches!(n, "select" | "drop" | "filter") {
            let pos = doc.text_pos_at(child.range().start);
            return Err(format!("line {}: unknown element <{n}> (expected select, drop, filter)", pos.row));
        }
    }
    let columns = |name: &str| -> Vec<roxmltree::Node<'_, '_>> {
        section(name)
            .map(|s| s.children().filter(|n| n.is_element() && n.tag_name().name() == "column").collect())
            .unwrap_or_default()
    };
    let select_nodes = columns("select");
    if section("select").is_none() || select_nodes.is_empty() {
        return Err("<select> with at least one <column> is required".into());
    }
    let select = select_nodes.iter().map(|n| column_path(*n, "select", &doc)).collect::<Result<Vec<_>, _>>()?;
    let drop = columns("drop").iter().map(|n| column_path(*n, "drop", &doc)).collect::<Result<Vec<_>, _>>()?;
    let mut terms = Vec::new();
    for n in columns("filter") {
        let pos = doc.text_pos_at(n.range().start);
        let path = column_path(n, "filter", &doc)?;
        let op = n
            .attribute("operator")
            .ok_or_else(|| format!("line {}: filter rule on {path:?} has no operator", pos.row))?;
        let cel_op = match op {
            "<" => "<",
            ">" => ">",
            "=" => "==",
            other => {
                return Err(format!(
                    "line {}: unknown operator {other:?} on {path:?} (the format allows <, = and >)",
                    pos.row
                ))
            }
        };
        let value =
            n.attribute("value").ok_or_else(|| format!("line {}: filter rule on {path:?} has no value", pos.row))?;
        if !kept(&path, &select, &drop) {
            return Err(format!(
                "line {}: filter rule on {path:?}, which is not distributed (rules may only use columns that are selected and not dropped)",
                pos.row
            ));
        }
        let lit = literal(value).map_err(|e| format!("line {}: {e}", pos.row))?;
        terms.push(format!("{path} {cel_op} {lit}"));
    }
    Ok(Imported { select, drop, filter: if terms.is_empty() { None } else { Some(terms.join(" && ")) } })
}

/// The `[filter.NAME]` and `[[stream]]` TOML for an imported rule file,
/// built with toml_edit so any name or value is quoted and escaped as TOML
/// requires.
pub fn to_toml(i: &Imported, name: &str, topic: &str, source: &str, origin: &str) -> String {
    use toml_edit::{value, Array, ArrayOfTables, DocumentMut, InlineTable, Item, Table};
    let list = |v: &[String]| value(v.iter().map(String::as_str).collect::<Array>());
    let mut doc = DocumentMut::new();
    if let Some(f) = &i.filter {
        let mut filter = Table::new();
        filter["expr"] = value(f.as_str());
        let mut filters = Table::new();
        filters.set_implicit(true);
        filters.insert(name, Item::Table(filter));
        doc["filter"] = Item::Table(filters);
    }
    let mut stream = Table::new();
    stream["name"] = value(name);
    let mut src = InlineTable::new();
    src.insert("format", "parquet".into());
    src.insert("path", source.into());
    stream["source"] = value(src);
    stream["topic"] = value(topic);
    stream["select"] = list(&i.select);
    if !i.drop.is_empty() {
        stream["drop"] = list(&i.drop);
    }
    if i.filter.is_some() {
        stream["filters"] = list(&[name.to_string()]);
    }
    let mut streams = ArrayOfTables::new();
    streams.push(stream);
    doc["stream"] = Item::ArrayOfTables(streams);
    // A comment line cannot hold a line break: show those escaped.
    let origin: String = origin
        .chars()
        .flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] })
        .collect();
    format!("# Imported from {origin} by `fink import-rules`.\n{doc}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(body: &str) -> String {
        format!("<?xml version=\"1.0\"?>\n<distribution-rules>\n{body}\n</distribution-rules>\n")
    }

    #[test]
    fn operators_strings_and_numbers() {
        let i = import(&rules(
            "<select><column name=\"candidate\"/><column name=\"simbadType\"/></select>\n<filter><column name=\"candidate\" subcol=\"magpsf\" operator=\"&lt;\" value=\"19\"/><column name=\"simbadType\" operator=\"=\" value=\"'Star'\"/><column name=\"candidate\" subcol=\"rb\" operator=\"&gt;\" value=\"0.55\"/></filter>",
        ))
        .unwrap();
        assert_eq!(
            i.filter.as_deref(),
            Some("candidate.magpsf < 19.0 && simbadType == \"Star\" && candidate.rb > 0.55")
        );
        crate::stream::filter::Filter::compile("t", i.filter.as_deref().unwrap()).unwrap();
    }

    #[test]
    fn the_toml_round_trips_for_any_name_and_value() {
        let odd = "a \"quoted\" \\ back\\slash, ünïcode ☄, tab\t and\nnewline";
        let i = Imported {
            select: vec!["objectId".into(), odd.into()],
            drop: vec![odd.into()],
            filter: Some(format!("objectId == \"{}\"", odd.replace('\\', "\\\\").replace('"', "\\\""))),
        };
        let text = to_toml(&i, odd, odd, odd, "rules\n.xml");
        let parsed: toml::Value = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(parsed["filter"][odd]["expr"].as_str(), i.filter.as_deref());
        let s = &parsed["stream"][0];
        for key in ["name", "topic"] {
            assert_eq!(s[key].as_str(), Some(odd));
        }
        assert_eq!(s["source"]["path"].as_str(), Some(odd));
        assert_eq!(s["select"][1].as_str(), Some(odd));
        assert_eq!(s["drop"][0].as_str(), Some(odd));
        assert_eq!(s["filters"][0].as_str(), Some(odd));
        assert!(text.starts_with("# Imported from rules\\n.xml"), "{text}");
    }

    #[test]
    fn errors_are_clear() {
        let e = import(&rules(
            "<select><column name=\"a\"/></select><filter><column name=\"a\" operator=\"!=\" value=\"1\"/></filter>",
        ))
        .unwrap_err();
        assert!(e.contains("unknown operator \"!=\""), "{e}");
        let e = import(&rules("<select><column name=\"a\"/><column name=\"b\"/></select><drop><column name=\"b\"/></drop><filter><column name=\"b\" operator=\"=\" value=\"1\"/></filter>")).unwrap_err();
        assert!(e.contains("not distributed"), "{e}");
        let e = import("<distribution-rules><select><column name=\"a\"></select></distribution-rules>").unwrap_err();
        assert!(e.starts_with("malformed XML"), "{e}");
    }
}

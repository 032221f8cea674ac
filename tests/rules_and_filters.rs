//! Fink users' path without Kafka: legacy XML rules import, and filter
//! dry-runs on every real alert file in ../shared/data.

mod common;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

fn data_files() -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.to_string_lossy().ends_with(".parquet") || p.to_string_lossy().ends_with(".avro") {
                out.push(p);
            }
        }
    }
    let mut v = Vec::new();
    walk(&shared_data().join("ztf"), &mut v);
    v.sort();
    v
}

/// Records read independently of fink (Parquet row API, apache-avro).
fn records(f: &Path) -> Vec<Value> {
    if f.to_string_lossy().ends_with(".parquet") {
        let reader = parquet::file::reader::SerializedFileReader::new(std::fs::File::open(f).unwrap()).unwrap();
        parquet::file::reader::FileReader::get_row_iter(&reader, None)
            .unwrap()
            .map(|r| r.unwrap().to_json_value())
            .collect()
    } else {
        apache_avro::Reader::new(std::fs::File::open(f).unwrap())
            .unwrap()
            .map(|v| fink::stream::consume::to_json(&v.unwrap()))
            .collect()
    }
}

fn kept_by_fink(expr: &str, file: &Path) -> Vec<String> {
    let w = Workspace::new();
    let r = w.fink(&["filter", "test", "--data", file.to_str().unwrap(), "--expr", expr, "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    serde_json::from_value(v[0]["kept_ids"].clone()).unwrap()
}

fn check(expr: &str, pred: impl Fn(&Value) -> bool) -> (usize, usize) {
    let (mut kept, mut total) = (0, 0);
    for f in data_files() {
        let recs = records(&f);
        let expected: Vec<String> =
            recs.iter().filter(|r| pred(r)).map(|r| r["objectId"].as_str().unwrap().to_string()).collect();
        let got = kept_by_fink(expr, &f);
        assert_eq!(got, expected, "{expr} on {}", f.display());
        kept += expected.len();
        total += recs.len();
    }
    (kept, total)
}

fn num(v: &Value, k: &str) -> Option<f64> {
    v["candidate"][k].as_f64()
}

#[test]
fn level_two_python_cut_as_cel_on_every_file() {
    // Fink's Python level-two example: sigmapsf < 0.1 and sgscore1 >= 0.75 on candidate.
    let (kept, total) =
        check("has(candidate.sgscore1) && candidate.sigmapsf < 0.1 && candidate.sgscore1 >= 0.75", |r| {
            num(r, "sigmapsf").is_some_and(|s| s < 0.1) && num(r, "sgscore1").is_some_and(|s| s >= 0.75)
        });
    assert!(kept > 0 && kept < total, "the cut must keep some alerts and drop others ({kept} of {total})");
}

#[test]
fn imported_example_rules_filter_on_every_file() {
    // The filter the legacy example rule file imports to.
    let out =
        Workspace::new().fink(&["import-rules", shared_data().join("legacy/distribution-rules.xml").to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.all());
    let t: toml::Value = toml::from_str(&out.stdout).unwrap();
    let expr = t["filter"]["distribution_rules"]["expr"].as_str().unwrap().to_string();
    assert_eq!(expr, "candidate.magpsf > 12.0 && candidate.ra > 11.0");
    // The example rules happen to keep every sample alert; the comparison is still exact per file.
    let (kept, _) = check(&expr, |r| num(r, "magpsf").unwrap() > 12.0 && num(r, "ra").unwrap() > 11.0);
    assert!(kept > 0);
    let (kept, total) = check("candidate.magpsf < 17.0", |r| num(r, "magpsf").unwrap() < 17.0);
    assert!(kept > 0 && kept < total, "{kept} of {total}");
}

#[test]
fn import_rules_on_the_legacy_file_gives_a_valid_stream() {
    let w = Workspace::new();
    let r = w.fink(&[
        "import-rules",
        shared_data().join("legacy/distribution-rules.xml").to_str().unwrap(),
        "--name",
        "legacy",
        "--topic",
        "t",
    ]);
    assert_eq!(r.code, 0, "{}", r.all());
    let t: toml::Value = toml::from_str(&r.stdout).unwrap();
    let s = &t["stream"][0];
    let select: Vec<String> = s["select"].as_array().unwrap().iter().map(|x| x.as_str().unwrap().to_string()).collect();
    assert_eq!(select[..4], ["objectId", "candid", "candidate.pid", "candidate.ra"]);
    assert!(select.contains(&"simbadType".to_string()) && select.contains(&"status".to_string()));
    assert_eq!(s["drop"].as_array().unwrap(), &vec![toml::Value::String("prv_candidates".into())]);
    assert_eq!(s["filters"][0].as_str(), Some("legacy"));
    // Pasted into a fink.toml, it validates.
    w.write("admin.pw", "x\n");
    w.write(
        "fink.toml",
        &format!("[cluster]\nbootstrap = [\"h:1\"]\n[cluster.admin]\nuser = \"admin\"\npassword = {{ file = \"admin.pw\" }}\n[[topic]]\nname = \"t\"\n{}", r.stdout),
    );
    let v = w.fink(&["validate"]);
    assert_eq!(v.code, 0, "{}", v.all());
}

#[test]
fn malformed_rule_files_give_clear_errors() {
    let w = Workspace::new();
    let cases = [
        ("broken.xml", "<distribution-rules><select><column name=\"a\"></select></distribution-rules>", "malformed XML"),
        (
            "op.xml",
            "<distribution-rules><select><column name=\"candidate\"/></select><filter><column name=\"candidate\" subcol=\"magpsf\" operator=\"&lt;=\" value=\"19\"/></filter></distribution-rules>",
            "unknown operator \"<=\"",
        ),
        (
            "dropped.xml",
            "<distribution-rules><select><column name=\"objectId\"/><column name=\"candidate\"/></select><drop><column name=\"candidate\"/></drop>\n<filter><column name=\"candidate\" subcol=\"magpsf\" operator=\"&gt;\" value=\"12\"/></filter></distribution-rules>",
            "line 2: filter rule on \"candidate.magpsf\", which is not distributed",
        ),
        ("noselect.xml", "<distribution-rules><drop><column name=\"a\"/></drop></distribution-rules>", "<select> with at least one <column> is required"),
    ];
    for (name, xml, expected) in cases {
        let p = w.write(name, xml);
        let r = w.fink(&["import-rules", p.to_str().unwrap()]);
        assert_eq!(r.code, 1, "{name}: {}", r.all());
        assert!(r.stderr.contains(expected), "{name}: expected {expected:?} in {}", r.stderr);
        assert!(r.stderr.contains(name), "the error names the file: {}", r.stderr);
    }
}

#[test]
fn filter_test_reports_fields_and_fails_on_evaluation_errors() {
    let w = Workspace::new();
    let f = shared_data().join("ztf/alerts");
    let r = w.fink(&[
        "filter",
        "test",
        "--data",
        f.to_str().unwrap(),
        "--expr",
        "prv_candidates.exists(p, p.magpsf < 17.0)",
        "--output",
        "json",
    ]);
    assert_eq!(r.code, 1, "unguarded nulls must fail: {}", r.all());
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(v[0]["errors"].as_u64().unwrap() > 0);
    assert!(v[0]["first_errors"][0].as_str().unwrap().contains("magpsf"));
    let fields: BTreeSet<String> =
        v[0]["fields"].as_array().unwrap().iter().map(|x| x["field"].as_str().unwrap().to_string()).collect();
    assert_eq!(fields, BTreeSet::from(["prv_candidates".to_string(), "prv_candidates.magpsf".to_string()]));
    let nulls = v[0]["fields"].as_array().unwrap().iter().find(|x| x["field"] == "prv_candidates.magpsf").unwrap()
        ["nulls"]
        .as_u64()
        .unwrap();
    assert!(nulls > 0, "upper limits have no magpsf");
    let r = w.fink(&[
        "filter",
        "test",
        "--data",
        f.to_str().unwrap(),
        "--expr",
        "prv_candidates.exists(p, has(p.magpsf) && p.magpsf < 17.0)",
    ]);
    assert_eq!(r.code, 0, "{}", r.all());
}

//! fink.toml as a product: its JSON Schema is current and every shipped
//! TOML (fink.toml, profiles/, conf/, README's examples) passes it with an
//! independent validator (the `jsonschema` crate); the Avro schemas in
//! schemas/avro/ are what the shipped streams publish; validate catches
//! config errors that need no cluster, each with file:line:column; bad
//! input never panics; completions, man page and `fink init` work.

mod common;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

fn fink_in(dir: &Path, args: &[&str]) -> Run {
    std::process::Command::new(fink_bin())
        .current_dir(dir)
        .args(args)
        .env_remove("FINK_PROFILE")
        .env_remove("FINK_CONFIG")
        .env("NO_COLOR", "1")
        .output()
        .expect("run fink")
        .into()
}

fn schema() -> Value {
    serde_json::from_str(&std::fs::read_to_string(repo().join("schemas/fink.schema.json")).unwrap()).unwrap()
}

#[test]
fn the_checked_in_json_schema_is_current() {
    let r = fink_in(&repo(), &["schema"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let generated: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(generated, schema(), "schemas/fink.schema.json is stale: run `fink schema > schemas/fink.schema.json`");
    // Descriptions come from the model's doc comments.
    assert!(r.stdout.contains("Delete live resources that `fink.toml` does not declare."));
}

fn shipped_toml() -> Vec<PathBuf> {
    let mut files = vec![repo().join("fink.toml")];
    for dir in ["profiles", "conf/fink"] {
        let mut v: Vec<PathBuf> = std::fs::read_dir(repo().join(dir))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "toml"))
            .collect();
        v.sort();
        files.extend(v);
    }
    files
}

fn toml_blocks(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in markdown.lines() {
        match (&mut cur, line.trim_start()) {
            // ```toml,invalid marks an example of an error (tests/docs.rs).
            (None, l) if l.starts_with("```toml") && !l.contains("invalid") => cur = Some(String::new()),
            (Some(_), l) if l.starts_with("```") => out.push(cur.take().unwrap()),
            (Some(b), _) => {
                b.push_str(line);
                b.push('\n');
            }
            _ => {}
        }
    }
    out
}

#[test]
fn every_shipped_toml_and_readme_example_passes_the_schema() {
    let validator = jsonschema::validator_for(&schema()).expect("a valid JSON Schema");
    let mut checked = 0;
    let mut docs: Vec<(String, String)> = shipped_toml()
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            // Editors find the schema through this line.
            assert!(text.starts_with("#:schema "), "{} does not start with a #:schema line", p.display());
            let target = text.lines().next().unwrap().trim_start_matches("#:schema ").trim();
            assert!(p.parent().unwrap().join(target).is_file(), "{}: {target} is not there", p.display());
            (p.display().to_string(), text)
        })
        .collect();
    // README's examples and the handbook's.
    let mut pages = vec![repo().join("README.md")];
    pages.extend(walk(&repo().join("docs/src")).into_iter().filter(|p| p.extension().is_some_and(|e| e == "md")));
    for page in pages {
        let text = std::fs::read_to_string(&page).unwrap();
        let name = page.strip_prefix(repo()).unwrap().display().to_string();
        docs.extend(toml_blocks(&text).into_iter().enumerate().map(|(i, b)| (format!("{name} toml block {i}"), b)));
    }
    assert!(docs.len() > 10);
    for (name, text) in docs {
        let value: toml::Value = toml::from_str(&text).unwrap_or_else(|e| panic!("{name}: not TOML: {e}"));
        let json = serde_json::to_value(&value).unwrap();
        let errors: Vec<String> =
            validator.iter_errors(&json).map(|e| format!("{} at {}", e, e.instance_path())).collect();
        assert!(errors.is_empty(), "{name} does not pass the schema:\n{}", errors.join("\n"));
        checked += 1;
    }
    // The schema is not a rubber stamp.
    for bad in ["prune = \"yes\"", "[run]\nbatch_sise = 10", "[[stream]]\nname = 1"] {
        let json = serde_json::to_value(toml::from_str::<toml::Value>(bad).unwrap()).unwrap();
        assert!(!validator.is_valid(&json), "{bad:?} passed the schema");
    }
    assert!(checked > 10);
}

#[test]
fn the_avro_schemas_of_the_shipped_streams_are_current() {
    let data = shared_data().join("ztf/science");
    let mut n = 0;
    for entry in std::fs::read_dir(repo().join("schemas/avro")).unwrap().flatten() {
        let path = entry.path();
        let stream = path.file_stem().unwrap().to_string_lossy().to_string();
        let r = fink_in(&repo(), &["schema", "--stream", &stream, "--data", &data.display().to_string()]);
        assert_eq!(r.code, 0, "{stream}: {}", r.all());
        let want: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let got: Value = serde_json::from_str(&r.stdout).unwrap();
        assert_eq!(got, want, "schemas/avro/{stream}.avsc is stale: `fink schema --stream {stream} --data ...`");
        n += 1;
    }
    // Every stream fink.toml ships has its schema there.
    let cfg: toml::Value =
        toml::from_str(&std::fs::read_to_string(repo().join("conf/fink/ztf.toml")).unwrap()).unwrap();
    let streams = cfg["stream"].as_array().unwrap().len();
    assert_eq!(n, streams + 1, "the ZTF catalogue's streams and the bright example");
}

/// A workspace whose fink.toml is `body` (no cluster needed: validate).
fn validate(body: &str) -> Run {
    let w = Workspace::new();
    w.config(body);
    w.fink(&["validate"])
}

fn assert_error_at(r: &Run, line: usize, says: &str) {
    assert_eq!(r.code, 1, "{}", r.all());
    let want = format!("fink.toml:{line}:");
    assert!(r.all().contains(&want) && r.all().contains(says), "want {want} and {says:?}:\n{}", r.all());
    assert!(!r.all().contains("panicked"), "{}", r.all());
}

#[test]
fn validate_catches_config_errors_that_need_no_cluster() {
    let header_lines = Workspace::cluster_header().lines().count() + 1;
    let stream = "[[topic]]\nname = \"t\"\n[[stream]]\nname = \"s\"\nsource = { format = \"parquet\", path = \"x\" }\ntopic = \"t\"\n";
    let at = |n: usize| header_lines + n;
    // Unknown function (the CEL program is checked against fink's functions).
    assert_error_at(
        &validate(&format!("{stream}filter = \"nosuchfunc(candidate.magpsf) > 1\"\n")),
        at(7),
        "nosuchfunc",
    );
    assert_error_at(&validate("[run]\nbatch_size = 0\n"), at(2), "batch_size must be at least 1");
    assert_error_at(&validate("[run]\nmax_in_flight = 0\n"), at(2), "max_in_flight must be at least 1");
    assert_error_at(&validate("[run]\nstall_after_s = 0\n"), at(2), "stall_after_s must be at least 1");
    assert_error_at(&validate("[run]\nmetrics_addr = \"not an address\"\n"), at(2), "not an address");
    assert_error_at(&validate("[run]\nmetrics_addr = \"127.0.0.1:99999\"\n"), at(2), "not a port number");
    assert_error_at(&validate(&format!("{stream}[stream.producer]\ncompression = \"brotli\"\n")), at(8), "brotli");
    assert_error_at(
        &validate(&format!("{stream}[stream.producer.properties]\n\"no.such.property\" = \"1\"\n")),
        at(8),
        "No such configuration property",
    );
    assert_error_at(
        &validate(&format!("{stream}[stream.producer.properties]\n\"linger.ms\" = \"soon\"\n")),
        at(8),
        "linger.ms",
    );
    assert_error_at(&validate(&format!("{stream}[stream.producer]\nbatch_size = 0\n")), at(8), "batch_size");
    // A bad source URL (remote sources are checked without connecting).
    assert_error_at(
        &validate("[[topic]]\nname = \"t\"\n[[stream]]\nname = \"s\"\nsource = { format = \"parquet\", path = \"s3://\" }\ntopic = \"t\"\n"),
        at(5),
        "needs a bucket",
    );
}

#[test]
fn bad_bytes_give_a_line_and_a_byte_offset_never_a_panic() {
    let w = Workspace::new();
    // Not UTF-8 on line 3.
    w.write("fink.toml", "");
    std::fs::write(w.path().join("fink.toml"), b"prune = false\nignore = []\n# caf\xe9\n").unwrap();
    let r = w.fink(&["validate"]);
    assert_error_at(&r, 3, "byte offset 31");
    // 10 MB of random bytes.
    let mut bytes = vec![0u8; 10 << 20];
    getrandom::fill(&mut bytes).unwrap();
    std::fs::write(w.path().join("fink.toml"), &bytes).unwrap();
    let r = w.fink(&["validate"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.all().contains("fink.toml:") && !r.all().contains("panicked"), "{}", &r.all()[..r.all().len().min(2000)]);
    // TOML nested 10,000 levels deep.
    w.write("fink.toml", &format!("a = {}{}\n", "[".repeat(10_000), "]".repeat(10_000)));
    let r = w.fink(&["validate"]);
    assert_error_at(&r, 1, "recursion limit");
    // A 1 MB string: the error quotes it shortened.
    w.write("fink.toml", &format!("prune = \"{}\"\n", "x".repeat(1 << 20)));
    let r = w.fink(&["validate"]);
    assert_error_at(&r, 1, "prune");
    assert!(r.all().len() < 4000, "the message is not the 1 MB value: {} bytes", r.all().len());
    // A filter expression 100 KB long.
    let expr = vec!["candidate.magpsf > 1.0"; 100_000 / 24].join(" && ");
    let r = validate(&format!(
        "[[topic]]\nname = \"t\"\n[[stream]]\nname = \"s\"\nsource = {{ format = \"parquet\", path = \"x\" }}\ntopic = \"t\"\nfilter = \"{expr} && nosuch(1)\"\n"
    ));
    assert_eq!(r.code, 1, "{}", &r.all()[..r.all().len().min(2000)]);
    assert!(r.all().contains("fink.toml:") && r.all().contains("nosuch"), "{}", &r.all()[..r.all().len().min(2000)]);
    assert!(!r.all().contains("panicked"));
}

#[test]
fn completions_man_page_and_init() {
    let tmp = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let r = fink_in(tmp.path(), &["completions", shell]);
        assert_eq!(r.code, 0, "{}", r.all());
        assert!(r.stdout.contains("fink") && r.stdout.contains("validate"), "{shell}");
    }
    let r = fink_in(tmp.path(), &["man"]);
    assert_eq!(r.code, 0);
    assert!(r.stdout.contains(".TH fink") && r.stdout.contains("validate"), "{}", &r.stdout[..300.min(r.stdout.len())]);

    let dir = tmp.path().join("deploy");
    let r = fink_in(tmp.path(), &["init", &dir.display().to_string()]);
    assert_eq!(r.code, 0, "{}", r.all());
    for f in [
        "fink.toml",
        "profiles/local.toml",
        "profiles/prod.toml",
        ".gitignore",
        "README.fink.md",
        "schemas/fink.schema.json",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing:\n{}", r.all());
    }
    assert!(std::fs::read_to_string(dir.join("fink.toml")).unwrap().starts_with("#:schema ./schemas/fink.schema.json"));
    assert_eq!(std::fs::read_to_string(dir.join(".gitignore")).unwrap(), ".fink/\n");
    // The scaffold validates, alone and with each profile.
    for args in [vec!["validate"], vec!["--profile", "local", "validate"]] {
        let r = fink_in(&dir, &args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.all());
    }
    // Never overwrites.
    std::fs::write(dir.join("fink.toml"), "# mine\n").unwrap();
    let r = fink_in(tmp.path(), &["init", &dir.display().to_string()]);
    assert_eq!(r.code, 0);
    assert_eq!(std::fs::read_to_string(dir.join("fink.toml")).unwrap(), "# mine\n");
    assert!(r.stdout.contains("kept"), "{}", r.stdout);
}

#[test]
fn filter_test_reports_a_null_struct_as_null() {
    let tmp = tempfile::tempdir().unwrap();
    let data = shared_data().join("lsst/science");
    let r = fink_in(
        tmp.path(),
        &["filter", "test", "--data", &data.display().to_string(), "--expr", "has(diaObject.ra)", "--output", "json"],
    );
    // Exit 1: the filter cannot be evaluated where diaObject is null.
    assert_eq!(r.code, 1, "{}", r.all());
    let rep: Value = serde_json::from_str(&r.stdout).unwrap();
    let fields = rep[0]["fields"].as_array().unwrap();
    let nulls = |f: &str| fields.iter().find(|x| x["field"] == f).map(|x| x["nulls"].as_u64().unwrap());
    // Known asteroids have no diaObject: the struct itself is null.
    assert_eq!(nulls("diaObject"), Some(3), "{}", r.stdout);
    assert_eq!(nulls("diaObject.ra"), Some(3));
}

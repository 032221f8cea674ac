//! Property tests (fuzzing) of what reads user input: loading and
//! validating fink.toml, and compiling CEL filters. Inputs are random
//! mixes of the tokens these parsers know, so most cases get past the
//! first syntax check. No input may panic; every config error carries a
//! location. PROPTEST_CASES raises the number of cases (README says how
//! long they ran).

use proptest::prelude::*;

use fink::config::LoadOptions;
use fink::stream::filter::{Filter, Library, OnNull};

const KEYS: &[&str] = &[
    "prune",
    "ignore",
    "scope",
    "include",
    "name",
    "partitions",
    "replication_factor",
    "config",
    "user",
    "password",
    "mechanism",
    "role",
    "topic",
    "group",
    "resource",
    "operation",
    "expr",
    "on_null",
    "filters",
    "filter",
    "select",
    "drop",
    "source",
    "format",
    "path",
    "storage",
    "endpoint",
    "secret_key",
    "batch_size",
    "metrics_addr",
    "delivery",
    "state_topic",
    "bootstrap",
    "timeout_secs",
    "properties",
    "compression",
    "linger_ms",
    "env",
    "file",
];
const TABLES: &[&str] = &[
    "[cluster]",
    "[cluster.admin]",
    "[run]",
    "[local]",
    "[defaults]",
    "[[topic]]",
    "[[user]]",
    "[[acl]]",
    "[[stream]]",
    "[filter.f]",
    "[const]",
    "[[notify]]",
    "[storage.s]",
    "[stream.producer]",
    "[topic.config]",
];
const VALUES: &[&str] = &[
    "1",
    "0",
    "-1",
    "3.5",
    "true",
    "\"x\"",
    "\"\"",
    "[]",
    "[\"a\", \"b\"]",
    "{ env = \"V\" }",
    "{ file = \"f\" }",
    "\"s3://b/p\"",
    "\"hdfs://nn:1/p\"",
    "\"ftp://x\"",
    "\"parquet\"",
    "\"avro\"",
    "\"zstd\"",
    "\"127.0.0.1:0\"",
    "{ format = \"parquet\", path = \"x\" }",
    "\"candidate.magpsf < 16\"",
    "1979-05-27",
    "\"\\u00e9\"",
    "{",
    "[",
    "\"unterminated",
    "9999999999999999999999",
];

fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (prop::sample::select(KEYS), prop::sample::select(VALUES)).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => prop::sample::select(TABLES).prop_map(String::from),
        1 => "[ -~]{0,20}",
    ]
}

fn document() -> impl Strategy<Value = String> {
    prop::collection::vec(line(), 0..30).prop_map(|lines| lines.join("\n"))
}

const CEL: &[&str] = &[
    "candidate",
    ".",
    "magpsf",
    "rb",
    "prv_candidates",
    "cdsxmatch",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    "<",
    "<=",
    ">",
    ">=",
    "==",
    "!=",
    "&&",
    "||",
    "!",
    "-",
    "+",
    "*",
    "/",
    "%",
    "?",
    "1",
    "0.5",
    "\"s\"",
    "'t'",
    "true",
    "null",
    "in",
    "has",
    "size",
    "exists",
    "all",
    "map",
    "filter",
    "x",
    "EG_HOST",
    "int",
    "double",
    "string",
    "ang_sep",
    "mjd_now",
    "matches",
    "startsWith",
    "b\"x\"",
    "1u",
    "0x1f",
    "\\",
    "`",
    "@",
];

fn expression() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(CEL), 0..40).prop_map(|t| t.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn loading_and_validating_any_config_never_panics(doc in document()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fink.toml");
        std::fs::write(&path, &doc).unwrap();
        let mut opts = LoadOptions::new(&path);
        opts.env_overrides = false;
        match fink::check::load(&opts) {
            Ok(_) => {}
            Err(errors) => {
                for e in &errors.0 {
                    // Every error names the file (and, when a span exists, the line).
                    prop_assert!(e.file.is_some(), "{e:?} in\n{doc}");
                }
            }
        }
    }

    #[test]
    fn compiling_any_filter_never_panics(expr in expression()) {
        let lib = Library::default();
        for on_null in [OnNull::Error, OnNull::False] {
            let _ = Filter::compile_in("f", &expr, on_null, &lib);
        }
    }
}

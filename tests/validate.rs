//! `fink validate` on broken configs: each error names file, line and column.

mod common;
use common::Workspace;

const HEAD: &str = "[cluster]\nbootstrap = [\"127.0.0.1:9092\"]\n[cluster.admin]\nuser = \"admin\"\npassword = { file = \"admin.pw\" }\n";

/// A workspace whose fink.toml starts with `top` (keys before any table).
fn ws_top(top: &str, body: &str) -> Workspace {
    let w = Workspace::new();
    w.write("admin.pw", "secret\n");
    w.write("fink.toml", &format!("{top}{HEAD}{body}"));
    w
}

fn ws(body: &str) -> Workspace {
    let w = Workspace::new();
    w.write("admin.pw", "secret\n");
    w.write("fink.toml", &format!("{HEAD}{body}"));
    w
}

fn fails_with(w: &Workspace, args: &[&str], expected: &str) {
    let r = w.fink(args);
    assert_eq!(r.code, 1, "expected exit 1, got {}: {}", r.code, r.all());
    assert!(r.stderr.contains(expected), "expected {expected:?} in:\n{}", r.stderr);
}

#[test]
fn valid_config_passes() {
    let w = ws("[[topic]]\nname = \"t\"\n");
    let r = w.fink(&["validate"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("valid (1 topics"), "{}", r.stdout);
}

#[test]
fn bad_type() {
    let w = ws("\n[[topic]]\nname = \"a\"\npartitions = \"three\"\n");
    fails_with(
        &w,
        &["validate"],
        "fink.toml:9:14: topic[0].partitions: invalid type: found string \"three\", expected i32",
    );
}

#[test]
fn unknown_key() {
    let w = ws("\n[[topic]]\nname = \"a\"\npartitons = 3\n");
    fails_with(&w, &["validate"], "fink.toml:9:1: topic[0].partitons: unknown key `partitons`");
}

#[test]
fn unknown_key_in_profile_names_the_profile_file() {
    let w = ws("");
    w.write("profiles/dev.toml", "[local]\nbrokers = 1\nbrokres = 2\n");
    fails_with(&w, &["validate", "--profile", "dev"], "profiles/dev.toml:3:1: local.brokres: unknown key `brokres`");
}

#[test]
fn negative_partitions() {
    let w = ws("\n[[topic]]\nname = \"fink_sn\"\npartitions = -2\n");
    fails_with(&w, &["validate"], "fink.toml:9:14: topic \"fink_sn\": partitions must be at least 1");
}

#[test]
fn missing_references() {
    let w = ws(
        "\n[[topic]]\nname = \"t\"\n\n[[stream]]\nname = \"s\"\nsource = { format = \"parquet\", path = \"x\" }\ntopic = \"nope\"\nfilters = [\"ghost\"]\nuser = \"bob\"\n\n[[acl]]\nuser = \"carol\"\nrole = \"producer\"\ntopic = \"t\"\n",
    );
    let r = w.fink(&["validate"]);
    assert_eq!(r.code, 1);
    for expected in [
        "fink.toml:13:9: stream \"s\": topic \"nope\" is not declared in [[topic]]",
        "fink.toml:14:12: stream \"s\": filter \"ghost\" is not declared (no [filter.ghost])",
        "fink.toml:15:8: stream \"s\": user \"bob\" is not declared in [[user]]",
        "fink.toml:18:8: acl #1 (User:carol): user \"carol\" is not declared in [[user]]",
    ] {
        assert!(r.stderr.contains(expected), "expected {expected:?} in:\n{}", r.stderr);
    }
}

#[test]
fn duplicate_topic() {
    let w = ws("[[topic]]\nname = \"t\"\n[[topic]]\nname = \"t\"\n");
    fails_with(&w, &["validate"], "fink.toml:9:8: topic \"t\": declared twice");
}

#[test]
fn bad_profile_name() {
    let w = ws("");
    fails_with(&w, &["validate", "--profile", "../etc"], "invalid profile name \"../etc\"");
    fails_with(&w, &["validate", "--profile", "staging"], "profile \"staging\" not found");
}

#[test]
fn unreadable_password_file() {
    let w = ws("[[user]]\nname = \"u\"\npassword = { file = \"missing.pw\" }\n");
    fails_with(&w, &["validate"], "fink.toml:8:12: user \"u\": password file missing.pw: not found");
    // A directory where the file should be: unreadable even for root.
    std::fs::create_dir(w.path().join("dir.pw")).unwrap();
    w.write("fink.toml", &format!("{HEAD}[[user]]\nname = \"u\"\npassword = {{ file = \"dir.pw\" }}\n"));
    fails_with(&w, &["validate"], "fink.toml:8:12: user \"u\": password file dir.pw:");
}

#[test]
fn missing_env_password() {
    let w = ws("[[user]]\nname = \"u\"\npassword = { env = \"FINK_TEST_SURELY_UNSET_PW\" }\n");
    fails_with(&w, &["validate"], "user \"u\": environment variable FINK_TEST_SURELY_UNSET_PW is not set");
}

#[test]
fn inline_password_is_a_warning_and_never_printed() {
    let w = ws("[[user]]\nname = \"u\"\npassword = \"hunter2-inline\"\n");
    let r = w.fink(&["validate"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stderr.contains("fink.toml:8:12: warning: user \"u\": inline secret"), "{}", r.stderr);
    assert!(!r.all().contains("hunter2-inline"));
}

#[test]
fn syntax_error_has_a_position() {
    let w = ws("[[topic]\n");
    fails_with(&w, &["validate"], "fink.toml:6:");
    fails_with(&w, &["validate"], "TOML syntax error");
}

#[test]
fn env_override_of_a_single_key() {
    let w = ws("");
    let r = std::process::Command::new(common::fink_bin())
        .args(["validate"])
        .current_dir(w.path())
        .env("FINK_LOCAL__BROKERS", "7")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1));
    assert!(err.contains("local: brokers must be 1 to 3, not 7"), "{err}");
}

#[test]
fn run_section_overrides_are_read_and_others_are_reported() {
    let w = ws("");
    let validate = |k: &str, v: &str| {
        let r = std::process::Command::new(common::fink_bin())
            .args(["validate"])
            .current_dir(w.path())
            .env(k, v)
            .output()
            .unwrap();
        (r.status.code(), String::from_utf8_lossy(&r.stderr).to_string())
    };
    let (code, err) = validate("FINK_RUN__BATCH_SIZE", "many");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("run.batch_size"), "the override is read: {err}");
    let (code, err) = validate("FINK_STREAM__0__TOPIC", "x");
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("FINK_STREAM__0__TOPIC is ignored"), "{err}");
    // The override reaches what uses it: `fink status` asks the address it gives.
    let r = std::process::Command::new(common::fink_bin())
        .args(["status"])
        .current_dir(w.path())
        .env("FINK_RUN__METRICS_ADDR", "127.0.0.1:9")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(1));
    assert!(err.contains("no `fink run` answers on 127.0.0.1:9"), "{err}");
}

#[test]
fn json_output_lists_errors_with_positions() {
    let w = ws("\n[[topic]]\nname = \"a\"\npartitions = 0\n");
    let r = w.fink(&["validate", "--output", "json"]);
    assert_eq!(r.code, 1);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"][0]["line"], 9);
    assert_eq!(v["errors"][0]["column"], 14);
    assert_eq!(v["errors"][0]["key"], "topic[0].partitions");
}

#[test]
fn repository_fink_toml_and_profiles_are_valid() {
    let r = std::process::Command::new(common::fink_bin())
        .args(["validate", "--config"])
        .arg(common::repo().join("fink.toml"))
        .env("FINK_ADMIN_PASSWORD", "x")
        .output()
        .unwrap();
    assert_eq!(r.status.code(), Some(0), "{}", String::from_utf8_lossy(&r.stderr));
}

#[test]
fn filters_are_compiled() {
    let w = ws("\n[filter.bright]\nexpr = \"candidate.magpsf <\"\n");
    fails_with(&w, &["validate"], "fink.toml:8:8: filter \"bright\": Syntax error");
    let r = w.fink(&["validate"]);
    assert!(r.stderr.contains("(expression line 1, column 19)"), "{}", r.stderr);
}

#[test]
fn validate_data_checks_fields_and_types_against_a_sample() {
    let data = common::repo().join("../shared/data/ztf/science");
    let w = ws(
        "[[topic]]\nname = \"t\"\n\n[filter.f]\nexpr = \"candidate.magpsf < 18.0 && candidate.isdiffpos > 1 && prv_candidates.exists(p, has(p.magpsf) && p.nope < 3.0)\"\n\n[[stream]]\nname = \"s\"\nsource = { format = \"parquet\", path = \"x\" }\ntopic = \"t\"\nfilters = [\"f\"]\nselect = [\"objectId\", \"candidate.magpsf\", \"ghost\"]\n",
    );
    let r = w.fink(&["validate", "--data", data.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.all());
    for expected in [
        "fink.toml:10:8: filter \"f\": compares candidate.isdiffpos (Utf8) with a number",
        "fink.toml:10:8: filter \"f\": reads prv_candidates.nope: no field \"nope\" under \"prv_candidates\"",
        "fink.toml:17:43: stream \"s\": select \"ghost\": no field \"ghost\"",
    ] {
        assert!(r.stderr.contains(expected), "expected {expected:?} in:\n{}", r.stderr);
    }
    assert_eq!(r.stderr.matches("prv_candidates.nope").count(), 1, "each problem once");
    // The same config without the mistakes passes.
    let w = ws(
        "[[topic]]\nname = \"t\"\n\n[filter.f]\nexpr = \"candidate.magpsf < 18.0 && candidate.isdiffpos == 't' && prv_candidates.exists(p, has(p.magpsf) && p.magpsf < 3.0)\"\n\n[[stream]]\nname = \"s\"\nsource = { format = \"parquet\", path = \"x\" }\ntopic = \"t\"\nfilters = [\"f\"]\nselect = [\"objectId\", \"candidate.magpsf\"]\n",
    );
    let r = w.fink(&["validate", "--data", data.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.all());
}

#[test]
fn includes_add_items_and_errors_name_the_included_file() {
    let w = ws_top("include = [\"conf/*.toml\"]\n", "[[topic]]\nname = \"t\"\n");
    w.write("conf/a.toml", "[[topic]]\nname = \"a\"\n\n[[topic]]\nname = \"t\"\n");
    // Duplicates are named at both places, each in its own file.
    fails_with(&w, &["validate"], "conf/a.toml:5:8: topic \"t\": declared twice: here and at fink.toml:8");
    w.write("conf/a.toml", "[[topic]]\nname = \"a\"\n[filter.f]\nexpr = \"objectId in NAMEZ\"\n");
    fails_with(&w, &["validate"], "conf/a.toml:4:8: filter \"f\": unknown constant NAMEZ");
    // An included file may not declare the deployment's own parts.
    w.write("conf/a.toml", "[run]\nbatch_size = 3\n");
    fails_with(&w, &["validate"], "conf/a.toml:1:2: an included file may not declare `run`");
    // Missing and cyclic includes.
    w.write("conf/a.toml", "include = [\"b.toml\"]\n");
    fails_with(&w, &["validate"], "conf/a.toml:1:12: included file \"b.toml\" not found");
    w.write("conf/b.toml", "include = [\"a.toml\"]\n");
    fails_with(&w, &["validate"], "include cycle:");
    std::fs::remove_file(w.path().join("conf/b.toml")).unwrap();
    w.write(
        "conf/a.toml",
        "[const]\nNAMES = [\"x\"]\n[[topic]]\nname = \"a\"\n[filter.f]\nexpr = \"objectId in NAMES\"\n",
    );
    let r = w.fink(&["validate"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("valid (2 topics"), "{}", r.stdout);
}

#[test]
fn filter_language_errors_have_positions() {
    let w = ws("[filter.a]\nexpr = \"filter('b')\"\n[filter.b]\nexpr = \"filter('a')\"\n");
    fails_with(&w, &["validate"], "filters refer to each other in a cycle");
    let w = ws("[filter.a]\nexpr = \"nosuchfunc(candidate.magpsf) > 1\"\n");
    fails_with(&w, &["validate"], "fink.toml:7:8: filter \"a\": unknown function nosuchfunc()");
    let w = ws("[filter.a]\nexpr = \"pow(candidate.magpsf) > 1\"\n");
    fails_with(&w, &["validate"], "pow() takes 2 argument(s), not 1");
}

/// The shipped ZTF catalogue validates, and on fink-filters' own test
/// alerts keeps what fink-filters' docstrings say (early SN Ia: the two
/// young SNe of that night).
#[test]
fn the_ztf_catalogue_loads_and_filters_fink_filters_test_alerts() {
    // Its Python topics import fink-filters in the project's venv.
    let python = format!("[python]\ninterpreter = \"{}\"\n", common::repo().join(".fink/venv/bin/python").display());
    let w = ws_top(&format!("include = [\"{}\"]\n", common::repo().join("conf/fink/ztf.toml").display()), &python);
    let r = w.fink(&["validate"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("17 streams"), "{}", r.stdout);
    let data = common::shared_data().join("ztf/filters_test");
    let r = w.fink(&["filter", "test", "--data", data.to_str().unwrap(), "--output", "json"]);
    let report: serde_json::Value = serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.all()));
    // Exit 1: alerts in error, and only where a filter reads columns these
    // alerts lack (yso_spicy_candidates: Fink's SPICY cross-match).
    let erring: Vec<&str> = report
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["errors"].as_u64() != Some(0))
        .map(|f| f["filter"].as_str().unwrap())
        .collect();
    assert_eq!(erring, vec!["yso_spicy_candidates"], "{}", r.stderr);
    assert_eq!(r.code, 1);
    let kept = |name: &str| -> Vec<String> {
        let f = report.as_array().unwrap().iter().find(|f| f["filter"] == name).expect(name);
        assert_eq!(f["on_null"], "false");
        assert_eq!(f["errors"], 0, "{f}");
        f["kept_ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect()
    };
    assert_eq!(kept("early_sn_candidates"), vec!["ZTF21acobels", "ZTF21acoshvy"]);
    assert_eq!(kept("simbad_grav_candidates"), vec!["ZTF18abtmtpq"]);
    assert_eq!(kept("sso_ztf_candidates"), vec!["ZTF21acqdcyb"]);
}

/// Settings that would break delivery are refused, each at its line: a
/// commit interval the transaction timeout cannot cover, an unbounded stop,
/// producer properties fink owns.
#[test]
fn settings_that_would_break_delivery_are_refused_at_their_line() {
    let w = ws(concat!(
        "[run]\n",
        "commit_interval_ms = 240000\n",
        "shutdown_timeout_s = 100000\n",
        "\n",
        "[[topic]]\n",
        "name = \"t\"\n",
        "\n",
        "[[stream]]\n",
        "name = \"s\"\n",
        "source = { format = \"parquet\", path = \"d\" }\n",
        "topic = \"t\"\n",
        "[stream.producer.properties]\n",
        "\"enable.idempotence\" = \"false\"\n",
        "acks = \"1\"\n",
        "\"transactional.id\" = \"x\"\n",
        "\"message.timeout.ms\" = \"5000\"\n",
        "\"linger.ms\" = \"5\"\n",
    ));
    let r = w.fink(&["validate"]);
    assert_eq!(r.code, 1, "{}", r.all());
    let e = &r.stderr;
    for (line, says) in [
        (7, "commit_interval_ms must be between 100 and 60000"),
        (8, "shutdown_timeout_s must be at most 600"),
        (18, "producer property \"enable.idempotence\" is set by fink"),
        (19, "producer property \"acks\" is set by fink"),
        (20, "producer property \"transactional.id\" is set by fink"),
        (21, "producer property \"message.timeout.ms\" is set by fink"),
    ] {
        let at = format!("fink.toml:{line}:");
        assert!(e.lines().any(|l| l.contains(&at) && l.contains(says)), "{at} {says:?} in:\n{e}");
    }
    // A property fink leaves to the user is accepted.
    assert!(!e.contains("\"linger.ms\""), "{e}");
}

/// Replica placements that cannot be are refused at their line.
#[test]
fn impossible_replica_placements_fail_at_their_line() {
    let w = ws("[[topic]]\nname = \"t\"\npartitions = 2\nreplication_factor = 3\nreplicas = [[1, 2], [2, 3]]\n");
    let r = w.fink(&["validate"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("2 replicas a partition, but replication_factor = 3"), "{}", r.stderr);
    assert!(r.stderr.contains("fink.toml:"), "{}", r.stderr);
    let w = ws("[[topic]]\nname = \"t\"\nreplicas = [[1, 1], [2, 3]]\n");
    let r = w.fink(&["validate"]);
    assert!(r.stderr.contains("distinct broker ids"), "{}", r.stderr);
    let w = ws("[[topic]]\nname = \"t\"\npartitions = 3\nreplicas = [[1], [2]]\n");
    let r = w.fink(&["validate"]);
    assert!(r.stderr.contains("replicas for 2 partition(s), but partitions = 3"), "{}", r.stderr);
}

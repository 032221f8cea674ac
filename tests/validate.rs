//! `fink validate` on broken configs: each error names file, line and column.

mod common;
use common::Workspace;

const HEAD: &str = "[cluster]\nbootstrap = [\"127.0.0.1:9092\"]\n[cluster.admin]\nuser = \"admin\"\npassword = { file = \"admin.pw\" }\n";

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
    assert!(r.stderr.contains("fink.toml:8:12: warning: user \"u\": inline password"), "{}", r.stderr);
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

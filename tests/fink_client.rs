//! Fink's users read our topics unchanged: fink-client (from PyPI) and its
//! AlertConsumer, with the SCRAM-SHA-512 credentials of a user declared in
//! fink.toml and a consumer ACL that `fink apply` created, decode what
//! `fink run` published to exactly the source records. `.ci/run` installs
//! fink-client into `.fink/venv`.

mod common;
use std::process::Command;

use common::*;
use serde_json::Value;

fn python() -> std::path::PathBuf {
    let p = std::env::var("FINK_CLIENT_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| repo().join(".fink/venv/bin/python"));
    assert!(p.exists(), "no Python with fink-client at {} (run .ci/run, or set FINK_CLIENT_PYTHON)", p.display());
    p
}

fn read_with_fink_client(topic: &str, user: &str, pw: &str, group: &str, n: usize) -> (i32, String) {
    let out = Command::new(python())
        .arg(repo().join("integration/python/fink_client_read.py"))
        .args([topic, user, pw, group, &bootstrap(), &n.to_string(), "60"])
        .output()
        .expect("run python");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn check_source(tag: &str, format: &str, dir: &std::path::Path) {
    let w = Workspace::new();
    let topic = unique(tag);
    let (alice, bob) = (unique("alice"), unique("bob"));
    w.secret("alice.pw", "alice-Password-1");
    w.secret("bob.pw", "bob-Password-1");
    w.config(&format!(
        "[run]\nstate_dir = \"state\"\nmetrics_addr = \"\"\n\n[[topic]]\nname = \"{topic}\"\n\n\
         [[user]]\nname = \"{alice}\"\npassword = {{ file = \"secrets/alice.pw\" }}\n\n\
         [[user]]\nname = \"{bob}\"\npassword = {{ file = \"secrets/bob.pw\" }}\n\n\
         [[acl]]\nuser = \"{alice}\"\nrole = \"consumer\"\ntopic = \"{topic}\"\ngroup = \"{alice}\"\ngroup_pattern = \"prefixed\"\n\n\
         [[stream]]\nname = \"s\"\nsource = {{ format = \"{format}\", path = \"{}\" }}\ntopic = \"{topic}\"\n",
        dir.display()
    ));
    let r = w.fink(&["apply", "--auto-approve"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let r = w.fink(&["run", "--until-idle"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let expected = source_records(dir);

    let (code, out) = read_with_fink_client(&topic, &alice, "alice-Password-1", &format!("{alice}_g"), expected.len());
    assert_eq!(code, 0, "fink-client could not read {} alerts:\n{out}", expected.len());
    let alerts: Vec<Value> =
        out.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(alerts.len(), expected.len());
    for (i, (a, e)) in alerts.iter().zip(&expected).enumerate() {
        same(a, e, "").unwrap_or_else(|err| panic!("alert {i} differs for fink-client: {err}"));
    }

    // Bob authenticates but has no ACL: refused.
    let (code, out) = read_with_fink_client(&topic, &bob, "bob-Password-1", &format!("{bob}_g"), 1);
    assert_eq!(code, 3, "bob must be refused:\n{out}");
    assert!(out.contains("AUTHORIZATION"), "{out}");
}

#[test]
fn fink_client_reads_parquet_stream() {
    check_source("fcp", "parquet", &shared_data().join("ztf/raw"));
}

#[test]
fn fink_client_reads_avro_stream() {
    check_source("fca", "avro", &shared_data().join("ztf/alerts"));
}

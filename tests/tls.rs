//! TLS to the brokers: the local cluster with `[local] tls = true`
//! (profiles/tls.toml, started by `.ci/run`: a SASL_SSL listener with a CA
//! and certificate fink generated). plan/apply (the protocol client's quotas
//! included), a stream, `fink consume` and fink-client all work over it; a
//! CA that did not sign the broker's certificate, or a certificate for
//! another host, fails at once, clearly.

mod common;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

fn tls_bootstrap() -> String {
    std::env::var("FINK_TEST_BOOTSTRAP_TLS")
        .expect("FINK_TEST_BOOTSTRAP_TLS: `.ci/run` starts the TLS cluster (profiles/tls.toml)")
}

fn tls_ca() -> String {
    let ca = repo().join(".fink/test-cluster-tls/tls/ca.pem");
    std::env::var("FINK_TEST_TLS_CA").unwrap_or_else(|_| ca.display().to_string())
}

fn header(ca: &str) -> String {
    format!(
        "[cluster]\nbootstrap = [\"{}\"]\nsecurity_protocol = \"SASL_SSL\"\nssl_ca_location = \"{ca}\"\ntimeout_secs = 30\n\
         [cluster.admin]\nuser = \"admin\"\npassword = {{ file = \"{}\" }}\n",
        tls_bootstrap(),
        admin_password_file().display()
    )
}

#[test]
fn plan_apply_run_consume_and_fink_client_work_over_tls() {
    let w = Workspace::new();
    let (topic, alice) = (unique("tls"), unique("tlsalice"));
    w.secret("alice.pw", "alice-Password-1");
    assert_eq!(w.fink(&["simulate", "--out", "src", "--alerts", "200", "--per-file", "100", "--seed", "5"]).code, 0);
    w.write(
        "fink.toml",
        &format!(
            "{}\n[run]\nstate_dir = \"state\"\nmetrics_addr = \"\"\n\n[[topic]]\nname = \"{topic}\"\n\n\
             [[user]]\nname = \"{alice}\"\npassword = {{ file = \"secrets/alice.pw\" }}\n\n\
             [[acl]]\nuser = \"{alice}\"\nrole = \"consumer\"\ntopic = \"{topic}\"\ngroup = \"{alice}\"\ngroup_pattern = \"prefixed\"\n\n\
             [[quota]]\nuser = \"{alice}\"\nconsumer_byte_rate = 10485760\n\n\
             [[stream]]\nname = \"s\"\nsource = {{ format = \"parquet\", path = \"src\" }}\ntopic = \"{topic}\"\n",
            header(&tls_ca())
        ),
    );
    let r = w.fink(&["apply", "--auto-approve"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains(&format!("quota user={alice}")), "{}", r.stdout);
    let r = w.fink(&["plan", "--detailed-exitcode"]);
    assert_eq!(r.code, 0, "converged over TLS (quotas read by the protocol client): {}", r.all());
    let r = w.fink(&["run", "--until-idle"]);
    assert_eq!(r.code, 0, "{}", r.all());

    let r = w.fink(&["consume", &topic, "--from-beginning", "--max", "200", "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    // One JSON document per alert.
    let consumed = r.stdout.lines().filter(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()).count();
    assert_eq!(consumed, 200, "{}", r.stderr);

    let out = Command::new(repo().join(".fink/venv/bin/python"))
        .arg(repo().join("integration/python/fink_client_read.py"))
        .args([&topic, &alice, "alice-Password-1", &format!("{alice}_g"), &tls_bootstrap(), "200", "60", &tls_ca()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "fink-client over TLS:\n{text}");
    assert_eq!(text.lines().filter(|l| l.starts_with('{')).count(), 200);
}

#[test]
fn a_ca_that_did_not_sign_the_brokers_fails_at_once_and_says_so() {
    let w = Workspace::new();
    // Another CA, valid but not the cluster's.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let other = params.self_signed(&key).unwrap();
    let ca = w.write("other-ca.pem", &other.pem());
    w.write("fink.toml", &header(&ca.display().to_string()));
    let t = Instant::now();
    let r = w.fink(&["plan"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("over TLS") && r.stderr.contains("certificate verify failed"), "{}", r.stderr);
    assert!(r.stderr.contains("ssl_ca_location"), "says what to check: {}", r.stderr);
    // No retrying for the whole 30 s timeout.
    assert!(t.elapsed() < Duration::from_secs(25), "took {:?}", t.elapsed());
}

#[test]
fn a_certificate_for_another_host_fails_at_once_and_says_so() {
    let w = Workspace::new();
    // `127.1` reaches the broker (127.0.0.1) but is a name the broker's
    // certificate does not carry (it names 127.0.0.1 and localhost): the
    // hostname check must refuse it, with the cluster's own CA.
    let port = tls_bootstrap().rsplit(':').next().unwrap().to_string();
    let header = header(&tls_ca()).replace(&tls_bootstrap(), &format!("127.1:{port}"));
    w.write("fink.toml", &header);
    let t = Instant::now();
    let r = w.fink(&["plan"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("over TLS"), "{}", r.stderr);
    assert!(r.stderr.contains("name the bootstrap host"), "says what to check: {}", r.stderr);
    assert!(t.elapsed() < Duration::from_secs(25), "took {:?}", t.elapsed());
}

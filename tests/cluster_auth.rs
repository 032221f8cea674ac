//! The local cluster is secured like Fink's: SASL/SCRAM-SHA-512 and ACLs.
//! Needs the cluster `.ci/run` starts.

mod common;
use std::time::Duration;

use common::*;
use fink::cluster::{check_login, Login};
use fink::config::SecurityProtocol;

#[test]
fn admin_authenticates_with_scram() {
    assert_eq!(check_login(&admin_conn(), Duration::from_secs(20)), Login::Accepted);
    let w = Workspace::new();
    w.config("");
    let r = w.fink(&["topics"]);
    assert_eq!(r.code, 0, "{}", r.all());
}

#[test]
fn wrong_password_is_refused_and_not_printed() {
    match check_login(&conn("admin", "definitely-wrong"), Duration::from_secs(20)) {
        Login::Refused(reason) => {
            assert!(reason.contains("Authentication failed") || reason.contains("SASL"), "{reason}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    let w = Workspace::new();
    let pw = w.secret("wrong.pw", "wrong-password-xyz");
    w.write(
        "fink.toml",
        &format!("[cluster]\nbootstrap = [\"{}\"]\ntimeout_secs = 15\n[cluster.admin]\nuser = \"admin\"\npassword = {{ file = \"{pw}\" }}\n", bootstrap()),
    );
    let r = w.fink(&["users"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains("authentication as \"admin\""), "{}", r.stderr);
    assert!(!r.all().contains("wrong-password-xyz"));
}

#[test]
fn unauthenticated_plaintext_client_is_refused() {
    let mut c = admin_conn();
    c.protocol = SecurityProtocol::Plaintext;
    c.user = None;
    c.password = None;
    let outcome = check_login(&c, Duration::from_secs(6));
    assert!(matches!(outcome, Login::Unreachable(_) | Login::Refused(_)), "PLAINTEXT client got in: {outcome:?}");
}

#[test]
fn user_without_acls_can_neither_write_nor_read() {
    let w = Workspace::new();
    let topic = unique("noacl_topic");
    let user = unique("noacl_user");
    let pw = w.secret("u.pw", "noacl-password-1");
    w.config(&format!(
        "[[topic]]\nname = \"{topic}\"\n\n[[user]]\nname = \"{user}\"\npassword = {{ file = \"{pw}\" }}\n"
    ));
    let r = w.fink(&["apply", "--auto-approve"]);
    assert_eq!(r.code, 0, "{}", r.all());

    // The admin (super user) can write; the user, authenticated but without ACLs, cannot.
    produce(&admin_conn(), &topic, b"k", b"by-admin").expect("admin writes");
    let as_user = conn(&user, "noacl-password-1");
    assert_eq!(check_login(&as_user, Duration::from_secs(20)), Login::Accepted);
    let err = produce(&as_user, &topic, b"k", b"v").expect_err("write without ACL must fail");
    assert!(err.contains("Authorization") || err.contains("authoriz"), "{err}");
    let err = consume(&as_user, &topic, 1, 1, Duration::from_secs(15)).expect_err("read without ACL must fail");
    assert!(err.contains("Authorization") || err.contains("authoriz"), "{err}");
    // And the admin reads what it wrote.
    let got = consume(&admin_conn(), &topic, 1, 1, Duration::from_secs(15)).unwrap();
    assert_eq!(got, vec![(b"k".to_vec(), b"by-admin".to_vec())]);
}

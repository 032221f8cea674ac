use super::*;

fn load_text(text: &str) -> Result<Loaded, ConfigErrors> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("fink.toml");
    std::fs::write(&p, text).unwrap();
    let mut o = LoadOptions::new(&p);
    o.env_overrides = false;
    load(&o)
}

#[test]
fn defaults_fill_in() {
    let l = load_text("[cluster]\nbootstrap = [\"h:1\"]\nsecurity_protocol = \"PLAINTEXT\"\n").unwrap();
    assert_eq!(l.config.local.brokers, 1);
    assert_eq!(l.config.cluster.sasl_mechanism, ScramMechanism::Sha512);
    assert!(!l.config.prune);
}

#[test]
fn sasl_needs_admin() {
    let e = load_text("[cluster]\nbootstrap = [\"h:1\"]\n").unwrap_err().to_string();
    assert!(e.contains("[cluster.admin] user and password are required with SASL_PLAINTEXT"), "{e}");
}

#[test]
fn acl_role_rules() {
    let e = load_text(
        "[cluster]\nbootstrap = [\"h:1\"]\nsecurity_protocol = \"PLAINTEXT\"\n[[acl]]\nprincipal = \"User:x\"\nrole = \"producer\"\ntopic = \"t\"\ngroup = \"g\"\n[[acl]]\nprincipal = \"User:x\"\nresource = \"topic\"\nname = \"t\"\noperations = [\"Fly\"]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("topic \"t\" is not declared"), "{e}");
    assert!(e.contains("a producer role takes no group"), "{e}");
    assert!(e.contains("unknown operation \"Fly\""), "{e}");
}

#[test]
fn env_overrides_outside_the_allowed_sections_are_reported() {
    let vars = [
        "FINK_RUN__BATCH_SIZE",
        "FINK_PRUNE",
        "FINK_ADMIN_PASSWORD",
        "FINK_STREAM__0__TOPIC",
        "FINK_LOCAL__PORT",
        "OTHER__X",
    ];
    assert_eq!(ignored_env_overrides(vars.iter().map(|s| s.to_string())), vec!["FINK_STREAM__0__TOPIC".to_string()]);
}

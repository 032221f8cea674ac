//! `fink import`: a cluster state built with Kafka's own tools
//! (kafka-topics.sh, kafka-configs.sh, kafka-acls.sh: their classes, run
//! from the jars) is written out as fink.toml, and `fink plan` on that file
//! shows no change.

mod common;
use std::process::Command;

use common::*;

fn kafka_tool(w: &Workspace, class: &str, args: &[&str]) {
    let home = Command::new("bash").arg(repo().join("conf/install_kafka.sh")).output().unwrap();
    let home = String::from_utf8_lossy(&home.stdout).lines().last().unwrap_or_default().to_string();
    let props = w.write(
        "admin.properties",
        &format!(
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-512\nsasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"{}\";\n",
            admin_password()
        ),
    );
    // ConfigCommand and TopicCommand take --command-config, AclCommand too.
    let config_flag = "--command-config";
    let out = Command::new("java")
        .args(["-Xmx256m", "-cp", &format!("{home}/libs/*"), class])
        .args(["--bootstrap-server", &bootstrap(), config_flag])
        .arg(&props)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{class} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_cluster_built_with_kafkas_tools_imports_to_a_config_that_plans_no_change() {
    let w = Workspace::new();
    let p = unique("imp");
    let (topic, other, alice, bob) =
        (format!("{p}_alerts"), format!("{p}_raw"), format!("{p}_alice"), format!("{p}_bob"));
    let header = format!("scope = [\"{p}*\"]\n{}", Workspace::cluster_header());
    w.write("fink.toml", &header);
    // fink's own state topic exists, as on a cluster fink runs on.
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);

    // Topics, one with configs of its own.
    kafka_tool(&w, "org.apache.kafka.tools.TopicCommand", &["--create", "--topic", &topic, "--partitions", "3"]);
    kafka_tool(
        &w,
        "org.apache.kafka.tools.TopicCommand",
        &[
            "--create",
            "--topic",
            &other,
            "--partitions",
            "1",
            "--config",
            "retention.ms=86400000",
            "--config",
            "cleanup.policy=delete",
        ],
    );
    // Users with SCRAM credentials, and a quota.
    kafka_tool(
        &w,
        "kafka.admin.ConfigCommand",
        &[
            "--alter",
            "--add-config",
            "SCRAM-SHA-512=[iterations=8192,password=alice-Pw-1]",
            "--entity-type",
            "users",
            "--entity-name",
            &alice,
        ],
    );
    kafka_tool(
        &w,
        "kafka.admin.ConfigCommand",
        &[
            "--alter",
            "--add-config",
            "SCRAM-SHA-256=[iterations=4096,password=bob-Pw-1]",
            "--entity-type",
            "users",
            "--entity-name",
            &bob,
        ],
    );
    kafka_tool(
        &w,
        "kafka.admin.ConfigCommand",
        &["--alter", "--add-config", "consumer_byte_rate=1048576", "--entity-type", "users", "--entity-name", &alice],
    );
    // ACLs: a consumer role as kafka-acls --consumer makes it, and a
    // binding no role expresses (alice may also describe bob's raw topic).
    kafka_tool(
        &w,
        "org.apache.kafka.tools.AclCommand",
        &[
            "--add",
            "--allow-principal",
            &format!("User:{alice}"),
            "--consumer",
            "--topic",
            &topic,
            "--group",
            &format!("{alice}_g"),
        ],
    );
    kafka_tool(
        &w,
        "org.apache.kafka.tools.AclCommand",
        &["--add", "--allow-principal", &format!("User:{alice}"), "--operation", "DescribeConfigs", "--topic", &other],
    );

    let r = w.fink(&["import", "--out", "imported.toml"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let text = std::fs::read_to_string(w.path().join("imported.toml")).unwrap();
    assert!(text.contains(&format!("name = \"{topic}\"\npartitions = 3")), "{text}");
    assert!(text.contains("\"retention.ms\" = \"86400000\""), "{text}");
    assert!(text.contains("mechanism = \"SCRAM-SHA-256\"\niterations = 4096"), "{text}");
    assert!(text.contains("role = \"consumer\""), "the consumer ACLs fold into a role:\n{text}");
    assert!(text.contains("operations = [\"DescribeConfigs\"]"), "the other stays explicit:\n{text}");
    assert!(text.contains("consumer_byte_rate = 1048576"), "{text}");
    let alice_env = fink::plan::import::password_env(&alice);
    assert!(r.stderr.contains(&alice_env), "{}", r.stderr);
    // A second import never overwrites.
    let again = w.fink(&["import", "--out", "imported.toml"]);
    assert_eq!(again.code, 1, "{}", again.all());

    // The imported file is the cluster: no change to plan, passwords included.
    let plan = w
        .cmd()
        .args(["--config", "imported.toml", "plan", "--detailed-exitcode"])
        .env(&alice_env, "alice-Pw-1")
        .env(fink::plan::import::password_env(&bob), "bob-Pw-1")
        .output()
        .unwrap();
    let out = format!("{}{}", String::from_utf8_lossy(&plan.stdout), String::from_utf8_lossy(&plan.stderr));
    assert_eq!(plan.status.code(), Some(0), "{out}\n{text}");
    assert!(out.contains("No changes"), "{out}");
}

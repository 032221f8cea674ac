//! The handbook (`docs/`) and the service files (`conf/systemd`,
//! `conf/kubernetes`): generated pages are current, every TOML example
//! passes `fink validate`, README fits a page and links every page, every
//! page is in SUMMARY.md, and the service files agree with what `fink run`
//! serves. (`.ci/run` builds the site and checks its links and anchors.)

mod common;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::*;

fn docs() -> PathBuf {
    repo().join("docs/src")
}

fn pages() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> =
        walk(&docs()).into_iter().filter(|p| p.extension().is_some_and(|e| e == "md")).collect();
    out.sort();
    out
}

fn fink_out(args: &[&str]) -> String {
    let out = std::process::Command::new(fink_bin()).args(args).env("NO_COLOR", "1").output().unwrap();
    assert!(out.status.success(), "fink {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_generated_reference_pages_are_current() {
    for (page, file) in [("config", "reference/config.md"), ("cli", "reference/cli.md")] {
        let want = fink_out(&["docs", page]);
        let have = std::fs::read_to_string(docs().join(file)).unwrap_or_default();
        assert!(have == want, "docs/src/{file} is stale: run `fink docs {page} > docs/src/{file}`");
    }
    // The pages say something: every top-level key and every command.
    let config = std::fs::read_to_string(docs().join("reference/config.md")).unwrap();
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("schemas/fink.schema.json")).unwrap()).unwrap();
    for key in schema["properties"].as_object().unwrap().keys() {
        assert!(config.contains(&format!("`{key}`")) || config.contains(&format!("[{key}")), "{key} missing");
    }
    for key in ["shutdown_timeout_s", "reassignment_throttle_mb_s", "interpreter", "producer_byte_rate"] {
        assert!(config.contains(&format!("| `{key}` |")), "{key} has no row");
    }
    let cli = std::fs::read_to_string(docs().join("reference/cli.md")).unwrap();
    for cmd in ["fink plan", "fink apply", "fink run", "fink state reset", "fink groups", "fink import"] {
        assert!(cli.contains(&format!("`{cmd}`")), "{cmd} missing");
    }
    assert!(!cli.contains("`fink docs`"), "the hidden docs command is documented");
}

/// ```toml blocks of a Markdown text: (info string, body, line).
fn toml_blocks(text: &str) -> Vec<(String, String, usize)> {
    let mut out = Vec::new();
    let mut cur: Option<(String, String, usize)> = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        match cur.as_mut() {
            None if t.starts_with("```toml") => cur = Some((t[3..].to_string(), String::new(), i + 1)),
            Some(_) if t.starts_with("```") => out.push(cur.take().unwrap()),
            Some((_, body, _)) => {
                body.push_str(line);
                body.push('\n');
            }
            None => {}
        }
    }
    out
}

/// A scratch deployment for one example: the repo's conf/, schemas/ and
/// the Python venv are where a checkout has them; secrets the example
/// names exist (env variables set, files written).
fn validate_example(block: &str, name: &str) -> (i32, String) {
    let w = Workspace::new();
    let dir = w.path();
    for (link, target) in [("conf", "conf"), ("schemas", "schemas"), ("userfilters", "conf/userfilters")] {
        std::os::unix::fs::symlink(repo().join(target), dir.join(link)).unwrap();
    }
    std::fs::create_dir_all(dir.join(".fink")).unwrap();
    std::os::unix::fs::symlink(repo().join(".fink/venv"), dir.join(".fink/venv")).unwrap();
    let mut text = block.to_string();
    // A fragment is checked as part of a config: the missing deployment
    // tables are added after it (after, so its top-level keys stay there).
    let has = |t: &str| block.lines().any(|l| l.trim_start().starts_with(t));
    if !has("[cluster]") {
        text.push_str("\n[cluster]\nbootstrap = [\"127.0.0.1:9092\"]\n[cluster.admin]\nuser = \"admin\"\npassword = { env = \"FINK_DOCS_ADMIN\" }\n");
    }
    if block.contains("python = \"") && !has("[python]") {
        text.push_str("\n[python]\ninterpreter = \".fink/venv/bin/python\"\n");
    }
    w.write("fink.toml", &text);
    let mut cmd = w.cmd();
    cmd.args(["validate"]).env("FINK_DOCS_ADMIN", "x");
    let env_re = regex::Regex::new(r#"env\s*=\s*"([A-Za-z_][A-Za-z0-9_]*)""#).unwrap();
    for c in env_re.captures_iter(block) {
        cmd.env(&c[1], "docs-example-secret");
    }
    let file_re = regex::Regex::new(r#"\{\s*file\s*=\s*"([^"]+)""#).unwrap();
    for c in file_re.captures_iter(block) {
        let p = Path::new(&c[1]);
        if p.is_relative() {
            w.write(&c[1], "docs-example-secret\n");
        }
    }
    let r: Run = cmd.output().unwrap().into();
    (r.code, format!("{name}:\n{}\n--- checked as:\n{text}", r.all()))
}

#[test]
fn every_toml_example_passes_fink_validate() {
    let mut sources: Vec<(String, String)> = pages()
        .iter()
        .map(|p| (p.strip_prefix(repo()).unwrap().display().to_string(), std::fs::read_to_string(p).unwrap()))
        .collect();
    sources.push(("README.md".into(), std::fs::read_to_string(repo().join("README.md")).unwrap()));
    let (mut valid, mut failures) = (0, Vec::new());
    for (file, text) in sources {
        for (info, block, line) in toml_blocks(&text) {
            let name = format!("{file}:{line}");
            let (code, out) = validate_example(&block, &name);
            // ```toml,invalid marks an example of an error: it must fail.
            let want = if info.contains("invalid") { 1 } else { 0 };
            if code != want {
                failures.push(format!("exit {code}, want {want}: {out}"));
            }
            valid += 1 - want;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    assert!(valid >= 10, "only {valid} TOML examples");
}

#[test]
fn every_page_is_in_the_summary_and_readme_links_every_page() {
    let summary = std::fs::read_to_string(docs().join("SUMMARY.md")).unwrap();
    let link_re = regex::Regex::new(r"\]\(([^)#\s]+)(#[^)\s]*)?\)").unwrap();
    let listed: BTreeSet<String> = link_re.captures_iter(&summary).map(|c| c[1].to_string()).collect();
    let on_disk: BTreeSet<String> = pages()
        .iter()
        .map(|p| p.strip_prefix(docs()).unwrap().display().to_string())
        .filter(|p| p != "SUMMARY.md")
        .collect();
    assert_eq!(listed, on_disk, "SUMMARY.md and docs/src/ differ");

    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(lines <= 200, "README.md has {lines} lines (at most 200)");
    let linked: BTreeSet<String> =
        link_re.captures_iter(&readme).map(|c| c[1].to_string()).filter(|l| !l.contains("://")).collect();
    for l in &linked {
        assert!(repo().join(l).exists(), "README links to {l}, which is not there");
    }
    for page in &on_disk {
        assert!(linked.contains(&format!("docs/src/{page}")), "README does not link docs/src/{page}");
    }
}

#[test]
fn the_systemd_unit_stops_after_the_shutdown_deadline_and_reloads_with_sighup() {
    let unit = std::fs::read_to_string(repo().join("conf/systemd/fink-run.service")).unwrap();
    let get = |key: &str| -> Vec<String> {
        unit.lines().filter_map(|l| l.strip_prefix(&format!("{key}="))).map(str::to_string).collect()
    };
    assert_eq!(get("ExecReload"), ["/bin/kill -HUP $MAINPID"]);
    assert_eq!(get("Restart"), ["on-failure"]);
    assert_eq!(get("NoNewPrivileges"), ["yes"]);
    assert_eq!(get("ProtectSystem"), ["strict"]);
    assert_eq!(get("User"), ["fink"]);
    assert!(get("ExecStart")[0].ends_with("fink run --no-progress"));
    let stop: u64 = get("TimeoutStopSec")[0].parse().unwrap();
    // The deadline of a default config (and of the shipped fink.toml).
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("schemas/fink.schema.json")).unwrap()).unwrap();
    let deadline = schema["properties"]["run"]["default"]["shutdown_timeout_s"].as_u64().unwrap();
    assert!(stop > deadline + 5, "TimeoutStopSec={stop} is not above shutdown_timeout_s={deadline} + 5 s");
}

fn manifests() -> Vec<serde_yaml::Value> {
    let text = std::fs::read_to_string(repo().join("conf/kubernetes/fink-run.yaml")).unwrap();
    serde_yaml::Deserializer::from_str(&text).map(|d| serde::Deserialize::deserialize(d).unwrap()).collect()
}

fn kind<'a>(docs: &'a [serde_yaml::Value], k: &str) -> &'a serde_yaml::Value {
    docs.iter().find(|d| d["kind"] == k).unwrap_or_else(|| panic!("no {k} in fink-run.yaml"))
}

#[test]
fn the_kubernetes_config_map_validates_with_the_secret() {
    let docs = manifests();
    let toml = kind(&docs, "ConfigMap")["data"]["fink.toml"].as_str().unwrap().to_string();
    let secret = kind(&docs, "Secret")["stringData"].as_mapping().unwrap().clone();
    let w = Workspace::new();
    w.write("fink.toml", &toml);
    let mut cmd = w.cmd();
    cmd.arg("validate");
    for (k, v) in &secret {
        cmd.env(k.as_str().unwrap(), v.as_str().unwrap());
    }
    // Every variable the config reads comes from the Secret.
    let env_re = regex::Regex::new(r#"env\s*=\s*"([A-Za-z_0-9]+)""#).unwrap();
    for c in env_re.captures_iter(&toml) {
        assert!(secret.contains_key(&c[1]), "{} is not in the Secret", &c[1]);
    }
    let r: Run = cmd.output().unwrap().into();
    assert_eq!(r.code, 0, "{}", r.all());
}

#[test]
fn the_kubernetes_probes_are_what_fink_run_serves() {
    let docs = manifests();
    let deploy = kind(&docs, "Deployment");
    let pod = &deploy["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let port = c["ports"][0]["containerPort"].as_u64().unwrap();
    let port_name = c["ports"][0]["name"].as_str().unwrap();
    let toml: toml::Value = toml::from_str(kind(&docs, "ConfigMap")["data"]["fink.toml"].as_str().unwrap()).unwrap();
    let addr = toml["run"]["metrics_addr"].as_str().unwrap();
    assert_eq!(addr, format!("0.0.0.0:{port}"), "the ConfigMap's metrics_addr and the container port differ");
    let deadline = toml["run"]["shutdown_timeout_s"].as_integer().unwrap() as u64;
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(grace > deadline + 5, "terminationGracePeriodSeconds={grace} <= shutdown_timeout_s={deadline} + 5");
    assert_eq!(kind(&docs, "PodDisruptionBudget")["spec"]["maxUnavailable"].as_u64(), Some(1));

    // What fink run answers on those paths: a run of one stream.
    let mut probes = Vec::new();
    for probe in ["livenessProbe", "readinessProbe"] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["port"].as_str(), Some(port_name), "{probe} is not on the metrics port");
        probes.push(get["path"].as_str().unwrap().to_string());
    }
    let w = Workspace::new();
    let topic = unique("k8s");
    w.config(&format!(
        "[run]\nstate_dir = \"state\"\nmetrics_addr = \"127.0.0.1:0\"\n\n[[topic]]\nname = \"{topic}\"\n\n[[stream]]\nname = \"s\"\nsource = {{ format = \"parquet\", path = \"{}\" }}\ntopic = \"{topic}\"\n",
        shared_data().join("ztf/science").display()
    ));
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    let run = FinkRun::start(&w, &[]);
    run.wait("the stream published", || run.stream("s")["stats"]["published"].as_u64().is_some_and(|n| n > 0));
    for path in &probes {
        let answer = http_get(&run.addr, path);
        assert!(answer.starts_with("HTTP/1.1 200"), "GET {path}: {answer}");
    }
    drop(run);

    // A failed stream (its user may not write its topic: no ACL) makes the
    // instance not ready; it stays alive (the supervisor restarts the
    // stream itself).
    let w = Workspace::new();
    let topic = unique("k8s_denied");
    let user = unique("k8s_user");
    let password = w.secret("user", "k8s-probe-password");
    w.config(&format!(
        "[run]\nstate_dir = \"state\"\nmetrics_addr = \"127.0.0.1:0\"\n\n[[topic]]\nname = \"{topic}\"\n\n[[user]]\nname = \"{user}\"\npassword = {{ file = \"{password}\" }}\n\n[[stream]]\nname = \"s\"\nsource = {{ format = \"parquet\", path = \"{}\" }}\ntopic = \"{topic}\"\nuser = \"{user}\"\n",
        shared_data().join("ztf/science").display()
    ));
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    let run = FinkRun::start(&w, &[]);
    run.wait("the stream failed", || run.stream("s")["state"]["state"] == "failed");
    let ready = http_get(&run.addr, &probes[1]);
    assert!(ready.starts_with("HTTP/1.1 503") && ready.contains("stream s: failed"), "{ready}");
    assert!(http_get(&run.addr, &probes[0]).starts_with("HTTP/1.1 200"));
}

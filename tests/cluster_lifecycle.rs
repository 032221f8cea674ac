//! `fink cluster start|stop|status` on a cluster of its own (other ports and
//! data directory than the shared test cluster): twice each, and after kill -9.

mod common;
use common::Workspace;

struct Guard<'a>(&'a Workspace);
impl Drop for Guard<'_> {
    // Never leave a broker behind, even when an assertion fails.
    fn drop(&mut self) {
        let _ = self.0.fink(&["cluster", "stop", "--grace", "5"]);
    }
}

fn pid(w: &Workspace) -> i32 {
    std::fs::read_to_string(w.path().join("data/node-0/kafka.pid")).unwrap().trim().parse().unwrap()
}

#[test]
fn start_twice_stop_twice_and_recover_from_kill_9() {
    let w = Workspace::new();
    w.write(
        "fink.toml",
        "[cluster]\nbootstrap = [\"127.0.0.1:19092\"]\ntimeout_secs = 10\n[cluster.admin]\nuser = \"admin\"\npassword = { file = \"secrets/admin.pw\", generate = true }\n\n[local]\nbrokers = 1\nport = 19092\ncontroller_port = 19192\ndata_dir = \"data\"\nheap = \"384m\"\n",
    );
    let _guard = Guard(&w);

    let r = w.fink(&["cluster", "start"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("Local cluster up: 1 node(s) started"), "{}", r.stdout);
    // The generated admin password is private and never printed.
    let pw = std::fs::read_to_string(w.path().join("secrets/admin.pw")).unwrap();
    assert!(!r.all().contains(pw.trim()));

    let r = w.fink(&["cluster", "start"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("already running"), "{}", r.stdout);

    let r = w.fink(&["cluster", "status", "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    let st: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(st["nodes"][0]["up"], true);
    assert_eq!(st["reachable"], true);
    assert_eq!(st["nodes"][0]["port"], 19092);
    let first_id = st["cluster_id"].as_str().unwrap().to_string();

    let r = w.fink(&["topics"]);
    assert_eq!(r.code, 0, "{}", r.all());

    // kill -9: the pid file goes stale; status says down, start recovers.
    let p = pid(&w);
    assert!(fink::sys::send_signal(p, fink::sys::SIGKILL));
    for _ in 0..50 {
        if std::fs::read_to_string(format!("/proc/{p}/stat")).map(|s| s.contains(") Z")).unwrap_or(true) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let r = w.fink(&["cluster", "status"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stdout.contains("down"), "{}", r.stdout);

    let r = w.fink(&["cluster", "start"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("1 node(s) started"), "{}", r.stdout);
    assert_ne!(pid(&w), p);
    // Same storage, same cluster, same admin.
    let r = w.fink(&["cluster", "status", "--output", "json"]);
    let st: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(st["cluster_id"].as_str().unwrap(), first_id);
    assert_eq!(st["reachable"], true);

    let r = w.fink(&["cluster", "stop"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("Local cluster stopped: 1 node(s)"), "{}", r.stdout);
    assert!(!w.path().join("data/node-0/kafka.pid").exists());

    let r = w.fink(&["cluster", "stop"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(r.stdout.contains("not running"), "{}", r.stdout);

    let r = w.fink(&["cluster", "status"]);
    assert_eq!(r.code, 1);
}

#[test]
fn start_reports_a_port_in_use() {
    let w = Workspace::new();
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = blocker.local_addr().unwrap().port();
    w.write(
        "fink.toml",
        &format!("[cluster]\nbootstrap = [\"127.0.0.1:{port}\"]\n[cluster.admin]\nuser = \"admin\"\npassword = {{ file = \"pw\", generate = true }}\n[local]\nport = {port}\ncontroller_port = 19392\ndata_dir = \"data\"\n"),
    );
    let r = w.fink(&["cluster", "start"]);
    assert_eq!(r.code, 1, "{}", r.all());
    assert!(r.stderr.contains(&format!("port {port} on 127.0.0.1 is in use")), "{}", r.stderr);
}

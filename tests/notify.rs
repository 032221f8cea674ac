//! `[[notify]]` against a local HTTP receiver that the test runs: the
//! payloads, the rate limit, a retry after a 500, and a receiver that hangs
//! (the Kafka stream publishes everything regardless). The URL, a secret,
//! never appears in fink's output.

mod common;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use common::*;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// The first request gets a 500, the others a 200.
    FailFirst,
    /// Reads requests and never answers.
    Hang,
}

/// A webhook receiver: the bodies it answered 200 to, and how many requests came.
struct Receiver {
    url: String,
    bodies: Arc<Mutex<Vec<String>>>,
    requests: Arc<Mutex<usize>>,
}

fn receiver(mode: Mode) -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks/T000/SECRET123TOKEN", listener.local_addr().unwrap());
    let bodies: Arc<Mutex<Vec<String>>> = Arc::default();
    let requests: Arc<Mutex<usize>> = Arc::default();
    let (b, r) = (bodies.clone(), requests.clone());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let (b, r) = (b.clone(), r.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut conn = conn;
                loop {
                    let mut len = 0usize;
                    let mut line = String::new();
                    // Request line and headers.
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0u8; len];
                    reader.read_exact(&mut body).unwrap();
                    let n = {
                        let mut r = r.lock().unwrap();
                        *r += 1;
                        *r
                    };
                    if mode == Mode::Hang {
                        std::thread::park();
                        return;
                    }
                    let status = if n == 1 { "500 Internal Server Error" } else { "200 OK" };
                    if n > 1 {
                        b.lock().unwrap().push(String::from_utf8(body).unwrap());
                    }
                    let _ = write!(conn, "HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
                }
            });
        }
    });
    Receiver { url, bodies, requests }
}

fn setup(w: &Workspace, r: &Receiver, max_per_minute: u32) -> String {
    let topic = unique("notify");
    let out = w.fink(&["simulate", "--out", "src", "--alerts", "10", "--per-file", "10", "--seed", "31"]);
    assert_eq!(out.code, 0, "{}", out.all());
    w.write("hook.url", &format!("{}\n", r.url));
    w.config(&format!(
        "[run]\nstate_dir = \"state\"\nmetrics_addr = \"\"\n\n[[topic]]\nname = \"{topic}\"\n\n[[stream]]\nname = \"s\"\nsource = {{ format = \"parquet\", path = \"src\" }}\ntopic = \"{topic}\"\n\n[[notify]]\nstream = \"s\"\nurl = {{ file = \"hook.url\" }}\nformat = \"slack\"\ntemplate = \"{{objectId}} at {{candidate.magpsf}} mag\"\nmax_per_minute = {max_per_minute}\n"
    ));
    assert_eq!(w.fink(&["apply", "--auto-approve"]).code, 0);
    topic
}

fn run(w: &Workspace) -> (serde_json::Value, String) {
    let r = w.fink(&["run", "--until-idle", "--no-progress", "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.all());
    assert!(!r.all().contains("SECRET123TOKEN"), "the webhook URL leaked:\n{}", r.all());
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    (v["streams"][0]["stats"].clone(), r.stderr)
}

#[test]
fn messages_are_rendered_rate_limited_and_retried_after_a_500() {
    let w = Workspace::new();
    let rx = receiver(Mode::FailFirst);
    setup(&w, &rx, 4);
    let (stats, _) = run(&w);
    assert_eq!(stats["published"], 10, "{stats}");
    // 4 a minute: the first four alerts, the first one after a retry.
    assert_eq!(stats["notified"], 4, "{stats}");
    assert_eq!(stats["notify_dropped"], 6, "{stats}");
    assert_eq!(stats["notify_failed"], 0, "{stats}");
    assert_eq!(*rx.requests.lock().unwrap(), 5, "one 500, then four 200s");
    let source = source_records(&w.path().join("src"));
    let want: Vec<String> = source[..4]
        .iter()
        .map(|a| {
            let mag = a["candidate"]["magpsf"].as_f64().unwrap();
            let mag = format!("{mag:.4}");
            let mag = mag.trim_end_matches('0').trim_end_matches('.');
            serde_json::json!({ "text": format!("{} at {mag} mag", a["objectId"].as_str().unwrap()) }).to_string()
        })
        .collect();
    let got: Vec<serde_json::Value> =
        rx.bodies.lock().unwrap().iter().map(|b| serde_json::from_str(b).unwrap()).collect();
    let want: Vec<serde_json::Value> = want.iter().map(|b| serde_json::from_str(b).unwrap()).collect();
    assert_eq!(got, want);
}

#[test]
fn a_receiver_that_hangs_never_holds_the_kafka_stream() {
    let w = Workspace::new();
    let rx = receiver(Mode::Hang);
    let topic = setup(&w, &rx, 100);
    let (stats, _) = run(&w);
    assert_eq!(stats["published"], 10, "{stats}");
    assert_eq!(stats["notified"], 0, "{stats}");
    assert_eq!(consume_all_decoded(&topic, 1).len(), 10);
    assert!(*rx.requests.lock().unwrap() >= 1);
}

//! A minimal HTTP endpoint for long-running `fink run`: `GET /metrics`
//! (Prometheus text) and `GET /status` (JSON). One listener, so both live at
//! the same address; requests are tiny and rare, one thread serves them.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::Arc;

pub type Render = Arc<dyn Fn() -> String + Send + Sync>;

pub fn serve(addr: &str, metrics: Render, status: Render) -> std::io::Result<std::net::SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    std::thread::Builder::new().name("http".into()).spawn(move || {
        for conn in listener.incoming().flatten() {
            let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(5)));
            let mut reader = BufReader::new(match conn.try_clone() {
                Ok(c) => c,
                Err(_) => continue,
            });
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            // Drain the headers.
            let mut h = String::new();
            while reader.read_line(&mut h).map(|n| n > 2).unwrap_or(false) {
                h.clear();
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/");
            let (code, ctype, body) = match path {
                "/metrics" => ("200 OK", "text/plain; version=0.0.4", metrics()),
                "/status" => ("200 OK", "application/json", status()),
                _ => ("404 Not Found", "text/plain", "try /metrics or /status\n".to_string()),
            };
            let mut conn = conn;
            let _ = write!(
                conn,
                "HTTP/1.1 {code}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    })?;
    Ok(local)
}

//! The HTTP endpoint of a long-running `fink run`: `GET /metrics`
//! (Prometheus text), `GET /status` (JSON), and the probes `GET /healthz`
//! (the process answers) and `GET /readyz` (every stream it runs is
//! healthy) at one address.
//!
//! Served by hyper on its own small tokio runtime, one task per connection:
//! a client that never finishes its request, or never reads the answer,
//! holds only its own connection, and only until its deadline. Request
//! heads are bounded in size and must arrive within [`HEAD_TIMEOUT`]; a
//! whole connection lives at most [`CONN_TIMEOUT`].

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};

pub type Render = Arc<dyn Fn() -> String + Send + Sync>;
/// Readiness: `Ok` or the reasons this instance is not ready.
pub type Ready = Arc<dyn Fn() -> Result<(), Vec<String>> + Send + Sync>;

/// How long a client has to send its request line and headers.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a connection is served (reading, rendering, writing).
pub const CONN_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest request head accepted (hyper's read buffer).
pub const MAX_HEAD: usize = 16 * 1024;
/// Connections served at once; more wait in the listen backlog.
const MAX_CONNS: usize = 64;

/// Bind `addr` and serve in the background; the bound address is returned
/// (port 0 picks one).
pub fn serve(addr: &str, metrics: Render, status: Render, ready: Ready) -> std::io::Result<SocketAddr> {
    let std_listener = std::net::TcpListener::bind(addr)?;
    std_listener.set_nonblocking(true)?;
    let local = std_listener.local_addr()?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::Builder::new().name("http".into()).spawn(move || {
        rt.block_on(async move {
            let listener = match tokio::net::TcpListener::from_std(std_listener) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!("metrics endpoint: {e}");
                    return;
                }
            };
            let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNS));
            loop {
                let Ok(permit) = slots.clone().acquire_owned().await else { return };
                let (stream, _) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::debug!("metrics endpoint: accept: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (metrics, status, ready) = (metrics.clone(), status.clone(), ready.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let answer = respond(req.uri().path(), &metrics, &status, &ready);
                        async move { Ok::<_, Infallible>(answer) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEAD_TIMEOUT)
                        .max_buf_size(MAX_HEAD)
                        .keep_alive(false)
                        .serve_connection(TokioIo::new(stream), service);
                    let _ = tokio::time::timeout(CONN_TIMEOUT, conn).await;
                    drop(permit);
                });
            }
        })
    })?;
    Ok(local)
}

fn respond(path: &str, metrics: &Render, status: &Render, ready: &Ready) -> Response<Full<Bytes>> {
    let (code, ctype, body) = match path {
        "/metrics" => (StatusCode::OK, "text/plain; version=0.0.4", metrics()),
        "/status" => (StatusCode::OK, "application/json", status()),
        // Served by this thread alone: the supervisor restarts failed
        // streams itself, so liveness asks only that the process answers.
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_string()),
        "/readyz" => match ready() {
            Ok(()) => (StatusCode::OK, "text/plain", "ready\n".to_string()),
            Err(why) => (StatusCode::SERVICE_UNAVAILABLE, "text/plain", format!("not ready:\n{}\n", why.join("\n"))),
        },
        _ => (StatusCode::NOT_FOUND, "text/plain", "try /metrics, /status, /healthz or /readyz\n".to_string()),
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    r.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(ctype));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    /// Bounded below [`HEAD_TIMEOUT`]: a server that served one client at
    /// a time would keep this one waiting behind a stuck one, and fail it.
    fn get(addr: SocketAddr, path: &str) -> String {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(HEAD_TIMEOUT / 2)).unwrap();
        write!(c, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        out
    }

    fn server() -> SocketAddr {
        serve(
            "127.0.0.1:0",
            Arc::new(|| "fink_up 1\n".to_string()),
            Arc::new(|| "{\"ok\":true}".to_string()),
            Arc::new(|| Err(vec!["stream s: failed".to_string()])),
        )
        .unwrap()
    }

    #[test]
    fn metrics_status_and_not_found() {
        let addr = server();
        let m = get(addr, "/metrics");
        assert!(m.starts_with("HTTP/1.1 200") && m.ends_with("fink_up 1\n"), "{m}");
        assert!(m.contains("text/plain; version=0.0.4"), "{m}");
        let s = get(addr, "/status");
        assert!(s.contains("application/json") && s.ends_with("{\"ok\":true}"), "{s}");
        assert!(get(addr, "/nope").starts_with("HTTP/1.1 404"));
        let h = get(addr, "/healthz");
        assert!(h.starts_with("HTTP/1.1 200") && h.ends_with("ok\n"), "{h}");
        let r = get(addr, "/readyz");
        assert!(r.starts_with("HTTP/1.1 503") && r.ends_with("stream s: failed\n"), "{r}");
    }

    /// A client that sends half a request and waits, and one that never
    /// reads its answer, do not delay another client.
    #[test]
    fn a_stuck_client_does_not_delay_another() {
        let addr = server();
        let mut half = TcpStream::connect(addr).unwrap();
        half.write_all(b"GET /status HTTP/1.1\r\nHost: x\r\n").unwrap();
        let mut deaf = TcpStream::connect(addr).unwrap();
        deaf.write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        for _ in 0..3 {
            let s = get(addr, "/status");
            assert!(s.ends_with("{\"ok\":true}"), "{s}");
        }
        drop((half, deaf));
    }

    /// An endless request head is cut off, not buffered without end.
    #[test]
    fn an_oversized_request_head_is_refused() {
        let addr = server();
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let long = format!("GET /status HTTP/1.1\r\nX: {}\r\n", "a".repeat(64 * 1024));
        // The server may close while we still write: that is the refusal.
        let _ = c.write_all(long.as_bytes());
        let mut out = String::new();
        let _ = c.read_to_string(&mut out);
        assert!(!out.contains("{\"ok\":true}"), "{out}");
        assert!(get(addr, "/status").ends_with("{\"ok\":true}"));
    }
}

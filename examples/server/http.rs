//! `--metrics ADDR`: a tiny HTTP/1.1 listener on its own thread (std only), one request
//! per connection, answered and closed:
//! - `/healthz`: 200 while the app updates (503 once it has not for 5 s);
//! - `/readyz`: 200 once the UDP socket is bound and while not draining, else 503;
//! - `/stats`: the stats JSON (at most a second old);
//! - `/metrics`: the same numbers in Prometheus' text format.
//!
//! Requests are read with a 2 s timeout and at most 8 KiB, each on a thread of its own, at
//! most 64 at once (more get 503 at once).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::stats::{Shared, prometheus};

const MAX_REQUEST: usize = 8 * 1024;
/// Requests served at once.
const MAX_ACTIVE: usize = 64;
const TIMEOUT: Duration = Duration::from_secs(2);
/// `/healthz` fails when the app has not updated for this long.
const STALL_MS: u64 = 5_000;

/// Serves `listener` on a thread of its own for the life of the process.
pub fn spawn(listener: TcpListener, shared: Arc<Shared>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("metrics-http".into())
        .spawn(move || {
            let active = Arc::new(AtomicUsize::new(0));
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => dispatch(stream, &shared, &active),
                    // a connection reset before accept, or out of descriptors: go on
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        })
        .map(|_| ())
}

/// Serves `stream` on a thread of its own, at most [`MAX_ACTIVE`] at once (so a client that
/// sends nothing does not hold up the health checks); beyond that, 503 at once.
fn dispatch(mut stream: TcpStream, shared: &Arc<Shared>, active: &Arc<AtomicUsize>) {
    if active.fetch_add(1, Ordering::SeqCst) >= MAX_ACTIVE {
        active.fetch_sub(1, Ordering::SeqCst);
        let _ = stream.set_write_timeout(Some(TIMEOUT));
        let busy = response(503, "text/plain", "busy\n".into(), true);
        let _ = stream.write_all(&busy);
        return;
    }
    let (shared, done) = (shared.clone(), active.clone());
    let spawned = std::thread::Builder::new()
        .name("metrics-request".into())
        .spawn(move || {
            serve(stream, &shared);
            done.fetch_sub(1, Ordering::SeqCst);
        });
    if spawned.is_err() {
        active.fetch_sub(1, Ordering::SeqCst);
    }
}

fn serve(mut stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(TIMEOUT));
    let _ = stream.set_write_timeout(Some(TIMEOUT));
    let response = match read_request(&mut stream) {
        Ok((method, path)) => respond(&method, &path, shared),
        Err(status) => response(status, "text/plain", format!("{}\n", reason(status)), true),
    };
    let _ = stream.write_all(&response);
    let _ = stream.flush();
}

/// The method and path of the request line; an HTTP status on a bad request.
fn read_request(stream: &mut TcpStream) -> Result<(String, String), u16> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.windows(2).any(|w| w == b"\n\n") {
        if buf.len() >= MAX_REQUEST {
            return Err(431);
        }
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => return Err(408),
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.lines().next().unwrap_or_default().split_whitespace();
    match (parts.next(), parts.next(), parts.next()) {
        (Some(method), Some(target), Some(version)) if version.starts_with("HTTP/1.") => {
            let path = target.split('?').next().unwrap_or_default();
            Ok((method.to_owned(), path.to_owned()))
        }
        _ => Err(400),
    }
}

fn respond(method: &str, path: &str, shared: &Shared) -> Vec<u8> {
    let body = method != "HEAD";
    if method != "GET" && method != "HEAD" {
        return response(405, "text/plain", "method not allowed\n".into(), body);
    }
    let text = "text/plain; charset=utf-8";
    match path {
        "/healthz" => {
            let stalled = shared
                .now_ms()
                .saturating_sub(shared.heartbeat_ms.load(Ordering::Relaxed));
            match stalled < STALL_MS {
                true => response(200, text, "ok\n".into(), body),
                false => response(503, text, format!("stalled for {stalled} ms\n"), body),
            }
        }
        "/readyz" => {
            if shared.draining.load(Ordering::Relaxed) {
                response(503, text, "draining\n".into(), body)
            } else if !shared.bound.load(Ordering::Relaxed) {
                response(503, text, "starting\n".into(), body)
            } else {
                response(200, text, "ready\n".into(), body)
            }
        }
        "/stats" => {
            let json = shared
                .snapshot
                .lock()
                .map(|s| s.clone())
                .unwrap_or_default();
            response(200, "application/json", json + "\n", body)
        }
        "/metrics" => {
            let json = shared
                .snapshot
                .lock()
                .map(|s| s.clone())
                .unwrap_or_default();
            let value = serde_json::from_str(&json).unwrap_or_default();
            let metrics = prometheus(&value);
            response(200, "text/plain; version=0.0.4", metrics, body)
        }
        _ => response(
            404,
            text,
            "not found: /healthz, /readyz, /stats, /metrics\n".into(),
            body,
        ),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// A whole HTTP/1.1 response that closes the connection (`body` false: HEAD, headers only).
fn response(status: u16, content_type: &str, text: String, body: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        reason(status),
        text.len()
    )
    .into_bytes();
    if body {
        out.extend_from_slice(text.as_bytes());
    }
    out
}

//! The control socket: HTTP/1.1 with JSON bodies over a Unix socket (our own bounded server,
//! `http.rs`), as Firecracker and Cloud Hypervisor do. One module per resource family; `route` is
//! the single dispatch point, so pages, stats and metrics can be added beside islands and threads.

pub mod client;
pub mod http;
pub mod stats;

pub use stats::summary;

use std::path::Path;
use std::sync::Arc;

use serde_json::{json, Value};

use self::http::{HttpRequest, HttpResponse, HttpServer, Method};
use crate::kernel::{ExitStatus, Island};

/// Errors of starting the control socket.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("control socket: {0}")]
    Http(#[from] http::HttpError),
}

/// A running control socket. Dropping it stops accepting connections and removes the socket file
/// (if it is still the one it created).
#[derive(Debug)]
pub struct ApiServer {
    server: HttpServer,
}

impl ApiServer {
    pub fn path(&self) -> &Path {
        self.server.path()
    }
}

/// A response: status code and JSON body (or plain text, for `/metrics`).
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub text: Option<String>,
}

fn ok(body: Value) -> Reply {
    Reply {
        status: 200,
        body,
        text: None,
    }
}

fn error(status: u16, msg: impl Into<String>) -> Reply {
    Reply {
        status,
        body: json!({ "error": msg.into() }),
        text: None,
    }
}

/// Starts serving the program whose island kernels are `islands` (origin first) on a Unix socket
/// at `path`: mode 0600; a stale socket file there is replaced, anything else refused (see
/// [`http::serve`]).
pub fn serve(path: &Path, islands: Vec<Arc<Island>>) -> Result<ApiServer, ApiError> {
    let handler = Arc::new(move |req: HttpRequest| -> HttpResponse {
        let url = if req.query.is_empty() {
            req.path
        } else {
            format!("{}?{}", req.path, req.query)
        };
        let reply = match String::from_utf8(req.body) {
            Ok(body) => route(&islands, &req.method, &url, &body),
            Err(_) => error(400, "request body is not UTF-8 text"),
        };
        match reply.text {
            Some(t) => HttpResponse {
                status: reply.status,
                content_type: "text/plain; version=0.0.4",
                body: t.into_bytes(),
            },
            None => HttpResponse {
                status: reply.status,
                content_type: "application/json",
                body: reply.body.to_string().into_bytes(),
            },
        }
    });
    Ok(ApiServer {
        server: http::serve(path, handler)?,
    })
}

/// Serves one request.
pub fn route(islands: &[Arc<Island>], method: &Method, url: &str, body: &str) -> Reply {
    let Some(origin) = islands.first() else {
        return error(503, "no program");
    };
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    match (method, path) {
        (Method::Get, "/islands") => island_list(islands),
        (Method::Get, "/threads") => threads(islands),
        (Method::Get, "/pages") => pages(islands, query),
        (Method::Get, "/stats") => ok(summary(islands).json()),
        (Method::Get, "/metrics") => Reply {
            status: 200,
            body: Value::Null,
            text: Some(summary(islands).prometheus()),
        },
        (Method::Put, "/shutdown") => shutdown(origin, body),
        (_, "/islands" | "/threads" | "/pages" | "/stats" | "/metrics" | "/shutdown") => {
            error(405, format!("method {method} not allowed on {path}"))
        }
        _ => error(404, format!("no such resource: {path}")),
    }
}

/// Parses `from=ADDR&count=N` (ADDR decimal or 0x-hex; N from 1 to 4096, default 256).
fn pages(islands: &[Arc<Island>], query: &str) -> Reply {
    let mut from = 0u64;
    let mut count = 256usize;
    for pair in query.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "from" => {
                let parsed = match v.strip_prefix("0x") {
                    Some(h) => u64::from_str_radix(h, 16).ok(),
                    None => v.parse().ok(),
                };
                match parsed {
                    Some(a) => from = a,
                    None => return error(400, format!("from={v}: not an address")),
                }
            }
            "count" => match v.parse::<usize>() {
                Ok(n) if (1..=4096).contains(&n) => count = n,
                _ => return error(400, format!("count={v}: expected 1 to 4096")),
            },
            _ => return error(400, format!("unknown parameter {k:?} (from, count)")),
        }
    }
    ok(stats::pages(islands, from, count))
}

fn island_list(islands: &[Arc<Island>]) -> Reply {
    let list: Vec<Value> = islands
        .iter()
        .map(|p| {
            let mem = p.vm.memory();
            json!({
                "id": p.id,
                "program": p.config.exe_path,
                "pid": p.pid,
                "threads": p.threads().len(),
                "memory": {
                    "slot_bytes": mem.size(),
                    "resident_bytes": mem.resident_bytes(),
                },
                "uptime_ms": p.started.elapsed().as_millis() as u64,
            })
        })
        .collect();
    ok(Value::Array(list))
}

fn threads(islands: &[Arc<Island>]) -> Reply {
    let list: Vec<Value> = islands
        .iter()
        .flat_map(|p| {
            p.threads()
                .iter()
                .map(|t| {
                    json!({
                        "tid": t.tid,
                        "island": p.id,
                        "vcpu": t.vcpu.load(std::sync::atomic::Ordering::Relaxed),
                        "state": t.state().name(),
                        "rip": t.rip(),
                        "syscalls": t.syscalls.load(std::sync::atomic::Ordering::Relaxed),
                    })
                })
                .collect::<Vec<_>>()
        })
        .collect();
    ok(Value::Array(list))
}

fn shutdown(p: &Island, body: &str) -> Reply {
    // An optional JSON object body; anything else is a malformed request.
    if !body.trim().is_empty() {
        match serde_json::from_str::<Value>(body) {
            Ok(Value::Object(_)) => {}
            Ok(_) => return error(400, "body must be a JSON object"),
            Err(e) => return error(400, format!("malformed JSON body: {e}")),
        }
    }
    // The program ends as if killed by SIGTERM (status 143 for the shell).
    p.services.exit_group(ExitStatus::Signal(libc::SIGTERM));
    ok(json!({ "status": "shutting down" }))
}

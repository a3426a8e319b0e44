//! The control socket: HTTP/1.1 with JSON bodies over a Unix socket (tiny_http), as Firecracker
//! and Cloud Hypervisor do. One module per resource family; `route` is the single dispatch point,
//! so pages, stats and metrics can be added beside islands and threads.

pub mod client;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Value};
use tiny_http::{Header, Method, Response, Server};

use crate::kernel::{ExitStatus, Process};

/// Errors of starting the control socket.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot listen on {path}: {reason}")]
    Listen { path: String, reason: String },
}

/// A running control socket; the socket file is removed when it is dropped.
pub struct ApiServer {
    server: Arc<Server>,
    path: PathBuf,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("path", &self.path)
            .finish()
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.server.unblock();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A response: status code and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

fn error(status: u16, msg: impl Into<String>) -> Reply {
    Reply {
        status,
        body: json!({ "error": msg.into() }),
    }
}

/// Starts serving `p` on a Unix socket at `path` (replacing a stale socket file).
pub fn serve(path: &Path, p: Arc<Process>) -> Result<ApiServer, ApiError> {
    if path.exists() {
        let _ = std::fs::remove_file(path);
    }
    let server = Server::http_unix(path).map_err(|e| ApiError::Listen {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let server = Arc::new(server);
    let s2 = Arc::clone(&server);
    std::thread::Builder::new()
        .name("api".into())
        .spawn(move || {
            loop {
                let mut req = match s2.recv() {
                    Ok(r) => r,
                    // unblock() or a closed listener: stop serving.
                    Err(_) => break,
                };
                let mut body = String::new();
                let reply = match req.as_reader().take(1 << 16).read_to_string(&mut body) {
                    Ok(_) => route(&p, req.method(), req.url(), &body),
                    Err(_) => error(400, "request body is not UTF-8 text"),
                };
                let text = reply.body.to_string();
                let mut resp = Response::from_string(text).with_status_code(reply.status);
                if let Ok(h) = Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..]) {
                    resp = resp.with_header(h);
                }
                // A client that went away is its own problem.
                let _ = req.respond(resp);
            }
        })
        .map_err(|e| ApiError::Listen {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    Ok(ApiServer {
        server,
        path: path.to_path_buf(),
    })
}

/// Serves one request.
pub fn route(p: &Process, method: &Method, url: &str, body: &str) -> Reply {
    let path = url.split('?').next().unwrap_or("");
    match (method, path) {
        (Method::Get, "/islands") => islands(p),
        (Method::Get, "/threads") => threads(p),
        (Method::Put, "/shutdown") => shutdown(p, body),
        (_, "/islands" | "/threads" | "/shutdown") => {
            error(405, format!("method {method} not allowed on {path}"))
        }
        _ => error(404, format!("no such resource: {path}")),
    }
}

fn islands(p: &Process) -> Reply {
    let mem = p.vm.memory();
    Reply {
        status: 200,
        body: json!([{
            "id": p.config.island,
            "program": p.config.exe_path,
            "pid": p.pid,
            "threads": p.threads().len(),
            "memory": {
                "slot_bytes": mem.size(),
                "resident_bytes": mem.resident_bytes(),
            },
            "uptime_ms": p.started.elapsed().as_millis() as u64,
        }]),
    }
}

fn threads(p: &Process) -> Reply {
    let list: Vec<Value> = p
        .threads()
        .iter()
        .map(|t| {
            json!({
                "tid": t.tid,
                "island": p.config.island,
                "vcpu": t.vcpu,
                "state": t.state().name(),
                "rip": t.rip(),
                "syscalls": t.syscalls.load(std::sync::atomic::Ordering::Relaxed),
            })
        })
        .collect();
    Reply {
        status: 200,
        body: Value::Array(list),
    }
}

fn shutdown(p: &Process, body: &str) -> Reply {
    // An optional JSON object body; anything else is a malformed request.
    if !body.trim().is_empty() {
        match serde_json::from_str::<Value>(body) {
            Ok(Value::Object(_)) => {}
            Ok(_) => return error(400, "body must be a JSON object"),
            Err(e) => return error(400, format!("malformed JSON body: {e}")),
        }
    }
    // The program ends as if killed by SIGTERM (status 143 for the shell).
    p.exit(ExitStatus::Signal(libc::SIGTERM));
    Reply {
        status: 200,
        body: json!({ "status": "shutting down" }),
    }
}

//! The control socket's actions, typed: an HTTP request becomes a [`ControlAction`] here (or a 4xx
//! [`ControlError`]) before anyone looks at the program, and the program's owner answers it with a
//! [`ControlAnswer`] (the types of `types.rs`), which becomes the HTTP response. As in
//! Firecracker's `VmmAction` and Cloud Hypervisor's API actions, the HTTP side only parses and
//! formats; what an action does is decided by the owner of the program (`Program::run`'s loop).
//!
//! `popvmm ctl` builds its requests from the same actions ([`ControlAction::to_http`]), so the
//! routes exist once. Adding an action: a variant here, its route in [`Route`] and
//! [`ControlAction::from_http`], its answer in [`ControlAnswer`], and what it does in
//! `Program::answer`. An action with a body parses it with [`json_body`] into a serde request type
//! of `types.rs` (`PUT /shutdown`'s [`ShutdownRequest`] is one), so a malformed body is a 400
//! before the owner hears of it. A path parameter (a thread id, say) is parsed in [`Route::of`].

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::http::{HttpResponse, Method};
use super::types::{
    ErrorBody, IslandInfo, MigrateRequest, PageList, ProposalRequest, ShutdownAnswer,
    ShutdownRequest, Stats, ThreadInfo, ThreadOpAnswer,
};

/// The most pages one `GET /pages` lists (its `count`).
pub const MAX_PAGES_PER_REQUEST: usize = 4096;
/// `count` when the request gives none.
pub const DEFAULT_PAGES_PER_REQUEST: usize = 256;

/// What a control socket request asks of the program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlAction {
    /// `GET /islands`
    Islands,
    /// `GET /threads`
    Threads,
    /// `GET /pages?from=ADDR&count=N`: up to `count` pages from the page holding `from` on.
    Pages { from: u64, count: usize },
    /// `GET /stats`
    Stats,
    /// `GET /metrics` (Prometheus text)
    Metrics,
    /// `PUT /shutdown`: the program ends as if killed by SIGTERM.
    Shutdown(ShutdownRequest),
    /// `POST /threads/{tid}/migrate`: move the thread to another island, wherever it is in its
    /// code (transparent migration: no cooperation from the program).
    Migrate { tid: u32, request: MigrateRequest },
    /// `PUT /threads/{tid}/proposal`: propose an island for the thread's next migration (what
    /// libpopcorn's `check_migrate` reads).
    Propose { tid: u32, request: ProposalRequest },
}

/// The owner's answer to a [`ControlAction`], one variant per action.
#[derive(Debug, Clone, PartialEq)]
pub enum ControlAnswer {
    Islands(Vec<IslandInfo>),
    Threads(Vec<ThreadInfo>),
    Pages(PageList),
    Stats(Box<Stats>),
    /// Prometheus text exposition.
    Metrics(String),
    Shutdown(ShutdownAnswer),
    ThreadOp(ThreadOpAnswer),
}

/// What the owner sends back for an action.
pub type ControlResult = Result<ControlAnswer, ControlError>;

/// Why a request got no answer from the program: a bad request (4xx, found before the owner sees
/// it), or a program that is ending or gone (503).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("no such resource: {path}")]
    NotFound { path: String },
    #[error("method {method} not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("{name}={value}: {expected}")]
    BadParameter {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("unknown parameter {name:?} ({known})")]
    UnknownParameter { name: String, known: &'static str },
    #[error("malformed JSON body: {0}")]
    MalformedBody(String),
    #[error("body must be a JSON object")]
    BodyNotObject,
    #[error("invalid JSON body: {0}")]
    InvalidBody(String),
    #[error("no thread {0} in the program")]
    NoSuchThread(u32),
    #[error("island {to} does not exist (the program has {islands} islands)")]
    NoSuchIsland { to: usize, islands: usize },
    #[error("thread {tid} already runs on island {to}")]
    AlreadyThere { tid: u32, to: usize },
    #[error("the program has ended")]
    Ended,
    #[error("the program is ending: its controller did not answer within {} s", .0.as_secs_f64())]
    NoAnswer(Duration),
    #[error("cannot encode the answer: {0}")]
    Encode(String),
}

impl ControlError {
    /// The HTTP status of this error.
    pub fn status(&self) -> u16 {
        match self {
            ControlError::NotFound { .. } | ControlError::NoSuchThread(_) => 404,
            ControlError::AlreadyThere { .. } => 409,
            ControlError::NoSuchIsland { .. } => 400,
            ControlError::MethodNotAllowed { .. } => 405,
            ControlError::BadParameter { .. }
            | ControlError::UnknownParameter { .. }
            | ControlError::MalformedBody(_)
            | ControlError::BodyNotObject
            | ControlError::InvalidBody(_) => 400,
            ControlError::Ended | ControlError::NoAnswer(_) => 503,
            ControlError::Encode(_) => 500,
        }
    }

    /// The response: the status and `{"error": ...}`.
    pub fn into_http(self) -> HttpResponse {
        json_response(
            self.status(),
            &ErrorBody {
                error: self.to_string(),
            },
        )
    }
}

/// The control socket's resources, by path (the method is checked apart, for 405s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Islands,
    Threads,
    Pages,
    Stats,
    Metrics,
    Shutdown,
    Migrate(u32),
    Proposal(u32),
}

impl Route {
    /// The resource at `path` (no query), if there is one.
    fn of(path: &str) -> Option<Route> {
        let segments: Vec<&str> = path.strip_prefix('/')?.split('/').collect();
        Some(match segments.as_slice() {
            ["islands"] => Route::Islands,
            ["threads"] => Route::Threads,
            ["pages"] => Route::Pages,
            ["stats"] => Route::Stats,
            ["metrics"] => Route::Metrics,
            ["shutdown"] => Route::Shutdown,
            ["threads", tid, "migrate"] => Route::Migrate(tid.parse().ok()?),
            ["threads", tid, "proposal"] => Route::Proposal(tid.parse().ok()?),
            _ => return None,
        })
    }
}

/// A request as `popvmm ctl` sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpCall {
    pub method: Method,
    /// Path and query.
    pub target: String,
    pub body: String,
}

impl ControlAction {
    /// The action an HTTP request asks for. `query` is what follows the `?` (may be empty).
    pub fn from_http(
        method: &Method,
        path: &str,
        query: &str,
        body: &[u8],
    ) -> Result<ControlAction, ControlError> {
        let route = Route::of(path).ok_or_else(|| ControlError::NotFound {
            path: path.to_string(),
        })?;
        match (route, method) {
            (Route::Islands, Method::Get) => Ok(ControlAction::Islands),
            (Route::Threads, Method::Get) => Ok(ControlAction::Threads),
            (Route::Pages, Method::Get) => pages_query(query),
            (Route::Stats, Method::Get) => Ok(ControlAction::Stats),
            (Route::Metrics, Method::Get) => Ok(ControlAction::Metrics),
            (Route::Shutdown, Method::Put) => Ok(ControlAction::Shutdown(optional_body(body)?)),
            (Route::Migrate(tid), Method::Post) => Ok(ControlAction::Migrate {
                tid,
                request: json_body(body)?,
            }),
            (Route::Proposal(tid), Method::Put) => Ok(ControlAction::Propose {
                tid,
                request: json_body(body)?,
            }),
            _ => Err(ControlError::MethodNotAllowed {
                method: method.to_string(),
                path: path.to_string(),
            }),
        }
    }

    /// The request that asks for this action (what [`ControlAction::from_http`] turns back into
    /// it).
    pub fn to_http(&self) -> Result<HttpCall, ControlError> {
        let get = |target: &str| HttpCall {
            method: Method::Get,
            target: target.to_string(),
            body: String::new(),
        };
        Ok(match self {
            ControlAction::Islands => get("/islands"),
            ControlAction::Threads => get("/threads"),
            ControlAction::Pages { from, count } => {
                get(&format!("/pages?from={from:#x}&count={count}"))
            }
            ControlAction::Stats => get("/stats"),
            ControlAction::Metrics => get("/metrics"),
            ControlAction::Shutdown(req) => HttpCall {
                method: Method::Put,
                target: "/shutdown".into(),
                body: encode(req)?,
            },
            ControlAction::Migrate { tid, request } => HttpCall {
                method: Method::Post,
                target: format!("/threads/{tid}/migrate"),
                body: encode(request)?,
            },
            ControlAction::Propose { tid, request } => HttpCall {
                method: Method::Put,
                target: format!("/threads/{tid}/proposal"),
                body: encode(request)?,
            },
        })
    }
}

fn encode<T: Serialize>(body: &T) -> Result<String, ControlError> {
    serde_json::to_string(body).map_err(|e| ControlError::Encode(e.to_string()))
}

/// `from=ADDR&count=N` (ADDR decimal or 0x-hex; N from 1 to [`MAX_PAGES_PER_REQUEST`]).
fn pages_query(query: &str) -> Result<ControlAction, ControlError> {
    let mut from = 0u64;
    let mut count = DEFAULT_PAGES_PER_REQUEST;
    for pair in query.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "from" => {
                let parsed = match v.strip_prefix("0x") {
                    Some(h) => u64::from_str_radix(h, 16).ok(),
                    None => v.parse().ok(),
                };
                from = parsed.ok_or_else(|| ControlError::BadParameter {
                    name: "from",
                    value: v.to_string(),
                    expected: "not an address",
                })?;
            }
            "count" => {
                count = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_PAGES_PER_REQUEST).contains(n))
                    .ok_or_else(|| ControlError::BadParameter {
                        name: "count",
                        value: v.to_string(),
                        expected: "expected 1 to 4096",
                    })?;
            }
            _ => {
                return Err(ControlError::UnknownParameter {
                    name: k.to_string(),
                    known: "from, count",
                })
            }
        }
    }
    Ok(ControlAction::Pages { from, count })
}

/// A request body that must be a JSON object, as `T`.
pub fn json_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ControlError> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ControlError::MalformedBody(e.to_string()))?;
    if !v.is_object() {
        return Err(ControlError::BodyNotObject);
    }
    serde_json::from_value(v).map_err(|e| ControlError::InvalidBody(e.to_string()))
}

/// [`json_body`], where an empty body (or only white space) means `T::default()`.
pub fn optional_body<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ControlError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    json_body(body)
}

/// `value` as a JSON response; a value that cannot be encoded is a 500 (it cannot happen with the
/// types of `types.rs`, whose maps have string keys).
fn json_response<T: Serialize>(status: u16, value: &T) -> HttpResponse {
    match serde_json::to_vec(value) {
        Ok(body) => HttpResponse {
            status,
            content_type: "application/json",
            body,
        },
        Err(e) => HttpResponse::error(500, format!("cannot encode the answer: {e}")),
    }
}

impl ControlAnswer {
    /// The 200 response carrying this answer.
    pub fn into_http(self) -> HttpResponse {
        match self {
            ControlAnswer::Islands(v) => json_response(200, &v),
            ControlAnswer::Threads(v) => json_response(200, &v),
            ControlAnswer::Pages(v) => json_response(200, &v),
            ControlAnswer::Stats(v) => json_response(200, &v),
            ControlAnswer::Shutdown(v) => json_response(200, &v),
            ControlAnswer::ThreadOp(v) => json_response(200, &v),
            ControlAnswer::Metrics(text) => HttpResponse {
                status: 200,
                content_type: "text/plain; version=0.0.4",
                body: text.into_bytes(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(method: Method, target: &str, body: &str) -> Result<ControlAction, ControlError> {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        ControlAction::from_http(&method, path, query, body.as_bytes())
    }

    #[test]
    fn requests_become_actions() {
        assert_eq!(
            parse(Method::Get, "/islands", ""),
            Ok(ControlAction::Islands)
        );
        assert_eq!(
            parse(Method::Get, "/threads", ""),
            Ok(ControlAction::Threads)
        );
        assert_eq!(parse(Method::Get, "/stats", ""), Ok(ControlAction::Stats));
        assert_eq!(
            parse(Method::Get, "/metrics", ""),
            Ok(ControlAction::Metrics)
        );
        assert_eq!(
            parse(Method::Get, "/pages", ""),
            Ok(ControlAction::Pages {
                from: 0,
                count: DEFAULT_PAGES_PER_REQUEST
            })
        );
        assert_eq!(
            parse(Method::Get, "/pages?from=0x4bb000&count=4096", ""),
            Ok(ControlAction::Pages {
                from: 0x4bb000,
                count: 4096
            })
        );
        assert_eq!(
            parse(Method::Get, "/pages?count=1&from=4096", ""),
            Ok(ControlAction::Pages {
                from: 4096,
                count: 1
            })
        );
        for body in ["", "  \r\n", "{}", r#"{"why": "done"}"#] {
            assert_eq!(
                parse(Method::Put, "/shutdown", body),
                Ok(ControlAction::Shutdown(ShutdownRequest {})),
                "{body:?}"
            );
        }
    }

    #[test]
    fn bad_requests_are_4xx_with_a_reason() {
        let status = |r: Result<ControlAction, ControlError>| r.map_err(|e| e.status());
        assert_eq!(status(parse(Method::Get, "/no-such-thing", "")), Err(404));
        assert_eq!(status(parse(Method::Get, "/islands/", "")), Err(404));
        assert_eq!(status(parse(Method::Get, "islands", "")), Err(404));
        assert_eq!(status(parse(Method::Delete, "/threads", "")), Err(405));
        assert_eq!(status(parse(Method::Post, "/pages", "")), Err(405));
        assert_eq!(status(parse(Method::Get, "/shutdown", "")), Err(405));
        for q in [
            "count=0",
            "count=abc",
            "count=4097",
            "count=-1",
            "from=zz",
            "from=0xzz",
            "from=",
            "bogus=1",
        ] {
            assert_eq!(
                status(parse(Method::Get, &format!("/pages?{q}"), "")),
                Err(400),
                "{q}"
            );
        }
        let e = parse(Method::Put, "/shutdown", "{not json").expect_err("malformed");
        assert_eq!(e.status(), 400);
        assert!(e.to_string().contains("JSON"), "{e}");
        let e = parse(Method::Put, "/shutdown", "[1]").expect_err("not an object");
        assert_eq!(e, ControlError::BodyNotObject);
        let e = parse(Method::Put, "/shutdown", "\u{7f}\u{1}").expect_err("garbage");
        assert_eq!(e.status(), 400);
        assert_eq!(
            parse(Method::Get, "/pages?count=0", "").map_err(|e| e.to_string()),
            Err("count=0: expected 1 to 4096".to_string())
        );
    }

    #[test]
    fn typed_bodies_reject_what_does_not_fit() {
        #[derive(Debug, serde::Deserialize, PartialEq)]
        struct Move {
            island: usize,
        }
        assert_eq!(
            json_body::<Move>(br#"{"island": 2}"#),
            Ok(Move { island: 2 })
        );
        for bad in [&br#"{"island": -1}"#[..], br#"{}"#, br#"{"island": "x"}"#] {
            let e = json_body::<Move>(bad).expect_err("invalid");
            assert!(matches!(e, ControlError::InvalidBody(_)), "{e:?}");
            assert_eq!(e.status(), 400);
        }
        let e = json_body::<Move>(b"").expect_err("empty");
        assert!(matches!(e, ControlError::MalformedBody(_)), "{e:?}");
    }

    #[test]
    fn every_action_survives_the_trip_through_http() {
        for action in [
            ControlAction::Islands,
            ControlAction::Threads,
            ControlAction::Pages {
                from: 0xfbf7fe000,
                count: 17,
            },
            ControlAction::Stats,
            ControlAction::Metrics,
            ControlAction::Shutdown(ShutdownRequest {}),
        ] {
            let call = action.to_http().expect("to_http");
            let (path, query) = call.target.split_once('?').unwrap_or((&call.target, ""));
            assert_eq!(
                ControlAction::from_http(&call.method, path, query, call.body.as_bytes()),
                Ok(action)
            );
        }
    }

    #[test]
    fn answers_and_errors_become_responses() {
        let r = ControlAnswer::Metrics("popvmm_x 1\n".into()).into_http();
        assert_eq!(
            (r.status, r.content_type),
            (200, "text/plain; version=0.0.4")
        );
        assert_eq!(r.body, b"popvmm_x 1\n");
        let r = ControlAnswer::Shutdown(ShutdownAnswer::shutting_down()).into_http();
        assert_eq!((r.status, r.content_type), (200, "application/json"));
        assert_eq!(r.body, br#"{"status":"shutting down"}"#);
        let r = ControlError::Ended.into_http();
        assert_eq!(r.status, 503);
        let body: ErrorBody = serde_json::from_slice(&r.body).expect("error body");
        assert_eq!(body.error, "the program has ended");
        let e = ControlError::NoAnswer(Duration::from_millis(1500));
        assert_eq!(e.status(), 503);
        assert_eq!(
            e.to_string(),
            "the program is ending: its controller did not answer within 1.5 s"
        );
    }
}

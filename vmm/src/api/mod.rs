//! The control socket: HTTP/1.1 with JSON bodies over a Unix socket (our own bounded server,
//! `http.rs`), as Firecracker and Cloud Hypervisor do.
//!
//! One owner: the program's controller (the loop of `Program::run`) answers every request. A
//! connection's thread only turns its request into a typed [`ControlAction`] (`action.rs`; a bad
//! request is a 4xx there), hands it to the controller as an [`Event::Control`] with a reply
//! channel, waits a bounded time for the [`ControlAnswer`] and writes it out. It never reads
//! island state itself. Once the program has ended, or if its controller does not answer in time
//! (it is ending), the answer is a 503 rather than a hang.
//!
//! | module | what |
//! |---|---|
//! | `types.rs` | the JSON of every answer and request body, as serde types (the API's one definition, read by `ctl` too) |
//! | `action.rs` | the actions, their routes, the answers and errors, and their HTTP form |
//! | `stats.rs` | what the owner reads from the islands to answer (and to sum up a run at exit) |
//! | `http.rs`, `client.rs` | the bounded server, and `ctl`'s client |

pub mod action;
pub mod client;
pub mod http;
pub mod stats;
pub mod types;

pub use action::{ControlAction, ControlAnswer, ControlError, ControlResult};

use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use self::http::{HttpRequest, HttpResponse, HttpServer, Limits};
use crate::program::Event;

/// How long a connection waits for the controller's answer by default: it answers at once unless
/// the program is ending (or the machine is very busy).
pub const ANSWER_TIME: Duration = Duration::from_secs(5);

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

/// How the control socket serves: the HTTP server's limits, and how long a request waits for the
/// program's controller.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    pub limits: Limits,
    pub answer_time: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            limits: Limits::default(),
            answer_time: ANSWER_TIME,
        }
    }
}

/// Serves the program whose controller hears `events` (`Program::events`) on a Unix socket at
/// `path`: mode 0600; a stale socket file there is replaced, anything else refused (see
/// [`http::serve`]).
pub fn serve(path: &Path, events: mpsc::Sender<Event>) -> Result<ApiServer, ApiError> {
    serve_with(path, events, ServeOptions::default())
}

/// [`serve`] with other options (the tests use a short answer time).
pub fn serve_with(
    path: &Path,
    events: mpsc::Sender<Event>,
    options: ServeOptions,
) -> Result<ApiServer, ApiError> {
    let handler = Arc::new(move |req: HttpRequest| -> HttpResponse {
        let result = ControlAction::from_http(&req.method, &req.path, &req.query, &req.body)
            .and_then(|action| ask(&events, action, options.answer_time));
        match result {
            Ok(answer) => answer.into_http(),
            Err(e) => e.into_http(),
        }
    });
    Ok(ApiServer {
        server: http::serve_with(path, handler, options.limits)?,
    })
}

/// Hands `action` to the program's controller and waits at most `answer_time` for its answer. A
/// controller that is gone (the program has ended) or does not answer in time (it is ending) is
/// an error, never a hang.
pub fn ask(
    events: &mpsc::Sender<Event>,
    action: ControlAction,
    answer_time: Duration,
) -> ControlResult {
    let (reply, answer) = mpsc::channel();
    events
        .send(Event::Control(action, reply))
        .map_err(|_| ControlError::Ended)?;
    match answer.recv_timeout(answer_time) {
        Ok(result) => result,
        Err(mpsc::RecvTimeoutError::Timeout) => Err(ControlError::NoAnswer(answer_time)),
        // The controller dropped the request unanswered: it stopped listening (the program ended).
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(ControlError::Ended),
    }
}

#[cfg(test)]
mod tests {
    use super::types::{ErrorBody, ShutdownAnswer, ThreadInfo};
    use super::*;

    fn sock(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("popvmm-unit-{name}-{}.sock", std::process::id()))
    }

    fn get(path: &Path, method: &str, target: &str, body: &str) -> client::HttpResponse {
        client::request(path, method, target, body).expect("request")
    }

    /// A controller that answers every action the way `Program::answer` would shape it, until
    /// `stop` requests have been answered; then it drops its receiver (the program has ended).
    fn controller(
        stop: usize,
    ) -> (
        mpsc::Sender<Event>,
        std::thread::JoinHandle<Vec<ControlAction>>,
    ) {
        let (tx, rx) = mpsc::channel::<Event>();
        let owner = std::thread::spawn(move || {
            let mut seen = Vec::new();
            while seen.len() < stop {
                let Ok(Event::Control(action, reply)) = rx.recv() else {
                    break;
                };
                let answer = match &action {
                    ControlAction::Threads => ControlAnswer::Threads(vec![ThreadInfo {
                        tid: 7,
                        island: 1,
                        vcpu: 0,
                        state: "running".into(),
                        rip: 0x401000,
                        syscalls: 3,
                        proposed: None,
                        migrations: 0,
                    }]),
                    ControlAction::Shutdown(_) => {
                        ControlAnswer::Shutdown(ShutdownAnswer::shutting_down())
                    }
                    _ => ControlAnswer::Metrics("popvmm_up 1\n".into()),
                };
                seen.push(action);
                let _ = reply.send(Ok(answer));
            }
            seen
        });
        (tx, owner)
    }

    #[test]
    fn requests_go_to_the_controller_and_typed_answers_come_back() {
        let path = sock("owner");
        let (events, owner) = controller(3);
        let server = serve(&path, events).expect("serve");
        // Bad requests never reach the controller.
        let r = get(&path, "GET", "/pages?count=0", "");
        assert_eq!(r.status, 400);
        let e: ErrorBody = serde_json::from_str(&r.body).expect("error body");
        assert_eq!(e.error, "count=0: expected 1 to 4096");
        assert_eq!(get(&path, "PUT", "/shutdown", "[]").status, 400);
        assert_eq!(get(&path, "GET", "/nothing", "").status, 404);

        let r = get(&path, "GET", "/threads", "");
        assert_eq!(r.status, 200);
        let threads: Vec<ThreadInfo> = serde_json::from_str(&r.body).expect("threads");
        assert_eq!(threads[0].tid, 7);
        assert_eq!(threads[0].island, 1);
        let r = get(&path, "GET", "/metrics", "");
        assert_eq!((r.status, r.body.as_str()), (200, "popvmm_up 1\n"));
        let r = get(&path, "PUT", "/shutdown", "");
        let s: ShutdownAnswer = serde_json::from_str(&r.body).expect("shutdown");
        assert_eq!(s, ShutdownAnswer::shutting_down());
        assert_eq!(
            owner.join().expect("controller"),
            [
                ControlAction::Threads,
                ControlAction::Metrics,
                ControlAction::Shutdown(types::ShutdownRequest {})
            ]
        );

        // The controller has stopped listening: the program has ended.
        let r = get(&path, "GET", "/threads", "");
        assert_eq!(r.status, 503);
        let e: ErrorBody = serde_json::from_str(&r.body).expect("error body");
        assert_eq!(e.error, "the program has ended");
        drop(server);
        assert!(!path.exists());
    }

    #[test]
    fn a_controller_that_does_not_answer_is_a_503_not_a_hang() {
        let path = sock("mute");
        let (events, held) = mpsc::channel::<Event>();
        let options = ServeOptions {
            answer_time: Duration::from_millis(50),
            ..ServeOptions::default()
        };
        let _server = serve_with(&path, events, options).expect("serve");
        let r = get(&path, "GET", "/stats", "");
        assert_eq!(r.status, 503);
        let e: ErrorBody = serde_json::from_str(&r.body).expect("error body");
        assert!(e.error.starts_with("the program is ending"), "{}", e.error);
        // The request did reach the controller, which let its reply channel go unanswered.
        assert!(matches!(
            held.try_recv(),
            Ok(Event::Control(ControlAction::Stats, _))
        ));
        // Once the controller is gone, requests end at once.
        drop(held);
        assert_eq!(get(&path, "GET", "/islands", "").status, 503);
    }

    #[test]
    fn a_request_dropped_unanswered_is_the_end_of_the_program() {
        // What `Program::run` does at the end: its queue, requests included, is dropped. The
        // connection must not wait out its answer time (an hour here) for it.
        let path = sock("dropped");
        let (events, queue) = mpsc::channel::<Event>();
        let options = ServeOptions {
            answer_time: Duration::from_secs(3600),
            ..ServeOptions::default()
        };
        let _server = serve_with(&path, events, options).expect("serve");
        let p = path.clone();
        let client = std::thread::spawn(move || get(&p, "GET", "/threads", ""));
        let queued = queue.recv().expect("the request reaches the controller");
        assert!(matches!(queued, Event::Control(ControlAction::Threads, _)));
        drop(queued);
        let r = client.join().expect("client");
        assert_eq!(r.status, 503);
        let e: ErrorBody = serde_json::from_str(&r.body).expect("error body");
        assert_eq!(e.error, "the program has ended");
    }
}

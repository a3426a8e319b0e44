//! A small HTTP/1.1 server on a Unix socket, for the control socket.
//!
//! Everything a client controls is bounded: the request head (16 KiB), the body (64 KiB, refused
//! from its Content-Length before a byte of it is read), the time to send a whole request (5 s),
//! the time to take the response (10 s), and the number of connections served at once (32, a
//! thread each; beyond that a connection gets 503 and is closed). One request per connection: every
//! response carries Content-Length and `Connection: close`. httparse does the parsing.
//!
//! The socket file is created with mode 0600 whatever the umask, and never replaces anything but a
//! stale socket (one nobody accepts on): see [`serve`].

use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Errors of starting a server.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{path} exists and is {kind}, not a socket: not replacing it")]
    NotASocket { path: String, kind: &'static str },
    #[error("a running popvmm is serving {path} (it accepts connections): choose another path")]
    InUse { path: String },
    #[error("cannot tell whether the socket {path} is in use: {source}")]
    Probe { path: String, source: io::Error },
    #[error("cannot listen on {path}: {source}")]
    Listen { path: String, source: io::Error },
    #[error("cannot start the thread serving {path}: {source}")]
    Thread { path: String, source: io::Error },
}

/// A request method. `Other` keeps what the client sent, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Patch,
    Options,
    Other(String),
}

impl Method {
    fn parse(s: &str) -> Method {
        match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "DELETE" => Method::Delete,
            "PATCH" => Method::Patch,
            "OPTIONS" => Method::Options,
            other => Method::Other(other.to_string()),
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
            Method::Options => "OPTIONS",
            Method::Other(s) => s,
        })
    }
}

/// A whole request: the target split at its first `?`, and the body (at most `max_body` bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub body: Vec<u8>,
}

/// A response; the server adds Content-Length and `Connection: close`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// `{"error": message}` with `status`.
    pub fn error(status: u16, message: impl Into<String>) -> HttpResponse {
        HttpResponse {
            status,
            content_type: "application/json",
            body: serde_json::json!({ "error": message.into() })
                .to_string()
                .into_bytes(),
        }
    }
}

/// What answers requests; called on the connection's thread, so several may run at once.
pub type Handler = Arc<dyn Fn(HttpRequest) -> HttpResponse + Send + Sync>;

/// The bounds on what a client can make the server hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Request line and header fields, with their CRLFs.
    pub max_head: usize,
    pub max_body: usize,
    /// From accepting the connection to having the whole request.
    pub request_time: Duration,
    /// To write the whole response (a client that does not read cannot hold a thread forever).
    pub response_time: Duration,
    /// Connections served at once; more get 503.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: 16 << 10,
            max_body: 64 << 10,
            request_time: Duration::from_secs(5),
            response_time: Duration::from_secs(10),
            max_connections: 32,
        }
    }
}

/// Header fields per request; more get 431.
const MAX_HEADERS: usize = 64;
/// After an error answer, how long and how much of the rest of the request is read and dropped
/// before closing: a Unix socket closed with unread data makes the client's next read fail with
/// ECONNRESET instead of seeing the end of the answer.
const LINGER_TIME: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1 << 20;
/// How long dropping the server waits for responses under way (`ctl shutdown`'s, typically).
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// A running server. Dropping it stops accepting, gives responses under way a moment to finish and
/// removes the socket file if it is still the one it created.
pub struct HttpServer {
    path: PathBuf,
    /// Device and inode of the socket file, to recognise it at exit.
    file: (u64, u64),
    /// Closing it wakes the accept thread, which then stops.
    wake: Option<UnixStream>,
    accept: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer")
            .field("path", &self.path)
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl HttpServer {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        drop(self.wake.take());
        if let Some(t) = self.accept.take() {
            // The listener closes with the thread: nothing is accepted after this.
            let _ = t.join();
        }
        let deadline = Instant::now() + DRAIN_TIME;
        while self.shared.responding.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        // Someone may have put another file at the path since (another server after a `rm`):
        // remove only our own socket.
        if file_id(&self.path) == Some(self.file) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

struct Shared {
    handler: Handler,
    limits: Limits,
    /// Connections being served (their threads).
    active: AtomicUsize,
    /// Connections whose request is complete and whose response is not yet written.
    responding: AtomicUsize,
}

/// Decrements a counter when dropped, so a panicking or failed thread still gives its slot back.
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves `handler` on a new Unix socket at `path`, with the default [`Limits`].
///
/// The socket file gets mode 0600 whatever the umask. What is already at `path` is never deleted
/// unless it is a stale socket: anything that is not a socket (a regular file, a directory, a
/// symbolic link) and a socket that accepts connections (a running server) are refused.
pub fn serve(path: &Path, handler: Handler) -> Result<HttpServer, HttpError> {
    serve_with(path, handler, Limits::default())
}

/// [`serve`] with other limits (the tests use short ones).
pub fn serve_with(path: &Path, handler: Handler, limits: Limits) -> Result<HttpServer, HttpError> {
    let shown = path.display().to_string();
    let listen_err = |source| HttpError::Listen {
        path: shown.clone(),
        source,
    };
    let (listener, file) = bind_private(path)?;
    // Non-blocking so the accept thread only ever waits in poll(), where the wake socket can end it.
    listener.set_nonblocking(true).map_err(listen_err)?;
    let (wake, wake_rx) = UnixStream::pair().map_err(listen_err)?;
    let shared = Arc::new(Shared {
        handler,
        limits,
        active: AtomicUsize::new(0),
        responding: AtomicUsize::new(0),
    });
    let s2 = Arc::clone(&shared);
    let accept = std::thread::Builder::new()
        .name("api".into())
        .spawn(move || accept_loop(&listener, &wake_rx, &s2))
        .map_err(|source| HttpError::Thread {
            path: shown.clone(),
            source,
        });
    let accept = match accept {
        Ok(t) => t,
        Err(e) => {
            // The listener died with the closure: remove the file it was bound to.
            if file_id(path) == Some(file) {
                let _ = std::fs::remove_file(path);
            }
            return Err(e);
        }
    };
    Ok(HttpServer {
        path: path.to_path_buf(),
        file,
        wake: Some(wake),
        accept: Some(accept),
        shared,
    })
}

fn file_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

// ---------------------------------------------------------------------------------------------
// The socket file.

/// A fresh directory (mode 0700) next to the target, removed with what is left in it on drop.
struct PrivateDir {
    dir: PathBuf,
    sock: PathBuf,
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.sock);
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Binds a listening socket at `path` with mode 0600, returning it and the file's (dev, inode).
///
/// bind(2) creates the file with mode 0777 minus the umask, and fchmod(2) on a socket changes the
/// socket's own inode, not the file's. Changing the umask around bind() is racy: the umask is
/// process-wide and other threads create files too. So the socket is bound inside a fresh 0700
/// directory next to the target, where nobody else can reach it, chmod-ed to 0600 there, and then
/// hard-linked to the target: link(2) fails if anything exists there, so it never replaces a file
/// that appeared since we looked, and the file is 0600 from the moment it is reachable.
fn bind_private(path: &Path) -> Result<(UnixListener, (u64, u64)), HttpError> {
    let shown = path.display().to_string();
    let listen_err = |source| HttpError::Listen {
        path: shown.clone(),
        source,
    };
    let tmp = private_dir(path).map_err(listen_err)?;
    let listener = UnixListener::bind(&tmp.sock).map_err(listen_err)?;
    std::fs::set_permissions(&tmp.sock, std::fs::Permissions::from_mode(0o600))
        .map_err(listen_err)?;
    let file = file_id(&tmp.sock).ok_or_else(|| listen_err(io::ErrorKind::NotFound.into()))?;
    // Another server starting at the same moment can win the link: look again, then it is live.
    for _ in 0..3 {
        clear_stale(path)?;
        match std::fs::hard_link(&tmp.sock, path) {
            Ok(()) => return Ok((listener, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(listen_err(e)),
        }
    }
    Err(listen_err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "a file keeps appearing at this path",
    )))
}

/// Creates `.popvmm-PID-N` (mode 0700) in the directory of `path`: the same file system, so the
/// socket can be linked from it. Short, because a socket path must fit in 108 bytes.
fn private_dir(path: &Path) -> io::Result<PrivateDir> {
    static SEQ: AtomicUsize = AtomicUsize::new(0);
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        Some(_) => Path::new("."),
        None => return Err(io::ErrorKind::InvalidInput.into()),
    };
    loop {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = parent.join(format!(".popvmm-{}-{n}", std::process::id()));
        // mkdir fails on anything already there (a symbolic link included), so the directory is
        // ours; it is 0700 minus the umask from the start, and chmod makes it usable by us.
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
        let guard = PrivateDir {
            sock: dir.join("s"),
            dir,
        };
        std::fs::set_permissions(&guard.dir, std::fs::Permissions::from_mode(0o700))?;
        return Ok(guard);
    }
}

/// Makes way at `path`: nothing there is fine, a stale socket is removed, anything else refused.
fn clear_stale(path: &Path) -> Result<(), HttpError> {
    let shown = || path.display().to_string();
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(HttpError::Listen {
                path: shown(),
                source,
            })
        }
    };
    let ft = meta.file_type();
    if !ft.is_socket() {
        let kind = if ft.is_file() {
            "a regular file"
        } else if ft.is_dir() {
            "a directory"
        } else if ft.is_symlink() {
            "a symbolic link"
        } else {
            "a special file"
        };
        return Err(HttpError::NotASocket {
            path: shown(),
            kind,
        });
    }
    match probe(path) {
        Ok(Probe::Live) => Err(HttpError::InUse { path: shown() }),
        Ok(Probe::Gone) => Ok(()),
        Ok(Probe::Stale) => {
            // Remove it only if it is still the socket just probed.
            if file_id(path) == Some((meta.dev(), meta.ino())) {
                match std::fs::remove_file(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(source) => {
                        return Err(HttpError::Listen {
                            path: shown(),
                            source,
                        })
                    }
                }
            }
            Ok(())
        }
        Err(source) => Err(HttpError::Probe {
            path: shown(),
            source,
        }),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Probe {
    /// Something accepts connections (or its backlog is full: it is there, just busy).
    Live,
    /// Connection refused: a socket file whose server is gone.
    Stale,
    /// Nothing at the path any more.
    Gone,
}

/// Connects to the socket at `path` without blocking. std's blocking connect would wait as long as
/// the listener's backlog is full, so a wedged server could hang our start.
fn probe(path: &Path) -> io::Result<Probe> {
    let bytes = path.as_os_str().as_bytes();
    let mut addr = libc::sockaddr_un {
        sun_family: libc::AF_UNIX as libc::sa_family_t,
        sun_path: [0; 108],
    };
    // Room for the terminating NUL.
    if bytes.len() >= addr.sun_path.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "path longer than a socket address allows",
        ));
    }
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    // SAFETY: socket() takes no pointers; its result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns; the OwnedFd closes it.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: `addr` is a valid, initialised sockaddr_un that outlives the call, `len` is its
    // size, and `fd` is an open socket.
    let r = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            std::ptr::addr_of!(addr).cast::<libc::sockaddr>(),
            len,
        )
    };
    if r == 0 {
        return Ok(Probe::Live);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN | libc::EINPROGRESS) => Ok(Probe::Live),
        Some(libc::ECONNREFUSED) => Ok(Probe::Stale),
        Some(libc::ENOENT) => Ok(Probe::Gone),
        _ => Err(e),
    }
}

// ---------------------------------------------------------------------------------------------
// Connections.

fn accept_loop(listener: &UnixListener, wake: &UnixStream, shared: &Arc<Shared>) {
    loop {
        match wait_readable(listener, wake) {
            Ok(Ready::Stop) | Err(_) => return,
            Ok(Ready::Listener) => {}
        }
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // Out of descriptors, typically: the connection waits in the backlog, so do not spin
            // on it.
            Err(_) => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if shared.active.fetch_add(1, Ordering::AcqRel) >= shared.limits.max_connections {
            shared.active.fetch_sub(1, Ordering::AcqRel);
            refuse_busy(stream);
            continue;
        }
        // The thread gives the slot back however it ends.
        let s2 = Arc::clone(shared);
        let spawned = std::thread::Builder::new()
            .name("api-conn".into())
            .spawn(move || {
                let _slot = Slot(&s2.active);
                let mut stream = stream;
                serve_connection(&mut stream, &s2);
            });
        if spawned.is_err() {
            // The closure (and the connection with it) is gone without running: free its slot.
            shared.active.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

enum Ready {
    Listener,
    Stop,
}

/// Waits until a connection is pending or `wake` is closed (the server is being dropped).
fn wait_readable(listener: &UnixListener, wake: &UnixStream) -> io::Result<Ready> {
    loop {
        let mut fds = [
            libc::pollfd {
                fd: listener.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: `fds` is an array of 2 initialised pollfd that outlives the call, and both
        // descriptors stay open during it (borrowed from live objects).
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if fds[1].revents != 0 {
            return Ok(Ready::Stop);
        }
        if fds[0].revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
            return Err(io::Error::other("listener failed"));
        }
        if fds[0].revents != 0 {
            return Ok(Ready::Listener);
        }
    }
}

/// Answers 503 without waiting on the client: a non-blocking write of a few hundred bytes to a
/// fresh connection, whose buffer is empty; if it does not fit, the client just sees the close.
fn refuse_busy(mut stream: UnixStream) {
    let resp = HttpResponse::error(503, "too many connections to the control socket; try again");
    if stream.set_nonblocking(true).is_ok() {
        let _ = stream.write(&encode(&resp, false));
    }
}

/// Why reading a request stopped short.
#[derive(Debug)]
enum ReadStop {
    /// The request deadline passed.
    Timeout,
    /// The client closed its side.
    Eof,
    Io,
}

/// Reads once (at most up to `limit` bytes in `buf`), waiting no later than `deadline`.
fn read_some(
    stream: &mut UnixStream,
    buf: &mut Vec<u8>,
    limit: usize,
    deadline: Instant,
) -> Result<usize, ReadStop> {
    let mut chunk = [0u8; 4096];
    let want = limit.saturating_sub(buf.len()).min(chunk.len());
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ReadStop::Timeout);
        }
        stream
            .set_read_timeout(Some(left))
            .map_err(|_| ReadStop::Io)?;
        match stream.read(&mut chunk[..want]) {
            Ok(0) => return Err(ReadStop::Eof),
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(ReadStop::Timeout)
            }
            Err(_) => return Err(ReadStop::Io),
        }
    }
}

/// Serves the one request of a connection.
fn serve_connection(stream: &mut UnixStream, shared: &Shared) {
    let limits = &shared.limits;
    // Accepted sockets do not inherit O_NONBLOCK on Linux, but say it rather than rely on it.
    if stream.set_nonblocking(false).is_err() {
        return;
    }
    let (req, head_only) = match read_request(stream, limits) {
        Ok(r) => r,
        Err(None) => return,
        Err(Some(resp)) => {
            let deadline = Instant::now() + limits.response_time;
            if write_by(stream, &encode(&resp, false), deadline).is_ok() {
                linger(stream);
            }
            return;
        }
    };
    shared.responding.fetch_add(1, Ordering::AcqRel);
    let _responding = Slot(&shared.responding);
    let handler = &shared.handler;
    let resp = catch_unwind(AssertUnwindSafe(|| handler(req)))
        .unwrap_or_else(|_| HttpResponse::error(500, "internal error while answering"));
    let deadline = Instant::now() + limits.response_time;
    // A client gone already is its own problem (SIGPIPE is ignored in Rust programs: EPIPE here).
    let _ = write_by(stream, &encode(&resp, head_only), deadline);
}

/// Reads and parses one request. `Err(Some(response))`: answer that and close; `Err(None)`: close
/// without a word (the client left, or connected and closed without sending anything, as a liveness
/// probe does).
pub(crate) fn read_request(
    stream: &mut UnixStream,
    limits: &Limits,
) -> Result<(HttpRequest, bool), Option<HttpResponse>> {
    let deadline = Instant::now() + limits.request_time;
    let timeout = || {
        Some(HttpResponse::error(
            408,
            format!(
                "the request was not complete within {} s",
                limits.request_time.as_secs_f64()
            ),
        ))
    };
    let mut buf = Vec::with_capacity(1024);
    // The head, never reading more than max_head bytes before it is complete. It ends with a line
    // feed, so it is parsed again only when one arrived (or at the limit): a client sending a byte
    // at a time cannot make us parse 16 KiB thousands of times.
    let mut scanned = 0;
    let head = loop {
        if buf[scanned..].contains(&b'\n') || buf.len() >= limits.max_head {
            if let Some(head) = parse_head(&buf, limits).map_err(Some)? {
                break head;
            }
        }
        scanned = buf.len();
        match read_some(stream, &mut buf, limits.max_head, deadline) {
            Ok(_) => {}
            Err(ReadStop::Timeout) => return Err(timeout()),
            Err(ReadStop::Eof) if buf.is_empty() => return Err(None),
            Err(ReadStop::Eof) => {
                return Err(Some(HttpResponse::error(400, "incomplete request head")))
            }
            Err(ReadStop::Io) => return Err(None),
        }
    };
    // The body, Content-Length bytes (already checked against max_body); bytes after it (a
    // pipelined request) are ignored: one request per connection.
    let want = head.len + head.content_length;
    if buf.len() < want && head.expect_continue {
        let deadline = Instant::now() + limits.response_time;
        if write_by(stream, b"HTTP/1.1 100 Continue\r\n\r\n", deadline).is_err() {
            return Err(None);
        }
    }
    while buf.len() < want {
        match read_some(stream, &mut buf, want, deadline) {
            Ok(_) => {}
            Err(ReadStop::Timeout) => return Err(timeout()),
            Err(ReadStop::Eof) => {
                return Err(Some(HttpResponse::error(
                    400,
                    format!(
                        "the body ended after {} of its {} bytes (Content-Length)",
                        buf.len() - head.len,
                        head.content_length
                    ),
                )))
            }
            Err(ReadStop::Io) => return Err(None),
        }
    }
    buf.truncate(want);
    let body = buf.split_off(head.len);
    let head_only = head.method == Method::Head;
    Ok((
        HttpRequest {
            method: head.method,
            path: head.path,
            query: head.query,
            body,
        },
        head_only,
    ))
}

/// A parsed request head.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    method: Method,
    path: String,
    query: String,
    /// Bytes of the head, up to and including the empty line.
    len: usize,
    content_length: usize,
    expect_continue: bool,
}

/// Parses the head at the start of `buf`: `Ok(None)` while incomplete, `Err(answer)` for a request
/// to refuse.
fn parse_head(buf: &[u8], limits: &Limits) -> Result<Option<Head>, HttpResponse> {
    let too_large = || {
        HttpResponse::error(
            431,
            format!(
                "request head larger than {} bytes or {MAX_HEADERS} header fields",
                limits.max_head
            ),
        )
    };
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= limits.max_head => n,
        Ok(httparse::Status::Complete(_)) => return Err(too_large()),
        Ok(httparse::Status::Partial) if buf.len() >= limits.max_head => return Err(too_large()),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(too_large()),
        Err(e) => return Err(HttpResponse::error(400, format!("malformed request: {e}"))),
    };
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Err(HttpResponse::error(400, "malformed request line"));
    };
    let mut content_length: Option<u64> = None;
    let mut expect_continue = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HttpResponse::error(
                411,
                "request bodies with Transfer-Encoding (chunked) are not accepted: send Content-Length",
            ));
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let v = h.value.trim_ascii();
            if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
                return Err(HttpResponse::error(
                    400,
                    format!(
                        "Content-Length {:?}: not a number",
                        String::from_utf8_lossy(v)
                    ),
                ));
            }
            // All digits: a number too large for u64 is too large a body.
            let n = std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(u64::MAX);
            if content_length.is_some_and(|c| c != n) {
                return Err(HttpResponse::error(
                    400,
                    "conflicting Content-Length fields",
                ));
            }
            content_length = Some(n);
        } else if h.name.eq_ignore_ascii_case("expect") {
            expect_continue = h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        }
    }
    let content_length = content_length.unwrap_or(0);
    let content_length = match usize::try_from(content_length) {
        Ok(n) if n <= limits.max_body => n,
        _ => {
            return Err(HttpResponse::error(
                413,
                format!(
                    "request body of {content_length} bytes: the limit is {} bytes",
                    limits.max_body
                ),
            ))
        }
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Ok(Some(Head {
        method: Method::parse(method),
        path: path.to_string(),
        query: query.to_string(),
        len,
        content_length,
        expect_continue,
    }))
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => match status / 100 {
            2 => "Success",
            4 => "Client Error",
            _ => "Server Error",
        },
    }
}

/// The bytes of a response; for HEAD, the head alone (with the Content-Length of the body).
pub(crate) fn encode(resp: &HttpResponse, head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        resp.body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(&resp.body);
    }
    out
}

/// Writes all of `bytes` by `deadline`.
fn write_by(stream: &mut UnixStream, mut bytes: &[u8], deadline: Instant) -> io::Result<()> {
    while !bytes.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_write_timeout(Some(left))?;
        match stream.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// After an error answer sent before the whole request was read: end our side, then read and drop
/// what the client still sends, for a bounded time, so that it reads the answer and the end of the
/// stream rather than ECONNRESET.
fn linger(stream: &mut UnixStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let deadline = Instant::now() + LINGER_TIME;
    let mut chunk = [0u8; 4096];
    let mut dropped = 0usize;
    while dropped < LINGER_BYTES {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => dropped += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    fn parse(raw: &[u8]) -> Result<Option<Head>, u16> {
        parse_head(raw, &limits()).map_err(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.body).expect("JSON error body");
            assert!(v["error"].is_string(), "{v}");
            r.status
        })
    }

    #[test]
    fn parses_a_request_head() {
        let raw =
            b"PUT /pages?from=0x1000&count=2 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}";
        let head = parse(raw).expect("valid").expect("complete");
        assert_eq!(head.method, Method::Put);
        assert_eq!(head.path, "/pages");
        assert_eq!(head.query, "from=0x1000&count=2");
        assert_eq!(head.len, raw.len() - 2);
        assert_eq!(head.content_length, 2);
        assert!(!head.expect_continue);
        let head = parse(b"GET /x HTTP/1.0\r\nExpect: 100-Continue\r\n\r\n")
            .expect("valid")
            .expect("complete");
        assert_eq!(head.content_length, 0);
        assert!(head.expect_continue);
        assert_eq!(head.query, "");
        assert_eq!(parse(b"GET /x HTTP/1.1\r\nHost: x\r\n"), Ok(None));
        assert_eq!(parse(b"GET /thr"), Ok(None));
    }

    #[test]
    fn methods_round_trip() {
        for m in [
            "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW",
        ] {
            assert_eq!(Method::parse(m).to_string(), m);
        }
        assert_eq!(Method::parse("BREW"), Method::Other("BREW".into()));
    }

    #[test]
    fn head_is_bounded() {
        let max = limits().max_head;
        // One field filling the head: incomplete below the limit, 431 at it.
        let mut raw = b"GET / HTTP/1.1\r\nX: ".to_vec();
        raw.resize(max - 1, b'a');
        assert_eq!(parse(&raw), Ok(None));
        raw.push(b'a');
        assert_eq!(parse(&raw), Err(431));
        // A complete head just within the limit is fine.
        let mut raw = b"GET / HTTP/1.1\r\nX: ".to_vec();
        raw.resize(max - 4, b'a');
        raw.extend_from_slice(b"\r\n\r\n");
        assert!(matches!(parse(&raw), Ok(Some(_))));
        // Too many fields.
        let mut raw = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            raw.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        assert_eq!(parse(&raw), Err(431));
    }

    #[test]
    fn body_is_bounded_by_its_declared_length() {
        let head = |cl: &str| format!("PUT /shutdown HTTP/1.1\r\nContent-Length: {cl}\r\n\r\n");
        let max = limits().max_body;
        let ok = parse(head(&max.to_string()).as_bytes()).expect("valid");
        assert_eq!(ok.map(|h| h.content_length), Some(max));
        assert_eq!(parse(head(&(max + 1).to_string()).as_bytes()), Err(413));
        assert_eq!(parse(head("99999999999").as_bytes()), Err(413));
        assert_eq!(
            parse(head("999999999999999999999999999999").as_bytes()),
            Err(413)
        );
        assert_eq!(parse(head("-1").as_bytes()), Err(400));
        assert_eq!(parse(head("12abc").as_bytes()), Err(400));
        assert_eq!(parse(head("").as_bytes()), Err(400));
        assert_eq!(
            parse(b"PUT / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Err(400)
        );
        assert_eq!(
            parse(b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(411)
        );
    }

    #[test]
    fn garbage_is_a_bad_request() {
        assert_eq!(parse(b"THIS IS NOT HTTP\r\n\r\n"), Err(400));
        assert_eq!(parse(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"), Err(400));
        assert_eq!(parse(b"\x00\x01\x02\r\n\r\n"), Err(400));
    }

    #[test]
    fn encodes_responses() {
        let r = HttpResponse {
            status: 200,
            content_type: "application/json",
            body: b"[]".to_vec(),
        };
        assert_eq!(
            encode(&r, false),
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n[]"
        );
        assert!(encode(&r, true).ends_with(b"Content-Length: 2\r\nConnection: close\r\n\r\n"));
    }

    // -----------------------------------------------------------------------------------------
    // A real server on a socket in a private scratch directory.

    /// A scratch directory, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Scratch {
            let dir =
                std::env::temp_dir().join(format!("popvmm-http-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir(&dir).expect("create the scratch directory");
            Scratch(dir)
        }

        fn sock(&self) -> PathBuf {
            self.0.join("api.sock")
        }

        fn entries(&self) -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(&self.0)
                .expect("read_dir")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Echoes the request as JSON; `/panic` panics, `/slow` takes 300 ms.
    fn echo() -> Handler {
        Arc::new(|req: HttpRequest| {
            if req.path == "/panic" {
                panic!("asked to");
            }
            if req.path == "/slow" {
                std::thread::sleep(Duration::from_millis(300));
            }
            HttpResponse {
                status: 200,
                content_type: "application/json",
                body: serde_json::json!({
                    "method": req.method.to_string(),
                    "path": req.path,
                    "query": req.query,
                    "body": String::from_utf8_lossy(&req.body),
                })
                .to_string()
                .into_bytes(),
            }
        })
    }

    /// Sends `raw`, ends our side, and returns the status and body of the answer.
    fn exchange(sock: &Path, raw: &[u8]) -> (u16, String) {
        let mut s = UnixStream::connect(sock).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        // A server that answers before reading everything (503, 413) may have closed already.
        let _ = s.write_all(raw);
        let _ = s.shutdown(std::net::Shutdown::Write);
        answer(s)
    }

    fn answer(mut s: UnixStream) -> (u16, String) {
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        let r = crate::api::client::parse_response(&buf)
            .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&buf)));
        let text = String::from_utf8_lossy(&buf);
        assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
        assert!(text.contains("\r\nContent-Length: "), "{text}");
        (r.status, r.body)
    }

    #[test]
    fn serves_requests_and_cleans_up() {
        let dir = Scratch::new("serve");
        let sock = dir.sock();
        let server = serve(&sock, echo()).expect("serve");
        // Private whatever the umask, and the private directory is gone.
        let meta = std::fs::symlink_metadata(&sock).expect("stat");
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
        assert_eq!(dir.entries(), ["api.sock"]);

        let r = crate::api::client::request(&sock, "PUT", "/a?b=c", "{\"x\":1}").expect("request");
        assert_eq!(r.status, 200);
        let v: serde_json::Value = serde_json::from_str(&r.body).expect("JSON");
        assert_eq!(v["method"], "PUT");
        assert_eq!(v["path"], "/a");
        assert_eq!(v["query"], "b=c");
        assert_eq!(v["body"], "{\"x\":1}");
        // A body of exactly the limit is read; one more byte is refused unread.
        let max = Limits::default().max_body;
        let mut raw = format!("POST /big HTTP/1.1\r\nContent-Length: {max}\r\n\r\n").into_bytes();
        raw.resize(raw.len() + max, b'z');
        let (code, body) = exchange(&sock, &raw);
        assert_eq!(code, 200);
        assert!(body.contains(&"z".repeat(max)));
        let raw = format!("POST /big HTTP/1.1\r\nContent-Length: {}\r\n\r\n", max + 1);
        assert_eq!(exchange(&sock, raw.as_bytes()).0, 413);
        // HEAD: the head alone.
        let mut s = UnixStream::connect(&sock).expect("connect");
        s.write_all(b"HEAD /h HTTP/1.1\r\n\r\n").expect("write");
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).expect("read");
        assert!(buf.ends_with(b"Connection: close\r\n\r\n"), "{buf:?}");
        // Expect: 100-continue gets the interim answer before the body is sent.
        let mut s = UnixStream::connect(&sock).expect("connect");
        s.write_all(b"PUT /e HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
            .expect("write");
        let mut interim = [0u8; 25];
        s.read_exact(&mut interim).expect("read");
        assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
        s.write_all(b"{}").expect("write");
        let (code, body) = answer(s);
        assert_eq!(code, 200);
        assert!(body.contains("\"body\":\"{}\""), "{body}");
        // A handler that panics gives 500, and the server goes on.
        assert_eq!(exchange(&sock, b"GET /panic HTTP/1.1\r\n\r\n").0, 500);
        // Malformed and refused requests get JSON errors, and the server goes on.
        for (raw, want) in [
            (&b"THIS IS NOT HTTP\r\n\r\n"[..], 400),
            (
                b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                411,
            ),
            (
                b"GET / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n",
                413,
            ),
            (b"PUT / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", 400),
            (b"GET / HTT", 400),
        ] {
            let (code, body) = exchange(&sock, raw);
            assert_eq!(code, want, "{:?}", String::from_utf8_lossy(raw));
            let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
            assert!(v["error"].is_string(), "{body}");
        }
        let mut raw = b"GET / HTTP/1.1\r\nX: ".to_vec();
        raw.resize(100 << 10, b'a');
        assert_eq!(exchange(&sock, &raw).0, 431);
        assert_eq!(exchange(&sock, b"GET /still HTTP/1.1\r\n\r\n").0, 200);
        // A request sent a byte at a time.
        let mut s = UnixStream::connect(&sock).expect("connect");
        for b in b"PUT /bytes?x HTTP/1.1\r\nContent-Length: 2\r\n\r\nok" {
            s.write_all(&[*b]).expect("write");
            s.flush().expect("flush");
        }
        let (code, body) = answer(s);
        assert_eq!(code, 200);
        assert!(
            body.contains("\"query\":\"x\"") && body.contains("\"body\":\"ok\""),
            "{body}"
        );

        drop(server);
        assert!(!sock.exists(), "socket file left behind");
        assert!(UnixStream::connect(&sock).is_err());
        assert!(dir.entries().is_empty());
    }

    #[test]
    fn slow_clients_time_out_without_blocking_others() {
        let dir = Scratch::new("slow");
        let sock = dir.sock();
        let limits = Limits {
            request_time: Duration::from_millis(500),
            ..Limits::default()
        };
        let _server = serve_with(&sock, echo(), limits).expect("serve");
        let mut slow = UnixStream::connect(&sock).expect("connect");
        slow.write_all(b"PUT / HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
            .expect("write");
        let mut silent = UnixStream::connect(&sock).expect("connect");
        silent.write_all(b"GET /").expect("write");
        // Served while the slow ones wait (even if that takes longer than their deadline).
        assert_eq!(exchange(&sock, b"GET /fast HTTP/1.1\r\n\r\n").0, 200);
        assert_eq!(answer(slow).0, 408);
        assert_eq!(answer(silent).0, 408);
    }

    #[test]
    fn too_many_connections_get_503() {
        let dir = Scratch::new("busy");
        let sock = dir.sock();
        let limits = Limits {
            max_connections: 2,
            request_time: Duration::from_secs(60),
            ..Limits::default()
        };
        let _server = serve_with(&sock, echo(), limits).expect("serve");
        let a = UnixStream::connect(&sock).expect("connect");
        let b = UnixStream::connect(&sock).expect("connect");
        // Both are counted once the server has accepted them; until then a third may get in.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (code, _) = exchange(&sock, b"GET / HTTP/1.1\r\n\r\n");
            if code == 503 {
                break;
            }
            assert_eq!(code, 200);
            assert!(Instant::now() < deadline, "never refused");
            std::thread::sleep(Duration::from_millis(10));
        }
        // Slots come back when connections end.
        drop((a, b));
        let deadline = Instant::now() + Duration::from_secs(60);
        while exchange(&sock, b"GET / HTTP/1.1\r\n\r\n").0 != 200 {
            assert!(Instant::now() < deadline, "slots never freed");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn refuses_what_is_not_a_stale_socket() {
        let dir = Scratch::new("exists");
        let sock = dir.sock();
        // A regular file, a directory, a symbolic link (even to a socket): refused, untouched.
        std::fs::write(&sock, "precious").expect("write");
        let e = serve(&sock, echo()).expect_err("a regular file");
        assert!(matches!(e, HttpError::NotASocket { .. }), "{e}");
        assert!(e.to_string().contains("a regular file"), "{e}");
        assert_eq!(
            std::fs::read_to_string(&sock).ok().as_deref(),
            Some("precious")
        );
        std::fs::remove_file(&sock).expect("rm");
        std::fs::create_dir(&sock).expect("mkdir");
        let e = serve(&sock, echo()).expect_err("a directory");
        assert!(matches!(e, HttpError::NotASocket { .. }), "{e}");
        assert!(sock.is_dir());
        std::fs::remove_dir(&sock).expect("rmdir");
        let other = dir.0.join("other.sock");
        let live = serve(&other, echo()).expect("serve");
        std::os::unix::fs::symlink(&other, &sock).expect("symlink");
        let e = serve(&sock, echo()).expect_err("a symbolic link");
        assert!(matches!(e, HttpError::NotASocket { .. }), "{e}");
        std::fs::remove_file(&sock).expect("rm");

        // A live server: refused, and it goes on serving.
        let e = serve(&other, echo()).expect_err("a live socket");
        assert_eq!(
            e.to_string(),
            format!(
                "a running popvmm is serving {} (it accepts connections): choose another path",
                other.display()
            )
        );
        assert_eq!(exchange(&other, b"GET / HTTP/1.1\r\n\r\n").0, 200);
        drop(live);

        // A stale socket: replaced.
        drop(UnixListener::bind(&sock).expect("bind"));
        assert!(std::fs::symlink_metadata(&sock).is_ok_and(|m| m.file_type().is_socket()));
        let server = serve(&sock, echo()).expect("replace a stale socket");
        assert_eq!(exchange(&sock, b"GET / HTTP/1.1\r\n\r\n").0, 200);
        drop(server);
        assert!(dir.entries().is_empty(), "{:?}", dir.entries());
    }

    #[test]
    fn drop_leaves_a_file_that_replaced_the_socket() {
        let dir = Scratch::new("replaced");
        let sock = dir.sock();
        let server = serve(&sock, echo()).expect("serve");
        let other = dir.0.join("other");
        std::fs::write(&other, "someone else's").expect("write");
        std::fs::rename(&other, &sock).expect("rename");
        drop(server);
        assert_eq!(
            std::fs::read_to_string(&sock).ok().as_deref(),
            Some("someone else's")
        );
    }

    #[test]
    fn drop_waits_for_a_response_under_way() {
        let dir = Scratch::new("drain");
        let sock = dir.sock();
        let server = serve(&sock, echo()).expect("serve");
        let mut s = UnixStream::connect(&sock).expect("connect");
        s.write_all(b"GET /slow HTTP/1.1\r\n\r\n").expect("write");
        // Drop once the handler runs (counted as responding).
        let deadline = Instant::now() + Duration::from_secs(60);
        while server.shared.responding.load(Ordering::Acquire) == 0 {
            assert!(
                Instant::now() < deadline,
                "request never reached the handler"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(server);
        assert_eq!(answer(s).0, 200);
    }
}

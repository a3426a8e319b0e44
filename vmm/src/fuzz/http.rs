//! The control socket's input: raw bytes through the server's request reader (`api/http.rs`,
//! over a real socket pair), requests into typed actions (`api/action.rs`), and responses through
//! `ctl`'s parser (`api/client.rs`).

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

use arbitrary::Unstructured;

use crate::api::action::{ControlAction, ControlError};
use crate::api::client::parse_response;
use crate::api::http::{encode, read_request, HttpResponse, Limits, Method};
use crate::api::types::ErrorBody;

pub const DICT: &[&[u8]] = &[
    b"GET ",
    b"PUT ",
    b"POST ",
    b"HEAD ",
    b" HTTP/1.1\r\n",
    b"\r\n",
    b"\r\n\r\n",
    b"Content-Length: ",
    b"Content-Length: 0\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Expect: 100-continue\r\n",
    b"/threads/",
    b"/migrate",
    b"/proposal",
    b"/pages?from=0x4bb000&count=",
    b"/shutdown",
    b"{\"to\":",
    b"null}",
    b"99999999999999999999",
    b"?",
    b"&",
    b"=",
];

/// The response bytes as `ctl` reads them: they must parse back to the same status and body.
fn check_response(resp: &HttpResponse, head_only: bool) {
    let bytes = encode(resp, head_only);
    let back = parse_response(&bytes).expect("our own response parses");
    assert_eq!(back.status, resp.status);
    if !head_only {
        assert_eq!(back.body.as_bytes(), resp.body.as_slice());
    }
}

/// What becomes of an action: an action goes to HTTP and back unchanged; an error is a 4xx with
/// a JSON `{"error"}` body.
fn check_action(r: Result<ControlAction, ControlError>) -> bool {
    match r {
        Ok(action) => {
            let call = action.to_http().expect("an action has a request");
            let (path, query) = call.target.split_once('?').unwrap_or((&call.target, ""));
            assert_eq!(
                ControlAction::from_http(&call.method, path, query, call.body.as_bytes()),
                Ok(action),
                "to_http and from_http disagree"
            );
            true
        }
        Err(e) => {
            let status = e.status();
            assert!((400..500).contains(&status), "{e}: status {status}");
            let resp = e.into_http();
            let body: ErrorBody =
                serde_json::from_slice(&resp.body).expect("an error body is JSON");
            assert!(!body.error.is_empty());
            check_response(&resp, false);
            false
        }
    }
}

/// Raw bytes as a client would send them, through the server's reader on a socket pair (the
/// whole input is written, then the client's side is shut: no timing is involved).
pub fn http_request(data: &[u8]) -> bool {
    let limits = Limits::default();
    let (mut client, mut server) = UnixStream::pair().expect("socket pair");
    // Room for the largest input at once (the server reads after everything is written).
    let size: libc::c_int = 1 << 20;
    // SAFETY: setsockopt reads one c_int from `size`, which outlives the call; the descriptor is
    // an open socket.
    unsafe {
        libc::setsockopt(
            client.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            std::ptr::addr_of!(size).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    client.write_all(data).expect("write the request");
    client
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown");
    match read_request(&mut server, &limits) {
        Ok((req, head_only)) => {
            assert_eq!(head_only, req.method == Method::Head);
            assert!(req.body.len() <= limits.max_body);
            assert!(!req.path.contains('?'), "the query is split off");
            check_action(ControlAction::from_http(
                &req.method,
                &req.path,
                &req.query,
                &req.body,
            ));
            true
        }
        Err(Some(resp)) => {
            assert!((400..500).contains(&resp.status), "status {}", resp.status);
            check_response(&resp, false);
            false
        }
        Err(None) => {
            assert!(
                data.is_empty(),
                "a request that says something gets an answer"
            );
            false
        }
    }
}

const SEGMENTS: &[&str] = &[
    "islands",
    "threads",
    "pages",
    "stats",
    "metrics",
    "shutdown",
    "migrate",
    "proposal",
    "1",
    "0",
    "4294967296",
    "-1",
    "",
    "..",
    "%2e",
];
const KEYS: &[&str] = &["from", "count", "x", ""];
const VALUES: &[&str] = &[
    "0",
    "1",
    "4096",
    "4097",
    "0x4bb000",
    "0x",
    "-1",
    "",
    "18446744073709551616",
    "zz",
];
const BODIES: &[&str] = &[
    "",
    "{}",
    "{\"to\": 1}",
    "{\"to\": null}",
    "{\"to\": -1}",
    "{\"to\": 1e3}",
    "{\"to\": \"1\"}",
    "[1]",
    "null",
    "{\"to\": 18446744073709551616}",
    "{\"to\": 1, \"to\": 2}",
    " \r\n",
];

fn pick<'a>(u: &mut Unstructured<'_>, from: &[&'a str]) -> arbitrary::Result<&'a str> {
    Ok(from[u.choose_index(from.len())?])
}

fn text(u: &mut Unstructured<'_>, from: &[&str]) -> arbitrary::Result<String> {
    if u.ratio(1, 4)? {
        let n = u.int_in_range(0..=12)?;
        let b = u.bytes(n)?;
        Ok(String::from_utf8_lossy(b).into_owned())
    } else {
        Ok(pick(u, from)?.to_string())
    }
}

/// Requests as the server hands them over, into typed actions.
pub fn control_action(data: &[u8]) -> bool {
    let mut u = Unstructured::new(data);
    let Ok((method, path, query, body)) = (|| -> arbitrary::Result<_> {
        let method = match u.int_in_range(0..=7)? {
            0 => Method::Get,
            1 => Method::Head,
            2 => Method::Post,
            3 => Method::Put,
            4 => Method::Delete,
            5 => Method::Patch,
            6 => Method::Options,
            _ => Method::Other(text(&mut u, &["BREW", "get", ""])?),
        };
        let mut path = String::new();
        for _ in 0..u.int_in_range(0..=4)? {
            path.push('/');
            path.push_str(&text(&mut u, SEGMENTS)?);
        }
        let mut query = Vec::new();
        for _ in 0..u.int_in_range(0..=3)? {
            let k = text(&mut u, KEYS)?;
            query.push(if u.ratio(1, 8)? {
                k
            } else {
                format!("{k}={}", text(&mut u, VALUES)?)
            });
        }
        let body = if u.ratio(1, 4)? {
            let n = u.int_in_range(0..=32)?;
            u.bytes(n)?.to_vec()
        } else {
            pick(&mut u, BODIES)?.as_bytes().to_vec()
        };
        Ok((method, path, query.join("&"), body))
    })() else {
        return false;
    };
    check_action(ControlAction::from_http(&method, &path, &query, &body))
}

/// A response as `ctl` reads it from a control socket (its server may be anything).
pub fn http_response(data: &[u8]) -> bool {
    parse_response(data).is_ok()
}

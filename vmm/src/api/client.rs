//! A minimal HTTP/1.1 client over a Unix socket for `popvmm ctl` (responses parsed by httparse).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Errors of talking to a control socket.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {path}: {source}")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("I/O error on the control socket: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed HTTP response: {0}")]
    Parse(String),
}

/// A parsed response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

/// Sends one request (`Connection: close`) and reads the whole response.
pub fn request(
    sock: &Path,
    method: &str,
    path: &str,
    body: &str,
) -> Result<HttpResponse, ClientError> {
    let mut s = UnixStream::connect(sock).map_err(|source| ClientError::Connect {
        path: sock.display().to_string(),
        source,
    })?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_response(&raw)
}

/// Decodes a `Transfer-Encoding: chunked` body (chunk sizes parsed by httparse).
fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, ClientError> {
    let mut body = Vec::new();
    loop {
        let (start, size) = match httparse::parse_chunk_size(rest) {
            Ok(httparse::Status::Complete(c)) => c,
            Ok(httparse::Status::Partial) => {
                return Err(ClientError::Parse("truncated chunked body".into()))
            }
            Err(_) => return Err(ClientError::Parse("malformed chunk size".into())),
        };
        if size == 0 {
            return Ok(body);
        }
        let size =
            usize::try_from(size).map_err(|_| ClientError::Parse("chunk too large".into()))?;
        let chunk = rest
            .get(start..start.saturating_add(size))
            .ok_or_else(|| ClientError::Parse("truncated chunk".into()))?;
        body.extend_from_slice(chunk);
        // The chunk's data is followed by CRLF.
        rest = rest
            .get(start + size..)
            .and_then(|r| r.strip_prefix(b"\r\n"))
            .ok_or_else(|| ClientError::Parse("chunk without its CRLF".into()))?;
    }
}

/// Parses a complete HTTP/1.1 response (Content-Length, chunked or read-to-close bodies).
pub fn parse_response(raw: &[u8]) -> Result<HttpResponse, ClientError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let n = match resp.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return Err(ClientError::Parse("truncated headers".into()))
        }
        Err(e) => return Err(ClientError::Parse(e.to_string())),
    };
    let status = resp
        .code
        .ok_or_else(|| ClientError::Parse("no status code".into()))?;
    let len = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    let chunked = resp.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            && std::str::from_utf8(h.value)
                .is_ok_and(|v| v.to_ascii_lowercase().contains("chunked"))
    });
    let rest = &raw[n..];
    let body: Vec<u8> = if chunked {
        dechunk(rest)?
    } else {
        match len {
            Some(l) if l <= rest.len() => rest[..l].to_vec(),
            Some(_) => return Err(ClientError::Parse("truncated body".into())),
            None => rest.to_vec(),
        }
    };
    Ok(HttpResponse {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_responses() {
        let r = parse_response(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}junk")
            .expect("parse");
        assert_eq!(r.status, 404);
        assert_eq!(r.body, "{}");
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Le").is_err());
        assert!(parse_response(b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn decodes_chunked_bodies() {
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n",
        )
        .expect("parse");
        assert_eq!(r.body, "{\"a\":1}");
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nabc")
                .is_err()
        );
        assert!(
            parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err()
        );
    }
}

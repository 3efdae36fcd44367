//! A minimal HTTP/1.1 server side for test doubles that must control the bytes on the wire (faults
//! such as truncated bodies, answers that announce more than they send): one request per connection,
//! read by [`read_request`], answered by [`respond`] with `Connection: close`.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest request head [`read_request`] accepts.
pub const MAX_HEAD: usize = 1 << 20;

/// `Content-Type` of JSON answers.
pub const JSON: &str = "application/json";

/// One request.
#[derive(Clone, Debug)]
pub struct Request {
    /// HTTP method (`GET`, `POST`, ...).
    pub method: String,
    /// The request target as sent (path and query).
    pub path: String,
    /// Headers in order, names as sent, values trimmed.
    pub headers: Vec<(String, String)>,
    /// `Content-Length` bytes of body (no chunked encoding).
    pub body: Vec<u8>,
}

impl Request {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one request: the head, then `Content-Length` bytes of body. `None` when the connection
/// ends or fails first, or the head is not HTTP or larger than [`MAX_HEAD`].
pub async fn read_request<S: AsyncRead + Unpin>(sock: &mut S) -> Option<Request> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        if buf.len() > MAX_HEAD {
            return None;
        }
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut req = Request {
        method,
        path,
        headers,
        body: buf[head_end + 4..].to_vec(),
    };
    let len: usize = req
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while req.body.len() < len {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        req.body.extend_from_slice(&chunk[..n]);
    }
    Some(req)
}

/// Writes an answer and closes the connection: `status`, `Content-Type: content_type`,
/// `Content-Length: announce` (more than `body.len()` makes a truncated answer), `extra` headers,
/// then `body`. Write errors are ignored (the client may be gone).
pub async fn respond<S: AsyncWrite + Unpin>(
    sock: &mut S,
    status: u16,
    content_type: &str,
    extra: &[(&str, String)],
    body: &[u8],
    announce: usize,
) {
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {announce}\r\nConnection: close\r\n"
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = sock.write_all(head.as_bytes()).await;
    let _ = sock.write_all(body).await;
    let _ = sock.flush().await;
    let _ = sock.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_a_request_and_writes_an_answer() {
        let (mut client, mut server) = tokio::io::duplex(1 << 16);
        client
            .write_all(
                b"POST /x?y=1 HTTP/1.1\r\nHost: h\r\ncontent-length: 5\r\nX-A:  b \r\n\r\nhel",
            )
            .await
            .unwrap();
        let reader = tokio::spawn(async move {
            let req = read_request(&mut server).await.unwrap();
            respond(
                &mut server,
                429,
                JSON,
                &[("Retry-After", "1".into())],
                b"{}",
                2,
            )
            .await;
            req
        });
        client.write_all(b"lo").await.unwrap();
        let req = reader.await.unwrap();
        assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/x?y=1"));
        assert_eq!(req.header("x-a"), Some("b"));
        assert_eq!(req.body, b"hello");
        let mut out = String::new();
        client.read_to_string(&mut out).await.unwrap();
        assert_eq!(
            out,
            "HTTP/1.1 429 X\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\nRetry-After: 1\r\n\r\n{}"
        );
    }

    #[tokio::test]
    async fn a_connection_that_ends_early_is_no_request() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client
            .write_all(b"PUT / HTTP/1.1\r\ncontent-length: 9\r\n\r\nab")
            .await
            .unwrap();
        drop(client);
        assert!(read_request(&mut server).await.is_none());
    }
}

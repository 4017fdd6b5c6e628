//! The HTTP/1.1 response to our HEAD request, parsed with httparse (RFC 9110, RFC 9112).
//! Running out of bytes is "not yet", never an error.

/// A response head, owned (header values decoded lossily as UTF-8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    pub version: u8,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    /// Bytes of the head, including the final CRLF CRLF.
    pub head_len: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HttpParse {
    /// More bytes are needed.
    Partial,
    Complete(HttpResponse),
    /// Not HTTP: httparse's reason.
    Invalid(String),
}

/// Parse a response head from the bytes received so far. Interim 1xx responses (except
/// 101) are skipped as RFC 9110 §15.2 says a client must.
pub fn parse_response(bytes: &[u8]) -> HttpParse {
    let _ = bytes;
    todo!()
}

/// The request tcpshake sends.
pub fn head_request(path: &str, host: &str, user_agent: &str) -> Vec<u8> {
    format!(
        "HEAD {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {user_agent}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

//! The HTTP/1.1 response to our HEAD request, parsed with httparse (RFC 9110, RFC 9112).
//! Running out of bytes is "not yet", never an error.
//!
//! This runs once per HEAD probe, not per packet, so it may allocate.

/// The largest response head read (status line, headers, blank line): 1 MiB. curl reads
/// heads of any size within its own buffers; servers that send a few hundred headers or
/// long cookies exist, none near this. A larger head is refused as too large, not as
/// "not HTTP".
pub const MAX_HEAD: usize = 1 << 20;
/// Header slots tried first; a head with more is parsed again with room for all of them
/// (at most one per 4 bytes of head, "a:\r\n", so the count is bounded by `MAX_HEAD`).
const FIRST_HEADER_SLOTS: usize = 64;
/// Interim (1xx) heads skipped before the final one; a server sending more is broken.
pub const MAX_INTERIM_RESPONSES: usize = 16;

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
///
/// Parsing is lenient where real servers are sloppy and the meaning stays clear (spaces
/// before a header colon, obsolete line folding, several spaces in the status line);
/// httparse rejects everything else.
pub fn parse_response(bytes: &[u8]) -> HttpParse {
    let mut config = httparse::ParserConfig::default();
    config
        .allow_spaces_after_header_name_in_responses(true)
        .allow_obsolete_multiline_headers_in_responses(true)
        .allow_multiple_spaces_in_response_status_delimiters(true);
    let mut start = 0usize;
    for _ in 0..=MAX_INTERIM_RESPONSES {
        let rest = bytes.get(start..).unwrap_or(&[]);
        // Any number of headers: start with a few slots, and when httparse says there
        // are more, count the head's lines and parse again with a slot for each.
        let mut headers = vec![httparse::EMPTY_HEADER; FIRST_HEADER_SLOTS];
        let mut response = httparse::Response::new(&mut headers);
        let mut outcome = config.parse_response(&mut response, rest);
        let mut bigger;
        if matches!(outcome, Err(httparse::Error::TooManyHeaders)) {
            let lines = rest.iter().filter(|&&b| b == b'\n').count();
            bigger = vec![httparse::EMPTY_HEADER; lines.max(FIRST_HEADER_SLOTS)];
            response = httparse::Response::new(&mut bigger);
            outcome = config.parse_response(&mut response, rest);
        }
        let len = match outcome {
            Ok(httparse::Status::Partial) => return HttpParse::Partial,
            Ok(httparse::Status::Complete(len)) => len,
            Err(e) => return HttpParse::Invalid(e.to_string()),
        };
        // A complete head always has a code and version; 0 would only mean httparse broke
        // its promise, and is then reported as such rather than trusted.
        let Some(status) = response.code else {
            return HttpParse::Invalid("no status code".to_owned());
        };
        // RFC 9110 §15.2: a client must accept and skip interim responses before the
        // final one; 101 Switching Protocols is final for this connection.
        if (100..200).contains(&status) && status != 101 {
            start += len;
            continue;
        }
        return HttpParse::Complete(HttpResponse {
            version: response.version.unwrap_or(1),
            status,
            reason: response.reason.unwrap_or("").to_owned(),
            headers: response
                .headers
                .iter()
                .map(|h| (h.name.to_owned(), header_value(h.value)))
                .collect(),
            head_len: start + len,
        });
    }
    HttpParse::Invalid("too many interim responses".to_owned())
}

/// A header value as text: obsolete line folding (CRLF or LF, then spaces or tabs) becomes
/// one space, as RFC 9112 §5.2 has a user agent do before using the value; a control
/// character left (a bare CR, DEL, …) is escaped, so a value never ends or starts a line of
/// what we print. httparse lets through only what its lenient response mode allows.
fn header_value(raw: &[u8]) -> String {
    // Nearly every value is printable ASCII (tabs allowed): nothing to fold or escape, so it
    // is copied as it is. Char by char, a head of 500 such headers (97 KB) cost ~300 µs of
    // CPU, all of it between the server's FIN and our ACK of it (a fault walk measured that
    // leg at a median 489 µs, 342 µs with this and the probe's blank-line scan; Linux's
    // client took 50–67 µs).
    if raw
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
        && let Ok(ascii) = std::str::from_utf8(raw)
    {
        return ascii.to_owned();
    }
    let text = String::from_utf8_lossy(raw);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' if matches!(chars.peek(), Some(' ' | '\t')) => {
                while chars.next_if(|c| matches!(c, ' ' | '\t')).is_some() {}
                out.push(' ');
            }
            '\t' => out.push(c),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

/// Why a request path or a `Host:` value cannot be sent as it is.
fn refuse_char(c: char) -> String {
    match c {
        '\r' => "a carriage return (CR) would end the request line or header early".into(),
        '\n' => "a line feed (LF) would end the request line or header early".into(),
        ' ' => "a space would split the request line; write it as %20".into(),
        '#' => "`#` starts a fragment, which is never sent to a server (RFC 3986 §3.5); \
                leave it out"
            .into(),
        c if c.is_ascii_control() => {
            format!("control character {} is not allowed", c.escape_unicode())
        }
        c => format!("`{c}` is not ASCII; percent-encode its UTF-8 bytes (e.g. %C3%A9)"),
    }
}

/// A request-target we may send with HEAD: origin-form (RFC 9112 §3.2.1), an absolute
/// path starting with `/`, optionally `?query`, in visible ASCII (RFC 3986 §2). Anything
/// else would be a malformed request, and a CR or LF a header injection. The
/// asterisk-form `*` is for OPTIONS only (RFC 9112 §3.2.4), not for HEAD.
pub fn check_request_target(path: &str) -> Result<(), String> {
    if path == "*" {
        return Err(
            "`*` is only a request target for OPTIONS (RFC 9112 §3.2.4); \
                    tcpshake sends HEAD: give a path such as /"
                .into(),
        );
    }
    if !path.starts_with('/') {
        return Err("a request path starts with `/` (e.g. /index.html)".into());
    }
    match path.chars().find(|&c| c == '#' || !c.is_ascii_graphic()) {
        Some(c) => Err(refuse_char(c)),
        None => Ok(()),
    }
}

/// A `Host:` value we may send (RFC 9110 §7.2: uri-host [":" port]): visible ASCII, no
/// spaces, so it cannot end the header or add another. Empty is allowed (RFC 9112 §3.2).
pub fn check_host_field(host: &str) -> Result<(), String> {
    match host.chars().find(|&c| !c.is_ascii_graphic()) {
        Some(c) => Err(refuse_char(c)),
        None => Ok(()),
    }
}

/// The request tcpshake sends. The caller checked `path` and `host`
/// ([`check_request_target`], [`check_host_field`]).
pub fn head_request(path: &str, host: &str, user_agent: &str) -> Vec<u8> {
    format!(
        "HEAD {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {user_agent}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_targets_are_origin_form_in_visible_ascii() {
        for ok in ["/", "/a/b?x=1&y=%20", "/~user/"] {
            assert_eq!(check_request_target(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("/a\r\nX-Injected: 1", "carriage return"),
            ("/a\nX: 1", "line feed"),
            ("/a b", "%20"),
            ("/a\u{1}", "control character"),
            ("/a#top", "fragment"),
            ("/é", "percent-encode"),
            ("index.html", "starts with `/`"),
            ("", "starts with `/`"),
            ("*", "OPTIONS"),
        ] {
            let e = check_request_target(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        assert_eq!(check_host_field("lab.test:8080"), Ok(()));
        assert_eq!(check_host_field(""), Ok(()));
        assert!(
            check_host_field("a\r\nX: 1")
                .unwrap_err()
                .contains("carriage")
        );
        assert!(check_host_field("a b").is_err());
    }

    fn complete(bytes: &[u8]) -> HttpResponse {
        match parse_response(bytes) {
            HttpParse::Complete(r) => r,
            other => panic!("expected a complete head, got {other:?}"),
        }
    }

    #[test]
    fn simple_head_response() {
        let raw = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 612\r\n\r\n";
        let r = complete(raw);
        assert_eq!(r.version, 1);
        assert_eq!(r.status, 200);
        assert_eq!(r.reason, "OK");
        assert_eq!(
            r.headers,
            vec![
                ("Server".to_owned(), "nginx".to_owned()),
                ("Content-Length".to_owned(), "612".to_owned())
            ]
        );
        assert_eq!(r.head_len, raw.len());
    }

    #[test]
    fn body_bytes_after_the_head_are_not_counted() {
        let r = complete(b"HTTP/1.0 404 Not Found\r\n\r\n<html>");
        assert_eq!(
            (r.version, r.status, r.reason.as_str()),
            (0, 404, "Not Found")
        );
        assert_eq!(r.head_len, 26);
    }

    #[test]
    fn every_prefix_is_partial() {
        let raw = b"HTTP/1.1 301 Moved Permanently\r\nLocation: https://x/\r\n\r\n";
        for len in 0..raw.len() {
            assert_eq!(
                parse_response(&raw[..len]),
                HttpParse::Partial,
                "prefix {len}"
            );
        }
        assert_eq!(complete(raw).status, 301);
    }

    #[test]
    fn interim_responses_are_skipped() {
        let interim =
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n";
        assert_eq!(parse_response(interim), HttpParse::Partial);
        let mut raw = interim.to_vec();
        raw.extend_from_slice(b"HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n");
        let r = complete(&raw);
        assert_eq!(r.status, 204);
        assert_eq!(r.headers, vec![("X-A".to_owned(), "b".to_owned())]);
        assert_eq!(
            r.head_len,
            raw.len(),
            "counted from the start, interim heads included"
        );
    }

    #[test]
    fn switching_protocols_is_final() {
        let r = complete(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n");
        assert_eq!(r.status, 101);
    }

    #[test]
    fn endless_interim_responses_are_invalid() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(MAX_INTERIM_RESPONSES + 1);
        assert_eq!(
            parse_response(&raw),
            HttpParse::Invalid("too many interim responses".to_owned())
        );
        let ok = b"HTTP/1.1 100 Continue\r\n\r\n".repeat(MAX_INTERIM_RESPONSES);
        let mut ok = ok.clone();
        ok.extend_from_slice(b"HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(complete(&ok).status, 200);
    }

    #[test]
    fn any_number_of_headers() {
        for n in [
            0,
            1,
            FIRST_HEADER_SLOTS - 1,
            FIRST_HEADER_SLOTS,
            FIRST_HEADER_SLOTS + 1,
            5000,
        ] {
            let mut raw = b"HTTP/1.1 200 OK\r\n".to_vec();
            for i in 0..n {
                raw.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
            }
            // Every prefix is partial, never "too many headers".
            assert_eq!(parse_response(&raw), HttpParse::Partial, "{n}");
            raw.extend_from_slice(b"\r\n");
            let r = complete(&raw);
            assert_eq!(r.headers.len(), n);
            assert_eq!(r.head_len, raw.len());
        }
    }

    #[test]
    fn garbage_is_invalid() {
        for raw in [
            &b"SSH-2.0-OpenSSH_9.6\r\n"[..],
            b"\x16\x03\x01\x00",
            b"HTTP/2 200\r\n\r\n",
        ] {
            assert!(
                matches!(parse_response(raw), HttpParse::Invalid(_)),
                "{raw:?}"
            );
        }
        assert_eq!(
            parse_response(b"HTTP/1.1 abc OK\r\n\r\n"),
            HttpParse::Invalid("invalid response status".to_owned())
        );
    }

    #[test]
    fn lenient_where_servers_are_sloppy() {
        let r = complete(b"HTTP/1.1  200  OK\r\nServer : x\r\nX-Fold: a\r\n  b\r\n\r\n");
        assert_eq!(r.status, 200);
        assert_eq!(r.headers[0], ("Server".to_owned(), "x".to_owned()));
        assert_eq!(r.headers.len(), 2);
        // Obsolete line folding is one space (RFC 9112 §5.2), so no value carries a line
        // break into what we print: a folded line could pass for a line of our own view.
        assert_eq!(r.headers[1], ("X-Fold".to_owned(), "a b".to_owned()));
        let r = complete(b"HTTP/1.1 200 OK\r\nServer: fw\r\n  error: forged\r\n\tmore\r\n\r\n");
        assert_eq!(r.headers[0].1, "fw error: forged more");
    }

    /// Printable ASCII takes the fast path; every other value the slow one. Both give what
    /// the slow one gives.
    #[test]
    fn values_of_printable_ascii_are_copied_as_they_are() {
        let slow = |raw: &[u8]| {
            let mut v = b"\x01".to_vec(); // not printable: the slow path, then drop it
            v.extend_from_slice(raw);
            header_value(&v).trim_start_matches("\\u{1}").to_owned()
        };
        for raw in [
            &b""[..],
            b"nginx/1.22.1",
            b"a\tb  c",
            b"~!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}",
        ] {
            assert_eq!(header_value(raw), slow(raw), "{raw:?}");
            assert_eq!(header_value(raw).as_bytes(), raw);
        }
        assert_eq!(header_value(b"a\x7fb"), "a\\u{7f}b");
        assert_eq!(header_value(b"a\r\n b"), "a b");
    }

    #[test]
    fn non_utf8_values_are_lossy() {
        let r = complete(b"HTTP/1.1 200 OK\r\nX-Latin: caf\xe9\r\n\r\n");
        assert_eq!(r.headers[0].1, "caf\u{fffd}");
    }

    #[test]
    fn request_is_well_formed() {
        let req = head_request("/", "example.test", "tcpshake/0.1");
        assert_eq!(
            req,
            b"HEAD / HTTP/1.1\r\nHost: example.test\r\nUser-Agent: tcpshake/0.1\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        );
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut parsed = httparse::Request::new(&mut headers);
        assert_eq!(
            parsed.parse(&req),
            Ok(httparse::Status::Complete(req.len()))
        );
        assert_eq!(parsed.method, Some("HEAD"));
    }
}

//! What an HTTP client asked the exporter: the request head (httparse) and `/probe`'s query
//! string. Anything else than a well-formed `GET`/`HEAD` of a known path with known
//! parameters is refused with a status and a sentence, never a panic: the exporter's port
//! faces whoever can reach it.

use super::config::survey_target;
use crate::probe::target::Target;
use std::fmt;
use std::time::Duration;

/// The longest request head read (request line and headers): Prometheus sends ~300 bytes.
pub const MAX_HEAD: usize = 8 * 1024;
/// Headers kept from one request; more is a 431.
const MAX_HEADERS: usize = 32;
/// The header in which Prometheus says how long it waits for a scrape (its
/// `scrape_timeout`).
pub const SCRAPE_TIMEOUT_HEADER: &str = "X-Prometheus-Scrape-Timeout-Seconds";
/// What a `/probe` leaves of the scrape's timeout for the answer to travel back:
/// blackbox_exporter's default `--timeout-offset`.
pub const SCRAPE_TIMEOUT_OFFSET: Duration = Duration::from_millis(500);

/// How long a `/probe` may run when the scraper waits `scrape` for its answer: the scrape's
/// timeout less [`SCRAPE_TIMEOUT_OFFSET`], as blackbox_exporter takes it, so a probe that
/// gets no answer (a filtered port) ends, and is answered as a failure, before the scraper
/// gives up on the request (Prometheus would then record `up 0` and nothing else, while
/// the probe kept its `max_in_flight` place). Never less than half the scrape's timeout.
pub fn probe_budget(scrape: Duration) -> Duration {
    scrape.saturating_sub(SCRAPE_TIMEOUT_OFFSET).max(scrape / 2)
}

/// A refusal: the status and the text sent with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpError {
    pub status: u16,
    pub message: String,
}

impl HttpError {
    pub fn new(status: u16, message: impl Into<String>) -> HttpError {
        HttpError {
            status,
            message: message.into(),
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.message)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    /// As GET, without the body.
    Head,
}

/// The parts of a request head the exporter uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    pub method: Method,
    pub path: String,
    pub query: Option<String>,
    /// `Accept`, for the exposition format.
    pub accept: Option<String>,
    /// [`SCRAPE_TIMEOUT_HEADER`]: how long the scraper waits for the answer.
    pub scrape_timeout: Option<Duration>,
    /// Bytes of the head, so the caller knows where a body would start.
    pub len: usize,
}

/// Parse a request head: `Ok(None)` while it is incomplete.
pub fn parse_head(bytes: &[u8]) -> Result<Option<Head>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if bytes.len() >= MAX_HEAD => {
            return Err(HttpError::new(431, "request head too large"));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HttpError::new(431, "too many header fields"));
        }
        Err(e) => return Err(HttpError::new(400, format!("malformed request: {e}"))),
    };
    if len > MAX_HEAD {
        return Err(HttpError::new(431, "request head too large"));
    }
    let method = match req.method {
        Some("GET") => Method::Get,
        Some("HEAD") => Method::Head,
        Some(m) => {
            return Err(HttpError::new(
                405,
                format!("method {} not allowed; use GET", m.escape_debug()),
            ));
        }
        None => return Err(HttpError::new(400, "no method")),
    };
    let target = req.path.unwrap_or("");
    // Origin form only (RFC 9112 §3.2.1); the fragment never reaches a server.
    if !target.starts_with('/') {
        return Err(HttpError::new(400, "the request target must start with /"));
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q.to_string())),
        None => (target, None),
    };
    let mut accept = None;
    let mut scrape_timeout = None;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("accept") {
            accept = std::str::from_utf8(h.value).ok().map(str::to_string);
        } else if h.name.eq_ignore_ascii_case(SCRAPE_TIMEOUT_HEADER) {
            scrape_timeout = Some(seconds(h.value).ok_or_else(|| {
                HttpError::new(
                    400,
                    format!(
                        "{SCRAPE_TIMEOUT_HEADER}: `{}` is not a number of seconds above 0",
                        String::from_utf8_lossy(h.value).escape_debug()
                    ),
                )
            })?);
        }
    }
    Ok(Some(Head {
        method,
        path: path.to_string(),
        query,
        accept,
        scrape_timeout,
        len,
    }))
}

/// Prometheus' decimal seconds (`10`, `4.5`), above 0 and at most a day.
fn seconds(v: &[u8]) -> Option<Duration> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let f: f64 = s.parse().ok()?;
    (f.is_finite() && f > 0.0 && f <= 86_400.0).then(|| Duration::from_secs_f64(f))
}

/// `/probe`'s parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeQuery {
    pub target: Target,
    pub module: Option<String>,
    /// `debug=true`: answer a plain-text account of the probe (what happened, then the
    /// metrics it would have returned), as blackbox_exporter's `debug=true` does.
    pub debug: bool,
}

/// Decode `%XX` and `+` (application/x-www-form-urlencoded); the result must be UTF-8
/// without control characters.
pub fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| "a `%` not followed by two hex digits".to_string())?;
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    let text = String::from_utf8(out).map_err(|_| "not UTF-8 once decoded".to_string())?;
    if text.chars().any(char::is_control) {
        return Err("a control character".into());
    }
    Ok(text)
}

/// `target=HOST:PORT[&module=NAME][&debug=true]`, each once, nothing else.
pub fn probe_query(query: Option<&str>) -> Result<ProbeQuery, HttpError> {
    let bad = |m: String| HttpError::new(400, m);
    let q = query.unwrap_or("");
    let mut target: Option<String> = None;
    let mut module: Option<String> = None;
    let mut debug: Option<String> = None;
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_decode(k).map_err(|e| bad(format!("query: {e}")))?;
        let v = percent_decode(v).map_err(|e| bad(format!("parameter `{k}`: {e}")))?;
        let slot = match k.as_str() {
            "target" => &mut target,
            "module" => &mut module,
            "debug" => &mut debug,
            other => {
                return Err(bad(format!(
                    "unknown parameter `{}`; /probe takes target=HOST:PORT, module=NAME and \
                     debug=true",
                    other.escape_debug()
                )));
            }
        };
        if slot.is_some() {
            return Err(bad(format!("parameter `{k}` given twice")));
        }
        *slot = Some(v);
    }
    let Some(spec) = target else {
        return Err(bad(
            "no target: ask /probe?target=HOST:PORT[&module=NAME]".into()
        ));
    };
    if spec.is_empty() || spec.len() > 300 {
        return Err(bad("target: give HOST:PORT".into()));
    }
    let target = survey_target(&spec).map_err(|e| bad(format!("target: {e}")))?;
    if let Some(m) = &module
        && (m.is_empty() || m.len() > 64)
    {
        return Err(bad("module: give a module's name".into()));
    }
    // blackbox_exporter reads `true`; `1` is what people try first, and means the same.
    let debug = match debug.as_deref() {
        None | Some("false" | "0") => false,
        Some("true" | "1") => true,
        Some(other) => {
            return Err(bad(format!(
                "debug: `{}`: give debug=true (or leave it out)",
                other.escape_debug()
            )));
        }
    };
    Ok(ProbeQuery {
        target,
        module,
        debug,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::target::Host;
    use proptest::prelude::*;

    #[test]
    fn a_prometheus_scrape_head_parses() {
        let raw =
            b"GET /probe?target=198.18.0.2%3A80&module=http HTTP/1.1\r\nHost: 127.0.0.1:9917\r\n\
Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n\
X-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n";
        let h = parse_head(raw).unwrap().unwrap();
        assert_eq!(h.method, Method::Get);
        assert_eq!(h.path, "/probe");
        assert_eq!(h.len, raw.len());
        assert!(
            h.accept
                .unwrap()
                .starts_with("application/openmetrics-text")
        );
        assert_eq!(h.scrape_timeout, Some(Duration::from_secs(10)));
        let q = probe_query(h.query.as_deref()).unwrap();
        assert_eq!(q.target.port, 80);
        assert_eq!(q.target.host, Host::Ip("198.18.0.2".parse().unwrap()));
        assert_eq!(q.module.as_deref(), Some("http"));
    }

    /// A probe ends half a second before the scraper gives up (blackbox's offset), and a
    /// header that is not a number of seconds is refused, not taken as no limit.
    #[test]
    fn the_scrape_timeout_bounds_the_probe() {
        let head = |v: &str| {
            parse_head(
                format!("GET /probe HTTP/1.1\r\n{SCRAPE_TIMEOUT_HEADER}: {v}\r\n\r\n").as_bytes(),
            )
        };
        assert_eq!(
            head("4.5").unwrap().unwrap().scrape_timeout,
            Some(Duration::from_millis(4500))
        );
        assert_eq!(
            parse_head(b"GET /probe HTTP/1.1\r\n\r\n")
                .unwrap()
                .unwrap()
                .scrape_timeout,
            None
        );
        for bad in ["abc", "0", "-1", "NaN", "inf", "1e9"] {
            let e = head(bad).unwrap_err();
            assert_eq!(e.status, 400, "{bad}");
            assert!(e.message.contains(SCRAPE_TIMEOUT_HEADER), "{}", e.message);
        }
        assert_eq!(
            probe_budget(Duration::from_secs(4)),
            Duration::from_millis(3500)
        );
        assert_eq!(
            probe_budget(Duration::from_secs(10)),
            Duration::from_millis(9500)
        );
        assert_eq!(
            probe_budget(Duration::from_millis(600)),
            Duration::from_millis(300)
        );
    }

    #[test]
    fn partial_heads_wait_and_oversized_ones_are_refused() {
        assert_eq!(
            parse_head(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"),
            Ok(None)
        );
        let mut big = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_HEAD + 10, b'a');
        assert_eq!(parse_head(&big).unwrap_err().status, 431);
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..40 {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(parse_head(&many).unwrap_err().status, 431);
    }

    #[test]
    fn other_methods_and_forms_are_refused() {
        assert_eq!(
            parse_head(b"POST /probe HTTP/1.1\r\n\r\n")
                .unwrap_err()
                .status,
            405
        );
        assert_eq!(
            parse_head(b"GET http://x/probe HTTP/1.1\r\n\r\n")
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            parse_head(b"\x16\x03\x01\x02\x00\r\n\r\n")
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            parse_head(b"HEAD /metrics HTTP/1.0\r\n\r\n")
                .unwrap()
                .unwrap()
                .method,
            Method::Head
        );
    }

    #[test]
    fn probe_queries_are_strict() {
        let err = |q: &str| probe_query(Some(q)).unwrap_err();
        assert!(err("").message.contains("no target"));
        let no_port = err("target=198.18.0.2").message;
        assert!(no_port.contains("HOST:PORT"), "{no_port}");
        assert!(!no_port.contains("-p"), "/probe has no -p: {no_port}");
        assert!(err("target=a:80&target=b:80").message.contains("twice"));
        assert!(
            err("target=a:80&verbose=true")
                .message
                .contains("unknown parameter")
        );
        assert!(err("target=a:80&debug=yes").message.contains("debug=true"));
        assert!(
            err("target=a:80&debug=true&debug=1")
                .message
                .contains("twice")
        );
        assert!(err("target=%zz").message.contains("hex"));
        assert!(err("target=a%0a:80").message.contains("control"));
        assert!(err("target=%ff%fe:80").message.contains("UTF-8"));
        assert!(err("target=http://a/x").message.contains("HOST:PORT"));
        // blackbox's URL target: the HOST:PORT and prober it stands for, and no "survey".
        let m = err("target=https://a.test/x").message;
        assert!(
            m.contains("`a.test:443` and a module whose prober is https"),
            "{m}"
        );
        assert!(!m.contains("survey"), "{m}");
        assert!(err("target=a:80&module=").message.contains("module"));
        let q = probe_query(Some("module=tcp&target=%5Bfd00%3A%3A2%5D%3A443")).unwrap();
        assert_eq!(q.target.port, 443);
        assert_eq!(q.module.as_deref(), Some("tcp"));
        assert_eq!(percent_decode("a+b%20c").unwrap(), "a b c");
        assert!(!q.debug);
        // blackbox_exporter's debug=true, and the 1 people try first.
        for (v, want) in [("true", true), ("1", true), ("false", false), ("0", false)] {
            let q = probe_query(Some(&format!("target=198.18.0.2:80&debug={v}"))).unwrap();
            assert_eq!(q.debug, want, "{v}");
        }
    }

    proptest! {
        /// Whatever arrives, the parsers answer: a head or a refusal with a 4xx status.
        #[test]
        fn junk_heads_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            match parse_head(&bytes) {
                Ok(Some(h)) => { let _ = probe_query(h.query.as_deref()); }
                Ok(None) => {}
                Err(e) => prop_assert!((400..500).contains(&e.status)),
            }
        }

        #[test]
        fn junk_queries_are_400(q in "[ -~]{0,200}") {
            if let Err(e) = probe_query(Some(&q)) {
                prop_assert_eq!(e.status, 400);
            }
        }

        #[test]
        fn junk_after_a_good_request_line(tail in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut b = b"GET /probe?".to_vec();
            b.extend_from_slice(&tail);
            b.extend_from_slice(b" HTTP/1.1\r\n\r\n");
            match parse_head(&b) {
                Ok(Some(h)) => {
                    if let Err(e) = probe_query(h.query.as_deref()) {
                        prop_assert_eq!(e.status, 400);
                    }
                }
                Ok(None) => {}
                Err(e) => prop_assert!((400..500).contains(&e.status)),
            }
        }
    }
}

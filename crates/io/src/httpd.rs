//! A small HTTP/1.1 server for the exporter: `GET` and `HEAD`, one request per connection,
//! a fixed number of worker threads, nothing else.
//!
//! Written on std and httparse (the request head is parsed by `monitor::query`) rather than
//! taken from a crate: tiny_http, the small synchronous server, hands each connection to a
//! pool that starts a new thread whenever all are busy, without a bound, so a few hundred
//! slow clients make a few hundred threads; an async server brings a runtime the exporter
//! has no other use for. Here each of `workers` threads accepts, reads one head (at most
//! `MAX_HEAD` bytes, within `READ_TIMEOUT`), answers and closes; a client that trickles
//! bytes holds one worker for at most the timeout, and connections beyond the workers wait
//! in the kernel's listen queue.

use anyhow::{Context, Result};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tcpshake_proto::monitor::query::{self, Head, HttpError, MAX_HEAD, Method};

/// How long a client may take to send its request head.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client may take to read the answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a waiting worker looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(100);

/// An answer. The body is written straight to the socket (a scrape of many histograms is
/// never held whole in memory); it ends when the connection closes.
pub struct Reply<'a> {
    pub status: u16,
    pub content_type: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body<'a>,
}

/// Writes a streamed body to the connection.
pub type Writer<'a> = Box<dyn FnOnce(&mut dyn Write) -> io::Result<()> + 'a>;

pub enum Body<'a> {
    Bytes(Vec<u8>),
    Stream(Writer<'a>),
}

impl Reply<'_> {
    /// A plain-text answer, with a trailing newline.
    pub fn text(status: u16, text: impl Into<String>) -> Reply<'static> {
        let mut body = text.into().into_bytes();
        body.push(b'\n');
        Reply {
            status,
            content_type: "text/plain; charset=utf-8".into(),
            headers: Vec::new(),
            body: Body::Bytes(body),
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

pub struct Server {
    listener: TcpListener,
}

impl Server {
    /// A listening socket the system refuses is the environment's answer (exit 3), with
    /// what to do about it.
    pub fn bind(addr: SocketAddr) -> Result<Server> {
        let listener = TcpListener::bind(addr).map_err(|e| {
            let hint = match e.raw_os_error() {
                Some(libc::EADDRINUSE) => format!(
                    "another program listens there (`ss -ltnp 'sport = :{}'` names it); \
                     stop it or give --listen another port",
                    addr.port()
                ),
                Some(libc::EADDRNOTAVAIL) => format!(
                    "{} is not an address of this host (`ip -br addr` lists them); give \
                     --listen one of them, or 127.0.0.1",
                    addr.ip()
                ),
                Some(libc::EACCES) => "ports below 1024 need CAP_NET_BIND_SERVICE (or root); \
                     give --listen a port from 1024 up"
                    .to_string(),
                _ => return anyhow::Error::new(e).context(format!("cannot listen on {addr}")),
            };
            crate::EnvironmentError(format!("cannot listen on {addr}: {e}; {hint}")).into()
        })?;
        listener
            .set_nonblocking(true)
            .context("making the listening socket non-blocking")?;
        Ok(Server { listener })
    }

    pub fn local_addr(&self) -> Result<SocketAddr> {
        Ok(self.listener.local_addr()?)
    }

    /// Serve with `workers` threads until `stop` is set (each notices within 100 ms, or
    /// when its request is answered).
    pub fn serve<H>(&self, workers: usize, stop: &AtomicBool, handler: &H) -> Result<()>
    where
        H: Fn(&Head) -> Reply<'static> + Sync,
    {
        std::thread::scope(|scope| {
            let mut handles = Vec::new();
            for n in 0..workers.max(1) {
                let h = std::thread::Builder::new()
                    .name(format!("http {n}"))
                    .spawn_scoped(scope, move || self.worker(stop, handler))
                    .context("starting an HTTP worker thread")?;
                handles.push(h);
            }
            for h in handles {
                let _ = h.join();
            }
            Ok(())
        })
    }

    fn worker<H>(&self, stop: &AtomicBool, handler: &H)
    where
        H: Fn(&Head) -> Reply<'static> + Sync,
    {
        // Bounded by the stop flag, checked at least every STOP_POLL.
        while !stop.load(Ordering::Relaxed) {
            let fds = [self.listener.as_fd()];
            if !matches!(crate::poll::wait_readable(&fds, Some(STOP_POLL)), Ok(n) if n > 0) {
                continue;
            }
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                // Another worker took it, or the client gave up already.
                Err(_) => continue,
            };
            // One bad connection never ends the worker.
            let _ = handle(stream, handler);
        }
    }
}

fn handle<H>(mut stream: TcpStream, handler: &H) -> io::Result<()>
where
    H: Fn(&Head) -> Reply<'static>,
{
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let reply = match read_head(&mut stream) {
        Ok(head) => {
            let head_only = head.method == Method::Head;
            let reply = handler(&head);
            return write_reply(&mut stream, reply, head_only);
        }
        Err(e) => Reply::text(e.status, e.message),
    };
    write_reply(&mut stream, reply, false)
}

/// The request head, read within [`READ_TIMEOUT`] in all.
fn read_head(stream: &mut TcpStream) -> Result<Head, HttpError> {
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    // Bounded: every turn reads at least a byte toward MAX_HEAD, or ends.
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HttpError::new(408, "request head not received in time"));
        }
        let _ = stream.set_read_timeout(Some(left));
        let n = match stream.read(&mut chunk) {
            Ok(0) => {
                return Err(HttpError::new(
                    400,
                    "connection closed before the request head ended",
                ));
            }
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err(HttpError::new(408, "request head not received in time"));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(HttpError::new(400, format!("reading the request: {e}"))),
        };
        buf.extend_from_slice(&chunk[..n]);
        if let Some(head) = query::parse_head(&buf)? {
            return Ok(head);
        }
        if buf.len() >= MAX_HEAD {
            return Err(HttpError::new(431, "request head too large"));
        }
    }
}

fn write_reply(stream: &mut TcpStream, reply: Reply<'_>, head_only: bool) -> io::Result<()> {
    let mut w = io::BufWriter::with_capacity(64 * 1024, stream);
    write!(
        w,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nConnection: close\r\n",
        reply.status,
        reason(reply.status),
        reply.content_type
    )?;
    for (k, v) in &reply.headers {
        write!(w, "{k}: {v}\r\n")?;
    }
    match reply.body {
        Body::Bytes(b) => {
            write!(w, "Content-Length: {}\r\n\r\n", b.len())?;
            if !head_only {
                w.write_all(&b)?;
            }
        }
        Body::Stream(f) => {
            w.write_all(b"\r\n")?;
            if !head_only {
                f(&mut w)?;
            }
        }
    }
    w.flush()?;
    let stream = w.into_inner().map_err(|e| e.into_error())?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    // Let the client's own close come first where it is quick, so the exporter's side is
    // not left in TIME-WAIT for every scrape; bounded by a short timeout.
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 512];
    for _ in 0..16 {
        match (&*stream).read(&mut sink) {
            Ok(n) if n > 0 => continue,
            _ => break,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn serve_once(request: &[u8]) -> String {
        let server = Server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = server.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let t = std::thread::spawn(move || {
            server
                .serve(2, &stop2, &|h: &Head| {
                    Reply::text(200, format!("path {}", h.path))
                })
                .unwrap();
        });
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(request).unwrap();
        let _ = c.shutdown(std::net::Shutdown::Write);
        let mut out = String::new();
        let _ = c.read_to_string(&mut out);
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap();
        out
    }

    #[test]
    fn a_request_is_answered_and_junk_is_refused() {
        let ok = serve_once(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.ends_with("path /metrics\n"), "{ok}");
        let bad = serve_once(b"\x00\x01\x02 garbage\r\n\r\n");
        assert!(bad.starts_with("HTTP/1.1 400 "), "{bad}");
        let post = serve_once(b"POST /probe HTTP/1.1\r\n\r\n");
        assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
        let cut = serve_once(b"GET /metrics HTTP/1.1\r\nHost");
        assert!(cut.starts_with("HTTP/1.1 400 "), "{cut}");
        let head = serve_once(b"HEAD /x HTTP/1.1\r\n\r\n");
        assert!(
            head.contains("Content-Length: 8\r\n") && head.ends_with("\r\n\r\n"),
            "{head}"
        );
    }
}

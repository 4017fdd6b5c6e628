//! The built-in peer for `tcpshake lab`: a tiny HTTP/1.1 server on real kernel listeners.
//!
//! It answers `HEAD` and `GET` with `200 OK` and then closes first, as nginx does with
//! `Connection: close`, so a probe sees the server's FIN before its own (the 4-way close
//! of RFC 9293 §3.6 with the server as the active closer). Everything is bounded: request
//! heads by size and time, concurrent connections by count, and the whole peer stops and
//! joins its threads when the [`HttpPeer`] is dropped.
//!
//! Listeners bind in the network namespace of the thread calling [`HttpPeer::start`]; use
//! [`LabNet::start_http_peer`](crate::labnet::LabNet::start_http_peer) to get the server
//! namespace.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;

/// Largest request head we read; larger heads get `431`.
const MAX_HEAD: usize = 8 * 1024;
/// How long a client may take to send its head, and later its FIN.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the accept loop waits in poll(2) before looking at the stop flag again; a
/// connection is accepted as soon as it arrives, so this only bounds how long a drop takes.
const ACCEPT_POLL_MS: u64 = 20;
/// Connections served at once; beyond this the accept thread serves them itself.
const MAX_CONCURRENT: usize = 64;

const BODY: &str = "tcpshake lab peer\n";

/// A running lab HTTP peer. Dropping it stops it.
#[derive(Debug)]
pub struct HttpPeer {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    addrs: Vec<SocketAddr>,
}

impl HttpPeer {
    /// Listens on every address in `addrs` (port 0 picks one; see [`HttpPeer::local_addrs`]).
    pub fn start(addrs: &[SocketAddr]) -> anyhow::Result<HttpPeer> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut peer = HttpPeer {
            stop: Arc::clone(&stop),
            threads: Vec::new(),
            addrs: Vec::new(),
        };
        for &addr in addrs {
            let listener = TcpListener::bind(addr).with_context(|| {
                format!("lab peer: cannot listen on {addr} (port in use, or address not configured here?)")
            })?;
            listener.set_nonblocking(true)?;
            peer.addrs.push(listener.local_addr()?);
            let stop = Arc::clone(&stop);
            let h = std::thread::Builder::new()
                .name(format!("lab-peer {addr}"))
                .spawn(move || accept_loop(listener, &stop))
                .context("lab peer: spawning accept thread")?;
            // Pushed before the next bind can fail, so Drop stops and joins it.
            peer.threads.push(h);
        }
        Ok(peer)
    }

    /// The addresses actually listened on.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }
}

impl Drop for HttpPeer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for h in self.threads.drain(..) {
            let _ = h.join();
        }
    }
}

fn accept_loop(listener: TcpListener, stop: &AtomicBool) {
    let mut workers: Vec<JoinHandle<()>> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                workers.retain(|w| !w.is_finished());
                if workers.len() >= MAX_CONCURRENT {
                    serve(stream);
                } else {
                    // If the thread cannot be spawned the stream is dropped: the
                    // client sees a close, and the peer keeps serving.
                    if let Ok(h) = std::thread::Builder::new()
                        .name("lab-peer conn".into())
                        .spawn(move || serve(stream))
                    {
                        workers.push(h);
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => wait_readable(&listener),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // ECONNABORTED, EMFILE, ...: back off a little and keep serving.
            Err(_) => std::thread::sleep(Duration::from_millis(ACCEPT_POLL_MS)),
        }
    }
    for w in workers {
        let _ = w.join();
    }
}

/// Waits until `listener` has a connection to accept, or ACCEPT_POLL_MS passed. Errors
/// (EINTR) just end this wait early.
fn wait_readable(listener: &TcpListener) {
    let _ = tcpshake_io::poll::wait_readable(
        &[listener.as_fd()],
        Some(Duration::from_millis(ACCEPT_POLL_MS)),
    );
}

/// Serves one connection: read the head, answer, close first, then wait (bounded) for the
/// client's FIN so the kernel does not turn our close into a RST (RFC 9293 §3.6: closing
/// with unread data aborts).
fn serve(mut stream: TcpStream) {
    if stream.set_nonblocking(false).is_err()
        || stream.set_read_timeout(Some(IO_TIMEOUT)).is_err()
        || stream.set_write_timeout(Some(IO_TIMEOUT)).is_err()
    {
        return;
    }
    let response = match read_head(&mut stream) {
        Head::Complete(head) => respond(&head),
        Head::TooLarge => simple(
            431,
            "Request Header Fields Too Large",
            "request head too large\n",
        ),
        Head::Gone => return,
    };
    if stream.write_all(&response).is_err() {
        return;
    }
    let _ = stream.shutdown(Shutdown::Write);
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut sink = [0u8; 1024];
    while Instant::now() < deadline {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
}

enum Head {
    Complete(Vec<u8>),
    TooLarge,
    Gone,
}

fn read_head(stream: &mut TcpStream) -> Head {
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while Instant::now() < deadline {
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return Head::Gone,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if let Some(end) = find_subslice(&buf, b"\r\n\r\n")
            && end + 4 <= MAX_HEAD
        {
            buf.truncate(end + 4);
            return Head::Complete(buf);
        }
        if buf.len() > MAX_HEAD {
            return Head::TooLarge;
        }
    }
    Head::Gone
}

fn find_subslice(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The response to a complete request head.
fn respond(head: &[u8]) -> Vec<u8> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => match req.method {
            Some("GET") => ok(true),
            Some("HEAD") => ok(false),
            _ => {
                let mut r = simple(405, "Method Not Allowed", "only GET and HEAD\n");
                // Insert Allow before the blank line (RFC 9110 §15.5.6 requires it).
                let at = r.len() - 2 - "only GET and HEAD\n".len();
                r.splice(at..at, b"Allow: GET, HEAD\r\n".iter().copied());
                r
            }
        },
        _ => simple(400, "Bad Request", "malformed request\n"),
    }
}

fn ok(with_body: bool) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 200 OK\r\nServer: tcpshake-lab\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        BODY.len()
    )
    .into_bytes();
    if with_body {
        r.extend_from_slice(BODY.as_bytes());
    }
    r
}

fn simple(code: u16, reason: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {code} {reason}\r\nServer: tcpshake-lab\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `req` to the peer and returns the whole response (the peer closes first).
    fn exchange(addr: SocketAddr, req: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.write_all(req).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn answers_head_get_and_refuses_others_on_loopback() {
        let peer = HttpPeer::start(&["127.0.0.1:0".parse().unwrap()]).unwrap();
        let addr = peer.local_addrs()[0];
        let head = exchange(addr, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("Server: tcpshake-lab\r\n"));
        assert!(head.contains("Connection: close\r\n"));
        assert!(head.contains(&format!("Content-Length: {}\r\n", BODY.len())));
        assert!(head.ends_with("\r\n\r\n"));
        let get = exchange(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(get.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(get.ends_with(&format!("\r\n\r\n{BODY}")));
        let post = exchange(addr, b"POST / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(post.starts_with("HTTP/1.1 405 "), "{post}");
        assert!(post.contains("Allow: GET, HEAD\r\n\r\n"), "{post}");
        let bad = exchange(addr, b"\x01\x02 nonsense\r\n\r\n");
        assert!(bad.starts_with("HTTP/1.1 400 "), "{bad}");
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        let big = exchange(addr, big.as_bytes());
        assert!(big.starts_with("HTTP/1.1 431 "), "{big}");
    }

    #[test]
    fn drop_stops_listening() {
        let peer = HttpPeer::start(&["127.0.0.1:0".parse().unwrap()]).unwrap();
        let addr = peer.local_addrs()[0];
        let t0 = Instant::now();
        drop(peer);
        assert!(t0.elapsed() < Duration::from_secs(1));
        assert!(TcpStream::connect(addr).is_err());
    }

    #[test]
    fn bind_failure_names_the_address() {
        let first = HttpPeer::start(&["127.0.0.1:0".parse().unwrap()]).unwrap();
        let taken = first.local_addrs()[0];
        let err = HttpPeer::start(&["127.0.0.1:0".parse().unwrap(), taken]).unwrap_err();
        assert!(format!("{err:#}").contains(&taken.to_string()), "{err:#}");
    }
}

//! HTTPS over the hand-made connection: a rustls [`ClientConnection`] used sans-IO.
//!
//! rustls never sees a socket. Bytes that `tcp` delivers in order (`Event::Data`) go into
//! `read_tls`; whatever `write_tls` produces goes out through `Connection::send`. So every
//! TLS record rides in segments tcpshake made, and every TLS leg is a difference of two
//! kernel timestamps from the segment log, like the TCP legs.
//!
//! What each TLS leg measures (all start at the segment carrying the first byte of our
//! ClientHello, RFC 8446 §4.1.2):
//!
//! | leg | ends at |
//! |---|---|
//! | `tls_clienthello_to_serverhello` | the incoming segment whose bytes let rustls finish the record holding the ServerHello (RFC 8446 §4.1.3): the first segment after which the negotiated version is known |
//! | `tls_clienthello_to_server_finished` | the incoming segment after which rustls left the handshake (`is_handshaking()` turned false): its bytes completed the server's Finished (RFC 8446 §4.4.4, RFC 5246 §7.4.9) |
//! | `tls_clienthello_to_client_finished` | our segment carrying the last byte rustls wrote while handshaking: our Finished. In TLS 1.3 it follows the server's Finished; in a full TLS 1.2 handshake it precedes it (RFC 5246 §7.3, client speaks first) |
//! | `tls_syn_to_appconnect` | from our first SYN to the later of the two Finished segments: when HTTP may flow, what curl calls `time_appconnect` |
//! | `tls_close_notify_to_fin` | the first close_notify on the wire (either side, RFC 8446 §6.1) → the first FIN |
//!
//! With TLS, `request_to_first_byte` starts at the segment carrying the first byte of the
//! encrypted request and ends at the first incoming segment that gave rustls response
//! plaintext (a TLS 1.3 NewSessionTicket in between does not count).
//!
//! Certificate verification (webpki, against the trust anchors the caller loaded) uses the
//! probe's own time, the kernel timestamp of the segment being handled, never the clock,
//! so this module stays pure and testable. The only thing rustls draws for itself is its
//! randomness (client random, key shares), which TLS cannot do without.

use super::Phase;
use super::legs::Measured;
use super::record::{CertRecord, Dir, Leg, SegmentRecord, TlsRecord};
use crate::time::Instant;
use crate::wire::http::head_request;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::time_provider::TimeProvider;
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the caller decided before the probe: whom to expect, whom to trust.
#[derive(Clone, Debug)]
pub struct TlsSetup {
    /// Sent as SNI when it is a name (RFC 6066 §3: never an address), and what the
    /// certificate must be valid for.
    pub server_name: ServerName<'static>,
    pub roots: Arc<RootCertStore>,
    /// Where `roots` came from, for the report: `system` or the `--cacert` path.
    pub roots_from: String,
    /// Report a failed verification but finish the exchange anyway.
    pub insecure: bool,
    /// How the messages name that setting where this setup came from: `--insecure` on
    /// the command line, a module's `insecure = true` in the exporter's configuration.
    pub insecure_hint: &'static str,
    /// Where to write the session's secrets in NSS key log format, so tshark can decrypt
    /// a capture (`SSLKEYLOGFILE`, as curl and browsers do); None: nowhere.
    pub key_log: Option<Arc<dyn rustls::KeyLog>>,
}

/// The probe's notion of "now" for rustls: the timestamp of the input being handled.
#[derive(Debug, Default)]
struct ProbeTime(AtomicU64);

impl TimeProvider for ProbeTime {
    fn current_time(&self) -> Option<UnixTime> {
        Some(UnixTime::since_unix_epoch(Duration::from_nanos(
            self.0.load(Ordering::Relaxed),
        )))
    }
}

/// What the verifier saw: the chain as sent, and webpki's verdict.
#[derive(Debug, Default)]
struct Seen {
    chain: Vec<CertificateDer<'static>>,
    verdict: Option<Result<(), String>>,
}

/// Runs webpki's verification and remembers its verdict, so a failure is reported even when
/// `--insecure` lets the handshake go on.
#[derive(Debug)]
struct RecordingVerifier {
    /// None when there are no trust anchors at all (nothing can verify).
    webpki: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
    insecure: bool,
    seen: Arc<Mutex<Seen>>,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let result = match &self.webpki {
            Some(v) => v
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                .map(|_| ()),
            None => Err(rustls::Error::General(
                "no trust anchors were loaded (install ca-certificates or give --cacert)".into(),
            )),
        };
        if let Ok(mut seen) = self.seen.lock() {
            seen.chain = std::iter::once(end_entity)
                .chain(intermediates)
                .map(|c| c.clone().into_owned())
                .collect();
            // The words may quote the certificate's own names (webpki's, unescaped).
            seen.verdict = Some(result.as_ref().map(|_| ()).map_err(|e| match e {
                rustls::Error::InvalidCertificate(ce) => {
                    no_controls(&certificate_words(ce, &name_text(server_name)))
                }
                other => no_controls(&other.to_string()),
            }));
        }
        match result {
            Ok(()) => Ok(ServerCertVerified::assertion()),
            Err(_) if self.insecure => Ok(ServerCertVerified::assertion()),
            Err(e) => Err(e),
        }
    }

    // The handshake signatures are always checked: even with --insecure, the keys must
    // belong to the certificate the server showed (RFC 8446 §4.4.3).
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// What one batch of delivered bytes produced.
#[derive(Debug, Default)]
pub struct TlsStep {
    /// TLS bytes to send (handshake flights, alerts).
    pub to_send: Vec<u8>,
    /// Decrypted application data.
    pub plaintext: Vec<u8>,
    /// The handshake finished with this batch: HTTP may flow now.
    pub handshake_done: bool,
    /// Fatal: the session is over (an alert, if any, is in `to_send`).
    pub error: Option<String>,
}

/// Offsets count bytes of our stream from 0 (the first byte after our SYN); marks of
/// incoming events are ids of the probe's segment log (probe/log.rs), turned into
/// positions among the kept records when the record is written.
#[derive(Clone, Copy, Debug, Default)]
struct Marks {
    serverhello: Option<usize>,
    server_finished: Option<usize>,
    /// One past the last byte of our Finished.
    client_finished_end: Option<u64>,
    request_at: Option<u64>,
    first_byte: Option<usize>,
    close_notify_out: Option<u64>,
    /// The segment whose bytes, once in order, let rustls read the server's close_notify.
    close_notify_in: Option<usize>,
    /// One past the last byte of the server's stream read when its close_notify was (the
    /// close_notify's end): finds the segment that carried it, which may have come before
    /// the one that delivered it (a hole before it filled later).
    close_notify_in_end: Option<u64>,
}

pub struct TlsSession {
    conn: ClientConnection,
    time: Arc<ProbeTime>,
    seen: Arc<Mutex<Seen>>,
    setup: TlsSetup,
    /// Bytes handed to TCP so far.
    tx_offset: u64,
    /// `tx_offset` after the last flight written while handshaking.
    hs_tx_end: u64,
    handshaking: bool,
    failed: bool,
    close_notify_sent: bool,
    /// First bytes from the server, to say what it spoke when it was not TLS.
    first_rx: Vec<u8>,
    /// Bytes of the server's stream handed to rustls so far (offset 0: IRS+1).
    rx_offset: u64,
    marks: Marks,
    error: Option<String>,
    /// When the handshake ended, for `days_to_expiry`.
    handshake_at: Option<Instant>,
}

/// ALPN we offer (RFC 7301): the request is HTTP/1.1.
const ALPN: &[u8] = b"http/1.1";

impl TlsSession {
    /// A client session for `setup`, its clock set to `now`.
    pub fn new(setup: TlsSetup, now: Instant) -> Result<TlsSession, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let time = Arc::new(ProbeTime(AtomicU64::new(now.as_nanos())));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let webpki = if setup.roots.is_empty() {
            None
        } else {
            Some(
                WebPkiServerVerifier::builder_with_provider(setup.roots.clone(), provider.clone())
                    .build()
                    .map_err(|e| format!("TLS: cannot build the certificate verifier: {e}"))?,
            )
        };
        let verifier = Arc::new(RecordingVerifier {
            webpki,
            algorithms: provider.signature_verification_algorithms,
            insecure: setup.insecure,
            seen: seen.clone(),
        });
        let mut config = ClientConfig::builder_with_details(
            provider as Arc<CryptoProvider>,
            time.clone() as Arc<dyn TimeProvider>,
        )
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
        config.alpn_protocols = vec![ALPN.to_vec()];
        if let Some(k) = &setup.key_log {
            config.key_log = k.clone();
        }
        // One exchange per run: nothing to resume.
        config.resumption = rustls::client::Resumption::disabled();
        let conn = ClientConnection::new(Arc::new(config), setup.server_name.clone())
            .map_err(|e| format!("TLS: {e}"))?;
        Ok(TlsSession {
            conn,
            time,
            seen,
            setup,
            tx_offset: 0,
            hs_tx_end: 0,
            handshaking: true,
            failed: false,
            close_notify_sent: false,
            first_rx: Vec::new(),
            rx_offset: 0,
            marks: Marks::default(),
            error: None,
            handshake_at: None,
        })
    }

    pub fn is_handshaking(&self) -> bool {
        self.handshaking && !self.failed
    }

    /// The ClientHello (RFC 8446 §4.1.2), to send right after the TCP handshake.
    pub fn client_hello(&mut self) -> Vec<u8> {
        let out = self.flush();
        self.hs_tx_end = self.tx_offset;
        out
    }

    /// Everything rustls has queued for the wire.
    fn flush(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        // Bounded: each call moves at least one queued record; a handful are queued.
        for _ in 0..64 {
            if !self.conn.wants_write() {
                break;
            }
            match self.conn.write_tls(&mut out) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        self.tx_offset += out.len() as u64;
        out
    }

    /// Feed bytes the server sent, delivered in order by `tcp` at `at` by the segment at
    /// `seg` of the log.
    pub fn handle_data(&mut self, at: Instant, bytes: &[u8], seg: Option<usize>) -> TlsStep {
        let mut step = TlsStep::default();
        if self.failed {
            return step;
        }
        self.time.0.store(at.as_nanos(), Ordering::Relaxed);
        if self.first_rx.len() < 16 {
            let take = (16 - self.first_rx.len()).min(bytes.len());
            self.first_rx.extend_from_slice(&bytes[..take]);
        }
        let base = self.rx_offset;
        self.rx_offset += bytes.len() as u64;
        let mut rest = bytes;
        // Bounded: every round consumes bytes or ends.
        for _ in 0..(bytes.len() + 2) {
            if rest.is_empty() {
                break;
            }
            match self.conn.read_tls(&mut rest) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    self.fail_with(
                        &mut step,
                        format!("TLS: cannot take the server's bytes: {e}"),
                    );
                    return step;
                }
            }
            match self.conn.process_new_packets() {
                Ok(io) => {
                    if io.peer_has_closed() && self.marks.close_notify_in.is_none() {
                        self.marks.close_notify_in = seg;
                        let read = (bytes.len() - rest.len()) as u64;
                        self.marks.close_notify_in_end = Some(base + read);
                    }
                }
                Err(e) => {
                    // The ServerHello may have come in the same batch as what failed.
                    if self.marks.serverhello.is_none() && self.conn.protocol_version().is_some() {
                        self.marks.serverhello = seg;
                    }
                    // rustls queued an alert for the server if one is due (RFC 8446 §6.2).
                    step.to_send = self.flush();
                    let why = self.describe_error(&e);
                    self.fail_with(&mut step, why);
                    return step;
                }
            }
            if self.marks.serverhello.is_none() && self.conn.protocol_version().is_some() {
                self.marks.serverhello = seg;
            }
            self.read_plaintext(&mut step.plaintext);
        }
        let out = self.flush();
        if self.handshaking {
            if !out.is_empty() {
                self.hs_tx_end = self.tx_offset;
            }
            if !self.conn.is_handshaking() {
                self.handshaking = false;
                step.handshake_done = true;
                self.handshake_at = Some(at);
                self.marks.server_finished = seg;
                self.marks.client_finished_end = Some(self.hs_tx_end);
            }
        }
        step.to_send.extend_from_slice(&out);
        if !step.plaintext.is_empty() && self.marks.first_byte.is_none() {
            self.marks.first_byte = seg;
        }
        step
    }

    fn read_plaintext(&mut self, into: &mut Vec<u8>) {
        let mut buf = [0u8; 4096];
        // Bounded: rustls holds at most a few records of plaintext.
        for _ in 0..1024 {
            match self.conn.reader().read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => into.extend_from_slice(&buf[..n]),
            }
        }
    }

    fn fail_with(&mut self, step: &mut TlsStep, why: String) {
        self.failed = true;
        self.error.get_or_insert(why.clone());
        step.error = Some(why);
    }

    fn describe_error(&self, e: &rustls::Error) -> String {
        let verdict = self.seen.lock().ok().and_then(|s| s.verdict.clone());
        if let Some(Err(why)) = verdict {
            return format!(
                "TLS: certificate verification failed for {}: {why} (trust: {}; {} to go on anyway)",
                name_text(&self.setup.server_name),
                self.setup.roots_from,
                self.setup.insecure_hint
            );
        }
        // A server that answers a ClientHello in cleartext sends what no TLS record starts
        // with (RFC 8446 §5.1: content type 20-24, then version 3.x): "HTTP/1.1 400 …"
        // from nginx, an HTML page from an HTTP/0.9-style answer (Python's http.server).
        let not_tls = match self.first_rx.as_slice() {
            [ty, major, ..] => !(20..=24).contains(ty) || *major != 3,
            [ty] => !(20..=24).contains(ty),
            [] => false,
        };
        if not_tls {
            let shown = super::printable(&self.first_rx);
            let what = if self.first_rx.starts_with(b"HTTP/") {
                "in plain HTTP"
            } else {
                "with bytes that are not TLS"
            };
            return format!(
                "TLS: the server does not speak TLS on this port; it answered {what} (\"{shown}…\"): {e}"
            );
        }
        format!("TLS: {e}")
    }

    /// Encrypt `data` (the HTTP request) and return the records to send.
    pub fn send_plaintext(&mut self, data: &[u8]) -> Vec<u8> {
        if self.failed {
            return Vec::new();
        }
        self.marks.request_at.get_or_insert(self.tx_offset);
        let _ = self.conn.writer().write_all(data);
        self.flush()
    }

    /// Our close_notify (RFC 8446 §6.1), once; empty after a fatal error (the alert said
    /// it). `peer_fin`: the server's FIN is in. When the server sent close_notify and then
    /// FIN, it has closed its socket (nginx does, and so did the server close first
    /// because we asked for `Connection: close`): our close_notify would reach a closed
    /// socket and draw a RST (RFC 1122 §4.2.2.13), so the bare FIN closes instead, as
    /// browsers do; `tls.close_notify_sent` says which happened.
    pub fn close_notify(&mut self, peer_fin: bool) -> Vec<u8> {
        if self.failed || self.close_notify_sent {
            return Vec::new();
        }
        if peer_fin && self.marks.close_notify_in.is_some() {
            return Vec::new();
        }
        self.close_notify_sent = true;
        self.marks.close_notify_out = Some(self.tx_offset);
        self.conn.send_close_notify();
        self.flush()
    }

    /// The server closed its side (FIN) while we were still handshaking.
    pub fn closed_mid_handshake(&mut self) -> String {
        let got = self.first_rx.len();
        let why = if got == 0 {
            "TLS: the server closed the connection during the handshake, before sending anything (after our ClientHello)".to_string()
        } else if self.conn.protocol_version().is_some() {
            "TLS: the server closed the connection during the handshake, after its ServerHello"
                .to_string()
        } else {
            "TLS: the server closed the connection during the handshake, before a complete ServerHello".to_string()
        };
        self.failed = true;
        self.error.get_or_insert(why.clone());
        why
    }

    /// Whether segment `seg` of the log is one of this session's marks (the log keeps it).
    pub fn marks_segment(&self, seg: usize) -> bool {
        let m = &self.marks;
        [
            m.serverhello,
            m.server_finished,
            m.first_byte,
            m.close_notify_in,
        ]
        .contains(&Some(seg))
    }

    /// This session's marks as positions of `log` (`pos`: where a log id was kept).
    fn marks_in(&self, pos: &dyn Fn(usize) -> Option<usize>) -> Marks {
        let p = |m: Option<usize>| m.and_then(pos);
        Marks {
            serverhello: p(self.marks.serverhello),
            server_finished: p(self.marks.server_finished),
            first_byte: p(self.marks.first_byte),
            close_notify_in: p(self.marks.close_notify_in),
            ..self.marks
        }
    }

    /// The TLS legs, plus the request legs re-measured from the encrypted request
    /// (`response_complete`: the segment that completed the HTTP response head, a position
    /// of `log`; `pos`: where each log id is in `log`).
    pub fn legs(
        &self,
        log: &[SegmentRecord],
        isn: u32,
        response_complete: Option<usize>,
        legs: &mut Measured,
        pos: &dyn Fn(usize) -> Option<usize>,
    ) {
        let marks = self.marks_in(pos);
        let hello = out_segment(log, isn, 0);
        let later = |a: usize, b: usize| if log[a].ts_ns >= log[b].ts_ns { a } else { b };
        let client_finished = self
            .marks
            .client_finished_end
            .filter(|&end| end > 0)
            .and_then(|end| out_segment(log, isn, end - 1));
        legs.between(
            log,
            Leg::TlsClienthelloToServerhello,
            hello,
            marks.serverhello,
        );
        legs.between(
            log,
            Leg::TlsClienthelloToServerFinished,
            hello,
            marks.server_finished,
        );
        legs.between(
            log,
            Leg::TlsClienthelloToClientFinished,
            hello,
            client_finished,
        );
        let first_syn = log
            .iter()
            .position(|r| r.dir == Dir::Out && r.flags.syn() && !r.foreign);
        let appconnect = match (marks.server_finished, client_finished) {
            (Some(a), Some(b)) => Some(later(a, b)),
            _ => None,
        };
        legs.between(log, Leg::TlsSynToAppconnect, first_syn, appconnect);
        let first_notify = match (
            close_notify_out_segment(&marks, log, isn),
            close_notify_in_segment(&marks, log),
        ) {
            (Some(a), Some(b)) => Some(if later(a, b) == a { b } else { a }),
            (a, b) => a.or(b),
        };
        let first_fin = log
            .iter()
            .position(|r| r.flags.fin() && !r.flags.syn() && !r.foreign && !r.bad_checksum);
        legs.between(log, Leg::TlsCloseNotifyToFin, first_notify, first_fin);

        // The HTTP legs start at the encrypted request, not at the ClientHello.
        let request = self.request_segment(log, isn);
        legs.between(log, Leg::RequestToFirstByte, request, marks.first_byte);
        legs.between(log, Leg::RequestToComplete, request, response_complete);
    }

    /// The segments of the ClientHello (its first byte) and of the ServerHello (the one
    /// that completed its record), as positions of `log` (`pos`: where each log id is).
    pub fn hello_segments(
        &self,
        log: &[SegmentRecord],
        isn: u32,
        pos: &dyn Fn(usize) -> Option<usize>,
    ) -> (Option<usize>, Option<usize>) {
        (
            out_segment(log, isn, 0),
            self.marks.serverhello.and_then(pos),
        )
    }

    /// Where the first byte of the encrypted request is in our stream (0 is the first
    /// byte after the SYN), once the request was handed to the session.
    pub fn request_offset(&self) -> Option<u64> {
        self.marks.request_at
    }

    /// The segment carrying the first byte of the encrypted request.
    pub fn request_segment(&self, log: &[SegmentRecord], isn: u32) -> Option<usize> {
        self.marks.request_at.and_then(|o| out_segment(log, isn, o))
    }

    /// The `tls` object of the record (`pos`: where each log id is in `log`).
    pub fn record(
        &self,
        log: &[SegmentRecord],
        isn: u32,
        pos: &dyn Fn(usize) -> Option<usize>,
    ) -> TlsRecord {
        let marks = self.marks_in(pos);
        let seen = self
            .seen
            .lock()
            .map(|s| (s.chain.clone(), s.verdict.clone()));
        let (chain, verdict) = seen.unwrap_or_default();
        let now = self
            .handshake_at
            .map(|i| (i.as_nanos() / 1_000_000_000) as i64)
            .unwrap_or_else(|| (self.time.0.load(Ordering::Relaxed) / 1_000_000_000) as i64);
        let close_notify_first = match (
            close_notify_out_segment(&marks, log, isn),
            close_notify_in_segment(&marks, log),
        ) {
            (Some(a), Some(b)) if log[a].ts_ns <= log[b].ts_ns => Some("client"),
            (Some(_), Some(_)) | (None, Some(_)) => Some("server"),
            (Some(_), None) => Some("client"),
            (None, None) => None,
        };
        TlsRecord {
            version: self.conn.protocol_version().map(version_text),
            cipher_suite: self
                .conn
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite())),
            alpn: self
                .conn
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            // Known once the key exchange completed (rustls' `KxState::Complete`: TLS
            // 1.3's ServerHello, 1.2's ServerKeyExchange), so also when the handshake
            // failed after it — a certificate refused — as the version and suite are.
            key_exchange_group: self
                .conn
                .negotiated_key_exchange_group()
                .map(|g| format!("{:?}", g.name())),
            sni: match &self.setup.server_name {
                ServerName::DnsName(n) => Some(n.as_ref().to_string()),
                _ => None,
            },
            server_name: name_text(&self.setup.server_name),
            trust: self.setup.roots_from.clone(),
            verified: verdict.as_ref().map(Result::is_ok),
            verify_error: verdict.and_then(Result::err),
            insecure: self.setup.insecure,
            certificates: chain.iter().filter_map(|c| cert_record(c, now)).collect(),
            close_notify_first: close_notify_first.map(String::from),
            close_notify_sent: self.close_notify_sent,
            error: self.error.clone(),
        }
    }
}

/// Why the server's certificate was refused, in words a user acts on (as curl and openssl
/// say it: "self-signed certificate", "certificate has expired"), where rustls writes
/// some of its reasons as Rust's debug text (`Other(OtherError(CaUsedAsEndEntity))`,
/// `DnsName("…")`). `name`: the name or address we verified against.
fn certificate_words(e: &rustls::CertificateError, name: &str) -> String {
    use rustls::CertificateError as C;
    // webpki names a certificate's subjectAltNames `DnsName("a.test")`, `IpAddress(198.18.0.2)`.
    let bare = |n: &String| {
        let inner = n
            .split_once('(')
            .and_then(|(_, rest)| rest.strip_suffix(')'))
            .unwrap_or(n);
        inner.trim_matches('"').to_string()
    };
    match e {
        C::UnknownIssuer => "its issuer is not trusted: a self-signed certificate, or one \
             signed by a CA the trust store does not hold"
            .into(),
        C::BadSignature => "its signature does not verify".into(),
        C::Expired => "it has expired".into(),
        C::ExpiredContext { not_after, .. } => format!(
            "it expired at {}",
            rfc3339(i64::try_from(not_after.as_secs()).unwrap_or(i64::MAX))
        ),
        C::NotValidYet => "it is not valid yet".into(),
        C::NotValidYetContext { not_before, .. } => format!(
            "it is not valid before {}",
            rfc3339(i64::try_from(not_before.as_secs()).unwrap_or(i64::MAX))
        ),
        C::Revoked => "it has been revoked".into(),
        C::NotValidForName => format!("it is not for {name}"),
        C::NotValidForNameContext { presented, .. } if !presented.is_empty() => {
            let names: Vec<String> = presented.iter().map(bare).collect();
            format!("it is for {}, not for {name}", names.join(", "))
        }
        C::NotValidForNameContext { .. } => {
            format!("it names no host (no subjectAltName), so not {name}")
        }
        C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
            "its extended key usage does not allow a TLS server".into()
        }
        C::Other(o) if o.to_string().contains("CaUsedAsEndEntity") => {
            "the server sent a CA's certificate as its own (a CA certificate used as the \
             server's; give that CA with --cacert and use a server certificate it signed)"
                .into()
        }
        other => other.to_string(),
    }
}

fn name_text(n: &ServerName<'_>) -> String {
    match n {
        ServerName::DnsName(d) => d.as_ref().to_string(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        other => format!("{other:?}"),
    }
}

fn version_text(v: rustls::ProtocolVersion) -> String {
    match v {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".into(),
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".into(),
        other => format!("{other:?}"),
    }
}

/// The server's segment that carried the last byte of its close_notify as it first came
/// (RFC 9293 §3.10.7.4: a segment past a hole is queued, and read when the hole fills): with
/// the segment before it lost, the close_notify and the FIN after it are on the wire long
/// before the retransmission delivers them, and `tls_close_notify_to_fin` is from the
/// wire, as `fin_to_ack` is from the FIN as it came, in order or not. Falls back to the
/// segment that delivered it.
fn close_notify_in_segment(marks: &Marks, log: &[SegmentRecord]) -> Option<usize> {
    let carried = marks
        .close_notify_in_end
        .filter(|&e| e > 0)
        .and_then(|end| {
            let irs = log
                .iter()
                .find(|r| r.dir == Dir::In && r.flags.syn() && r.flags.ack() && !r.foreign)?
                .seq;
            in_segment(log, irs, end - 1)
        });
    carried.or(marks.close_notify_in)
}

/// The first incoming segment (in the order they came) whose payload holds byte `offset` of
/// the server's stream (offset 0 is IRS+1).
fn in_segment(log: &[SegmentRecord], irs: u32, offset: u64) -> Option<usize> {
    let first = irs.wrapping_add(1);
    log.iter().position(|r| {
        let start = u64::from(r.seq.wrapping_sub(first));
        r.dir == Dir::In
            && !r.foreign
            && !r.bad_checksum
            && r.len > 0
            && !r.flags.syn()
            && start <= offset
            && offset < start + u64::from(r.len)
    })
}

/// Our segment that carried the first byte of our close_notify.
fn close_notify_out_segment(marks: &Marks, log: &[SegmentRecord], isn: u32) -> Option<usize> {
    marks
        .close_notify_out
        .and_then(|o| out_segment(log, isn, o))
}

/// The first outgoing segment (as first sent) whose payload holds byte `offset` of our
/// stream (offset 0 is ISN+1, RFC 9293 §3.4).
pub(super) fn out_segment(log: &[SegmentRecord], isn: u32, offset: u64) -> Option<usize> {
    let first = isn.wrapping_add(1);
    log.iter().position(|r| {
        let start = u64::from(r.seq.wrapping_sub(first));
        r.dir == Dir::Out
            && !r.foreign
            && r.len > 0
            && !r.flags.syn()
            && start <= offset
            && offset < start + u64::from(r.len)
    })
}

/// Subject, issuer, SANs and validity of one DER certificate; None if it does not parse.
fn cert_record(der: &CertificateDer<'_>, now_unix: i64) -> Option<CertRecord> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let mut sans = Vec::new();
    if let Ok(Some(ext)) = cert.subject_alternative_name() {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(d) => sans.push(no_controls(d)),
                GeneralName::IPAddress(b) => match b.len() {
                    4 => {
                        let a: [u8; 4] = (*b).try_into().ok()?;
                        sans.push(std::net::Ipv4Addr::from(a).to_string());
                    }
                    16 => {
                        let a: [u8; 16] = (*b).try_into().ok()?;
                        sans.push(std::net::Ipv6Addr::from(a).to_string());
                    }
                    _ => {}
                },
                _ => {}
            }
        }
    }
    let validity = cert.validity();
    let (nb, na) = (
        validity.not_before.timestamp(),
        validity.not_after.timestamp(),
    );
    Some(CertRecord {
        subject: no_controls(&cert.subject().to_string()),
        issuer: no_controls(&cert.issuer().to_string()),
        sans,
        not_before: rfc3339(nb),
        not_after: rfc3339(na),
        days_to_expiry: (na - now_unix).div_euclid(86_400),
    })
}

/// A certificate's text as the server wrote it, control characters escaped (`\u{1b}`): a
/// name is printed on the user's terminal, and an escape sequence in it must not act there.
fn no_controls(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (RFC 3339), proleptic Gregorian, UTC.
pub fn rfc3339(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's days_from_civil, inverted).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// The probe's side of TLS: where the plain-HTTP probe sends its request and takes
/// response bytes, a TLS probe runs the session first.
impl super::Probe {
    /// Before the SYN: build the session and its ClientHello (rustls writes it, key
    /// shares included, right away), so none of that work delays our ACK of the SYN-ACK —
    /// and the ACK it rides on is known before the SYN leaves (`Probe::handshake_ack`).
    pub(super) fn tls_prepare(&mut self, now: Instant) {
        if let Some(setup) = self.cfg.tls.clone() {
            match TlsSession::new(setup, now) {
                Ok(mut session) => {
                    self.tls_hello = Some(session.client_hello());
                    self.tls = Some(session);
                }
                Err(why) => self.tls_setup_error = Some(why),
            }
        }
    }

    /// ESTABLISHED with TLS asked for: send the ClientHello.
    pub(super) fn tls_start(&mut self, now: Instant) {
        match self.tls.as_mut() {
            Some(session) => {
                let hello = self
                    .tls_hello
                    .take()
                    .unwrap_or_else(|| session.client_hello());
                self.conn.send(&hello);
                self.phase = Phase::AwaitingResponse;
                self.wait_from(now, now + self.cfg.timeout);
            }
            None => {
                let why = self.tls_setup_error.take();
                self.fail(now, why.unwrap_or_else(|| "TLS: no session".into()));
            }
        }
    }

    /// In-order bytes from the server, delivered by the segment at `caused_by`.
    pub(super) fn tls_on_data(&mut self, at: Instant, bytes: &[u8], caused_by: Option<usize>) {
        let Some(session) = self.tls.as_mut() else {
            return;
        };
        let step = session.handle_data(at, bytes, caused_by);
        if let Some(i) = caused_by.filter(|&i| session.marks_segment(i)) {
            self.log.pin(i);
        }
        if !step.to_send.is_empty() {
            self.conn.send(&step.to_send);
        }
        if let Some(why) = step.error {
            // Never silent: the alert (if any) is on its way; close after it with a FIN.
            self.error.get_or_insert(why);
            if matches!(self.phase, Phase::AwaitingResponse | Phase::Lingering) {
                self.begin_close(at);
            }
            return;
        }
        if step.handshake_done {
            let verdict = session.seen.lock().ok().and_then(|s| s.verdict.clone());
            if let Some(Err(why)) = verdict {
                let setting = self
                    .cfg
                    .tls
                    .as_ref()
                    .map_or("--insecure", |t| t.insecure_hint);
                self.note(format!(
                    "certificate verification failed, going on because of {setting}: {why}"
                ));
            }
            match self.cfg.http.clone() {
                Some(req) => {
                    let Some(session) = self.tls.as_mut() else {
                        return;
                    };
                    let ua = concat!("tcpshake/", env!("CARGO_PKG_VERSION"));
                    let records = session.send_plaintext(&head_request(&req.path, &req.host, ua));
                    self.conn.send(&records);
                    self.wait_from(at, at + self.cfg.timeout);
                }
                None => self.begin_close(at),
            }
        }
        if !step.plaintext.is_empty() {
            self.on_data(at, &step.plaintext, caused_by);
        }
    }
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;

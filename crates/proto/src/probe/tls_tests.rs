//! The TLS session against a rustls server in memory: no sockets, no clock (the probe's
//! time is an argument), certificates made here with rcgen.

use super::*;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    date_time_ymd,
};
use rustls::pki_types::PrivateKeyDer;
use rustls::{ServerConfig, ServerConnection, SupportedProtocolVersion};

/// 2023-11-14T22:13:20Z.
const T0: u64 = 1_700_000_000_000_000_000;

fn at(ms: u64) -> Instant {
    Instant::from_nanos(T0 + ms * 1_000_000)
}

struct Pki {
    ca: CertificateDer<'static>,
    leaf: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

/// A test CA and a leaf for `lab.test` and 198.18.0.2, valid from..until (years).
fn pki(from: i32, until: i32) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name
        .push(DnType::CommonName, "tcpshake unit CA");
    ca.not_before = date_time_ymd(2020, 1, 1);
    ca.not_after = date_time_ymd(2040, 1, 1);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["lab.test".into(), "198.18.0.2".into()]).unwrap();
    leaf.distinguished_name.push(DnType::CommonName, "lab.test");
    leaf.not_before = date_time_ymd(from, 1, 1);
    leaf.not_after = date_time_ymd(until, 1, 1);
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    Pki {
        ca: ca_cert.der().clone(),
        leaf: leaf_cert.der().clone(),
        key: PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
    }
}

fn server(pki: &Pki, version: &'static SupportedProtocolVersion) -> ServerConnection {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![pki.leaf.clone()], pki.key.clone_key())
        .unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    ServerConnection::new(Arc::new(cfg)).unwrap()
}

fn setup(pki: &Pki, name: &str, insecure: bool) -> TlsSetup {
    let mut roots = RootCertStore::empty();
    roots.add(pki.ca.clone()).unwrap();
    TlsSetup {
        server_name: ServerName::try_from(name.to_string()).unwrap(),
        roots: Arc::new(roots),
        roots_from: "unit CA".into(),
        insecure,
        insecure_hint: "--insecure",
        key_log: None,
    }
}

/// What the exchange showed, flight by flight.
#[derive(Default)]
struct Outcome {
    /// Client bytes per flight (index = the server flight it answered, +1; 0 = ClientHello).
    client_flights: Vec<usize>,
    plaintext: Vec<u8>,
    handshake_done_at: Option<usize>,
    error: Option<(usize, String)>,
    server_error: Option<String>,
}

/// Ping-pong between the session and the server; server flight `i` is "segment i". After
/// the handshake the client sends `HEAD /` and the server answers it.
fn exchange(session: &mut TlsSession, srv: &mut ServerConnection) -> Outcome {
    let mut out = Outcome::default();
    let mut c2s = session.client_hello();
    out.client_flights.push(c2s.len());
    let mut answered = false;
    for i in 0..10 {
        let mut rd = &c2s[..];
        while !rd.is_empty() {
            if srv.read_tls(&mut rd).unwrap() == 0 {
                break;
            }
        }
        if let Err(e) = srv.process_new_packets() {
            out.server_error = Some(e.to_string());
        }
        let mut req = Vec::new();
        let _ = std::io::Read::read_to_end(&mut srv.reader(), &mut req);
        if !req.is_empty() && !answered {
            answered = true;
            srv.writer()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
        }
        let mut s2c = Vec::new();
        while srv.wants_write() {
            srv.write_tls(&mut s2c).unwrap();
        }
        if s2c.is_empty() {
            break;
        }
        let step = session.handle_data(at(i as u64 + 1), &s2c, Some(i));
        out.plaintext.extend_from_slice(&step.plaintext);
        c2s = step.to_send;
        if step.handshake_done {
            out.handshake_done_at = Some(i);
            c2s.extend(session.send_plaintext(b"HEAD / HTTP/1.1\r\nHost: lab.test\r\n\r\n"));
        }
        out.client_flights.push(c2s.len());
        if let Some(e) = step.error {
            out.error = Some((i, e));
            // Deliver the alert, then stop.
            let mut rd = &c2s[..];
            let _ = srv.read_tls(&mut rd);
            if let Err(e) = srv.process_new_packets() {
                out.server_error = Some(e.to_string());
            }
            break;
        }
    }
    out
}

#[test]
fn tls13_good_chain_verifies_and_reports_everything() {
    let pki = pki(2020, 2030);
    let mut s = TlsSession::new(setup(&pki, "lab.test", false), at(0)).unwrap();
    let mut srv = server(&pki, &rustls::version::TLS13);
    let out = exchange(&mut s, &mut srv);
    assert_eq!(out.error, None);
    assert_eq!(
        out.handshake_done_at,
        Some(0),
        "1-RTT: the first server flight ends it"
    );
    assert!(out.plaintext.starts_with(b"HTTP/1.1 200 OK"));
    // TLS 1.3: ServerHello and Finished come in the same flight; our Finished follows it.
    assert_eq!(s.marks.serverhello, Some(0));
    assert_eq!(s.marks.server_finished, Some(0));
    let hello = out.client_flights[0] as u64;
    let finished_end = s.marks.client_finished_end.unwrap();
    assert!(
        finished_end > hello,
        "our Finished comes after the ClientHello"
    );
    assert_eq!(
        s.marks.request_at,
        Some(finished_end),
        "the request follows our Finished"
    );
    assert_eq!(s.marks.first_byte, Some(1));
    let r = s.record(&[], 0, &Some);
    assert_eq!(r.version.as_deref(), Some("TLSv1.3"));
    assert_eq!(r.alpn.as_deref(), Some("http/1.1"));
    assert!(
        r.cipher_suite.as_deref().unwrap().starts_with("TLS13_"),
        "{r:?}"
    );
    assert!(r.key_exchange_group.is_some(), "{r:?}");
    assert_eq!(r.sni.as_deref(), Some("lab.test"));
    assert_eq!((r.verified, r.verify_error.as_deref()), (Some(true), None));
    assert_eq!(r.certificates.len(), 1);
    let c = &r.certificates[0];
    assert_eq!(c.subject, "CN=lab.test");
    assert_eq!(c.issuer, "CN=tcpshake unit CA");
    assert_eq!(c.sans, ["lab.test", "198.18.0.2"]);
    assert_eq!(c.not_before, "2020-01-01T00:00:00Z");
    assert_eq!(c.not_after, "2030-01-01T00:00:00Z");
    // From 2023-11-14T22:13:20Z (T0 + 1 ms) to 2030-01-01: 2239 whole days (193 456 000 s).
    assert_eq!(c.days_to_expiry, 2239);
    assert_eq!(r.error, None);
}

#[test]
fn tls12_full_handshake_our_finished_precedes_the_servers() {
    let pki = pki(2020, 2030);
    let mut s = TlsSession::new(setup(&pki, "lab.test", false), at(0)).unwrap();
    let mut srv = server(&pki, &rustls::version::TLS12);
    let out = exchange(&mut s, &mut srv);
    assert_eq!(out.error, None);
    // RFC 5246 §7.3: ServerHello…ServerHelloDone, then our Finished, then the server's.
    assert_eq!(out.handshake_done_at, Some(1));
    assert_eq!(s.marks.serverhello, Some(0));
    assert_eq!(s.marks.server_finished, Some(1));
    let after_second_flight = (out.client_flights[0] + out.client_flights[1]) as u64;
    assert_eq!(s.marks.client_finished_end, Some(after_second_flight));
    let r = s.record(&[], 0, &Some);
    assert_eq!(r.version.as_deref(), Some("TLSv1.2"));
    assert!(
        r.cipher_suite.as_deref().unwrap().starts_with("TLS_ECDHE_"),
        "{r:?}"
    );
    assert_eq!(r.verified, Some(true));
    assert!(out.plaintext.starts_with(b"HTTP/1.1 200 OK"));
}

#[test]
fn wrong_name_fails_verification_and_alerts_the_server() {
    let pki = pki(2020, 2030);
    let mut s = TlsSession::new(setup(&pki, "wrong.test", false), at(0)).unwrap();
    let mut srv = server(&pki, &rustls::version::TLS13);
    let out = exchange(&mut s, &mut srv);
    let (_, why) = out.error.expect("verification must fail");
    assert!(
        why.contains("certificate verification failed for wrong.test"),
        "{why}"
    );
    assert!(why.contains(", not for wrong.test"), "{why}");
    assert!(!why.contains("DnsName("), "no debug text: {why}");
    assert!(out.server_error.is_some(), "the server got our alert");
    let r = s.record(&[], 0, &Some);
    assert_eq!(r.verified, Some(false));
    assert!(
        r.verify_error
            .as_deref()
            .unwrap_or("")
            .contains("wrong.test")
    );
    assert_eq!(
        r.certificates.len(),
        1,
        "the chain is reported even when it fails"
    );
    // What was agreed before the certificate was refused: version, suite and group.
    assert!(
        r.version.is_some() && r.cipher_suite.is_some() && r.key_exchange_group.is_some(),
        "{r:?}"
    );
    assert!(!s.is_handshaking(), "a failed session is over");
    assert!(
        s.close_notify(false).is_empty(),
        "no close_notify after an alert"
    );
}

#[test]
fn expired_certificate_fails_at_the_probes_time() {
    let pki = pki(2020, 2021);
    let mut s = TlsSession::new(setup(&pki, "lab.test", false), at(0)).unwrap();
    let mut srv = server(&pki, &rustls::version::TLS13);
    let out = exchange(&mut s, &mut srv);
    let (_, why) = out.error.expect("expired must fail");
    assert!(why.to_lowercase().contains("expired"), "{why}");
    let r = s.record(&[], 0, &Some);
    assert_eq!(r.verified, Some(false));
    assert!(r.certificates[0].days_to_expiry < -1000, "{r:?}");
}

#[test]
fn insecure_reports_the_failure_and_goes_on() {
    let pki = pki(2020, 2030);
    let mut s = TlsSession::new(setup(&pki, "wrong.test", true), at(0)).unwrap();
    let mut srv = server(&pki, &rustls::version::TLS13);
    let out = exchange(&mut s, &mut srv);
    assert_eq!(out.error, None);
    assert!(out.plaintext.starts_with(b"HTTP/1.1 200 OK"));
    let r = s.record(&[], 0, &Some);
    assert_eq!(r.verified, Some(false));
    assert!(r.insecure);
    assert!(r.verify_error.is_some());
}

#[test]
fn address_target_sends_no_sni_and_verifies_the_ip_san() {
    let pki = pki(2020, 2030);
    let mut st = setup(&pki, "lab.test", false);
    st.server_name = ServerName::IpAddress(std::net::Ipv4Addr::new(198, 18, 0, 2).into());
    let mut s = TlsSession::new(st, at(0)).unwrap();
    let mut srv = server(&pki, &rustls::version::TLS13);
    let out = exchange(&mut s, &mut srv);
    assert_eq!(out.error, None);
    assert_eq!(srv.server_name(), None, "RFC 6066 §3: no address in SNI");
    let r = s.record(&[], 0, &Some);
    assert_eq!((r.sni, r.verified), (None, Some(true)));
    assert_eq!(r.server_name, "198.18.0.2");
}

/// Python's http.server answers a ClientHello the HTTP/0.9 way: an HTML page, no status
/// line. Not TLS either, and said so.
#[test]
fn any_cleartext_answer_is_named_not_tls() {
    let pki = pki(2020, 2030);
    let mut s = TlsSession::new(setup(&pki, "lab.test", false), at(0)).unwrap();
    let _ = s.client_hello();
    let step = s.handle_data(at(1), b"<!DOCTYPE HTML>\n<html lang=\"en\">", Some(3));
    let why = step.error.expect("not TLS");
    assert!(
        why.contains("does not speak TLS") && why.contains("<!DOCTYPE HTML>"),
        "{why}"
    );
}

#[test]
fn plain_http_answer_is_named_as_such() {
    let pki = pki(2020, 2030);
    let mut s = TlsSession::new(setup(&pki, "lab.test", false), at(0)).unwrap();
    let _ = s.client_hello();
    let step = s.handle_data(
        at(1),
        b"HTTP/1.1 400 Bad Request\r\nServer: nginx\r\n\r\n",
        Some(3),
    );
    let why = step.error.expect("not TLS");
    assert!(
        why.contains("plain HTTP") && why.contains("HTTP/1.1 400"),
        "{why}"
    );
    assert_eq!(s.record(&[], 0, &Some).verified, None);
}

#[test]
fn close_mid_handshake_says_how_far_it_got() {
    let pki = pki(2020, 2030);
    let mut s = TlsSession::new(setup(&pki, "lab.test", false), at(0)).unwrap();
    let _ = s.client_hello();
    assert!(s.is_handshaking());
    let why = s.closed_mid_handshake();
    assert!(why.contains("before sending anything"), "{why}");
    assert!(!s.is_handshaking());
    assert_eq!(s.record(&[], 0, &Some).error.as_deref(), Some(why.as_str()));
}

#[test]
fn garbage_from_the_server_never_panics() {
    let pki = pki(2020, 2030);
    for seed in 0u32..64 {
        let mut s = TlsSession::new(setup(&pki, "lab.test", false), at(0)).unwrap();
        let _ = s.client_hello();
        // A few records' worth of pseudo-random bytes, some starting like a handshake.
        let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        let mut junk: Vec<u8> = (0..(seed as usize * 37 % 3000))
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        if seed % 2 == 0 && junk.len() > 5 {
            junk[..3].copy_from_slice(&[22, 3, 3]);
        }
        let step = s.handle_data(at(1), &junk, Some(1));
        assert!(!step.handshake_done);
        let _ = s.record(&[], 0, &Some);
    }
}

#[test]
fn rfc3339_dates() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    assert_eq!(rfc3339(4_102_444_800), "2100-01-01T00:00:00Z");
}

fn seg(dir: Dir, t_us: u64, seq: u32, len: u32, flags: crate::wire::TcpFlags) -> SegmentRecord {
    SegmentRecord {
        dir,
        t_ns: 0,
        ts_ns: T0 + t_us * 1000,
        flags,
        seq,
        ack: 0,
        win: 0,
        len,
        options: Default::default(),
        ttl: 64,
        retransmission: false,
        transitions: Vec::new(),
        bad_checksum: false,
        foreign: false,
        kernel: false,
        urgent: None,
        fragments: 1,
        omitted_before: 0,
    }
}

/// The legs `s` takes from `log` (our ISN `isn`; the response complete in segment
/// `complete`), the log's positions as the record's.
fn measured(
    s: &TlsSession,
    log: &[SegmentRecord],
    isn: u32,
    complete: usize,
) -> crate::probe::legs::Measured {
    let mut m = crate::probe::legs::Measured::default();
    s.legs(log, isn, Some(complete), &mut m, &Some);
    m
}

/// Offsets of our stream map to the segments that carried them, across the 2^32 wrap;
/// a retransmission does not move a leg (the first transmission is when it left).
#[test]
fn legs_come_from_the_segments_that_carried_each_message() {
    use crate::wire::TcpFlags as F;
    let isn = u32::MAX - 100; // the stream wraps inside the ClientHello
    let first = isn.wrapping_add(1);
    let (pa, a) = (F::PSH | F::ACK, F::ACK);
    let log = vec![
        seg(Dir::Out, 0, isn, 0, F::SYN),                      // 0 SYN
        seg(Dir::In, 40, 7, 0, F::SYN | F::ACK),               // 1 SYN-ACK
        seg(Dir::Out, 50, first, 0, a),                        // 2 ACK
        seg(Dir::Out, 60, first, 229, pa),                     // 3 ClientHello
        seg(Dir::In, 900, 8, 790, pa),                         // 4 ServerHello … Finished
        seg(Dir::Out, 2000, first.wrapping_add(229), 201, pa), // 5 Finished + request
        seg(Dir::Out, 2500, first.wrapping_add(229), 201, pa), // 6 (retransmission)
        seg(Dir::In, 2600, 798, 164, pa),                      // 7 response
        seg(Dir::In, 2650, 962, 24, pa),                       // 8 server close_notify
        seg(Dir::In, 2700, 986, 0, F::FIN | F::ACK),           // 9 FIN
    ];
    let pki = pki(2020, 2030);
    let mut s = TlsSession::new(setup(&pki, "lab.test", false), at(0)).unwrap();
    s.marks = Marks {
        serverhello: Some(4),
        server_finished: Some(4),
        client_finished_end: Some(229 + 64),
        request_at: Some(229 + 64),
        first_byte: Some(7),
        close_notify_out: None,
        close_notify_in: Some(8),
        close_notify_in_end: None,
    };
    let m = measured(&s, &log, isn, 7);
    let legs = m.legs;
    assert!(legs.has_tls());
    let t = legs;
    // Each leg runs between the segments its marks name.
    assert_eq!(m.span(Leg::TlsClienthelloToServerhello), Some((3, 4)));
    assert_eq!(m.span(Leg::RequestToFirstByte), Some((5, 7)));
    assert_eq!(m.span(Leg::TlsCloseNotifyToFin), Some((8, 9)));
    assert_eq!(t.get(Leg::TlsClienthelloToServerhello), Some(840_000));
    assert_eq!(t.get(Leg::TlsClienthelloToServerFinished), Some(840_000));
    assert_eq!(t.get(Leg::TlsClienthelloToClientFinished), Some(1_940_000));
    assert_eq!(t.get(Leg::TlsSynToAppconnect), Some(2_000_000));
    assert_eq!(t.get(Leg::TlsCloseNotifyToFin), Some(50_000));
    assert_eq!(legs.get(Leg::RequestToFirstByte), Some(600_000));
    assert_eq!(legs.get(Leg::RequestToComplete), Some(600_000));
    assert_eq!(out_segment(&log, isn, 228), Some(3));
    assert_eq!(out_segment(&log, isn, 229), Some(5));
    assert_eq!(out_segment(&log, isn, 430), None);
    assert_eq!(
        s.record(&log, isn, &Some).close_notify_first.as_deref(),
        Some("server")
    );
}

/// A refused certificate is said in words, never in rustls's or webpki's debug text.
#[test]
fn certificate_refusals_are_said_in_words() {
    use rustls::CertificateError as C;
    use rustls::pki_types::{ServerName, UnixTime};
    let words = |e: C| super::certificate_words(&e, "web.lab.test");
    assert!(words(C::UnknownIssuer).contains("self-signed"));
    let w = words(C::NotValidForNameContext {
        expected: ServerName::try_from("web.lab.test").unwrap().to_owned(),
        presented: vec![
            "DnsName(\"other.lab.test\")".into(),
            "IpAddress(198.18.0.2)".into(),
        ],
    });
    assert_eq!(
        w,
        "it is for other.lab.test, 198.18.0.2, not for web.lab.test"
    );
    let w = words(C::ExpiredContext {
        time: UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_800_000_000)),
        not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_700_000_000)),
    });
    assert_eq!(w, "it expired at 2023-11-14T22:13:20Z");
    let other = C::Other(rustls::OtherError(std::sync::Arc::new(
        std::io::Error::other("CaUsedAsEndEntity"),
    )));
    assert!(words(other).contains("a CA's certificate as its own"));
}

/// The server's response lost, its close_notify and FIN behind it arrive first and wait
/// (out of order) until the retransmitted response fills the hole: close_notify→FIN is
/// from the segment that carried the close_notify, as on the wire (tcpdump: 50 µs), not
/// from the retransmission that delivered it after the FIN (the leg was missing: a survey
/// through a 5 % lossy link lacked it in 102 of 512 HTTPS probes, and `report` counted
/// them as `notify→FIN` loss).
#[test]
fn close_notify_to_fin_is_from_the_segment_that_carried_the_close_notify() {
    use crate::wire::TcpFlags as F;
    let isn = 1000;
    let first = isn + 1;
    let (pa, a) = (F::PSH | F::ACK, F::ACK);
    let log = vec![
        seg(Dir::Out, 0, isn, 0, F::SYN),            // 0 SYN
        seg(Dir::In, 40, 7, 0, F::SYN | F::ACK),     // 1 SYN-ACK
        seg(Dir::Out, 50, first, 0, a),              // 2 ACK
        seg(Dir::Out, 60, first, 229, pa),           // 3 ClientHello
        seg(Dir::In, 900, 8, 790, pa),               // 4 ServerHello … Finished
        seg(Dir::Out, 2000, first + 229, 201, pa),   // 5 Finished + request
        seg(Dir::In, 2600, 962, 24, pa),             // 6 close_notify (past a hole)
        seg(Dir::In, 2650, 986, 0, F::FIN | F::ACK), // 7 FIN
        seg(Dir::Out, 2660, first + 430, 0, a),      // 8 duplicate ACK
        seg(Dir::In, 202_600, 798, 164, pa),         // 9 response, retransmitted
    ];
    let pki = pki(2020, 2030);
    let mut s = TlsSession::new(setup(&pki, "lab.test", false), at(0)).unwrap();
    s.marks = Marks {
        serverhello: Some(4),
        server_finished: Some(4),
        client_finished_end: Some(229 + 64),
        request_at: Some(229 + 64),
        first_byte: Some(9),
        close_notify_out: None,
        // Read when segment 9 filled the hole; it ends at the server's byte 986 - 8.
        close_notify_in: Some(9),
        close_notify_in_end: Some(986 - 8),
    };
    let m = measured(&s, &log, isn, 9);
    assert_eq!(m.span(Leg::TlsCloseNotifyToFin), Some((6, 7)));
    assert_eq!(m.legs.get(Leg::TlsCloseNotifyToFin), Some(50_000));
    assert_eq!(
        s.record(&log, isn, &Some).close_notify_first.as_deref(),
        Some("server")
    );
    // No segment holds that byte (the log lost it): the delivering segment, as before.
    s.marks.close_notify_in_end = Some(5000);
    let m = measured(&s, &log, isn, 9);
    assert_eq!(m.legs.get(Leg::TlsCloseNotifyToFin), None);
}

/// Review 15: a certificate is the server's text. Its subject, issuer and DNS names went
/// into the record as they were, and the text report prints them: a server whose
/// certificate's CN (or SAN) held an escape sequence wrote it to the user's terminal
/// (`tcpshake probe https://…`), where every other text a server sends — a RST's data, a
/// non-HTTP banner, a header value — is escaped first.
#[test]
fn certificate_text_has_no_control_characters() {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["evil\u{1b}]0;owned\u{7}.test".into()])
        .unwrap_or_else(|_| CertificateParams::new(vec!["evil.test".into()]).unwrap());
    params.distinguished_name.push(
        DnType::CommonName,
        "lab\u{1b}[2J\u{1b}[31mtest\r\nFAKE LINE",
    );
    params
        .distinguished_name
        .push(DnType::OrganizationName, "\u{9b}31m");
    let cert = params.self_signed(&key).unwrap();
    let rec = cert_record(cert.der(), 1_700_000_000).expect("parses");
    let texts: Vec<&String> = [&rec.subject, &rec.issuer]
        .into_iter()
        .chain(rec.sans.iter())
        .collect();
    for t in texts {
        assert!(
            !t.chars().any(char::is_control),
            "control characters in {t:?}"
        );
    }
}

/// Review 15: the names a certificate presents come back in webpki's refusal
/// (`NotValidForNameContext::presented`, made with `String::from_utf8_lossy`, not
/// escaped), and `certificate_words` put them in the verification error — the probe's
/// `error` and `tls.verify_error`, which the text report prints — as they were.
#[test]
fn a_name_mismatch_error_has_no_control_characters() {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.not_before = date_time_ymd(2020, 1, 1);
    ca.not_after = date_time_ymd(2040, 1, 1);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec!["evil\u{1b}[2J.test".into()]).unwrap();
    leaf.not_before = date_time_ymd(2020, 1, 1);
    leaf.not_after = date_time_ymd(2030, 1, 1);
    let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
    let pki = Pki {
        ca: ca_cert.der().clone(),
        leaf: leaf_cert.der().clone(),
        key: PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
    };
    let mut s = TlsSession::new(setup(&pki, "lab.test", false), at(0)).unwrap();
    let mut srv = server(&pki, &rustls::version::TLS13);
    let out = exchange(&mut s, &mut srv);
    let (_, why) = out.error.expect("verification must fail");
    assert!(!why.chars().any(char::is_control), "error: {why:?}");
    let r = s.record(&[], 0, &Some);
    let v = r.verify_error.unwrap_or_default();
    assert!(!v.chars().any(char::is_control), "verify_error: {v:?}");
}

/// A TLS survey probe's ClientHello is made before its SYN, so the ACK it rides on is
/// known by then (`Probe::handshake_ack`, for the kernel program of io/reflex.rs): the
/// plan is the segment the probe sends when the SYN-ACK comes, byte for byte.
#[test]
fn the_clienthello_riding_on_the_ack_is_known_before_the_syn() {
    use crate::probe::tests::{config, server_seg};
    use crate::probe::{HttpRequest, Probe};
    use crate::wire::TcpFlags;
    let pki = pki(2020, 2040);
    for ack_with_data in [true, false] {
        let mut cfg = config(1000, false);
        cfg.tcp.ack_with_data = ack_with_data;
        cfg.http = Some(HttpRequest::new("/", "lab.test").unwrap());
        cfg.tls = Some(setup(&pki, "lab.test", false));
        let mut probe = Probe::new(cfg);
        probe.start(at(0));
        probe.poll_transmit(at(0)).unwrap();
        let plan = probe.handshake_ack().expect("a plan");
        if ack_with_data {
            // A TLS handshake record (RFC 8446 §5.1), the ClientHello.
            assert_eq!(
                &plan.payload[..2],
                &[0x16, 0x03],
                "{:?}",
                &plan.payload[..8]
            );
        } else {
            assert!(plan.payload.is_empty());
        }
        let synack = server_seg(5000, 1001, TcpFlags::SYN | TcpFlags::ACK, &[]);
        assert!(probe.handle_packet(at(0), false, &synack, false));
        let seg = probe.poll_transmit(at(0)).unwrap();
        assert_eq!(seg.seq.0, plan.seq);
        assert_eq!(seg.payload, plan.payload, "ack_with_data {ack_with_data}");
        if !ack_with_data {
            // The ClientHello follows the bare ACK.
            let hello = probe.poll_transmit(at(0)).unwrap();
            assert_eq!(&hello.payload[..2], &[0x16, 0x03]);
        }
    }
}

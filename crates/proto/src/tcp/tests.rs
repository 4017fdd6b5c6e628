//! State-machine tests. The test plays the peer: it builds `TcpRepr`s by hand, feeds them
//! with virtual timestamps and looks at what comes out. No sleeps, no sockets, no parsing.

use super::*;
use proptest::prelude::*;

const MS: u64 = 1_000_000;
/// Virtual epoch: far from 0 so that nothing depends on small clock values.
const T0: u64 = 1_700_000_000_000 * MS;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn cfg(isn: u32) -> Config {
    Config {
        local: "198.18.0.1:40000".parse().unwrap(),
        remote: "198.18.0.2:80".parse().unwrap(),
        isn: SeqNumber(isn),
        mss: 1460,
        syn_window: 64240,
        rcv_buf: 8192,
        wscale: 7,
        sack_permitted: true,
        timestamps: true,
        ts_offset: 5000,
        syn_retries: 3,
        data_retries: 4,
        rto_initial: ms(1000),
        rto_min: ms(200),
        rto_max: ms(60_000),
        ack_with_data: false,
        known_path_mtu: None,
        time_wait: ms(2000),
    }
}

/// Peer's options: none at all (no scaling, no SACK, no timestamps, default MSS).
fn no_opts() -> TcpOptions {
    TcpOptions::default()
}

fn opts_mss(mss: u16) -> TcpOptions {
    TcpOptions {
        mss: Some(mss),
        ..TcpOptions::default()
    }
}

fn seg(seq: u32, ack: u32, flags: TcpFlags, payload: &[u8]) -> TcpRepr<'_> {
    TcpRepr {
        src_port: 80,
        dst_port: 40000,
        seq: SeqNumber(seq),
        ack: SeqNumber(ack),
        flags,
        window: 65535,
        urgent: 0,
        options: TcpOptions::default(),
        payload,
    }
}

fn ack_seg(seq: u32, ack: u32) -> TcpRepr<'static> {
    seg(seq, ack, TcpFlags::ACK, &[])
}

const ACK: TcpFlags = TcpFlags::ACK;
const SYN: TcpFlags = TcpFlags::SYN;
const FIN: TcpFlags = TcpFlags::FIN;
const RST: TcpFlags = TcpFlags::RST;
const PSH: TcpFlags = TcpFlags::PSH;

/// The peer's side of the test: a connection, a virtual clock, and everything the
/// connection said.
struct Harness {
    conn: Connection,
    now: Instant,
}

impl Harness {
    fn new(cfg: Config) -> Harness {
        Harness {
            conn: Connection::new(cfg),
            now: Instant::from_nanos(T0),
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    fn recv(&mut self, seg: TcpRepr<'_>) {
        self.conn.handle_segment(self.now, &seg);
    }

    /// Drain `poll_transmit` (bounded: a runaway would be a bug).
    fn sent(&mut self) -> Vec<Segment> {
        let mut out = Vec::new();
        for _ in 0..10_000 {
            match self.conn.poll_transmit(self.now) {
                Some(s) => out.push(s),
                None => return out,
            }
        }
        panic!("poll_transmit never returned None");
    }

    fn sent_one(&mut self) -> Segment {
        let mut s = self.sent();
        assert_eq!(s.len(), 1, "expected one segment, got {s:#?}");
        s.remove(0)
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.conn.poll_event()).collect()
    }

    fn anomalies(&mut self) -> Vec<Anomaly> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Anomaly { anomaly, .. } => Some(anomaly),
                _ => None,
            })
            .collect()
    }

    /// Jump the clock to the next deadline and fire it.
    fn fire(&mut self) -> Instant {
        let at = self.conn.poll_timeout().expect("a timer is armed");
        assert!(at >= self.now, "deadline in the past");
        self.now = at;
        self.conn.handle_timeout(at);
        at
    }

    fn state(&self) -> State {
        self.conn.state()
    }
}

fn transitions(events: &[Event]) -> Vec<(State, State)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::StateChanged { from, to, .. } => Some((*from, *to)),
            _ => None,
        })
        .collect()
}

fn data_of(events: &[Event]) -> Vec<u8> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Data { bytes, .. } => Some(bytes.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn conn_syn_sent_with(cfg: Config) -> (Harness, Segment) {
    let mut h = Harness::new(cfg);
    h.conn.connect(h.now);
    let syn = h.sent_one();
    h.events();
    (h, syn)
}

fn conn_syn_sent() -> (Harness, Segment) {
    conn_syn_sent_with(cfg(1000))
}

/// ESTABLISHED after a 10 ms handshake, with the peer's options and window.
fn conn_established_with(cfg: Config, irs: u32, opts: TcpOptions, window: u16) -> Harness {
    let (mut h, syn) = conn_syn_sent_with(cfg);
    h.advance(ms(10));
    let mut synack = seg(irs, syn.seq.add(1).0, SYN | ACK, &[]);
    synack.options = opts;
    synack.window = window;
    h.recv(synack);
    let ack = h.sent_one();
    assert_eq!(ack.flags, ACK);
    assert_eq!(h.state(), State::Established);
    h.events();
    h
}

/// ISS 1000, IRS 5000, peer MSS 1460, peer window 65535, no other options.
fn conn_established() -> Harness {
    conn_established_with(cfg(1000), 5000, opts_mss(1460), 65535)
}

// --- CLOSED / SYN-SENT ---

#[test]
fn closed_connect_sends_syn_with_options() {
    let mut h = Harness::new(cfg(1000));
    assert_eq!(h.conn.poll_timeout(), None);
    assert!(h.sent().is_empty());
    h.conn.connect(h.now);
    assert_eq!(
        transitions(&h.events()),
        vec![(State::Closed, State::SynSent)]
    );
    let syn = h.sent_one();
    assert_eq!(syn.seq, SeqNumber(1000));
    assert_eq!(syn.flags, SYN);
    assert_eq!(syn.window, 64240);
    assert!(!syn.retransmission);
    assert_eq!(syn.options.mss, Some(1460));
    assert!(syn.options.sack_permitted);
    assert_eq!(syn.options.wscale, Some(7));
    let ms_clock = (T0 / MS) as u32;
    assert_eq!(
        syn.options.timestamps,
        Some((ms_clock.wrapping_add(5000), 0))
    );
    assert_eq!(h.conn.snd_nxt(), SeqNumber(1001));
    assert_eq!(h.conn.snd_una(), SeqNumber(1000));
    assert_eq!(h.conn.poll_timeout(), Some(h.now + ms(1000)));
}

#[test]
fn closed_connect_without_sack_and_timestamps_omits_them() {
    let mut c = cfg(1000);
    c.sack_permitted = false;
    c.timestamps = false;
    let (_, syn) = conn_syn_sent_with(c);
    assert!(!syn.options.sack_permitted);
    assert_eq!(syn.options.timestamps, None);
}

#[test]
fn syn_sent_timeout_retransmits_with_backoff_then_times_out() {
    let (mut h, _) = conn_syn_sent();
    let start = h.now;
    let mut gaps = Vec::new();
    let mut last = start;
    for attempt in 1..=3u32 {
        let at = h.fire();
        gaps.push(at - last);
        last = at;
        let syn = h.sent_one();
        assert!(syn.retransmission);
        assert_eq!(syn.flags, SYN);
        assert_eq!(syn.seq, SeqNumber(1000));
        let ev = h.events();
        assert_eq!(
            ev,
            vec![Event::Retransmit {
                at,
                seq: SeqNumber(1000),
                flags: SYN,
                attempt
            }]
        );
    }
    assert_eq!(gaps, vec![ms(1000), ms(2000), ms(4000)]);
    assert_eq!(h.conn.retransmissions(), 3);
    let at = h.fire();
    assert_eq!(at - start, ms(15_000));
    let ev = h.events();
    assert_eq!(
        ev,
        vec![
            Event::TimedOut {
                at,
                state: State::SynSent,
                answered: 0,
                zero_window: false,
            },
            Event::StateChanged {
                from: State::SynSent,
                to: State::Closed,
                at
            }
        ]
    );
    assert!(h.sent().is_empty(), "no RST after a timeout");
    assert_eq!(h.conn.poll_timeout(), None);
}

#[test]
fn syn_sent_backoff_is_capped_at_rto_max() {
    let mut c = cfg(1000);
    c.rto_max = ms(3000);
    c.syn_retries = 4;
    let (mut h, _) = conn_syn_sent_with(c);
    let mut last = h.now;
    let mut gaps = Vec::new();
    for _ in 0..4 {
        let at = h.fire();
        gaps.push(at - last);
        last = at;
        h.sent();
    }
    assert_eq!(gaps, vec![ms(1000), ms(2000), ms(3000), ms(3000)]);
}

#[test]
fn syn_sent_synack_establishes_acks_and_samples_rtt() {
    let (mut h, _) = conn_syn_sent();
    h.advance(ms(40));
    let at = h.now;
    let mut synack = seg(5000, 1001, SYN | ACK, &[]);
    synack.options = TcpOptions {
        mss: Some(1400),
        wscale: Some(8),
        sack_permitted: true,
        timestamps: Some((777, 0)),
        ..TcpOptions::default()
    };
    synack.window = 29200;
    h.recv(synack);
    let ev = h.events();
    let peer = PeerOptions {
        mss: Some(1400),
        wscale: Some(8),
        sack_permitted: true,
        timestamps: true,
    };
    assert_eq!(
        ev,
        vec![
            Event::StateChanged {
                from: State::SynSent,
                to: State::Established,
                at
            },
            Event::Connected { at, peer }
        ]
    );
    let ack = h.sent_one();
    assert_eq!(ack.flags, ACK);
    assert_eq!(ack.seq, SeqNumber(1001));
    assert_eq!(ack.ack, SeqNumber(5001));
    // 8192 >> 7 = 64
    assert_eq!(ack.window, 64);
    assert_eq!(ack.options.timestamps.map(|t| t.1), Some(777));
    assert_eq!(h.conn.irs(), SeqNumber(5000));
    assert_eq!(h.conn.rcv_nxt(), SeqNumber(5001));
    // SYN-ACK window is never scaled (RFC 7323 §2.2).
    assert_eq!(h.conn.snd_wnd(), 29200);
    assert_eq!(h.conn.srtt(), Some(ms(40)));
    // 40 + 4 * 20 = 120, floored at 200.
    assert_eq!(h.conn.rto(), ms(200));
    assert_eq!(h.conn.send_mss(), 1400 - 12);
    assert_eq!(h.conn.poll_timeout(), None);
}

#[test]
fn synack_ack_rides_on_data_written_before_it_left_when_asked() {
    for ack_with_data in [false, true] {
        let (mut h, _) = conn_syn_sent_with(Config {
            ack_with_data,
            ..cfg(1000)
        });
        h.advance(ms(10));
        h.recv(seg(5000, 1001, SYN | ACK, &[]));
        // The application writes as soon as it hears of the connection, before any
        // segment is taken.
        h.conn.send(b"HEAD / HTTP/1.1\r\n\r\n");
        let segs = h.sent();
        let flags: Vec<TcpFlags> = segs.iter().map(|s| s.flags).collect();
        if ack_with_data {
            assert_eq!(flags, vec![ACK | PSH], "{segs:?}");
        } else {
            assert_eq!(flags, vec![ACK, ACK | PSH], "{segs:?}");
            assert!(segs[0].payload.is_empty());
        }
        let data = segs.last().unwrap();
        assert_eq!((data.seq, data.ack), (SeqNumber(1001), SeqNumber(5001)));
        assert_eq!(data.payload.len(), 19);
        // Acknowledged like any data: nothing left to send or time.
        h.recv(ack_seg(5001, 1020));
        assert!(h.sent().is_empty());
        assert_eq!(h.conn.poll_timeout(), None);
    }
}

#[test]
fn synack_ack_goes_alone_when_nothing_was_written() {
    let (mut h, _) = conn_syn_sent_with(Config {
        ack_with_data: true,
        known_path_mtu: None,
        ..cfg(1000)
    });
    h.recv(seg(5000, 1001, SYN | ACK, &[]));
    let ack = h.sent_one();
    assert_eq!(ack.flags, ACK);
    assert!(ack.payload.is_empty());
}

#[test]
fn syn_sent_synack_uses_only_options_both_sides_sent() {
    let mut c = cfg(1000);
    c.timestamps = false;
    c.sack_permitted = false;
    let (mut h, _) = conn_syn_sent_with(c);
    let mut synack = seg(5000, 1001, SYN | ACK, &[]);
    synack.options = TcpOptions {
        mss: Some(9000),
        sack_permitted: true,
        timestamps: Some((1, 0)),
        ..TcpOptions::default()
    };
    h.recv(synack);
    let peer = h.conn.peer_options();
    assert!(!peer.timestamps && !peer.sack_permitted);
    assert_eq!(peer.wscale, None);
    assert_eq!(h.conn.send_mss(), 1460, "min(peer mss, our mss)");
    let ack = h.sent_one();
    assert_eq!(ack.options, TcpOptions::default());
    // No window scaling: advertise min(rcv_buf, 65535) unscaled.
    assert_eq!(ack.window, 8192);
}

#[test]
fn syn_sent_synack_wscale_above_14_is_treated_as_14() {
    let mut c = cfg(1000);
    c.rcv_buf = 4 << 20;
    let mut o = opts_mss(1460);
    o.wscale = Some(15);
    let mut h = conn_established_with(c, 5000, o, 1);
    let mut a = ack_seg(5001, 1001);
    a.window = 1;
    h.recv(a);
    assert_eq!(h.conn.snd_wnd(), 1 << 14);
    assert_eq!(h.conn.peer_options().wscale, Some(14));
    // Our own window: 4 MiB >> 7.
    h.recv(seg(5001, 1001, ACK, b"x"));
    assert_eq!(h.sent_one().window, ((4u32 << 20) >> 7) as u16);
}

#[test]
fn syn_sent_synack_without_mss_uses_536() {
    let h = conn_established_with(cfg(1000), 5000, no_opts(), 65535);
    assert_eq!(h.conn.send_mss(), 536);
}

/// RFC 9293 §3.7.1 MUST-15: IPv6's default is 1220 (1280 − 40 − 20), as Linux's
/// `tcp_v6_connect` clamps; MSS 0 is no option there too.
#[test]
fn syn_sent_ipv6_synack_without_mss_uses_1220() {
    for opts in [no_opts(), opts_mss(0)] {
        let mut c = cfg(1000);
        c.local = "[fd00::1]:40000".parse().unwrap();
        c.remote = "[fd00::2]:80".parse().unwrap();
        let h = conn_established_with(c, 5000, opts, 65535);
        assert_eq!(h.conn.send_mss(), 1220);
    }
}

#[test]
fn syn_sent_synack_with_data_and_fin_delivers_then_close_wait() {
    let (mut h, _) = conn_syn_sent();
    h.recv(seg(5000, 1001, SYN | ACK | FIN, b"hi"));
    let ev = h.events();
    assert!(ev.contains(&Event::Anomaly {
        at: h.now,
        anomaly: Anomaly::BadFlagCombination {
            flags: SYN | ACK | FIN
        }
    }));
    assert_eq!(data_of(&ev), b"hi");
    assert_eq!(
        transitions(&ev),
        vec![
            (State::SynSent, State::Established),
            (State::Established, State::CloseWait)
        ]
    );
    let acks = h.sent();
    assert_eq!(acks.last().unwrap().ack, SeqNumber(5004));
}

#[test]
fn syn_sent_rst_ack_is_refused() {
    let (mut h, _) = conn_syn_sent();
    h.advance(ms(3));
    let at = h.now;
    h.recv(seg(0, 1001, RST | ACK, &[]));
    assert_eq!(
        h.events(),
        vec![
            Event::Refused { at, text: None },
            Event::StateChanged {
                from: State::SynSent,
                to: State::Closed,
                at
            }
        ]
    );
    assert!(h.sent().is_empty());
    assert_eq!(h.conn.poll_timeout(), None);
}

#[test]
fn syn_sent_rst_without_ack_is_ignored() {
    let (mut h, _) = conn_syn_sent();
    h.recv(seg(0, 0, RST, &[]));
    assert_eq!(
        h.anomalies(),
        vec![Anomaly::RstIgnored { seq: SeqNumber(0) }]
    );
    assert_eq!(h.state(), State::SynSent);
}

#[test]
fn syn_sent_rst_with_bad_ack_is_ignored() {
    let (mut h, _) = conn_syn_sent();
    h.recv(seg(7, 1000, RST | ACK, &[]));
    assert_eq!(
        h.anomalies(),
        vec![Anomaly::RstIgnored { seq: SeqNumber(7) }]
    );
    assert_eq!(h.state(), State::SynSent);
    assert!(h.sent().is_empty());
    // As Linux: the SYN goes again in 2 ms (an old segment may have been in the way).
    let received = h.now;
    assert_eq!(h.fire() - received, ms(2));
    assert_eq!(h.sent_one().flags, SYN);
}

#[test]
fn syn_sent_synack_with_bad_ack_sends_rst_and_stays() {
    let (mut h, _) = conn_syn_sent();
    h.recv(seg(5000, 999_999, SYN | ACK, &[]));
    assert_eq!(
        h.anomalies(),
        vec![Anomaly::BadSynAck {
            ack: SeqNumber(999_999),
            syn: true
        }]
    );
    let rst = h.sent_one();
    assert_eq!(rst.flags, RST);
    assert_eq!(rst.seq, SeqNumber(999_999));
    assert_eq!(h.state(), State::SynSent);
    // The real SYN-ACK still works.
    h.recv(seg(5000, 1001, SYN | ACK, &[]));
    assert_eq!(h.state(), State::Established);
}

/// A server's TIME-WAIT that takes our SYN for an old duplicate answers with a bare ACK
/// (Linux `tcp_timewait_state_process`, TCP_TW_ACK). As Linux's client: RST, and the SYN
/// again 2 ms later rather than after the initial RTO — once; a second such ACK waits for
/// the backed-off timer.
#[test]
fn syn_sent_bare_ack_from_time_wait_gets_rst_and_syn_again_soon() {
    let (mut h, _) = conn_syn_sent();
    h.advance(ms(1));
    h.recv(seg(5000, 777, ACK, &[]));
    assert_eq!(
        h.anomalies(),
        vec![Anomaly::BadSynAck {
            ack: SeqNumber(777),
            syn: false
        }]
    );
    let rst = h.sent_one();
    assert_eq!((rst.flags, rst.seq), (RST, SeqNumber(777)));
    let received = h.now;
    assert_eq!(h.fire() - received, ms(2));
    let again = h.sent_one();
    assert_eq!(
        (again.flags, again.seq, again.retransmission),
        (SYN, SeqNumber(1000), true)
    );
    assert_eq!(h.conn.retransmissions(), 1);
    // The next one waits for the timer, backed off from the initial 1 s.
    h.recv(seg(5000, 777, ACK, &[]));
    assert_eq!(h.sent_one().flags, RST);
    let at = h.now;
    assert_eq!(h.fire() - at, ms(2000));
    assert_eq!(h.sent_one().flags, SYN);
    h.recv(seg(9000, 1001, SYN | ACK, &[]));
    assert_eq!(h.state(), State::Established);
}

/// The peer's SYN with options, as a simultaneous open would send it.
fn peer_syn(seq: u32, flags: TcpFlags, ack: u32, tsval: u32) -> TcpRepr<'static> {
    let mut s = seg(seq, ack, flags, &[]);
    s.options = TcpOptions::default()
        .with_mss(1400)
        .with_sack_permitted()
        .with_timestamps(tsval, 0)
        .with_wscale(5);
    s.window = 29200;
    s
}

/// SYN-RECEIVED after a simultaneous open (ISS 1000, IRS 5000, peer TSval 777), with the
/// SYN-ACK we sent.
fn conn_syn_received() -> (Harness, Segment) {
    let (mut h, _) = conn_syn_sent();
    h.advance(ms(10));
    h.recv(peer_syn(5000, SYN, 0, 777));
    let synack = h.sent_one();
    (h, synack)
}

/// RFC 9293 §3.10.7.3 fourth step (MUST-10), as Linux: a bare SYN in SYN-SENT is a
/// simultaneous open: SYN-RECEIVED, and our SYN again (same ISN) with an ACK of theirs.
#[test]
fn syn_sent_bare_syn_enters_syn_received_and_sends_synack() {
    let (mut h, syn) = conn_syn_sent();
    h.advance(ms(10));
    h.recv(peer_syn(5000, SYN, 0, 777));
    let ev = h.events();
    assert_eq!(transitions(&ev), vec![(State::SynSent, State::SynReceived)]);
    assert!(ev.contains(&Event::Anomaly {
        at: h.now,
        anomaly: Anomaly::SimultaneousOpen {
            seq: SeqNumber(5000)
        }
    }));
    let sa = h.sent_one();
    assert_eq!(sa.flags, SYN | ACK);
    assert_eq!((sa.seq, sa.ack), (SeqNumber(1000), SeqNumber(5001)));
    assert_eq!(sa.options.mss, Some(1460));
    assert_eq!(sa.options.wscale, Some(7));
    assert!(sa.options.sack_permitted);
    let tsval = ((h.now.as_nanos() / MS) as u32).wrapping_add(5000);
    assert_eq!(
        sa.options.timestamps,
        Some((tsval, 777)),
        "TSecr echoes the SYN"
    );
    assert!(!sa.retransmission);
    assert_eq!(sa.window, syn.window);
    assert_eq!(h.state(), State::SynReceived);
}

/// Linux's SYN-ACK of a simultaneous open carries its SYN's options whatever the peer's
/// SYN had (checked on the wire): SACK-permitted and window scale were offered already.
#[test]
fn syn_sent_bare_syn_without_options_gets_our_syn_options() {
    let (mut h, syn) = conn_syn_sent();
    h.recv(seg(5000, 0, SYN, &[]));
    let sa = h.sent_one();
    assert_eq!(sa.options.mss, syn.options.mss);
    assert_eq!(sa.options.wscale, syn.options.wscale);
    assert!(sa.options.sack_permitted);
    assert_eq!(sa.options.timestamps.map(|t| t.1), Some(0));
    h.recv(ack_seg(5001, 1001));
    assert_eq!(h.state(), State::Established);
    assert_eq!(h.conn.peer_options().wscale, None, "nothing negotiated");
    assert!(!h.conn.peer_options().sack_permitted);
}

/// Linux discards the data of a bare SYN ("discard packet for sanity"); so do we.
#[test]
fn syn_sent_bare_syn_with_data_drops_the_data() {
    let (mut h, _) = conn_syn_sent();
    h.recv(seg(5000, 0, SYN, b"early"));
    assert_eq!(h.sent_one().ack, SeqNumber(5001));
    h.recv(ack_seg(5001, 1001));
    assert!(data_of(&h.events()).is_empty());
    assert_eq!(h.conn.rcv_nxt(), SeqNumber(5001));
}

#[test]
fn syn_received_ack_completes_the_handshake() {
    let (mut h, _) = conn_syn_received();
    h.events();
    h.advance(ms(5));
    let mut ack = ack_seg(5001, 1001);
    ack.window = 100; // scaled by 5: 3200 bytes
    h.recv(ack);
    let ev = h.events();
    assert_eq!(
        transitions(&ev),
        vec![(State::SynReceived, State::Established)]
    );
    assert!(ev.iter().any(|e| matches!(
        e,
        Event::Connected { peer, .. } if peer.mss == Some(1400) && peer.timestamps
    )));
    assert!(h.sent().is_empty(), "a bare ACK needs no answer");
    assert_eq!(h.conn.snd_una(), SeqNumber(1001));
    assert_eq!(h.conn.snd_wnd(), 3200);
    assert_eq!(h.conn.send_mss(), 1400 - 12);
    assert_eq!(h.conn.poll_timeout(), None, "the SYN's timer stops");
    h.conn.send(b"GET");
    assert_eq!(h.sent_one().payload, b"GET");
}

/// The peer's own SYN-ACK (its SYN again, acknowledging ours) also completes it: RFC 5961
/// §4 would challenge a SYN here, Linux lets exactly this one through and ACKs it.
#[test]
fn syn_received_peer_synack_completes_and_is_acked() {
    let (mut h, _) = conn_syn_received();
    h.events();
    h.recv(peer_syn(5000, SYN | ACK, 1001, 778));
    assert_eq!(h.state(), State::Established);
    let a = h.sent_one();
    assert_eq!(a.flags, ACK);
    assert_eq!((a.seq, a.ack), (SeqNumber(1001), SeqNumber(5001)));
    assert_eq!(a.options.timestamps.map(|t| t.1), Some(778));
    assert!(
        !h.anomalies()
            .iter()
            .any(|a| matches!(a, Anomaly::SynChallenged { .. }))
    );
}

#[test]
fn syn_received_retransmits_synack_then_times_out() {
    let (mut h, _) = conn_syn_received();
    h.events();
    for attempt in 1..=3 {
        h.fire();
        let r = h.sent_one();
        assert_eq!(r.flags, SYN | ACK);
        assert_eq!((r.seq, r.ack), (SeqNumber(1000), SeqNumber(5001)));
        assert!(r.retransmission);
        assert!(h.events().iter().any(|e| matches!(
            e,
            Event::Retransmit { attempt: a, .. } if *a == attempt
        )));
    }
    let at = h.fire();
    assert!(h.events().contains(&Event::TimedOut {
        at,
        state: State::SynReceived,
        answered: 1,
        zero_window: false
    }));
    assert_eq!(h.state(), State::Closed);
}

/// RFC 9293 §3.10.7.4, SYN-RECEIVED: an ACK of something we never sent gets
/// <SEQ=SEG.ACK><CTL=RST>.
#[test]
fn syn_received_bad_ack_gets_rst() {
    let (mut h, _) = conn_syn_received();
    h.recv(ack_seg(5001, 9999));
    let rst = h.sent_one();
    assert_eq!((rst.flags, rst.seq), (RST, SeqNumber(9999)));
    assert_eq!(h.state(), State::SynReceived);
}

#[test]
fn syn_received_rst_resets() {
    let (mut h, _) = conn_syn_received();
    h.events();
    h.recv(seg(5001, 0, RST, &[]));
    let ev = h.events();
    assert!(ev.iter().any(|e| matches!(
        e,
        Event::Reset {
            state: State::SynReceived,
            ..
        }
    )));
    assert_eq!(h.state(), State::Closed);
}

/// A RST may carry data saying why (RFC 9293 §3.5.3, SHLD-2): it is handed on as text,
/// printable ASCII kept, the rest escaped, bounded.
#[test]
fn established_rst_text_is_handed_on_bounded_and_escaped() {
    for (payload, want) in [
        (
            b"Connection reset by policy 42\n".to_vec(),
            "Connection reset by policy 42\\n".to_string(),
        ),
        (vec![0xff, b'a', 0], "\\xffa\\x00".to_string()),
        (vec![b'x'; 500], format!("{}…", "x".repeat(RST_TEXT_MAX))),
    ] {
        let mut h = conn_established();
        h.recv(seg(5001, 1001, RST | ACK, &payload));
        let text = h.events().into_iter().find_map(|e| match e {
            Event::Reset { text, .. } => text,
            _ => None,
        });
        assert_eq!(text.as_deref(), Some(want.as_str()));
    }
}

#[test]
fn syn_received_abort_sends_acceptable_rst() {
    let (mut h, _) = conn_syn_received();
    h.conn.abort(h.now);
    let rst = h.sent_one();
    assert_eq!(rst.flags, RST | ACK);
    assert_eq!((rst.seq, rst.ack), (SeqNumber(1001), SeqNumber(5001)));
    assert_eq!(h.state(), State::Closed);
}

/// Linux's `tcp_rcv_synsent_state_process`: a SYN-ACK whose TSecr is not between our first
/// SYN's TSval and now gets a RST (SEQ = SEG.ACK) and SYN-SENT goes on; the SYN is sent
/// again when its timer fires, and a proper SYN-ACK then connects.
#[test]
fn syn_sent_synack_with_foreign_tsecr_gets_rst_and_syn_again() {
    let (mut h, syn) = conn_syn_sent();
    let (syn_tsval, _) = syn.options.timestamps.unwrap();
    h.advance(ms(10));
    let mut bad = seg(5000, 1001, SYN | ACK, &[]);
    bad.options = TcpOptions::default().with_timestamps(40, syn_tsval.wrapping_add(1_000_000));
    h.recv(bad);
    let rst = h.sent_one();
    assert_eq!((rst.flags, rst.seq), (RST, SeqNumber(1001)));
    assert_eq!(h.state(), State::SynSent);
    assert!(h.anomalies().contains(&Anomaly::SynAckBadTsecr {
        tsecr: syn_tsval.wrapping_add(1_000_000)
    }));
    h.fire();
    let again = h.sent_one();
    assert_eq!((again.flags, again.retransmission), (SYN, true));
    let mut good = seg(5000, 1001, SYN | ACK, &[]);
    good.options = TcpOptions::default().with_timestamps(41, syn_tsval);
    h.recv(good);
    assert_eq!(h.state(), State::Established);
}

/// The same judgement across the timestamp clock's wrap (the lab's CI run met it: a TSval
/// of 4294782392): our first SYN's TSval just below 2^32, an echo of a value sent after the
/// wrap is ours, one far after it is not.
#[test]
fn syn_sent_synack_tsecr_is_judged_across_the_wrap() {
    let mut c = cfg(1000);
    let (_, probe_syn) = conn_syn_sent_with(c.clone());
    let clock = probe_syn
        .options
        .timestamps
        .unwrap()
        .0
        .wrapping_sub(c.ts_offset);
    c.ts_offset = (u32::MAX - 20).wrapping_sub(clock);
    let (mut h, syn) = conn_syn_sent_with(c.clone());
    let (syn_tsval, _) = syn.options.timestamps.unwrap();
    h.advance(ms(40));
    let mut bad = seg(5000, 1001, SYN | ACK, &[]);
    bad.options = TcpOptions::default().with_timestamps(40, syn_tsval.wrapping_add(5_000_000));
    h.recv(bad);
    assert_eq!(h.sent_one().flags, RST);
    assert_eq!(h.state(), State::SynSent);
    let (mut h, syn) = conn_syn_sent_with(c);
    let (syn_tsval, _) = syn.options.timestamps.unwrap();
    h.advance(ms(40));
    let mut good = seg(5000, 1001, SYN | ACK, &[]);
    good.options = TcpOptions::default().with_timestamps(40, syn_tsval.wrapping_add(30));
    assert!(
        syn_tsval.wrapping_add(30) < syn_tsval,
        "the echo is past the wrap"
    );
    h.recv(good);
    assert_eq!(h.state(), State::Established);
}

#[test]
fn syn_sent_synack_with_tsecr_zero_or_ours_is_accepted() {
    for echo in [Some(0), None] {
        let (mut h, syn) = conn_syn_sent();
        let tsecr = echo.unwrap_or(syn.options.timestamps.unwrap().0);
        let mut sa = seg(5000, 1001, SYN | ACK, &[]);
        sa.options = TcpOptions::default().with_timestamps(40, tsecr);
        h.recv(sa);
        assert_eq!(h.state(), State::Established, "TSecr {tsecr}");
    }
}

/// Linux's `tcp_parse_options` ("if (in_mss)"): MSS 0 sets nothing, so the RFC 9293
/// §3.7.1 default of 536 stands.
#[test]
fn syn_sent_synack_mss_zero_is_no_mss() {
    let h = conn_established_with(cfg(1000), 5000, opts_mss(0), 65535);
    assert_eq!(h.conn.send_mss(), 536);
}

/// Linux's `__tcp_mtu_to_mss`: never below TCP_MIN_SND_MSS (48), options come out after.
#[test]
fn syn_sent_synack_mss_below_floor_is_raised_to_48() {
    let (mut h, _) = conn_syn_sent();
    let mut sa = seg(5000, 1001, SYN | ACK, &[]);
    sa.options = opts_mss(1);
    h.recv(sa);
    assert_eq!(h.conn.send_mss(), 48);
    assert!(h.anomalies().contains(&Anomaly::MssAdjusted {
        offered: 1,
        used: 48
    }));
    let mut ts = opts_mss(47);
    ts.timestamps = Some((1, 0));
    let h = conn_established_with(cfg(1000), 5000, ts, 65535);
    assert_eq!(h.conn.send_mss(), 48 - 12, "timestamps come out of the 48");
}

/// RFC 9293 §3.1 MUST-7: a malformed option (already dropped by the parser) is reported,
/// and the segment works.
#[test]
fn syn_sent_synack_with_malformed_option_connects_and_reports_it() {
    let (mut h, _) = conn_syn_sent();
    let bytes = [2u8, 4, 5, 0xb4, 3, 4, 7, 0];
    let mut sa = seg(5000, 1001, SYN | ACK, &[]);
    sa.options = TcpOptions::parse(&bytes);
    h.recv(sa);
    assert_eq!(h.state(), State::Established);
    assert_eq!(h.conn.peer_options().wscale, None);
    assert!(
        h.anomalies()
            .contains(&Anomaly::MalformedOption { kind: 3 })
    );
}

#[test]
fn syn_sent_syn_rst_ack_reports_bad_flags_and_is_refused() {
    let (mut h, _) = conn_syn_sent();
    h.recv(seg(5000, 1001, SYN | RST | ACK, &[]));
    let ev = h.events();
    assert!(matches!(
        ev[0],
        Event::Anomaly {
            anomaly: Anomaly::BadFlagCombination { .. },
            ..
        }
    ));
    assert!(matches!(ev[1], Event::Refused { .. }));
    assert_eq!(h.state(), State::Closed);
}

#[test]
fn syn_sent_plain_ack_is_dropped() {
    let (mut h, _) = conn_syn_sent();
    h.recv(ack_seg(5000, 1001));
    assert!(h.events().is_empty());
    assert!(h.sent().is_empty());
    assert_eq!(h.state(), State::SynSent);
}

#[test]
fn syn_sent_retransmitted_syn_gives_no_rtt_sample() {
    let (mut h, _) = conn_syn_sent();
    h.fire();
    h.sent();
    assert_eq!(h.conn.rto(), ms(2000));
    h.advance(ms(50));
    h.recv(seg(5000, 1001, SYN | ACK, &[]));
    assert_eq!(h.state(), State::Established);
    assert_eq!(h.conn.srtt(), None, "Karn: ambiguous sample");
    assert_eq!(
        h.conn.rto(),
        ms(1000),
        "back to the initial RTO, not the SYN's 2 s"
    );
}

#[test]
fn syn_sent_synack_echoing_the_first_of_two_syns_gives_no_rtt_sample() {
    let (mut h, first) = conn_syn_sent();
    let (first_tsval, _) = first.options.timestamps.expect("our SYN carries TS");
    h.fire();
    h.sent();
    h.advance(ms(1000));
    // The peer answers our first SYN again after its own 1 s timeout.
    let mut synack = seg(5000, 1001, SYN | ACK, &[]);
    synack.options = TcpOptions {
        timestamps: Some((77, first_tsval)),
        ..opts_mss(1460)
    };
    h.recv(synack);
    assert_eq!(h.state(), State::Established);
    assert_eq!(
        h.conn.srtt(),
        None,
        "a 2 s sample would hold the peer's timer"
    );
    assert_eq!(h.conn.rto(), ms(1000));
}

#[test]
fn syn_sent_retransmitted_syn_echoed_by_tsecr_gives_an_rtt_sample() {
    let (mut h, _) = conn_syn_sent();
    h.fire();
    let resent = h.sent_one();
    let (tsval, _) = resent.options.timestamps.expect("our SYN carries TS");
    h.advance(ms(50));
    let mut synack = seg(5000, 1001, SYN | ACK, &[]);
    synack.options = TcpOptions {
        timestamps: Some((77, tsval)),
        ..opts_mss(1460)
    };
    h.recv(synack);
    assert_eq!(h.state(), State::Established);
    // RFC 7323 §4: the TSecr says which SYN this answers, so the sample is 50 ms.
    assert_eq!(h.conn.srtt(), Some(ms(50)));
    // 50 ms + 4 × 25 ms = 150 ms, raised to rto_min.
    assert_eq!(
        h.conn.rto(),
        ms(200),
        "RTO from the sample, not the backed-off 2 s"
    );
}

/// Closing as soon as the SYN-ACK is in (`--no-http`, `scan --complete`): the handshake's
/// ACK leaves alone, then the FIN, as Linux's connect() then close() — a SYN proxy takes
/// the third segment for its cookie's ACK and drops a FIN riding on it. A FIN that
/// answers the peer's FIN still carries the ACK (see the close tests).
#[test]
fn syn_sent_close_right_after_the_synack_sends_the_ack_alone_first() {
    let (mut h, _) = conn_syn_sent();
    h.advance(ms(10));
    h.recv(seg(5000, 1001, SYN | ACK, &[]));
    h.conn.close(h.now);
    let sent = h.sent();
    assert_eq!(sent.len(), 2, "{sent:#?}");
    assert_eq!((sent[0].flags, sent[0].seq), (ACK, SeqNumber(1001)));
    assert_eq!((sent[1].flags, sent[1].seq), (FIN | ACK, SeqNumber(1001)));
}

#[test]
fn syn_sent_close_goes_closed_silently() {
    let (mut h, _) = conn_syn_sent();
    h.conn.close(h.now);
    assert_eq!(
        transitions(&h.events()),
        vec![(State::SynSent, State::Closed)]
    );
    assert!(h.sent().is_empty());
    assert_eq!(h.conn.poll_timeout(), None);
}

#[test]
fn syn_sent_abort_sends_nothing() {
    let (mut h, _) = conn_syn_sent();
    assert!(!h.conn.abort(h.now), "abort says no RST went out");
    assert_eq!(h.state(), State::Closed);
    assert!(h.sent().is_empty());
}

#[test]
fn closed_segment_gets_rst() {
    let mut h = Harness::new(cfg(1000));
    h.recv(ack_seg(5000, 1234));
    let rst = h.sent_one();
    assert_eq!((rst.flags, rst.seq), (RST, SeqNumber(1234)));
    h.recv(seg(5000, 0, SYN, &[]));
    let rst = h.sent_one();
    assert_eq!((rst.flags, rst.ack), (RST | ACK, SeqNumber(5001)));
    h.recv(seg(5000, 0, RST, &[]));
    assert!(h.sent().is_empty());
}

// --- ESTABLISHED: sending ---

#[test]
fn established_send_splits_by_mss_with_psh_on_last() {
    let mut h = conn_established_with(cfg(1000), 5000, opts_mss(100), 65535);
    let data: Vec<u8> = (0..250u32).map(|i| i as u8).collect();
    h.conn.send(&data);
    let segs = h.sent();
    assert_eq!(segs.len(), 3);
    assert_eq!(
        segs.iter().map(|s| s.payload.len()).collect::<Vec<_>>(),
        vec![100, 100, 50]
    );
    assert_eq!(
        segs.iter().map(|s| s.seq.0).collect::<Vec<_>>(),
        vec![1001, 1101, 1201]
    );
    assert_eq!(segs[0].flags, ACK);
    assert_eq!(segs[2].flags, ACK | PSH);
    let joined: Vec<u8> = segs.iter().flat_map(|s| s.payload.clone()).collect();
    assert_eq!(joined, data);
    assert_eq!(h.conn.snd_nxt(), SeqNumber(1251));
    // Retransmission timer runs until everything is acked.
    assert!(h.conn.poll_timeout().is_some());
    h.recv(ack_seg(5001, 1101));
    assert_eq!(h.conn.snd_una(), SeqNumber(1101));
    assert!(h.conn.poll_timeout().is_some());
    h.recv(ack_seg(5001, 1251));
    assert_eq!(h.conn.poll_timeout(), None);
}

#[test]
fn established_send_stops_at_peer_window() {
    let mut h = conn_established_with(cfg(1000), 5000, opts_mss(100), 150);
    h.conn.send(&[7u8; 400]);
    let segs = h.sent();
    assert_eq!(
        segs.iter().map(|s| s.payload.len()).collect::<Vec<_>>(),
        vec![100, 50]
    );
    // The ACK opens the window again (RFC 9293 §3.10.7.4 window update).
    let mut a = ack_seg(5001, 1151);
    a.window = 300;
    h.recv(a);
    assert_eq!(h.conn.snd_wnd(), 300);
    let segs = h.sent();
    assert_eq!(
        segs.iter().map(|s| s.payload.len()).collect::<Vec<_>>(),
        vec![100, 100, 50]
    );
}

/// The peer shrinks its window below data already sent (its right edge moves back): the
/// retransmission stays inside the window it has now (RFC 9293 §3.8.6, SHLD-16), as
/// Linux's does, and the rest goes once the window opens again.
#[test]
fn a_retransmission_stays_inside_a_window_the_peer_shrank() {
    let mut c = cfg(1000);
    c.timestamps = false;
    let mut h = conn_established_with(c, 5000, opts_mss(1000), 400);
    h.conn.send(&[7u8; 400]);
    assert_eq!(h.sent().iter().map(|s| s.payload.len()).sum::<usize>(), 400);
    // 100 bytes taken, window 100: the right edge goes from 1401 back to 1201.
    let mut a = ack_seg(5001, 1101);
    a.window = 100;
    h.recv(a);
    assert!(h.sent().is_empty());
    h.fire();
    let r = h.sent_one();
    assert!(r.retransmission);
    assert_eq!((r.seq.0, r.payload.len()), (1101, 100), "{r:?}");
    // The window opens: the retransmission timer sends the rest from snd_una.
    let mut a = ack_seg(5001, 1201);
    a.window = 4000;
    h.recv(a);
    h.fire();
    let r = h.sent_one();
    assert_eq!((r.seq.0, r.payload.len()), (1201, 200), "{r:?}");
}

/// A window scale option stripped from the SYN-ACK alone (the server saw ours and scales):
/// its next window reads a sixteenth or less of the SYN-ACK's, noted once; a window that
/// merely moves, or one scaled by agreement, is not.
#[test]
fn a_window_scale_stripped_from_the_synack_is_noted() {
    let after = |opts: TcpOptions, window: u16| {
        let mut h = conn_established_with(cfg(1000), 5000, opts, 65160);
        h.anomalies();
        let mut a = ack_seg(5001, 1001);
        a.window = window;
        h.recv(a);
        let mut b = ack_seg(5001, 1001);
        b.window = 1;
        h.recv(b);
        h.anomalies()
    };
    assert_eq!(
        after(opts_mss(1460), 64),
        vec![Anomaly::WindowScaleStripped {
            synack_window: 65160,
            window: 64
        }]
    );
    assert!(after(opts_mss(1460), 60_000).is_empty());
    let scaled = TcpOptions {
        wscale: Some(10),
        ..opts_mss(1460)
    };
    assert!(after(scaled, 64).is_empty());
}

/// A middlebox that strips or adds the timestamps option (RFC 7323 §3.2): the segment is
/// taken as Linux takes it, and the oddity is noted once per connection.
#[test]
fn timestamps_oddities_are_taken_and_noted_once() {
    // Negotiated (the SYN-ACK echoes ours), then a segment without them.
    let (mut h, syn) = conn_syn_sent();
    let tsval = syn.options.timestamps.expect("our SYN's").0;
    let mut synack = seg(5000, 1001, SYN | ACK, &[]);
    synack.options = TcpOptions {
        mss: Some(1460),
        timestamps: Some((700, tsval)),
        ..TcpOptions::default()
    };
    h.recv(synack);
    h.sent();
    h.anomalies();
    h.recv(seg(5001, 1001, ACK | PSH, b"ab"));
    h.recv(seg(5003, 1001, ACK | PSH, b"cd"));
    assert_eq!(h.conn.rcv_nxt(), SeqNumber(5005), "taken");
    assert_eq!(
        h.anomalies(),
        vec![Anomaly::TimestampsMissing {
            seq: SeqNumber(5001)
        }]
    );
    // Not negotiated, then segments carrying them.
    let mut h = conn_established();
    let mut s = seg(5001, 1001, ACK | PSH, b"ab");
    s.options.timestamps = Some((9, 9));
    h.recv(s);
    let mut s = seg(5003, 1001, ACK | PSH, b"cd");
    s.options.timestamps = Some((10, 9));
    h.recv(s);
    assert_eq!(h.conn.rcv_nxt(), SeqNumber(5005), "taken");
    assert_eq!(
        h.anomalies(),
        vec![Anomaly::TimestampsUnnegotiated {
            seq: SeqNumber(5001)
        }]
    );
}

#[test]
fn established_window_is_scaled_by_peer_shift() {
    let mut c = cfg(1000);
    c.timestamps = false;
    let mut o = opts_mss(1000);
    o.wscale = Some(2);
    let mut h = conn_established_with(c, 5000, o, 100);
    assert_eq!(h.conn.snd_wnd(), 100, "SYN-ACK window unscaled");
    let mut a = ack_seg(5001, 1001);
    a.window = 100;
    h.recv(a);
    assert_eq!(h.conn.snd_wnd(), 400);
    h.conn.send(&[1u8; 1000]);
    let total: usize = h.sent().iter().map(|s| s.payload.len()).sum();
    assert_eq!(total, 400);
}

#[test]
fn established_old_window_update_is_ignored() {
    let mut h = conn_established();
    let mut newer = ack_seg(5001, 1001);
    newer.window = 1000;
    h.recv(newer);
    // Deliver data so WL1 moves forward, then an older segment must not set the window.
    let mut d = seg(5001, 1001, ACK, b"abc");
    d.window = 2000;
    h.recv(d);
    assert_eq!(h.conn.snd_wnd(), 2000);
    let mut old = ack_seg(5001, 1001);
    old.window = 10;
    h.recv(old);
    assert_eq!(h.conn.snd_wnd(), 2000, "SND.WL1 rule");
}

#[test]
fn established_timeout_retransmits_earliest_then_times_out() {
    let mut h = conn_established_with(cfg(1000), 5000, opts_mss(100), 65535);
    h.conn.send(&[1u8; 150]);
    assert_eq!(h.sent().len(), 2);
    let rto = h.conn.rto();
    let sent_at = h.now;
    for attempt in 1..=4u32 {
        let at = h.fire();
        if attempt == 1 {
            assert_eq!(at - sent_at, rto);
        }
        let s = h.sent_one();
        assert!(s.retransmission);
        assert_eq!(s.seq, SeqNumber(1001));
        assert_eq!(s.payload.len(), 100);
        assert_eq!(s.flags, ACK);
        assert_eq!(
            h.events(),
            vec![Event::Retransmit {
                at,
                seq: SeqNumber(1001),
                flags: ACK,
                attempt
            }]
        );
    }
    let at = h.fire();
    assert_eq!(
        h.events(),
        vec![
            Event::TimedOut {
                at,
                state: State::Established,
                answered: 0,
                zero_window: false,
            },
            Event::StateChanged {
                from: State::Established,
                to: State::Closed,
                at
            }
        ]
    );
    assert!(h.sent().is_empty());
}

#[test]
fn established_partial_ack_restarts_timer_and_resets_retries() {
    let mut h = conn_established_with(cfg(1000), 5000, opts_mss(100), 65535);
    h.conn.send(&[1u8; 150]);
    h.sent();
    h.fire();
    h.sent();
    let rto_backed = h.conn.rto();
    h.advance(ms(5));
    h.recv(ack_seg(5001, 1101));
    h.events();
    // Karn: no sample from the retransmitted segment.
    assert_eq!(h.conn.srtt(), Some(ms(10)));
    assert_eq!(h.conn.poll_timeout(), Some(h.now + rto_backed));
    let at = h.fire();
    let s = h.sent_one();
    assert_eq!((s.seq, s.payload.len()), (SeqNumber(1101), 50));
    assert_eq!(s.flags, ACK | PSH);
    assert!(matches!(
        h.events()[0],
        Event::Retransmit { attempt: 1, at: a, .. } if a == at
    ));
}

#[test]
fn established_ack_samples_rtt_for_new_data() {
    let mut h = conn_established();
    h.conn.send(b"HEAD / HTTP/1.1\r\n\r\n");
    h.sent();
    h.advance(ms(30));
    h.recv(ack_seg(5001, 1020));
    // srtt = 7/8 * 10 + 1/8 * 30 = 12.5 ms
    assert_eq!(h.conn.srtt(), Some(Duration::from_micros(12_500)));
}

#[test]
fn established_ack_of_unsent_data_is_acked_and_dropped() {
    let mut h = conn_established();
    h.conn.send(b"abc");
    h.sent();
    h.recv(seg(5001, 2000, ACK, b"xyz"));
    assert_eq!(
        h.anomalies(),
        vec![Anomaly::AckOfUnsentData {
            ack: SeqNumber(2000)
        }]
    );
    let a = h.sent_one();
    assert_eq!(a.ack, SeqNumber(5001), "data of the bad segment not taken");
    assert_eq!(h.conn.snd_una(), SeqNumber(1001));
    assert_eq!(h.state(), State::Established);
}

#[test]
fn established_ack_older_than_max_window_is_dropped() {
    let mut h = conn_established_with(cfg(1000), 5000, opts_mss(1460), 100);
    h.recv(seg(5001, 1001 - 500, ACK, b"x"));
    assert_eq!(
        h.anomalies(),
        vec![Anomaly::AckTooOld {
            ack: SeqNumber(501)
        }]
    );
    assert_eq!(h.conn.rcv_nxt(), SeqNumber(5001));
    h.sent_one();
    // Within MAX.SND.WND it is merely a duplicate: data taken.
    h.recv(seg(5001, 1001 - 50, ACK, b"x"));
    assert_eq!(h.conn.rcv_nxt(), SeqNumber(5002));
}

// --- RST and SYN in synchronized states (RFC 5961) ---

/// What an accepted RST in `state` makes the connection say at `at`.
fn reset_to_closed(at: Instant, state: State, at_peer_fin: bool) -> Vec<Event> {
    vec![
        Event::Reset {
            at,
            state,
            at_peer_fin,
            text: None,
        },
        Event::StateChanged {
            from: state,
            to: State::Closed,
            at,
        },
    ]
}

#[test]
fn established_rst_exact_resets() {
    let mut h = conn_established();
    let at = h.now;
    h.recv(seg(5001, 0, RST, &[]));
    assert_eq!(h.events(), reset_to_closed(at, State::Established, false));
    assert!(h.sent().is_empty());
}

#[test]
fn established_rst_in_window_is_challenged() {
    let mut h = conn_established();
    h.recv(seg(5100, 0, RST, &[]));
    assert_eq!(
        h.anomalies(),
        vec![Anomaly::RstChallenged {
            seq: SeqNumber(5100)
        }]
    );
    let a = h.sent_one();
    assert_eq!(
        (a.flags, a.seq, a.ack),
        (ACK, SeqNumber(1001), SeqNumber(5001))
    );
    assert_eq!(h.state(), State::Established);
}

/// A RST inside the window, then the exact one, read together (a fault walk's burst: both
/// came in one batch): the challenge ACK the first earned never leaves, and a note says
/// so — the note before it says "answered with a challenge ACK".
#[test]
fn a_reset_read_with_the_segments_it_follows_notes_what_never_left() {
    let mut h = conn_established();
    h.recv(seg(5100, 0, RST, &[]));
    h.recv(seg(5001, 0, RST, &[]));
    assert_eq!(
        h.anomalies(),
        vec![
            Anomaly::RstChallenged {
                seq: SeqNumber(5100)
            },
            Anomaly::ResetBeforeSent {
                acks: 1,
                data: 0,
                fin: false
            }
        ]
    );
    assert!(h.sent().is_empty());
    // The server's FIN, our close (FIN queued: LAST-ACK), then its RST in the same read:
    // our FIN never left.
    let mut h = conn_established();
    h.recv(seg(5001, 1001, FIN | ACK, &[]));
    h.conn.close(h.now);
    assert_eq!(h.state(), State::LastAck);
    h.recv(seg(5002, 0, RST, &[]));
    let unsent = h.anomalies();
    assert!(
        matches!(
            unsent[..],
            [Anomaly::ResetBeforeSent {
                fin: true,
                data: 0,
                ..
            }]
        ),
        "{unsent:?}"
    );
    assert!(unsent[0].to_string().contains("our FIN"), "{}", unsent[0]);
    assert!(h.sent().is_empty());
    // What had left is not named: nothing queued, no note.
    let mut h = conn_established();
    h.recv(seg(5100, 0, RST, &[]));
    h.sent_one();
    h.recv(seg(5001, 0, RST, &[]));
    assert_eq!(
        h.anomalies(),
        vec![Anomaly::RstChallenged {
            seq: SeqNumber(5100)
        }]
    );
}

#[test]
fn established_rst_out_of_window_is_ignored() {
    let mut h = conn_established();
    for seq in [5000u32, 5001 + 8192, 1] {
        h.recv(seg(seq, 0, RST | ACK, &[]));
        assert_eq!(
            h.anomalies(),
            vec![Anomaly::RstIgnored {
                seq: SeqNumber(seq)
            }]
        );
    }
    assert!(h.sent().is_empty());
    assert_eq!(h.state(), State::Established);
}

#[test]
fn established_syn_is_challenged() {
    let mut h = conn_established();
    // A second later, when a server's timer sends its SYN-ACK again (RFC 6298 §2.1).
    h.advance(Duration::from_secs(1));
    // A retransmitted SYN-ACK (our ACK was lost) and a SYN out of nowhere alike; the note
    // says which it was.
    for (s, again) in [
        (seg(5000, 1001, SYN | ACK, &[]), true),
        (seg(99, 0, SYN, &[]), false),
    ] {
        let seq = s.seq;
        h.recv(s);
        assert_eq!(h.anomalies(), vec![Anomaly::SynChallenged { seq, again }]);
        let a = h.sent_one();
        assert_eq!((a.flags, a.ack), (ACK, SeqNumber(5001)));
    }
    assert_eq!(h.state(), State::Established);
}

/// The SYN-ACK again sooner than any retransmission timer (200 ms): a copy
/// (the path duplicated it, or the server answered a copy of our SYN; a fault walk with
/// every packet duplicated got two such, 2 and 3 µs after the first, before our ACK had
/// even left), not our ACK lost. ACKed the same; the note says which.
#[test]
fn established_synack_copy_is_called_a_copy_not_a_lost_ack() {
    let mut h = conn_established();
    h.advance(Duration::from_micros(3));
    let s = seg(5000, 1001, SYN | ACK, &[]);
    let seq = s.seq;
    h.recv(s);
    assert_eq!(
        h.anomalies(),
        vec![Anomaly::SynAckCopy {
            seq,
            after: Duration::from_micros(3)
        }]
    );
    let a = h.sent_one();
    assert_eq!((a.flags, a.ack), (ACK, SeqNumber(5001)));
    // Just under the floor: still a copy; at it, the server's own retransmission.
    h.advance(Duration::from_millis(199));
    h.recv(seg(5000, 1001, SYN | ACK, &[]));
    assert!(matches!(h.anomalies()[..], [Anomaly::SynAckCopy { .. }]));
    h.sent_one();
    h.advance(Duration::from_millis(1));
    h.recv(seg(5000, 1001, SYN | ACK, &[]));
    assert_eq!(
        h.anomalies(),
        vec![Anomaly::SynChallenged { seq, again: true }]
    );
    assert_eq!(h.state(), State::Established);
}

#[test]
fn established_syn_fin_is_bad_flags_and_challenged() {
    let mut h = conn_established();
    h.recv(seg(5001, 1001, SYN | FIN, &[]));
    let a = h.anomalies();
    assert!(matches!(a[0], Anomaly::BadFlagCombination { .. }));
    assert!(matches!(a[1], Anomaly::SynChallenged { .. }));
    assert_eq!(h.state(), State::Established);
}

// --- ESTABLISHED: receiving ---

#[test]
fn established_in_order_data_is_delivered_and_acked() {
    let mut h = conn_established();
    h.recv(seg(5001, 1001, ACK | PSH, b"HTTP/1.1 200 OK\r\n"));
    assert_eq!(data_of(&h.events()), b"HTTP/1.1 200 OK\r\n");
    let a = h.sent_one();
    assert_eq!(a.ack, SeqNumber(5018));
    assert_eq!(h.conn.rcv_nxt(), SeqNumber(5018));
}

#[test]
fn established_out_of_order_segments_are_reassembled() {
    let mut h = conn_established();
    h.recv(seg(5007, 1001, ACK, b"ghi"));
    assert!(data_of(&h.events()).is_empty());
    assert_eq!(h.sent_one().ack, SeqNumber(5001), "duplicate ACK at once");
    h.recv(seg(5004, 1001, ACK, b"def"));
    assert_eq!(h.sent_one().ack, SeqNumber(5001));
    assert_eq!(h.conn.reassembly_buffered(), 9);
    h.recv(seg(5001, 1001, ACK, b"abc"));
    assert_eq!(data_of(&h.events()), b"abcdefghi");
    assert_eq!(h.sent_one().ack, SeqNumber(5010));
    assert_eq!(h.conn.reassembly_buffered(), 0);
}

/// Segments read in one batch (the I/O hands a tap batch over before polling): each
/// out-of-order one still draws its own duplicate ACK (RFC 5681 §4.2), as Linux's, so a
/// sender without SACK counts three and retransmits at once (§3.2); in-order ones are
/// still folded into one cumulative ACK. A walk: ten out-of-order segments drew one ACK,
/// and the server waited 210 ms for its timer.
#[test]
fn out_of_order_segments_in_one_batch_each_draw_a_duplicate_ack() {
    let mut h = conn_established();
    h.recv(seg(5001, 1001, ACK, b"aaaa"));
    h.recv(seg(5005, 1001, ACK, b"bbbb"));
    // 5009..5013 lost; ten segments after it.
    for i in 0..10u32 {
        h.recv(seg(5013 + 4 * i, 1001, ACK, b"cccc"));
    }
    let acks = h.sent();
    let numbers: Vec<u32> = acks.iter().map(|s| s.ack.0).collect();
    // One cumulative ACK for the in-order bytes, then ten duplicates of it.
    assert_eq!(numbers, vec![5009; 11], "{acks:?}");
    // The hole filled: one ACK of everything.
    h.recv(seg(5009, 1001, ACK, b"dddd"));
    assert_eq!(h.sent_one().ack, SeqNumber(5053));
    // Bounded: a flood of out-of-order segments between two polls queues at most
    // MAX_QUEUED_ACKS pure ACKs.
    for i in 0..200u32 {
        h.recv(seg(6001 + 4 * i, 1001, ACK, b"eeee"));
    }
    let n = h.sent().len();
    assert!((2..=32).contains(&n), "{n}");
}

/// Data beyond our window (a sender that overran it: a window scale a middlebox stripped
/// from the SYN-ACK only) draws a duplicate ACK per segment, as Linux's (its rate limit
/// spares data segments); bare ACKs outside the window, one between them.
#[test]
fn segments_beyond_the_window_each_draw_a_duplicate_ack_when_they_carry_data() {
    let mut h = conn_established();
    let beyond = 5001 + 200_000; // past rcv_buf (128 KiB)
    for i in 0..10u32 {
        h.recv(seg(beyond + 100 * i, 1001, ACK, &[7u8; 100]));
    }
    let acks = h.sent();
    assert_eq!(acks.len(), 10, "{acks:?}");
    assert!(
        acks.iter()
            .all(|a| a.ack == SeqNumber(5001) && a.payload.is_empty())
    );
    for i in 0..10u32 {
        h.recv(seg(beyond + 100 * i, 1001, ACK, &[]));
    }
    assert_eq!(h.sent().len(), 1);
}

/// A window scale stripped from the SYN-ACK alone: the peer reads our unscaled 65 535 as
/// 65 535 << 7 and sends past it; a path that reordered its burst brought segments far
/// ahead of the in-order ones. Those within our buffer (128 KiB) are held and SACKed, so
/// the peer's SACK recovery can resend the hole (dropped, they left it nothing but
/// duplicate ACKs without blocks, and its RTO: a fault walk's O1); past the buffer they
/// are still dropped, and the field we advertise stays the unscaled 65 535.
#[test]
fn data_past_an_unscaled_window_is_held_up_to_our_buffer_when_our_syn_offered_a_scale() {
    let mut c = cfg(1000);
    c.rcv_buf = 128 * 1024;
    c.timestamps = false;
    let mut opts = opts_mss(1460);
    opts.sack_permitted = true;
    let mut h = conn_established_with(c, 5000, opts, 65160);
    let mut a = ack_seg(5001, 1001);
    a.window = 64;
    h.recv(a);
    h.anomalies();
    let ahead = 5001 + 100_000; // past 65 535, within 128 KiB
    h.recv(seg(ahead, 1001, ACK, &[7u8; 524]));
    let dup = h.sent_one();
    assert_eq!(dup.ack, SeqNumber(5001));
    assert_eq!(
        dup.options.sack_blocks[0],
        Some((SeqNumber(ahead), SeqNumber(ahead + 524))),
        "{dup:?}"
    );
    assert_eq!(dup.window, 65_535, "the field is unscaled");
    assert_eq!(h.conn.reassembly_buffered(), 100_000 + 524);
    assert!(h.anomalies().is_empty(), "not outside the window");
    // Past the buffer: dropped and ACKed, as before.
    let past = 5001 + 140_000;
    h.recv(seg(past, 1001, ACK, &[7u8; 524]));
    assert_eq!(
        h.anomalies(),
        vec![Anomaly::OutOfWindow {
            seq: SeqNumber(past),
            len: 524
        }]
    );
    assert_eq!(h.sent_one().ack, SeqNumber(5001));
    // The hole filled: everything up to the held segment's end is delivered.
    h.recv(seg(5001, 1001, ACK, &vec![1u8; 100_000]));
    assert_eq!(data_of(&h.events()).len(), 100_000 + 524);
    assert_eq!(h.conn.rcv_nxt(), SeqNumber(ahead + 524));
    assert_eq!(h.conn.reassembly_buffered(), 0);
    let ack = h.sent_one();
    assert_eq!((ack.ack, ack.window), (SeqNumber(ahead + 524), 65_535));
}

/// With SACK, every duplicate ACK carries the blocks as they stood; an ACK after one that
/// carried blocks does not supersede it.
#[test]
fn duplicate_acks_with_sack_blocks_are_each_sent() {
    let mut opts = opts_mss(1460);
    opts.sack_permitted = true;
    let mut h = conn_established_with(cfg(1000), 5000, opts, 65535);
    h.recv(seg(5005, 1001, ACK, b"bbbb"));
    h.recv(seg(5013, 1001, ACK, b"cccc"));
    h.recv(seg(5001, 1001, ACK, b"aaaa"));
    let acks = h.sent();
    let got: Vec<(u32, usize)> = acks
        .iter()
        .map(|s| (s.ack.0, s.options.sack_blocks.iter().flatten().count()))
        .collect();
    // Two duplicates with one and two blocks, then the ACK the first hole's filling drew.
    assert_eq!(got, vec![(5001, 1), (5001, 2), (5009, 1)], "{acks:?}");
}

#[test]
fn established_overlapping_and_duplicate_segments_deliver_once() {
    let mut h = conn_established();
    h.recv(seg(5001, 1001, ACK, b"abcd"));
    h.recv(seg(5003, 1001, ACK, b"cdef")); // overlaps the left edge
    h.recv(seg(5009, 1001, ACK, b"ijk")); // out of order
    h.recv(seg(5008, 1001, ACK, b"hijk")); // overlaps it
    h.recv(seg(5001, 1001, ACK, b"abcdef")); // pure duplicate
    let ev = h.events();
    assert_eq!(data_of(&ev), b"abcdef");
    assert!(ev.contains(&Event::Anomaly {
        at: h.now,
        anomaly: Anomaly::Duplicate {
            seq: SeqNumber(5001),
            len: 6
        }
    }));
    h.recv(seg(5007, 1001, ACK, b"g"));
    assert_eq!(data_of(&h.events()), b"ghijk");
    assert_eq!(h.conn.rcv_nxt(), SeqNumber(5012));
    let acks = h.sent();
    assert_eq!(acks.last().unwrap().ack, SeqNumber(5012));
}

#[test]
fn established_data_beyond_window_is_trimmed() {
    let mut h = conn_established();
    let big = vec![9u8; 9000];
    h.recv(seg(5001, 1001, ACK | FIN, &big));
    let ev = h.events();
    assert_eq!(data_of(&ev).len(), 8192);
    assert!(ev.contains(&Event::Anomaly {
        at: h.now,
        anomaly: Anomaly::BeyondWindow {
            seq: SeqNumber(5001 + 8192),
            len: 9000 - 8192 + 1
        }
    }));
    assert_eq!(
        h.state(),
        State::Established,
        "the trimmed FIN is not taken"
    );
    assert_eq!(h.sent_one().ack, SeqNumber(5001 + 8192));
}

#[test]
fn established_out_of_order_data_is_bounded_by_window() {
    let mut h = conn_established();
    h.recv(seg(5001 + 8000, 1001, ACK, &[1u8; 1000]));
    assert!(h.conn.reassembly_buffered() <= 8192);
    let a = h.anomalies();
    assert_eq!(
        a,
        vec![Anomaly::BeyondWindow {
            seq: SeqNumber(5001 + 8192),
            len: 808
        }]
    );
}

#[test]
fn established_out_of_window_segment_is_acked_and_reported() {
    let mut h = conn_established();
    h.recv(seg(5001 + 9000, 1001, ACK, b"zz"));
    assert_eq!(
        h.anomalies(),
        vec![Anomaly::OutOfWindow {
            seq: SeqNumber(14001),
            len: 2
        }]
    );
    assert_eq!(h.sent_one().ack, SeqNumber(5001));
    assert_eq!(h.conn.reassembly_buffered(), 0);
}

#[test]
fn established_segment_without_ack_bit_is_dropped() {
    let mut h = conn_established();
    h.recv(seg(5001, 0, TcpFlags(0), b"data"));
    assert!(h.events().is_empty());
    assert!(h.sent().is_empty());
    assert_eq!(h.conn.rcv_nxt(), SeqNumber(5001));
}

#[test]
fn established_sack_blocks_describe_out_of_order_data_most_recent_first() {
    let mut c = cfg(1000);
    c.timestamps = false;
    let mut o = opts_mss(1460);
    o.sack_permitted = true;
    let mut h = conn_established_with(c, 5000, o, 65535);
    h.recv(seg(5011, 1001, ACK, b"b"));
    let a = h.sent_one();
    assert_eq!(
        a.options.sack_blocks[0],
        Some((SeqNumber(5011), SeqNumber(5012)))
    );
    h.recv(seg(5021, 1001, ACK, b"c"));
    h.recv(seg(5031, 1001, ACK, b"d"));
    h.recv(seg(5041, 1001, ACK, b"e"));
    h.recv(seg(5051, 1001, ACK, b"f"));
    let a = h.sent().pop().unwrap();
    let blocks: Vec<_> = a
        .options
        .sack_blocks
        .iter()
        .flatten()
        .map(|b| b.0.0)
        .collect();
    assert_eq!(blocks, vec![5051, 5041, 5031, 5021], "4 blocks without TS");
    // Filling the hole at the left edge drops that block.
    h.recv(seg(5001, 1001, ACK, b"0123456789"));
    let a = h.sent_one();
    assert_eq!(a.ack, SeqNumber(5012));
    let blocks: Vec<_> = a
        .options
        .sack_blocks
        .iter()
        .flatten()
        .map(|b| b.0.0)
        .collect();
    assert_eq!(blocks, vec![5051, 5041, 5031, 5021]);
}

/// The SACK blocks a segment carries, in its order.
fn sack_blocks(s: &Segment) -> Vec<(SeqNumber, SeqNumber)> {
    s.options.sack_blocks.iter().flatten().copied().collect()
}

/// A FIN held above a hole is SACKed, as Linux does (`tcp_data_queue_ofo` SACKs up to a
/// segment's end_seq, the FIN included): curl's ACK of a FIN whose response was lost said
/// `sack {58:59}` on the wire, and the server sent the response again 20 ms later (RACK);
/// without the block it waited for its retransmission timer (240 ms more here).
#[test]
fn established_out_of_order_fin_is_sacked() {
    let mut c = cfg(1000);
    c.timestamps = false;
    let mut o = opts_mss(1460);
    o.sack_permitted = true;
    // The response (5001..5058) lost; the FIN alone at 5058.
    let mut h = conn_established_with(c.clone(), 5000, o, 65535);
    h.recv(seg(5058, 1001, ACK | FIN, b""));
    let a = h.sent_one();
    assert_eq!(a.ack, SeqNumber(5001));
    assert_eq!(
        a.options.sack_blocks[0],
        Some((SeqNumber(5058), SeqNumber(5059)))
    );
    // The response comes again: everything in order, no block left.
    h.recv(seg(5001, 1001, ACK | PSH, &[b'x'; 57]));
    let a = h.sent().pop().unwrap();
    assert_eq!(a.ack, SeqNumber(5059));
    assert!(a.options.sack_blocks.iter().all(Option::is_none));

    // Data and FIN above a hole: one block, the FIN's sequence number included.
    let mut h = conn_established_with(c.clone(), 5000, o, 65535);
    h.recv(seg(5011, 1001, ACK | FIN, b"tail"));
    let a = h.sent_one();
    assert_eq!(
        a.options.sack_blocks[0],
        Some((SeqNumber(5011), SeqNumber(5016)))
    );
    assert!(a.options.sack_blocks[1].is_none());

    // A FIN not adjacent to the data held: its own block, first while it is the most
    // recent arrival, after data that came later.
    let mut h = conn_established_with(c, 5000, o, 65535);
    h.recv(seg(5011, 1001, ACK, b"b"));
    h.sent_one();
    h.recv(seg(5031, 1001, ACK | FIN, b""));
    let blocks = sack_blocks(&h.sent_one());
    assert_eq!(
        blocks,
        vec![
            (SeqNumber(5031), SeqNumber(5032)),
            (SeqNumber(5011), SeqNumber(5012))
        ]
    );
    h.recv(seg(5021, 1001, ACK, b"c"));
    let blocks = sack_blocks(&h.sent_one());
    assert_eq!(
        blocks,
        vec![
            (SeqNumber(5021), SeqNumber(5022)),
            (SeqNumber(5031), SeqNumber(5032)),
            (SeqNumber(5011), SeqNumber(5012))
        ]
    );
}

#[test]
fn established_sack_with_timestamps_has_at_most_three_blocks() {
    let mut o = opts_mss(1460);
    o.sack_permitted = true;
    o.timestamps = Some((100, 0));
    let mut h = conn_established_with(cfg(1000), 5000, o, 65535);
    for i in 1..=5u32 {
        let mut s = seg(5001 + 10 * i, 1001, ACK, b"x");
        s.options.timestamps = Some((100 + i, 0));
        h.recv(s);
    }
    let a = h.sent().pop().unwrap();
    let blocks: Vec<_> = a.options.sack_blocks.iter().flatten().copied().collect();
    assert_eq!(
        blocks,
        vec![
            (SeqNumber(5051), SeqNumber(5052)),
            (SeqNumber(5041), SeqNumber(5042)),
            (SeqNumber(5031), SeqNumber(5032))
        ]
    );
    assert!(a.options.timestamps.is_some());
}

#[test]
fn established_without_sack_sends_no_blocks() {
    let mut h = conn_established();
    h.recv(seg(5011, 1001, ACK, b"b"));
    assert!(h.sent_one().options.sack_blocks.iter().all(Option::is_none));
}

#[test]
fn established_timestamps_echo_ts_recent() {
    let mut o = opts_mss(1460);
    o.timestamps = Some((1000, 0));
    let mut h = conn_established_with(cfg(1000), 5000, o, 65535);
    h.advance(ms(7));
    let mut d = seg(5001, 1001, ACK, b"a");
    d.options.timestamps = Some((1010, 0));
    h.recv(d);
    let a = h.sent_one();
    let expect_tsval = ((h.now.as_nanos() / MS) as u32).wrapping_add(5000);
    assert_eq!(a.options.timestamps, Some((expect_tsval, 1010)));
    // An older TSval is not taken, and PAWS drops its data (RFC 7323 §5.3 R1): a
    // duplicate ACK of what we have, TS.Recent unchanged.
    let mut old = seg(5002, 1001, ACK, b"b");
    old.options.timestamps = Some((900, 0));
    h.recv(old);
    let a = h.sent_one();
    assert_eq!(a.options.timestamps.map(|t| t.1), Some(1010));
    assert_eq!(a.ack, SeqNumber(5002));
    assert_eq!(h.conn.rcv_nxt(), SeqNumber(5002));
    assert_eq!(
        h.anomalies(),
        vec![Anomaly::PawsRejected {
            tsval: 900,
            ts_recent: 1010
        }]
    );
    let mut b = seg(5002, 1001, ACK, b"b");
    b.options.timestamps = Some((1011, 0));
    h.recv(b);
    assert_eq!(h.sent_one().options.timestamps.map(|t| t.1), Some(1011));
    assert_eq!(h.conn.rcv_nxt(), SeqNumber(5003));
    // An out-of-order segment (seq > Last.ACK.sent) does not update TS.Recent.
    let mut ooo = seg(5100, 1001, ACK, b"c");
    ooo.options.timestamps = Some((2000, 0));
    h.recv(ooo);
    assert_eq!(h.sent_one().options.timestamps.map(|t| t.1), Some(1011));
    // Data segments carry timestamps too, RSTs do not.
    h.conn.send(b"q");
    assert!(h.sent_one().options.timestamps.is_some());
    h.conn.abort(h.now);
    assert_eq!(h.sent_one().options.timestamps, None);
}

#[test]
fn established_timestamps_wrap_is_newer() {
    let mut o = opts_mss(1460);
    o.timestamps = Some((u32::MAX - 1, 0));
    let mut h = conn_established_with(cfg(1000), 5000, o, 65535);
    let mut d = seg(5001, 1001, ACK, b"a");
    d.options.timestamps = Some((3, 0));
    h.recv(d);
    assert_eq!(h.sent_one().options.timestamps.map(|t| t.1), Some(3));
}

// --- zero window and persist ---

#[test]
fn established_zero_window_probes_then_window_opens() {
    let mut h = conn_established_with(cfg(1000), 5000, opts_mss(1460), 0);
    h.conn.send(b"hello");
    assert!(h.sent().is_empty(), "nothing fits a zero window");
    let first = h.conn.poll_timeout().expect("persist armed");
    assert_eq!(first, h.now + h.conn.rto());
    h.fire();
    let p = h.sent_one();
    assert_eq!((p.seq, p.payload.as_slice()), (SeqNumber(1001), &b"h"[..]));
    assert!(!p.retransmission);
    assert_eq!(h.conn.snd_nxt(), SeqNumber(1002));
    // Peer still closed: the probe is not acked and is sent again, later.
    let mut zero = ack_seg(5001, 1001);
    zero.window = 0;
    h.recv(zero);
    let before = h.now;
    let at = h.fire();
    assert_eq!(at - before, h.conn.rto() * 2);
    let p = h.sent_one();
    assert_eq!((p.seq, p.payload.as_slice()), (SeqNumber(1001), &b"h"[..]));
    assert!(p.retransmission);
    assert!(matches!(h.events()[0], Event::Retransmit { .. }));
    // Probing goes on as long as the peer answers (RFC 9293 §3.8.6.1 MUST-36), past the
    // four retries that bound unanswered ones.
    for _ in 0..10 {
        h.fire();
        h.sent();
        let mut zero = ack_seg(5001, 1001);
        zero.window = 0;
        h.recv(zero);
    }
    assert_eq!(h.state(), State::Established);
    assert!(h.conn.zero_window_probing());
    // The window opens and acks the probe byte: the rest goes out.
    let mut open = ack_seg(5001, 1002);
    open.window = 1000;
    h.recv(open);
    let s = h.sent_one();
    assert_eq!(
        (s.seq, s.payload.as_slice()),
        (SeqNumber(1002), &b"ello"[..])
    );
    assert_eq!(s.flags, ACK | PSH);
    h.recv(ack_seg(5001, 1006));
    assert_eq!(h.conn.poll_timeout(), None);
}

#[test]
fn established_window_closes_after_ack_then_persist() {
    let mut h = conn_established_with(cfg(1000), 5000, opts_mss(100), 100);
    h.conn.send(&[5u8; 150]);
    assert_eq!(h.sent().len(), 1);
    let mut zero = ack_seg(5001, 1101);
    zero.window = 0;
    h.recv(zero);
    assert!(h.sent().is_empty());
    h.fire();
    let p = h.sent_one();
    assert_eq!((p.seq, p.payload.len()), (SeqNumber(1101), 1));
    let mut open = ack_seg(5001, 1102);
    open.window = 100;
    h.recv(open);
    assert_eq!(h.sent_one().payload.len(), 49);
}

/// RFC 9293 §3.8.3 R2 for zero-window probes (Linux's `tcp_probe_timer`: `tcp_retries2`
/// unanswered probes): probes nobody answers give up, without a RST, and say so.
#[test]
fn established_zero_window_unanswered_probes_time_out() {
    let mut h = conn_established_with(cfg(1000), 5000, opts_mss(1460), 0);
    h.conn.send(b"hello");
    assert!(h.sent().is_empty());
    for _ in 0..4 {
        h.fire();
        assert_eq!(h.sent_one().payload, b"h");
    }
    h.events();
    let at = h.fire();
    assert!(h.sent().is_empty(), "no RST after a timeout");
    assert!(h.events().contains(&Event::TimedOut {
        at,
        state: State::Established,
        answered: 0,
        zero_window: true
    }));
    assert_eq!(h.state(), State::Closed);
}

/// The RST of an abort must be acceptable (RFC 9293 §3.10.7.4, RFC 5961 §3.2). With the
/// peer's window closed only SEG.SEQ = its RCV.NXT is; our probe byte, counted in
/// SND.NXT, was never taken, so the RST goes at SND.UNA.
#[test]
fn established_zero_window_abort_rst_is_at_snd_una() {
    let mut h = conn_established_with(cfg(1000), 5000, opts_mss(1460), 0);
    h.conn.send(b"hello");
    h.sent();
    h.fire();
    assert_eq!(h.sent_one().seq, SeqNumber(1001));
    assert_eq!(h.conn.snd_nxt(), SeqNumber(1002));
    let mut zero = ack_seg(5001, 1001);
    zero.window = 0;
    h.recv(zero);
    assert!(h.conn.zero_window_probing());
    h.conn.abort(h.now);
    let rst = h.sent_one();
    assert_eq!(rst.flags, RST | ACK);
    assert_eq!(rst.seq, SeqNumber(1001));
}

/// A peer that keeps answering but never acknowledges our data: the timeout says how many
/// segments it sent meanwhile (it did not stop answering).
#[test]
fn established_timeout_counts_what_the_peer_sent_meanwhile() {
    let mut h = conn_established();
    h.conn.send(b"req");
    h.sent();
    for i in 0..4 {
        h.recv(seg(5001, 1001, ACK, &[b'a' + i]));
        h.sent();
        h.fire();
        h.sent();
    }
    h.events();
    let at = h.fire();
    assert!(h.events().contains(&Event::TimedOut {
        at,
        state: State::Established,
        answered: 4,
        zero_window: false
    }));
}

/// Overlapping out-of-order bytes: the copy starting lower wins (Linux); a different
/// second copy is reported (a middlebox or an injection).
#[test]
fn established_overlap_with_different_bytes_is_reported() {
    let mut h = conn_established();
    h.recv(seg(5004, 1001, ACK, b"defg"));
    h.recv(seg(5006, 1001, ACK, b"fgh")); // same bytes where they overlap
    assert!(
        !h.anomalies()
            .iter()
            .any(|a| matches!(a, Anomaly::OverlapConflict { .. }))
    );
    h.recv(seg(5005, 1001, ACK, b"XY"));
    assert!(h.anomalies().contains(&Anomaly::OverlapConflict {
        seq: SeqNumber(5005),
        len: 2
    }));
    h.recv(seg(5001, 1001, ACK, b"abc"));
    assert_eq!(data_of(&h.events()), b"abcdefgh");
}

/// RFC 7323 §5.3: RSTs are acceptable whatever their timestamp (Linux: "Reset is accepted
/// even if it did not pass PAWS").
#[test]
fn established_paws_exempts_rst() {
    let mut o = opts_mss(1460);
    o.timestamps = Some((1000, 0));
    let mut h = conn_established_with(cfg(1000), 5000, o, 65535);
    let mut rst = seg(5001, 0, RST, &[]);
    rst.options.timestamps = Some((10, 0));
    h.recv(rst);
    assert_eq!(h.state(), State::Closed);
}

/// Linux's `TCP_PAWS_WINDOW` of one tick: a TSval one behind TS.Recent still passes;
/// two behind is dropped.
#[test]
fn established_paws_tolerates_one_tick() {
    let mut o = opts_mss(1460);
    o.timestamps = Some((1000, 0));
    let mut h = conn_established_with(cfg(1000), 5000, o, 65535);
    let mut d = seg(5001, 1001, ACK, b"a");
    d.options.timestamps = Some((999, 0));
    h.recv(d);
    assert_eq!(h.conn.rcv_nxt(), SeqNumber(5002));
    let mut d = seg(5002, 1001, ACK, b"b");
    d.options.timestamps = Some((998, 0));
    h.recv(d);
    assert_eq!(h.conn.rcv_nxt(), SeqNumber(5002));
    // Across the 2^32 wrap of TSval too.
    let mut o = opts_mss(1460);
    o.timestamps = Some((3, 0));
    let mut h = conn_established_with(cfg(1000), 5000, o, 65535);
    let mut d = seg(5001, 1001, ACK, b"a");
    d.options.timestamps = Some((u32::MAX - 5, 0));
    h.recv(d);
    assert_eq!(h.conn.rcv_nxt(), SeqNumber(5001), "older across the wrap");
}

/// Linux's `tcp_disordered_ack`: a pure duplicate ACK that changes no window and whose
/// TSval is within an RTO of TS.Recent is let through, not answered.
#[test]
fn established_paws_lets_a_disordered_duplicate_ack_through() {
    let mut o = opts_mss(1460);
    o.timestamps = Some((1000, 0));
    let mut h = conn_established_with(cfg(1000), 5000, o, 65535);
    // One ACK at RCV.NXT first, so SND.WL1 is there and the next changes nothing.
    let mut first = ack_seg(5001, 1001);
    first.options.timestamps = Some((1000, 0));
    h.recv(first);
    let mut dup = ack_seg(5001, 1001);
    dup.options.timestamps = Some((990, 0));
    h.recv(dup);
    assert!(h.anomalies().is_empty());
    assert!(h.sent().is_empty());
    // The same closing the window may update it, so is not "disordered": dropped and
    // answered.
    let mut moved = ack_seg(5001, 1001);
    moved.options.timestamps = Some((990, 0));
    moved.window = 0;
    h.recv(moved);
    assert!(matches!(
        h.anomalies()[..],
        [Anomaly::PawsRejected { tsval: 990, .. }]
    ));
}

/// The urgent pointer is reported, and changes nothing else.
#[test]
fn established_urgent_pointer_is_reported() {
    let mut h = conn_established();
    let mut d = seg(5001, 1001, ACK | TcpFlags::URG, b"abc");
    d.urgent = 2;
    h.recv(d);
    let ev = h.events();
    assert_eq!(data_of(&ev), b"abc");
    assert!(ev.contains(&Event::Anomaly {
        at: h.now,
        anomaly: Anomaly::Urgent {
            seq: SeqNumber(5001),
            pointer: 2
        }
    }));
}

// --- closing ---

#[test]
fn established_close_fin_wait_1_ack_fin_wait_2_fin_time_wait_closed() {
    let mut h = conn_established();
    h.conn.send(b"abc");
    h.conn.close(h.now);
    h.conn.send(b"ignored after close");
    assert_eq!(
        transitions(&h.events()),
        vec![(State::Established, State::FinWait1)]
    );
    let s = h.sent_one();
    assert_eq!(s.flags, ACK | PSH | FIN, "FIN rides on the last data");
    assert_eq!(s.payload, b"abc");
    assert_eq!(h.conn.snd_nxt(), SeqNumber(1005));
    h.recv(ack_seg(5001, 1004));
    assert_eq!(h.state(), State::FinWait1, "FIN not acked yet");
    h.recv(ack_seg(5001, 1005));
    assert_eq!(h.state(), State::FinWait2);
    assert_eq!(h.conn.poll_timeout(), None, "no FIN-WAIT-2 timer");
    h.recv(seg(5001, 1005, ACK | FIN, &[]));
    let at = h.now;
    let ev = h.events();
    assert_eq!(
        ev[ev.len() - 2..],
        [
            Event::PeerFin { at },
            Event::StateChanged {
                from: State::FinWait2,
                to: State::TimeWait,
                at
            }
        ]
    );
    assert_eq!(h.sent_one().ack, SeqNumber(5002));
    assert_eq!(h.conn.poll_timeout(), Some(at + ms(2000)));
    let end = h.fire();
    assert_eq!(
        h.events(),
        vec![
            Event::StateChanged {
                from: State::TimeWait,
                to: State::Closed,
                at: end
            },
            Event::Closed { at: end }
        ]
    );
    assert_eq!(h.conn.poll_timeout(), None);
}

#[test]
fn fin_wait_1_timeout_retransmits_fin() {
    let mut h = conn_established();
    h.conn.close(h.now);
    let fin = h.sent_one();
    assert_eq!((fin.flags, fin.seq), (ACK | FIN, SeqNumber(1001)));
    let at = h.fire();
    let again = h.sent_one();
    assert!(again.retransmission);
    assert_eq!((again.flags, again.seq), (ACK | FIN, SeqNumber(1001)));
    assert!(h.events().contains(&Event::Retransmit {
        at,
        seq: SeqNumber(1001),
        flags: ACK | FIN,
        attempt: 1
    }));
    for _ in 0..3 {
        h.fire();
        h.sent();
    }
    h.fire();
    assert!(h.events().iter().any(|e| matches!(
        e,
        Event::TimedOut {
            state: State::FinWait1,
            ..
        }
    )));
    assert_eq!(h.state(), State::Closed);
}

#[test]
fn fin_wait_1_fin_without_ack_of_ours_goes_closing_then_time_wait() {
    let mut h = conn_established();
    h.conn.close(h.now);
    h.sent();
    h.recv(seg(5001, 1001, ACK | FIN, &[]));
    assert_eq!(h.state(), State::Closing);
    assert_eq!(h.sent_one().ack, SeqNumber(5002));
    h.recv(ack_seg(5002, 1002));
    assert_eq!(
        transitions(&h.events()),
        vec![
            (State::Established, State::FinWait1),
            (State::FinWait1, State::Closing),
            (State::Closing, State::TimeWait)
        ]
    );
}

#[test]
fn closing_timeout_retransmits_fin() {
    let mut h = conn_established();
    h.conn.close(h.now);
    h.sent();
    h.recv(seg(5001, 1001, ACK | FIN, &[]));
    h.sent();
    h.fire();
    let s = h.sent_one();
    assert!(s.retransmission && s.flags.fin());
    assert_eq!(s.ack, SeqNumber(5002));
}

#[test]
fn fin_wait_1_fin_with_ack_of_ours_goes_time_wait_directly() {
    let mut h = conn_established();
    h.conn.close(h.now);
    h.sent();
    h.events();
    h.recv(seg(5001, 1002, ACK | FIN, b"bye"));
    let ev = h.events();
    assert_eq!(data_of(&ev), b"bye");
    assert_eq!(transitions(&ev), vec![(State::FinWait1, State::TimeWait)]);
    assert_eq!(h.sent_one().ack, SeqNumber(5005));
}

#[test]
fn fin_wait_2_data_is_still_received() {
    let mut h = conn_established();
    h.conn.close(h.now);
    h.sent();
    h.recv(ack_seg(5001, 1002));
    h.events();
    h.recv(seg(5001, 1002, ACK, b"late"));
    assert_eq!(data_of(&h.events()), b"late");
    assert_eq!(h.sent_one().ack, SeqNumber(5005));
}

#[test]
fn time_wait_retransmitted_fin_is_acked_and_timer_restarts() {
    let mut h = conn_established();
    h.conn.close(h.now);
    h.sent();
    h.recv(seg(5001, 1002, ACK | FIN, &[]));
    h.sent();
    assert_eq!(h.state(), State::TimeWait);
    h.advance(ms(1500));
    h.events();
    h.recv(seg(5001, 1002, ACK | FIN, &[]));
    assert_eq!(h.anomalies(), vec![Anomaly::FinInTimeWait]);
    let a = h.sent_one();
    assert_eq!((a.flags, a.ack), (ACK, SeqNumber(5002)));
    assert_eq!(h.conn.poll_timeout(), Some(h.now + ms(2000)));
    h.fire();
    assert_eq!(h.state(), State::Closed);
}

#[test]
fn time_wait_other_segments_are_acked_and_abort_is_silent() {
    let mut h = conn_established();
    h.conn.close(h.now);
    h.sent();
    h.recv(seg(5001, 1002, ACK | FIN, &[]));
    h.sent();
    // In-window text after the peer's FIN is ignored (RFC 9293 §3.10.7.4 seventh step),
    // an out-of-window segment is ACKed.
    h.recv(seg(6000, 1002, ACK, b"x"));
    assert!(h.sent().is_empty());
    h.recv(seg(5001 + 9000, 1002, ACK, b"x"));
    assert_eq!(h.sent_one().ack, SeqNumber(5002));
    assert_eq!(h.state(), State::TimeWait);
    h.conn.abort(h.now);
    assert_eq!(h.state(), State::Closed);
    assert!(h.sent().is_empty());
}

/// The flaky `scan --complete` run, segment by segment (timestamps on, as there). We close;
/// the peer's FIN+ACK puts us in TIME-WAIT and we ACK it; then the peer's pure ACK of our
/// FIN arrives, built before its FIN (SEG.SEQ = the FIN's own) but overtaken by it on the
/// way (veth queues per CPU). It lies below RCV.NXT: we ACK it again, as RFC 9293
/// §3.10.7.4 asks and as Linux's TIME-WAIT does. The peer, closed since our last ACK,
/// answers that ACK with RST <SEQ=SEG.ACK>, exactly our RCV.NXT. Our close had completed,
/// so the RST only ends TIME-WAIT early (RFC 9293 §3.10.7.4; Linux with its default
/// `tcp_rfc1337` = 0): an orderly close, not a reset.
#[test]
fn time_wait_rst_after_our_ack_of_a_reordered_ack_ends_time_wait_as_a_close() {
    let ts = |v: u32| TcpOptions {
        timestamps: Some((v, 0)),
        ..TcpOptions::default()
    };
    let with_ts = |mut s: TcpRepr<'static>, v: u32| {
        s.options = ts(v);
        s
    };
    let mut h = conn_established_with(cfg(1000), 5000, ts(300), 65535);
    h.conn.close(h.now);
    let fin = h.sent_one();
    assert_eq!((fin.flags, fin.seq), (ACK | FIN, SeqNumber(1001)));
    h.advance(ms(3));
    h.recv(with_ts(seg(5001, 1002, ACK | FIN, &[]), 303));
    assert_eq!(h.state(), State::TimeWait);
    assert_eq!(h.sent_one().ack, SeqNumber(5002));
    h.events();

    // The overtaken ACK: out of window (below RCV.NXT), so ACKed again, TIME-WAIT kept.
    h.advance(Duration::from_micros(3));
    h.recv(with_ts(ack_seg(5001, 1002), 303));
    let again = h.sent_one();
    assert_eq!((again.flags, again.ack), (ACK, SeqNumber(5002)));
    assert_eq!(
        h.anomalies(),
        vec![Anomaly::Duplicate {
            seq: SeqNumber(5001),
            len: 0
        }]
    );
    assert_eq!(h.state(), State::TimeWait);

    // The closed peer's answer: a RST at RCV.NXT, without timestamps (as Linux's).
    h.advance(Duration::from_micros(10));
    h.recv(seg(5002, 0, RST, &[]));
    let at = h.now;
    assert_eq!(
        h.events(),
        vec![
            Event::Anomaly {
                at,
                anomaly: Anomaly::RstInTimeWait {
                    seq: SeqNumber(5002)
                }
            },
            Event::StateChanged {
                from: State::TimeWait,
                to: State::Closed,
                at
            },
            Event::Closed { at },
        ]
    );
    assert!(h.sent().is_empty(), "nothing answers a RST");
    assert_eq!(h.conn.poll_timeout(), None, "TIME-WAIT is over");
}

/// A RST in TIME-WAIT that is not at RCV.NXT does not end it (RFC 5961 §3.2 applies as in
/// every synchronized state): TIME-WAIT runs its course and ends as a close.
#[test]
fn time_wait_rst_outside_the_window_is_ignored() {
    let mut h = conn_established();
    h.conn.close(h.now);
    h.sent();
    h.recv(seg(5001, 1002, ACK | FIN, &[]));
    h.sent();
    h.events();
    h.recv(seg(5001 + 100_000, 0, RST, &[]));
    assert_eq!(
        h.anomalies(),
        vec![Anomaly::RstIgnored {
            seq: SeqNumber(5001 + 100_000)
        }]
    );
    assert_eq!(h.state(), State::TimeWait);
    let end = h.fire();
    assert_eq!(h.events().last(), Some(&Event::Closed { at: end }));
}

#[test]
fn established_peer_fin_close_wait_close_last_ack_closed() {
    let mut h = conn_established();
    h.recv(seg(5001, 1001, ACK | FIN | PSH, b"body"));
    let at = h.now;
    let ev = h.events();
    assert_eq!(
        ev,
        vec![
            Event::Data {
                at,
                bytes: b"body".to_vec()
            },
            Event::PeerFin { at },
            Event::StateChanged {
                from: State::Established,
                to: State::CloseWait,
                at
            }
        ]
    );
    assert_eq!(h.sent_one().ack, SeqNumber(5006));
    // We may still send in CLOSE-WAIT.
    h.conn.send(b"more");
    assert_eq!(h.sent_one().payload, b"more");
    h.conn.close(h.now);
    assert_eq!(h.state(), State::LastAck);
    let fin = h.sent_one();
    assert_eq!((fin.flags, fin.seq), (ACK | FIN, SeqNumber(1005)));
    h.recv(ack_seg(5006, 1005));
    assert_eq!(h.state(), State::LastAck);
    h.events();
    h.recv(ack_seg(5006, 1006));
    let at = h.now;
    assert_eq!(
        h.events(),
        vec![
            Event::StateChanged {
                from: State::LastAck,
                to: State::Closed,
                at
            },
            Event::Closed { at }
        ]
    );
    assert_eq!(h.conn.poll_timeout(), None);
}

#[test]
fn last_ack_ack_of_fin_emits_closed() {
    let mut h = conn_established();
    h.recv(seg(5001, 1001, ACK | FIN, &[]));
    h.sent();
    h.conn.close(h.now);
    h.sent();
    h.events();
    h.recv(ack_seg(5002, 1002));
    let at = h.now;
    assert_eq!(
        h.events(),
        vec![
            Event::StateChanged {
                from: State::LastAck,
                to: State::Closed,
                at
            },
            Event::Closed { at }
        ]
    );
}

#[test]
fn close_wait_retransmitted_fin_is_acked_again() {
    let mut h = conn_established();
    h.recv(seg(5001, 1001, ACK | FIN, &[]));
    h.sent();
    h.recv(seg(5001, 1001, ACK | FIN, &[]));
    assert_eq!(h.sent_one().ack, SeqNumber(5002));
    assert_eq!(h.state(), State::CloseWait);
}

// --- RST at the peer's FIN's sequence number (RCV.NXT - 1), Linux's `tcp_reset_check` ---

/// The race of a server that answers and closes at once: our data and FIN (a TLS
/// close_notify) were built before its FIN was read, so they carry the stale ACK 5001; the
/// server, closed, answers them with a RST taken from that ACK field: SEQ 5001 = RCV.NXT - 1.
/// Linux accepts it in CLOSING; so do we, at once, with no retransmission after.
#[test]
fn closing_rst_at_peer_fin_seq_after_our_stale_ack_resets_without_retransmission() {
    let mut h = conn_established();
    h.conn.send(b"notify!");
    h.conn.close(h.now);
    let ours = h.sent_one();
    assert_eq!((ours.flags, ours.ack), (ACK | PSH | FIN, SeqNumber(5001)));
    h.advance(ms(1));
    h.recv(seg(5001, 1001, ACK | FIN, &[]));
    assert_eq!(h.state(), State::Closing);
    assert_eq!(h.sent_one().ack, SeqNumber(5002));
    h.events();
    h.advance(ms(1));
    let at = h.now;
    h.recv(seg(5001, 0, RST, &[]));
    assert_eq!(h.events(), reset_to_closed(at, State::Closing, true));
    assert!(h.sent().is_empty(), "no challenge ACK, no RST back");
    assert_eq!(h.conn.poll_timeout(), None, "nothing left to retransmit");
    assert_eq!(h.conn.retransmissions(), 0);
}

/// The same answer after data of ours crossed the peer's FIN, while we had not closed yet
/// (CLOSE-WAIT), and after our FIN followed (LAST-ACK).
#[test]
fn close_wait_and_last_ack_rst_at_peer_fin_seq_reset() {
    for close_first in [false, true] {
        let mut h = conn_established();
        h.conn.send(b"late");
        let late = h.sent_one();
        assert_eq!(late.ack, SeqNumber(5001));
        h.recv(seg(5001, 1001, ACK | FIN, &[]));
        h.sent();
        let state = if close_first {
            h.conn.close(h.now);
            h.sent();
            State::LastAck
        } else {
            State::CloseWait
        };
        assert_eq!(h.state(), state);
        h.events();
        h.recv(seg(5001, 0, RST, &[]));
        assert!(
            h.events().iter().any(|e| matches!(
                e,
                Event::Reset { state: s, at_peer_fin: true, .. } if *s == state
            )),
            "{state:?}"
        );
        assert_eq!(h.state(), State::Closed);
        assert!(h.sent().is_empty());
    }
}

/// One further below RCV.NXT is no FIN's sequence number: out of the window, ignored (as
/// Linux discards it: silently, RFC 5961 §3.2), and our FIN is retransmitted at its RTO.
#[test]
fn closing_rst_two_below_rcv_nxt_is_ignored_and_fin_retransmitted() {
    let mut h = conn_established();
    h.conn.close(h.now);
    h.sent();
    h.recv(seg(5001, 1001, ACK | FIN, &[]));
    h.sent();
    h.events();
    h.recv(seg(5000, 0, RST, &[]));
    assert_eq!(
        h.anomalies(),
        vec![Anomaly::RstIgnored {
            seq: SeqNumber(5000)
        }]
    );
    assert!(h.sent().is_empty());
    assert_eq!(h.state(), State::Closing);
    h.fire();
    assert!(h.sent_one().retransmission);
}

/// RCV.NXT - 1 is accepted only where Linux accepts it: with the peer's FIN taken and the
/// close not complete. Before any FIN (ESTABLISHED, FIN-WAIT-1, FIN-WAIT-2) it is an old
/// sequence number, ignored; in TIME-WAIT only RCV.NXT ends it (Linux's
/// `tcp_timewait_state_process`).
#[test]
fn rst_one_below_rcv_nxt_without_peer_fin_or_in_time_wait_is_ignored() {
    let established = conn_established();
    let mut fin_wait_1 = conn_established();
    fin_wait_1.conn.close(fin_wait_1.now);
    fin_wait_1.sent();
    let mut fin_wait_2 = conn_established();
    fin_wait_2.conn.close(fin_wait_2.now);
    fin_wait_2.sent();
    fin_wait_2.recv(ack_seg(5001, 1002));
    let mut time_wait = conn_established();
    time_wait.conn.close(time_wait.now);
    time_wait.sent();
    time_wait.recv(seg(5001, 1002, ACK | FIN, &[]));
    time_wait.sent();
    for (mut h, state) in [
        (established, State::Established),
        (fin_wait_1, State::FinWait1),
        (fin_wait_2, State::FinWait2),
        (time_wait, State::TimeWait),
    ] {
        assert_eq!(h.state(), state);
        let below = h.conn.rcv_nxt().0.wrapping_sub(1);
        h.events();
        h.recv(seg(below, 0, RST, &[]));
        assert_eq!(
            h.anomalies(),
            vec![Anomaly::RstIgnored {
                seq: SeqNumber(below)
            }],
            "{state:?}"
        );
        assert_eq!(h.state(), state);
        assert!(h.sent().is_empty(), "{state:?}");
    }
}

#[test]
fn established_out_of_order_fin_is_processed_when_hole_fills() {
    let mut h = conn_established();
    h.recv(seg(5004, 1001, ACK | FIN, b"def"));
    assert_eq!(h.state(), State::Established);
    assert_eq!(h.sent_one().ack, SeqNumber(5001));
    h.recv(seg(5001, 1001, ACK, b"abc"));
    let ev = h.events();
    assert_eq!(data_of(&ev), b"abcdef");
    assert!(ev.iter().any(|e| matches!(e, Event::PeerFin { .. })));
    assert_eq!(h.state(), State::CloseWait);
    assert_eq!(h.sent_one().ack, SeqNumber(5008));
}

#[test]
fn established_abort_sends_rst_with_ack() {
    let mut h = conn_established();
    h.conn.send(b"abc");
    h.sent();
    assert!(h.conn.abort(h.now), "abort says a RST went out");
    let rst = h.sent_one();
    assert_eq!(rst.flags, RST | ACK);
    assert_eq!((rst.seq, rst.ack), (SeqNumber(1004), SeqNumber(5001)));
    assert_eq!(
        transitions(&h.events()),
        vec![(State::Established, State::Closed)]
    );
    assert_eq!(h.conn.poll_timeout(), None);
}

#[test]
fn established_connect_again_is_ignored() {
    let mut h = conn_established();
    h.conn.connect(h.now);
    assert_eq!(h.state(), State::Established);
    assert!(h.sent().is_empty());
}

// --- ICMP errors (RFC 5927, RFC 1122 §4.2.3.9, RFC 1191, RFC 8201, RFC 2923) ---

/// An ICMP error of `kind` quoting our segment with sequence number `seq`.
fn icmp_about(h: &Harness, kind: IcmpKind, seq: SeqNumber) -> IcmpError {
    let c = h.conn.config();
    IcmpError {
        kind,
        icmp_type: 3,
        code: 0,
        quoted_src: c.local.ip(),
        quoted_dst: c.remote.ip(),
        quoted_src_port: c.local.port(),
        quoted_dst_port: c.remote.port(),
        quoted_seq: seq,
    }
}

fn icmp(h: &mut Harness, kind: IcmpKind, seq: u32) -> IcmpOutcome {
    let e = icmp_about(h, kind, SeqNumber(seq));
    h.conn.handle_icmp(h.now, &e)
}

fn too_big(mtu: u32) -> IcmpKind {
    IcmpKind::PacketTooBig { mtu }
}

fn cfg_v6(isn: u32) -> Config {
    Config {
        local: "[fd00::1]:40000".parse().unwrap(),
        remote: "[fd00::2]:80".parse().unwrap(),
        ..cfg(isn)
    }
}

/// ESTABLISHED with the peer's MSS 1460 and timestamps: 1448 payload bytes a segment.
fn conn_established_ts(cfg: Config) -> Harness {
    let opts = TcpOptions {
        mss: Some(1460),
        timestamps: Some((77, 0)),
        ..TcpOptions::default()
    };
    conn_established_with(cfg, 5000, opts, 65535)
}

/// A smaller path MTU resends the flight cut at the new size — inside the peer's window:
/// one it shrank below what was sent ends the resending there (RFC 9293 §3.8.6).
#[test]
fn a_path_mtu_resend_stays_inside_a_window_the_peer_shrank() {
    let mut c = cfg(1000);
    c.timestamps = false;
    let mut h = conn_established_with(c, 5000, opts_mss(1000), 4000);
    h.conn.send(&[7u8; 3000]);
    assert_eq!(h.sent().len(), 3);
    // 1000 bytes taken, window 500: the right edge goes from 5001 back to 2501.
    let mut a = ack_seg(5001, 2001);
    a.window = 500;
    h.recv(a);
    h.sent();
    icmp(&mut h, too_big(576), 2001);
    let resent: Vec<(u32, usize)> = h
        .sent()
        .iter()
        .map(|s| (s.seq.0, s.payload.len()))
        .collect();
    assert_eq!(
        resent,
        [(2001, 500)],
        "only what the window holds, cut at MSS 536"
    );
}

#[test]
fn syn_sent_icmp_quoting_another_sequence_number_is_ignored() {
    // Anyone who knows the 4-tuple can send these; only the ISN proves it saw our SYN.
    for kind in [
        IcmpKind::PortUnreachable,
        IcmpKind::HostUnreachable,
        IcmpKind::AdminProhibited,
        IcmpKind::TimeExceeded,
        too_big(1000),
    ] {
        let (mut h, syn) = conn_syn_sent();
        for seq in [
            syn.seq.add(1),
            syn.seq.sub(1),
            syn.seq.add(1 << 31),
            SeqNumber(0),
        ] {
            assert_eq!(
                h.conn.handle_icmp(h.now, &icmp_about(&h, kind, seq)),
                IcmpOutcome::Ignored(IcmpIgnored::SeqOutside {
                    seq,
                    snd_una: syn.seq,
                    snd_nxt: syn.seq.add(1),
                }),
                "{kind:?} {seq}"
            );
        }
        assert_eq!(h.state(), State::SynSent);
        assert!(h.events().is_empty());
        assert!(h.sent().is_empty());
        assert_eq!(h.conn.path_mtu(), None);
        // The real SYN-ACK still opens the connection.
        h.advance(ms(5));
        h.recv(seg(9000, syn.seq.add(1).0, SYN | ACK, &[]));
        assert_eq!(h.state(), State::Established, "{kind:?}");
    }
}

/// RFC 6069 (Linux's `tcp_ld_RTO_revert`): a host or net unreachable about the segment
/// being sent again undoes one back-off, the timer running on from the last
/// retransmission; a path that stays down is retried at the RTO's floor, not at a doubling
/// one, and the connection gives up when the back-off's time has passed, not after
/// `data_retries` retransmissions (Linux measures time there too). A walk: Linux sent 24
/// retransmissions ~204 ms apart where we sent 4, and after a 1.5 s route flap its answer
/// came at 1.4 s, ours at 3.0 s. Other errors, or one quoting another sequence number,
/// undo nothing.
#[test]
fn an_unreachable_during_retransmissions_undoes_a_back_off() {
    let mut h = conn_established();
    h.conn.send(&[1u8; 100]);
    let first = h.sent_one();
    // Three timeouts: RTO 200 → 400 → 800 → 1600 ms.
    for _ in 0..3 {
        h.fire();
        h.sent();
    }
    assert_eq!(h.conn.retries(), 3);
    let last_rtx = h.now;
    assert_eq!(h.conn.poll_timeout(), Some(last_rtx + ms(1600)));
    h.advance(ms(5));
    // Not about what is being sent again, or not a path that is down: nothing undone.
    assert_eq!(
        icmp(&mut h, IcmpKind::HostUnreachable, first.seq.0 + 50),
        IcmpOutcome::Soft
    );
    assert_eq!(
        icmp(&mut h, IcmpKind::AdminProhibited, first.seq.0),
        IcmpOutcome::Soft
    );
    assert_eq!(h.conn.poll_timeout(), Some(last_rtx + ms(1600)));
    assert_eq!(
        icmp(&mut h, IcmpKind::HostUnreachable, first.seq.0),
        IcmpOutcome::SoftReverted
    );
    assert_eq!(h.conn.poll_timeout(), Some(last_rtx + ms(800)));
    // A path down from the first retransmission on, each drawing the error: the RTO stays
    // at its floor (200 ms apart, as Linux's in the walk), and the connection gives up
    // when the back-off alone would have.
    let mut h = conn_established();
    h.conn.send(&[1u8; 100]);
    let first = h.sent_one();
    let sent_at = h.now;
    let mut rtx = 0u32;
    let mut gave_up = None;
    for _ in 0..1000 {
        h.fire();
        if h.events()
            .iter()
            .any(|e| matches!(e, Event::TimedOut { .. }))
        {
            gave_up = Some(h.now);
            break;
        }
        rtx += h.sent().len() as u32;
        h.advance(ms(5));
        icmp(&mut h, IcmpKind::HostUnreachable, first.seq.0);
    }
    let gave_up = gave_up.expect("gave up");
    // The back-off's own time from the first retransmission (sent_at + 200 ms): 400 + 800
    // + 1 600 + 3 200 ms, and many more retransmissions than data_retries (4) in it.
    let first_rtx = sent_at + ms(200);
    assert!(
        gave_up >= first_rtx + ms(6000),
        "{:?}",
        gave_up.saturating_since(first_rtx)
    );
    assert!(
        gave_up < first_rtx + ms(6300),
        "{:?}",
        gave_up.saturating_since(first_rtx)
    );
    assert!(rtx >= 29, "{rtx} retransmissions");

    // IPv6: no route (1/0) undoes, address unreachable does not (Linux's tcp_v6_err).
    let mut h = conn_established_ts(cfg_v6(1000));
    h.conn.send(&[1u8; 100]);
    let first = h.sent_one();
    h.fire();
    h.sent();
    h.advance(ms(5));
    assert_eq!(
        icmp(&mut h, IcmpKind::HostUnreachable, first.seq.0),
        IcmpOutcome::Soft
    );
    assert_eq!(
        icmp(&mut h, IcmpKind::NoRoute, first.seq.0),
        IcmpOutcome::SoftReverted
    );
}

#[test]
fn syn_sent_hard_icmp_quoting_the_isn_aborts_silently() {
    for kind in [
        IcmpKind::PortUnreachable,
        IcmpKind::HostUnreachable,
        IcmpKind::NetUnreachable,
        IcmpKind::ProtocolUnreachable,
        IcmpKind::HostProhibited,
        IcmpKind::TimeExceeded,
        IcmpKind::OtherUnreachable { code: 15 },
    ] {
        let (mut h, syn) = conn_syn_sent();
        h.advance(ms(3));
        assert_eq!(
            icmp(&mut h, kind, syn.seq.0),
            IcmpOutcome::Aborted,
            "{kind:?}"
        );
        assert_eq!(h.state(), State::Closed);
        assert_eq!(
            transitions(&h.events()),
            vec![(State::SynSent, State::Closed)]
        );
        assert!(h.sent().is_empty(), "no RST in SYN-SENT");
        assert_eq!(h.conn.poll_timeout(), None);
        // After that, nothing is believed.
        assert_eq!(
            icmp(&mut h, kind, syn.seq.0),
            IcmpOutcome::Ignored(IcmpIgnored::Closed)
        );
    }
}

#[test]
fn icmp_before_the_syn_left_or_about_another_connection_is_ignored() {
    let mut h = Harness::new(cfg(1000));
    assert_eq!(
        icmp(&mut h, IcmpKind::PortUnreachable, 1000),
        IcmpOutcome::Ignored(IcmpIgnored::Closed)
    );
    h.conn.connect(h.now);
    // Connected but the SYN not yet polled: nothing is in flight.
    assert!(matches!(
        icmp(&mut h, IcmpKind::PortUnreachable, 1000),
        IcmpOutcome::Ignored(IcmpIgnored::SeqOutside { .. })
    ));
    let syn = h.sent_one();
    let mut e = icmp_about(&h, IcmpKind::PortUnreachable, syn.seq);
    e.quoted_dst_port = 81;
    assert_eq!(
        h.conn.handle_icmp(h.now, &e),
        IcmpOutcome::Ignored(IcmpIgnored::OtherConnection)
    );
    let mut e = icmp_about(&h, IcmpKind::PortUnreachable, syn.seq);
    e.quoted_src = "198.18.0.77".parse().unwrap();
    assert_eq!(
        h.conn.handle_icmp(h.now, &e),
        IcmpOutcome::Ignored(IcmpIgnored::OtherConnection)
    );
    // Linux ignores ICMPv4 codes it does not know.
    assert_eq!(
        icmp(&mut h, IcmpKind::OtherUnreachable { code: 16 }, syn.seq.0),
        IcmpOutcome::Ignored(IcmpIgnored::UnknownCode { code: 16 })
    );
    assert_eq!(h.state(), State::SynSent);
}

#[test]
fn syn_sent_frag_needed_is_a_hint_used_once_connected() {
    let (mut h, syn) = conn_syn_sent();
    let out = icmp(&mut h, too_big(1000), syn.seq.0);
    let IcmpOutcome::PathMtu(c) = out else {
        panic!("{out:?}")
    };
    assert!(c.lowered);
    assert_eq!((c.reported, c.path_mtu, c.resent), (1000, 1000, 0));
    assert_eq!(h.state(), State::SynSent, "not a verdict");
    assert!(h.sent().is_empty(), "the SYN is not sent again");
    assert_eq!(h.conn.path_mtu(), Some(1000));
    // The SYN-ACK offers 1460 with timestamps: 1000 − 20 − 20 − 12.
    h.advance(ms(5));
    let mut synack = seg(9000, syn.seq.add(1).0, SYN | ACK, &[]);
    synack.options = TcpOptions {
        mss: Some(1460),
        timestamps: Some((1, 0)),
        ..TcpOptions::default()
    };
    h.recv(synack);
    assert_eq!(h.state(), State::Established);
    assert_eq!(h.conn.send_mss(), 948);
    h.sent();
    h.conn.send(&[7u8; 3000]);
    let lens: Vec<usize> = h.sent().iter().map(|s| s.payload.len()).collect();
    assert_eq!(lens, [948, 948, 948, 156]);
}

#[test]
fn established_frag_needed_resegments_and_resends_at_once() {
    let mut h = conn_established_ts(cfg(1000));
    assert_eq!(h.conn.send_mss(), 1448);
    let data: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    h.conn.send(&data);
    let first = h.sent();
    assert_eq!(
        first.iter().map(|s| s.payload.len()).collect::<Vec<_>>(),
        [1448, 1448, 104]
    );
    let (rto, deadline) = (h.conn.rto(), h.conn.poll_timeout());
    h.events();
    h.advance(Duration::from_micros(300));
    // The router's frag-needed for the first segment.
    let out = icmp(&mut h, too_big(1000), 1001);
    assert_eq!(
        out,
        IcmpOutcome::PathMtu(PmtuChange {
            reported: 1000,
            path_mtu: 1000,
            lowered: true,
            locked: false,
            mss_before: 1448,
            mss_after: 948,
            resent: 4,
            withdrawn: 0,
        })
    );
    let again = h.sent();
    let spans: Vec<(u32, usize)> = again.iter().map(|s| (s.seq.0, s.payload.len())).collect();
    // Only the two long segments' bytes, cut at 948 (the short tail fit the path), as
    // Linux's tcp_simple_retransmit sends them.
    assert_eq!(spans, [(1001, 948), (1949, 948), (2897, 948), (3845, 52)]);
    assert!(again.iter().all(|s| s.retransmission && s.flags.ack()));
    assert!(again[3].flags.psh() && !again[2].flags.psh());
    let resent: Vec<u8> = again.iter().flat_map(|s| s.payload.clone()).collect();
    assert_eq!(resent, data[..2896]);
    // Not a congestion loss: no backoff, no retry counted; the timer restarts from now.
    assert_eq!(h.conn.rto(), rto);
    assert_eq!(h.conn.retries(), 0);
    assert_eq!(h.conn.poll_timeout(), Some(h.now + rto));
    assert_ne!(h.conn.poll_timeout(), deadline);
    assert_eq!(h.conn.retransmissions(), 4);
    // The second big segment's frag-needed changes nothing more.
    let out = icmp(&mut h, too_big(1000), 1001 + 1448);
    assert!(
        matches!(
            out,
            IcmpOutcome::PathMtu(PmtuChange {
                lowered: false,
                path_mtu: 1000,
                ..
            })
        ),
        "{out:?}"
    );
    assert!(h.sent().is_empty());
    // All acknowledged: the path MTU stays learned.
    h.recv(ack_seg(5001, 4001));
    assert_eq!(h.conn.snd_una(), SeqNumber(4001));
    assert_eq!(h.conn.path_mtu(), Some(1000));
    assert!(!h.conn.pmtu_black_hole());
    // A late error about data now acknowledged is no longer believed.
    assert!(matches!(
        icmp(&mut h, too_big(600), 1001),
        IcmpOutcome::Ignored(IcmpIgnored::SeqOutside { .. })
    ));
    assert_eq!(h.conn.path_mtu(), Some(1000));
}

#[test]
fn frag_needed_with_our_fin_in_flight_resends_the_fin_last() {
    let mut h = conn_established(); // MSS 1460, no timestamps
    h.conn.send(&[1u8; 2860]);
    h.conn.close(h.now);
    let first = h.sent();
    assert_eq!(first.len(), 2);
    assert!(first[1].flags.fin() && first[1].payload.len() == 1400);
    let out = icmp(&mut h, too_big(1000), 1001);
    assert!(matches!(
        out,
        IcmpOutcome::PathMtu(PmtuChange {
            mss_after: 960,
            resent: 3,
            ..
        })
    ));
    let again = h.sent();
    let spans: Vec<(u32, usize, bool)> = again
        .iter()
        .map(|s| (s.seq.0, s.payload.len(), s.flags.fin()))
        .collect();
    assert_eq!(
        spans,
        [(1001, 960, false), (1961, 960, false), (2921, 940, true)]
    );
}

/// Fault walk: two routers one behind the other, links of 1400 and then 1200 bytes. Their
/// errors came in one read (frag-needed 1400 from the first, 1200 from the second), so
/// the segments the first had cut at 1360 were still queued when the second said 1200:
/// they went out anyway, each drawing another frag-needed. Only segments that fit the
/// newest path MTU leave, and only they count as sent again.
#[test]
fn a_second_smaller_frag_needed_before_sending_unqueues_the_first_cut() {
    let mut h = conn_established(); // MSS 1460, no timestamps
    h.conn.send(&[1u8; 4000]);
    let first: Vec<usize> = h.sent().iter().map(|s| s.payload.len()).collect();
    assert_eq!(first, [1460, 1460, 1080]);
    let out = icmp(&mut h, too_big(1400), 1001);
    assert!(matches!(
        out,
        IcmpOutcome::PathMtu(PmtuChange {
            mss_after: 1360,
            resent: 3,
            ..
        })
    ));
    // Not polled: the second error is read in the same batch.
    let out = icmp(&mut h, too_big(1200), 1001);
    assert!(
        matches!(
            out,
            IcmpOutcome::PathMtu(PmtuChange {
                mss_before: 1360,
                mss_after: 1160,
                resent: 3,
                ..
            })
        ),
        "{out:?}"
    );
    let again: Vec<(u32, usize)> = h
        .sent()
        .iter()
        .map(|s| (s.seq.0, s.payload.len()))
        .collect();
    // The first two (1460 bytes each) were cut 1360 + 1360 + 200: the 200 still fit and
    // stays queued; the 1360s are cut again, 1160 + 1160 + 400. The third (1080 bytes)
    // fits both paths.
    assert_eq!(
        again,
        [(3721, 200), (1001, 1160), (2161, 1160), (3321, 400)]
    );
    assert_eq!(h.conn.retransmissions(), 4);
}

/// A router reporting an IPv4 MTU below the floor (552) would refuse the floor's
/// segments too while they carry DF: the path MTU is locked at the floor and segments go
/// without DF, for the router to fragment (Linux: `__ip_rt_update_pmtu` locks the route's
/// MTU at `min_pmtu`, and `ip_dont_fragment()` clears DF on a locked route). A walk: MTU
/// 500 on the path, every resend at 552 refused again until the timeout; Linux's request
/// went through fragmented in 52 ms.
#[test]
fn frag_needed_below_the_floor_clears_df() {
    let mut h = conn_established();
    h.conn.send(&[1u8; 1398]);
    assert!(h.sent().iter().all(|s| s.dont_frag));
    // Above the floor: lowered, DF kept.
    let out = icmp(&mut h, too_big(1000), 1001);
    assert!(
        matches!(
            out,
            IcmpOutcome::PathMtu(PmtuChange {
                lowered: true,
                locked: false,
                ..
            })
        ),
        "{out:?}"
    );
    assert!(!h.conn.pmtu_locked());
    assert!(h.sent().iter().all(|s| s.dont_frag));
    // Below it: the floor, locked; what is in flight goes again at once, without DF.
    let out = icmp(&mut h, too_big(500), 1001);
    assert!(
        matches!(
            out,
            IcmpOutcome::PathMtu(PmtuChange {
                reported: 500,
                path_mtu: 552,
                lowered: true,
                locked: true,
                mss_after: 512,
                ..
            })
        ),
        "{out:?}"
    );
    assert!(h.conn.pmtu_locked());
    let again = h.sent();
    assert!(
        !again.is_empty() && again.iter().all(|s| !s.dont_frag),
        "{again:?}"
    );
    // Another such message: already locked, nothing new.
    let out = icmp(&mut h, too_big(400), 1001);
    assert!(
        matches!(
            out,
            IcmpOutcome::PathMtu(PmtuChange {
                lowered: false,
                locked: false,
                resent: 0,
                ..
            })
        ),
        "{out:?}"
    );
    // The ACKs and the FIN that follow carry no DF either.
    h.conn.close(h.now);
    assert!(h.sent().iter().all(|s| !s.dont_frag));

    // Already at the floor (552 reported first), then below it: locked, nothing to cut
    // (as Linux, no resend at once); the retransmission the timer sends has no DF.
    let mut h = conn_established();
    h.conn.send(&[1u8; 1398]);
    h.sent();
    icmp(&mut h, too_big(552), 1001);
    h.sent();
    let out = icmp(&mut h, too_big(500), 1001);
    let IcmpOutcome::PathMtu(c) = out else {
        panic!("{out:?}")
    };
    assert!(c.locked && !c.lowered && c.resent == 0, "{c:?}");
    assert!(h.sent().is_empty());
    let rto = h.conn.poll_timeout().expect("the retransmission timer");
    h.now = rto;
    h.conn.handle_timeout(h.now);
    let rtx = h.sent();
    assert!(
        !rtx.is_empty() && rtx.iter().all(|s| s.retransmission && !s.dont_frag),
        "{rtx:?}"
    );

    // IPv6 never locks: below 1280 the message is ignored (RFC 8201 §4).
    let mut h = conn_established_ts(cfg_v6(1000));
    h.conn.send(&[1u8; 1398]);
    h.sent();
    icmp(&mut h, too_big(500), 1001);
    assert!(!h.conn.pmtu_locked());
}

/// A path MTU an earlier connection learned (a survey hands it on, RFC 1191 §5): the SYN
/// offers the MSS that fits it, as Linux's does from the route's learned MTU, segments are
/// cut to it from the start, and it is not handed on again (only what an ICMP error taught
/// this connection is, so the cache's entry expires).
#[test]
fn a_known_path_mtu_is_used_from_the_start() {
    let mut c = cfg(1000);
    c.known_path_mtu = Some(KnownPathMtu {
        mtu: 1000,
        locked: false,
    });
    let (mut h, syn) = conn_syn_sent_with(c);
    assert_eq!(syn.options.mss, Some(960));
    assert_eq!(h.conn.path_mtu(), Some(1000));
    let mut synack = seg(5000, 1001, SYN | ACK, &[]);
    synack.options = opts_mss(1460);
    synack.window = 65535;
    h.recv(synack);
    h.sent();
    assert_eq!(h.conn.send_mss(), 960);
    h.conn.send(&[1u8; 3000]);
    let sent = h.sent();
    assert!(
        sent.iter().all(|s| s.payload.len() <= 960 && s.dont_frag),
        "{sent:?}"
    );
    assert_eq!(h.conn.learned_path_mtu(), None);
    // A lower one learned now is handed on; a locked one clears DF from the start.
    icmp(&mut h, too_big(800), 1001);
    assert_eq!(
        h.conn.learned_path_mtu(),
        Some(KnownPathMtu {
            mtu: 800,
            locked: false
        })
    );
    let mut c = cfg(1000);
    c.known_path_mtu = Some(KnownPathMtu {
        mtu: 552,
        locked: true,
    });
    let (_, syn) = conn_syn_sent_with(c);
    assert!(!syn.dont_frag);
    assert_eq!(syn.options.mss, Some(512));
    // One no lower than the route's changes nothing.
    let mut c = cfg(1000);
    c.known_path_mtu = Some(KnownPathMtu {
        mtu: 1500,
        locked: false,
    });
    let (h, syn) = conn_syn_sent_with(c);
    assert_eq!((syn.options.mss, h.conn.path_mtu()), (Some(1460), None));
}

#[test]
fn frag_needed_mtu_is_floored_and_never_raised() {
    let mut h = conn_established();
    h.conn.send(&[1u8; 3000]);
    h.sent();
    // Above or at the route's MTU (1460 + 40): nothing to learn.
    for mtu in [1500, 9000] {
        let out = icmp(&mut h, too_big(mtu), 1001);
        assert!(
            matches!(
                out,
                IcmpOutcome::PathMtu(PmtuChange {
                    lowered: false,
                    path_mtu: 1500,
                    resent: 0,
                    ..
                })
            ),
            "{out:?}"
        );
    }
    assert_eq!(h.conn.path_mtu(), None);
    assert!(h.sent().is_empty());
    // Below Linux's min_pmtu (and 0, from a pre-RFC 1191 router): 552.
    for mtu in [300, 0] {
        let mut h = conn_established();
        h.conn.send(&[1u8; 3000]);
        h.sent();
        let out = icmp(&mut h, too_big(mtu), 1001);
        assert!(
            matches!(
                out,
                IcmpOutcome::PathMtu(PmtuChange {
                    lowered: true,
                    path_mtu: 552,
                    mss_after: 512,
                    ..
                })
            ),
            "{mtu}: {out:?}"
        );
    }
    // Lowered once, then lower still, then not back up.
    icmp(&mut h, too_big(1200), 1001);
    h.sent();
    assert_eq!(h.conn.send_mss(), 1160);
    icmp(&mut h, too_big(1000), 1001);
    assert_eq!(h.conn.send_mss(), 960);
    h.sent();
    let out = icmp(&mut h, too_big(1200), 1001);
    assert!(matches!(
        out,
        IcmpOutcome::PathMtu(PmtuChange {
            lowered: false,
            path_mtu: 1000,
            ..
        })
    ));
    assert_eq!(h.conn.send_mss(), 960);
}

#[test]
fn frag_needed_below_a_smaller_peer_mss_resends_nothing() {
    // The peer's MSS (500) already keeps segments under the reported MTU.
    let mut h = conn_established_with(cfg(1000), 5000, opts_mss(500), 65535);
    h.conn.send(&[1u8; 900]);
    h.sent();
    let out = icmp(&mut h, too_big(1000), 1001);
    assert_eq!(
        out,
        IcmpOutcome::PathMtu(PmtuChange {
            reported: 1000,
            path_mtu: 1000,
            lowered: true,
            locked: false,
            mss_before: 500,
            mss_after: 500,
            resent: 0,
            withdrawn: 0,
        })
    );
    assert!(h.sent().is_empty());
}

#[test]
fn ipv6_packet_too_big_below_1280_is_ignored() {
    let mut h = conn_established_ts(cfg_v6(1000));
    assert_eq!(h.conn.send_mss(), 1448);
    h.conn.send(&[1u8; 3000]);
    h.sent();
    assert_eq!(
        icmp(&mut h, too_big(1000), 1001),
        IcmpOutcome::Ignored(IcmpIgnored::MtuBelowMinimum { mtu: 1000 })
    );
    assert_eq!(h.conn.path_mtu(), None);
    let out = icmp(&mut h, too_big(1280), 1001);
    // 1280 − 40 − 20 − 12.
    assert!(
        matches!(
            out,
            IcmpOutcome::PathMtu(PmtuChange {
                lowered: true,
                mss_after: 1208,
                resent: 3,
                ..
            })
        ),
        "{out:?}"
    );
}

#[test]
fn established_unreachable_is_soft_and_the_connection_goes_on() {
    let mut h = conn_established();
    h.conn.send(&[1u8; 100]);
    h.sent();
    for kind in [
        IcmpKind::PortUnreachable,
        IcmpKind::HostUnreachable,
        IcmpKind::TimeExceeded,
        IcmpKind::AdminProhibited,
    ] {
        assert_eq!(icmp(&mut h, kind, 1001), IcmpOutcome::Soft, "{kind:?}");
        assert_eq!(h.state(), State::Established);
    }
    assert!(h.sent().is_empty());
    h.fire();
    assert!(h.sent_one().retransmission, "still retransmitting");
    // A pure ACK's sequence number (SND.NXT) names nothing in flight (RFC 5927 §4.1;
    // Linux's inclusive check would take it).
    assert!(matches!(
        icmp(&mut h, IcmpKind::PortUnreachable, 1101),
        IcmpOutcome::Ignored(IcmpIgnored::SeqOutside { .. })
    ));
}

#[test]
fn time_wait_icmp_is_ignored() {
    let mut h = conn_established();
    h.conn.close(h.now);
    h.sent();
    h.recv(seg(5001, 1002, ACK | FIN, &[]));
    assert_eq!(h.state(), State::TimeWait);
    assert_eq!(
        icmp(&mut h, IcmpKind::PortUnreachable, 1001),
        IcmpOutcome::Ignored(IcmpIgnored::Closed)
    );
    assert_eq!(h.state(), State::TimeWait);
}

#[test]
fn black_hole_full_sized_segment_lost_twice_falls_back_to_536() {
    let mut h = conn_established_ts(cfg(1000));
    let data: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
    h.conn.send(&data);
    h.sent();
    h.events();
    // First RTO: the same 1448 bytes again (one loss may be chance).
    h.fire();
    let s = h.sent_one();
    assert_eq!(s.payload.len(), 1448);
    assert_eq!(h.conn.path_mtu(), None);
    h.events();
    // Second RTO, still nothing: the safe size, the whole flight.
    let at = h.fire();
    let again = h.sent();
    // The bytes of the long segments (the short tail may have arrived; its own timer
    // covers it).
    assert_eq!(
        again.iter().map(|s| s.payload.len()).collect::<Vec<_>>(),
        [524, 524, 524, 524, 524, 276]
    );
    assert!(again.iter().all(|s| s.retransmission));
    let resent: Vec<u8> = again.iter().flat_map(|s| s.payload.clone()).collect();
    assert_eq!(resent, data[..2896]);
    assert_eq!(h.conn.path_mtu(), Some(576));
    assert_eq!(h.conn.send_mss(), 524);
    assert!(!h.conn.pmtu_black_hole(), "not before an ACK says so");
    let ev = h.events();
    assert!(
        ev.contains(&Event::BlackHoleSuspected {
            at,
            mtu: 576,
            mss: 524
        }),
        "{ev:?}"
    );
    // The small segments get through.
    h.advance(ms(1));
    h.recv(ack_seg(5001, 1001 + 524));
    assert!(h.conn.pmtu_black_hole());
    let ev = h.events();
    assert!(
        ev.contains(&Event::BlackHoleConfirmed {
            at: h.now,
            mtu: 576
        }),
        "{ev:?}"
    );
    h.recv(ack_seg(5001, 4001));
    assert_eq!(h.conn.snd_una(), SeqNumber(4001));
    // Never twice.
    h.conn.send(&[1u8; 2000]);
    assert!(h.sent().iter().all(|s| s.payload.len() <= 524));
}

#[test]
fn black_hole_is_not_suspected_when_a_segment_as_big_got_through() {
    // A walk's survey at 15 % loss: the first of three full-sized segments lost again and
    // again while the peer SACKed the other two — a path that carries full-sized segments,
    // so the losses are chance, not a black hole. Before, the second RTO fell back to the
    // safe size and the record said "path MTU black hole".
    let mut h = established_with_mss(1460, true);
    h.conn.send(&[5u8; 3000]);
    assert_eq!(
        h.sent().iter().map(|s| s.payload.len()).collect::<Vec<_>>(),
        [1460, 1460, 80]
    );
    h.advance(ms(10));
    h.recv(ack_with_sack(1001, 2461, 4001));
    // RACK's copy, then the two RTOs' copies: all full-sized, all lost.
    for _ in 0..3 {
        h.fire();
        let s = h.sent_one();
        assert_eq!((s.seq.0, s.payload.len()), (1001, 1460));
    }
    assert_eq!(h.conn.retries(), 2);
    assert_eq!(h.conn.path_mtu(), None, "no fall back to the safe size");
    assert!(
        !h.events()
            .iter()
            .any(|e| matches!(e, Event::BlackHoleSuspected { .. })),
    );
}

#[test]
fn black_hole_ipv6_falls_back_to_1280() {
    let mut h = conn_established_ts(cfg_v6(1000));
    h.conn.send(&[3u8; 3000]);
    h.sent();
    h.fire();
    h.sent();
    h.fire();
    let lens: Vec<usize> = h.sent().iter().map(|s| s.payload.len()).collect();
    assert_eq!(lens, [1208, 1208, 480]);
    assert_eq!(h.conn.path_mtu(), Some(1280));
}

#[test]
fn black_hole_is_not_suspected_for_small_segments_or_confirmed_by_silence() {
    // A lost small segment is not about size.
    let mut h = conn_established_ts(cfg(1000));
    h.conn.send(&[1u8; 400]);
    h.sent();
    for _ in 0..3 {
        h.fire();
        assert_eq!(h.sent_one().payload.len(), 400);
    }
    assert_eq!(h.conn.path_mtu(), None);
    // A dead path: suspected, never confirmed.
    let mut h = conn_established_ts(cfg(1000));
    h.conn.send(&[1u8; 3000]);
    h.sent();
    for _ in 0..4 {
        h.fire();
        h.sent();
    }
    assert_eq!(h.conn.path_mtu(), Some(576));
    assert!(!h.conn.pmtu_black_hole());
    h.fire();
    assert_eq!(h.state(), State::Closed, "times out as before");
}

#[test]
fn black_hole_after_frag_needed_is_not_suspected_when_already_small() {
    // A path MTU at the IPv4 floor is below the safe size: nothing smaller to try.
    let mut h = conn_established_ts(cfg(1000));
    h.conn.send(&[1u8; 3000]);
    h.sent();
    icmp(&mut h, too_big(552), 1001);
    h.sent();
    h.fire();
    h.sent();
    h.fire();
    assert_eq!(h.sent_one().payload.len(), 500);
    assert_eq!(h.conn.path_mtu(), Some(552));
}

// --- sequence-number wrap: every phase crosses 2^32 ---

fn full_lifecycle(isn: u32, irs: u32) {
    // MSS 48, Linux's floor: the smallest segments a peer can ask for.
    let mut h = conn_established_with(cfg(isn), irs, opts_mss(48), 65535);
    let snd0 = isn.wrapping_add(1);
    let rcv0 = irs.wrapping_add(1);
    assert_eq!(h.conn.snd_una(), SeqNumber(snd0));
    assert_eq!(h.conn.rcv_nxt(), SeqNumber(rcv0));
    // Send 120 bytes in MSS 48 segments across the wrap.
    let data: Vec<u8> = (0..120u8).collect();
    h.conn.send(&data);
    let segs = h.sent();
    assert_eq!(segs.len(), 3);
    assert_eq!(segs[2].seq, SeqNumber(snd0.wrapping_add(96)));
    h.recv(ack_seg(rcv0, snd0.wrapping_add(48)));
    assert_eq!(h.conn.snd_una(), SeqNumber(snd0.wrapping_add(48)));
    // Retransmission after the wrap.
    h.fire();
    let r = h.sent_one();
    assert_eq!(r.seq, SeqNumber(snd0.wrapping_add(48)));
    assert_eq!(r.payload, &data[48..96]);
    h.recv(ack_seg(rcv0, snd0.wrapping_add(120)));
    assert_eq!(h.conn.poll_timeout(), None);
    // Receive out of order across the wrap.
    h.recv(seg(
        rcv0.wrapping_add(3),
        snd0.wrapping_add(120),
        ACK,
        b"def",
    ));
    h.recv(seg(rcv0, snd0.wrapping_add(120), ACK, b"abc"));
    assert_eq!(data_of(&h.events()), b"abcdef");
    assert_eq!(h.conn.rcv_nxt(), SeqNumber(rcv0.wrapping_add(6)));
    // RST handling uses the wrapped window.
    h.recv(seg(rcv0.wrapping_add(100), 0, RST, &[]));
    assert_eq!(
        h.anomalies(),
        vec![Anomaly::RstChallenged {
            seq: SeqNumber(rcv0.wrapping_add(100))
        }]
    );
    h.sent();
    // Close: our FIN, their FIN.
    h.conn.close(h.now);
    let fin = h.sent_one();
    assert_eq!(fin.seq, SeqNumber(snd0.wrapping_add(120)));
    h.recv(seg(
        rcv0.wrapping_add(6),
        snd0.wrapping_add(121),
        ACK | FIN,
        &[],
    ));
    assert_eq!(h.state(), State::TimeWait);
    assert_eq!(h.sent_one().ack, SeqNumber(rcv0.wrapping_add(7)));
    h.fire();
    assert_eq!(h.state(), State::Closed);
}

#[test]
fn wrap_isn_max_full_lifecycle() {
    full_lifecycle(u32::MAX, 5000);
}

#[test]
fn wrap_isn_max_minus_one_full_lifecycle() {
    full_lifecycle(u32::MAX - 1, 5000);
}

#[test]
fn wrap_irs_max_full_lifecycle() {
    full_lifecycle(1000, u32::MAX);
}

#[test]
fn wrap_isn_and_irs_near_max_full_lifecycle() {
    full_lifecycle(u32::MAX - 2, u32::MAX - 1);
}

#[test]
fn wrap_syn_sent_with_isn_max_refused_and_bad_ack() {
    let (mut h, syn) = conn_syn_sent_with(cfg(u32::MAX));
    assert_eq!(syn.seq, SeqNumber(u32::MAX));
    assert_eq!(h.conn.snd_nxt(), SeqNumber(0));
    h.recv(seg(1, u32::MAX, SYN | ACK, &[]));
    assert_eq!(
        h.anomalies(),
        vec![Anomaly::BadSynAck {
            ack: SeqNumber(u32::MAX),
            syn: true
        }]
    );
    h.sent();
    h.recv(seg(0, 0, RST | ACK, &[]));
    assert_eq!(h.state(), State::Closed);
}

// --- property: random peers never break the invariants ---

#[derive(Clone, Debug)]
enum Input {
    Segment {
        seq_off: i32,
        ack_off: i32,
        flags: u16,
        window: u16,
        len: usize,
        ts: Option<u32>,
    },
    Timeout,
    Advance(u16),
    Send(usize),
    Close,
    /// An ICMP error quoting `snd_una + seq_off`: kind 0 port unreachable, 1 time
    /// exceeded, 2 frag-needed with `mtu`, 3 host unreachable.
    Icmp {
        kind: u8,
        seq_off: i32,
        mtu: u32,
    },
}

fn input() -> impl Strategy<Value = Input> {
    prop_oneof![
        6 => (
            prop_oneof![-20_000i32..20_000, -100i32..100, Just(0i32)],
            prop_oneof![-20_000i32..20_000, -100i32..100, Just(0i32)],
            0u16..0x200,
            prop_oneof![Just(0u16), any::<u16>()],
            prop_oneof![Just(0usize), 0usize..3000],
            proptest::option::of(any::<u32>()),
        )
            .prop_map(|(seq_off, ack_off, flags, window, len, ts)| Input::Segment {
                seq_off,
                ack_off,
                flags,
                window,
                len,
                ts
            }),
        2 => Just(Input::Timeout),
        1 => (0u16..5000).prop_map(Input::Advance),
        1 => (0usize..3000).prop_map(Input::Send),
        1 => Just(Input::Close),
        1 => (0u8..4, prop_oneof![-3000i32..3000, Just(0i32)], 0u32..2000)
            .prop_map(|(kind, seq_off, mtu)| Input::Icmp { kind, seq_off, mtu }),
    ]
}

/// The invariants, checked after every input and on every segment sent.
struct Checker {
    isn: SeqNumber,
    queued: Vec<u8>,
}

impl Checker {
    fn check(&self, h: &mut Harness) {
        let c = &h.conn;
        assert!(c.snd_una().le(c.snd_nxt()), "snd_una ≤ snd_nxt");
        // SYN + queued data + FIN is all the sequence space we may use.
        let limit = self.isn.add(self.queued.len() as u32 + 2);
        assert!(c.snd_nxt().le(limit), "snd_nxt beyond queued data");
        assert!(c.reassembly_buffered() <= c.config().rcv_buf as usize);
        for s in h.sent() {
            if s.flags.rst() {
                continue;
            }
            if s.flags.ack() {
                assert!(s.ack.le(h.conn.rcv_nxt()), "ACK beyond rcv_nxt");
            }
            if !s.payload.is_empty() {
                let start = s.seq.diff(self.isn.add(1));
                assert!(start >= 0, "data before ISN+1");
                let start = start as usize;
                let end = start + s.payload.len();
                assert!(end <= self.queued.len(), "data beyond queued data");
                assert_eq!(
                    s.payload,
                    self.queued[start..end],
                    "data not what was queued"
                );
            }
        }
    }
}

fn run_inputs(mut h: Harness, inputs: Vec<Input>) {
    let isn = h.conn.config().isn;
    let mut chk = Checker {
        isn,
        queued: Vec::new(),
    };
    // Whatever the fixture queued already (nothing by construction).
    chk.check(&mut h);
    let buf = vec![0xabu8; 3000];
    for inp in inputs {
        match inp {
            Input::Segment {
                seq_off,
                ack_off,
                flags,
                window,
                len,
                ts,
            } => {
                let seq = h.conn.rcv_nxt().add(seq_off as u32);
                let ack = h.conn.snd_una().add(ack_off as u32);
                let mut s = seg(seq.0, ack.0, TcpFlags(flags), &buf[..len]);
                s.window = window;
                s.options.timestamps = ts.map(|v| (v, 0));
                h.recv(s);
            }
            Input::Timeout => {
                if let Some(at) = h.conn.poll_timeout() {
                    h.now = h.now.max(at);
                    h.conn.handle_timeout(h.now);
                }
            }
            Input::Advance(d) => {
                h.advance(ms(u64::from(d)));
                h.conn.handle_timeout(h.now);
            }
            Input::Send(n) => {
                let before = h.conn.state();
                if matches!(before, State::Established | State::CloseWait) {
                    let bytes: Vec<u8> = (0..n).map(|i| (chk.queued.len() + i) as u8).collect();
                    let accepting = !h.conn.fin_queued;
                    h.conn.send(&bytes);
                    if accepting {
                        chk.queued.extend(bytes);
                    }
                }
            }
            Input::Close => h.conn.close(h.now),
            Input::Icmp { kind, seq_off, mtu } => {
                let kind = match kind {
                    0 => IcmpKind::PortUnreachable,
                    1 => IcmpKind::TimeExceeded,
                    2 => IcmpKind::PacketTooBig { mtu },
                    _ => IcmpKind::HostUnreachable,
                };
                let seq = h.conn.snd_una().add(seq_off as u32);
                let in_flight = seq.ge(h.conn.snd_una()) && seq.lt(h.conn.snd_nxt());
                let (state, mss) = (h.conn.state(), h.conn.send_mss());
                let out = h.conn.handle_icmp(h.now, &icmp_about(&h, kind, seq));
                if !in_flight {
                    // RFC 5927 §4.1: unproven errors change nothing at all.
                    assert!(matches!(out, IcmpOutcome::Ignored(_)), "{out:?}");
                    assert_eq!((h.conn.state(), h.conn.send_mss()), (state, mss));
                }
                assert!(
                    h.conn.send_mss() <= mss,
                    "an ICMP error never raises the MSS"
                );
                if let IcmpOutcome::PathMtu(c) = out {
                    assert!(c.path_mtu >= 552, "IPv4 floor");
                }
            }
        }
        chk.check(&mut h);
        let _ = h.events();
        if h.conn.state() == State::Closed {
            assert_eq!(h.conn.poll_timeout(), None, "no timer survives CLOSED");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn prop_syn_sent_random_peer_never_breaks_invariants(
        isn in prop_oneof![any::<u32>(), Just(u32::MAX), Just(u32::MAX - 1)],
        inputs in proptest::collection::vec(input(), 0..40),
    ) {
        let (h, _) = conn_syn_sent_with(cfg(isn));
        run_inputs(h, inputs);
    }

    #[test]
    fn prop_established_random_peer_never_breaks_invariants(
        isn in prop_oneof![any::<u32>(), Just(u32::MAX)],
        irs in prop_oneof![any::<u32>(), Just(u32::MAX)],
        wscale in proptest::option::of(0u8..20),
        sack in any::<bool>(),
        ts in any::<bool>(),
        mss in proptest::option::of(0u16..2000),
        rcv_buf in prop_oneof![Just(0u32), 1u32..100, 100u32..2_000_000],
        our_wscale in 0u8..20,
        inputs in proptest::collection::vec(input(), 0..60),
    ) {
        let opts = TcpOptions {
            mss,
            wscale,
            sack_permitted: sack,
            timestamps: ts.then_some((1, 0)),
            ..TcpOptions::default()
        };
        let mut c = cfg(isn);
        c.rcv_buf = rcv_buf;
        c.wscale = our_wscale;
        let h = conn_established_with(c, irs, opts, 1000);
        run_inputs(h, inputs);
    }

    #[test]
    fn prop_closing_states_random_peer_never_breaks_invariants(
        isn in any::<u32>(),
        irs in any::<u32>(),
        peer_fin_first in any::<bool>(),
        inputs in proptest::collection::vec(input(), 0..40),
    ) {
        let mut h = conn_established_with(cfg(isn), irs, opts_mss(100), 1000);
        if peer_fin_first {
            h.recv(seg(irs.wrapping_add(1), isn.wrapping_add(1), ACK | FIN, &[]));
        }
        h.conn.close(h.now);
        run_inputs(h, inputs);
    }
}

/// RFC 7323 §5.4: an ACK made at the (older) kernel stamp of the segment it answers does
/// not carry a TSval below the one our last segment left with.
#[test]
fn tsval_never_goes_back_when_an_ack_is_made_at_an_older_stamp() {
    let peer = TcpOptions {
        mss: Some(1460),
        timestamps: Some((777, 0)),
        ..TcpOptions::default()
    };
    let mut h = conn_established_with(cfg(1000), 5000, peer, 65535);
    // Just past a millisecond boundary, our request leaves.
    h.now = Instant::from_nanos((h.now.as_nanos() / MS + 5) * MS + 100_000);
    let req = b"HEAD / HTTP/1.1\r\n\r\n";
    h.conn.send(req);
    let data = h.sent_one();
    let sent_tsval = data.options.timestamps.expect("timestamps").0;
    // The answer was stamped by the kernel just before that boundary.
    let later = h.now;
    h.now = Instant::from_nanos(later.as_nanos() - 200_000);
    let mut resp = seg(
        5001,
        1001 + req.len() as u32,
        ACK | PSH,
        b"HTTP/1.1 200 OK\r\n",
    );
    resp.options.timestamps = Some((778, sent_tsval));
    h.recv(resp);
    h.now = later;
    let mut out = h.sent();
    if out.is_empty() {
        h.fire();
        out = h.sent();
    }
    let ack = out.last().expect("an ACK of the response");
    let tsval = ack.options.timestamps.expect("timestamps").0;
    assert!(
        tsval.wrapping_sub(sent_tsval) as i32 >= 0,
        "TSval went back: {sent_tsval} then {tsval}"
    );
}

/// Closed (FIN-WAIT-1, our FIN queued behind data, neither sent yet) and the peer's FIN
/// in before our next send — a TLS probe whose server answered in plain HTTP and closed:
/// the TLS alert and the close came from the response, the peer's FIN in the same read
/// of the tap. CLOSING still sends the data and our FIN after it (RFC 9293 §3.10.4: the
/// FIN follows what was queued; Linux's CLOSING sends its write queue too). Neither went
/// out: the probe waited out its timeout in CLOSING and reset.
#[test]
fn the_peers_fin_before_our_queued_fin_left_still_sends_ours() {
    for alert in [&b""[..], &[21, 3, 3, 0, 2, 2, 50][..]] {
        let mut h = conn_established();
        h.recv(seg(5001, 1001, ACK | PSH, b"HTTP/1.1 400 Bad Request\r\n"));
        h.conn.send(alert);
        h.conn.close(h.now);
        h.recv(seg(5027, 1001, ACK | FIN, &[]));
        assert_eq!(h.state(), State::Closing);
        let sent = h.sent();
        let fin = sent.iter().find(|s| s.flags.fin()).expect("our FIN");
        let fin_seq = 1001 + alert.len() as u32;
        // The FIN rides on the data's last segment, or goes alone after none.
        let end = fin.seq.add(fin.payload.len() as u32);
        assert_eq!((end, fin.ack), (SeqNumber(fin_seq), SeqNumber(5028)));
        let data: usize = sent.iter().map(|s| s.payload.len()).sum();
        assert_eq!(data, alert.len(), "{sent:?}");
        // One segment: the data and the FIN carry the ACK of the peer's FIN.
        assert_eq!(sent.len(), 1, "{sent:?}");
        h.recv(ack_seg(5028, fin_seq + 1));
        assert_eq!(h.state(), State::TimeWait);
    }
}

mod review15;
mod review16;

// --- RACK (RFC 8985) ---

/// ESTABLISHED (ISS 1000, IRS 5000, window 65 535) with a peer that offered MSS `mss`
/// and agreed to SACK when `sack`.
fn established_with_mss(mss: u16, sack: bool) -> Harness {
    let opts = TcpOptions {
        mss: Some(mss),
        sack_permitted: sack,
        ..TcpOptions::default()
    };
    conn_established_with(cfg(1000), 5000, opts, 65535)
}

/// ESTABLISHED with a peer that agreed to SACK, MSS 500; a 1 300-byte request sent (three
/// segments at once, 10 ms after the handshake began). Returns the three segments.
fn rack_request_sent(sack: bool) -> (Harness, Vec<Segment>) {
    let mut h = established_with_mss(500, sack);
    h.conn.send(&[b'a'; 1300]);
    let out = h.sent();
    assert_eq!(
        out.iter()
            .map(|s| (s.seq.0, s.payload.len()))
            .collect::<Vec<_>>(),
        [(1001, 500), (1501, 500), (2001, 300)]
    );
    (h, out)
}

/// The peer's ACK of `ack` (its seq 5001) with one SACK block, `[left, right)`.
fn ack_with_sack(ack: u32, left: u32, right: u32) -> TcpRepr<'static> {
    let mut a = ack_seg(5001, ack);
    a.options.sack_blocks[0] = Some((SeqNumber(left), SeqNumber(right)));
    a
}

/// The peer's duplicate ACK of 1001 with a SACK block for the second and third segment.
fn sack_of_the_rest() -> TcpRepr<'static> {
    ack_with_sack(1001, 1501, 2301)
}

#[test]
fn rack_sends_a_hole_behind_sacked_segments_again_after_a_quarter_round_trip() {
    // The walk's case: the first of three segments lost, the others SACKed one round trip
    // later. Before, it went again at the RTO (200 ms); Linux's client at +7 ms.
    let (mut h, _) = rack_request_sent(true);
    let sent_at = h.now;
    h.advance(ms(10));
    h.recv(sack_of_the_rest());
    assert!(h.sent().is_empty(), "within the reordering window: not yet");
    // RACK.rtt 10 ms, min_RTT 10 ms: lost at send + 10 ms + 2.5 ms; the timer fires
    // Linux's 2 ms later.
    let at = h.fire();
    assert_eq!(at, sent_at + ms(14) + Duration::from_micros(500));
    let again = h.sent_one();
    assert_eq!((again.seq.0, again.payload.len()), (1001, 500));
    assert!(again.retransmission);
    assert_eq!(
        again.flags, ACK,
        "no PSH: it was not the request's last segment"
    );
    assert_eq!(h.conn.retransmissions(), 1);
    assert_eq!(h.conn.retries(), 0, "not a timeout: no back-off");
    // The retransmission timer restarts for the head sent again.
    assert_eq!(h.conn.poll_timeout(), Some(at + h.conn.rto()));
    h.advance(ms(10));
    h.recv(ack_seg(5001, 2301));
    assert!(h.sent().is_empty());
    assert_eq!(
        h.conn.poll_timeout(),
        None,
        "all acknowledged: no timer left"
    );
}

#[test]
fn rack_waits_out_reordering_and_the_late_segment_stops_it() {
    let (mut h, _) = rack_request_sent(true);
    h.advance(ms(10));
    h.recv(sack_of_the_rest());
    // The first segment was only late: the cumulative ACK within the window ends it.
    h.advance(ms(1));
    h.recv(ack_seg(5001, 2301));
    assert!(h.sent().is_empty());
    assert_eq!(h.conn.poll_timeout(), None);
    assert_eq!(h.conn.retransmissions(), 0);
}

#[test]
fn rack_needs_sack_and_each_delivery_judges_once() {
    // Without SACK agreed on, SACK blocks teach nothing: the RTO sends it.
    let (mut h, _) = rack_request_sent(false);
    let sent_at = h.now;
    h.advance(ms(10));
    h.recv(sack_of_the_rest());
    assert_eq!(h.conn.poll_timeout(), Some(sent_at + h.conn.rto()));
    // With SACK: once sent again, the same SACK blocks repeated do not send it again —
    // the copy left after everything the peer has delivered.
    let (mut h, _) = rack_request_sent(true);
    h.advance(ms(10));
    h.recv(sack_of_the_rest());
    h.fire();
    assert_eq!(h.sent().len(), 1);
    for _ in 0..5 {
        h.advance(ms(1));
        h.recv(sack_of_the_rest());
        assert!(h.sent().is_empty());
    }
    assert_eq!(h.conn.retransmissions(), 1);
}

#[test]
fn tlp_sends_the_tail_again_and_rack_finds_the_rest() {
    // The whole request lost: nothing comes back. The tail loss probe (RFC 8985 §7) sends
    // the last segment again after 2·SRTT; the peer's ACK of it SACKs it, and RACK sends
    // the other two at once — Linux's client on the same wire probes at ~9 ms.
    let (mut h, _) = rack_request_sent(true);
    let sent_at = h.now;
    let at = h.fire();
    assert_eq!(at, sent_at + ms(20), "SRTT 10 ms: 2·SRTT");
    let probe = h.sent_one();
    assert_eq!((probe.seq.0, probe.payload.len()), (2001, 300));
    assert!(probe.retransmission && probe.flags.psh());
    assert_eq!(h.conn.retries(), 0, "a probe is not a timeout: no back-off");
    assert_eq!(h.conn.poll_timeout(), Some(at + h.conn.rto()));
    h.advance(ms(10));
    h.recv(ack_with_sack(1001, 2001, 2301));
    // One delivered, one sent (as Linux's PRR): the second waits for the next ACK.
    let again = h.sent_one();
    assert_eq!((again.seq.0, again.payload.len()), (1001, 500));
    h.advance(ms(10));
    h.recv(ack_with_sack(1501, 2001, 2301));
    let again = h.sent_one();
    assert_eq!((again.seq.0, again.payload.len()), (1501, 500));
    h.advance(ms(10));
    h.recv(ack_seg(5001, 2301));
    assert_eq!(h.conn.poll_timeout(), None);
    assert_eq!(h.conn.retransmissions(), 3);
}

#[test]
fn tlp_goes_once_per_tail_and_not_for_one_segment_or_without_sack() {
    // Unanswered, the probe is not repeated: the RTO comes next, and backs off.
    let (mut h, _) = rack_request_sent(true);
    let sent_at = h.now;
    h.fire();
    assert_eq!(h.sent().len(), 1);
    let rto_at = h.fire();
    assert_eq!(h.conn.retries(), 1, "the second silence is the RTO's");
    assert_eq!(rto_at, sent_at + ms(20) + ms(200));
    // A one-segment request: its probe would wait out a delayed ACK (200 ms) and go with
    // the RTO, so there is none.
    let mut h = established_with_mss(500, true);
    h.conn.send(b"HEAD / HTTP/1.1\r\n\r\n");
    let sent_at = h.now;
    assert_eq!(h.sent().len(), 1);
    assert_eq!(h.conn.poll_timeout(), Some(sent_at + h.conn.rto()));
    // Without SACK the probe's answer could not tell what was lost: none either.
    let (h, _) = rack_request_sent(false);
    assert_eq!(h.conn.poll_timeout(), Some(h.now + h.conn.rto()));
}

// --- Review 16: RACK / TLP ---

#[test]
fn review16_tlp_not_armed_while_segments_are_sacked() {
    // RFC 8985 §7.2: no loss probe in recovery, nor while "segments have been SACKed"
    // (Linux: only in TCP_CA_Open). RACK has sent the hole again; a duplicate
    // ACK with the same SACK block (the peer's next segment) must not arm a probe that
    // sends the SACKed tail again: the next timer is the RTO for the head.
    let (mut h, _) = rack_request_sent(true);
    h.advance(ms(10));
    h.recv(sack_of_the_rest());
    let at = h.fire();
    let again = h.sent_one();
    assert_eq!(again.seq.0, 1001);
    h.advance(ms(1));
    h.recv(sack_of_the_rest());
    assert!(h.sent().is_empty());
    assert_eq!(
        h.conn.poll_timeout(),
        Some(at + h.conn.rto()),
        "only the RTO is armed"
    );
    let fired = h.fire();
    for s in h.sent() {
        assert!(
            !(s.seq.ge(SeqNumber(1501)) && s.seq.lt(SeqNumber(2301))),
            "SACKed data sent again at {fired:?}: {s:?}"
        );
    }
}

#[test]
fn review16_a_peer_that_reneges_on_its_sacks_costs_no_more_rtos() {
    // RFC 2018 §8: the sender must be ready for a receiver that reneges on what it SACKed
    // (Linux's receiver does, pruning its out-of-order queue under memory pressure). The
    // peer SACKed the second and third segments, the first was lost twice (RACK's copy
    // too), the RTO sent it again, and the peer's ACK of it carries no SACK block: it has
    // dropped the rest. Sent before the copy it acknowledged, they are lost (RFC 8985
    // §6.2), not held for one more (backed-off) RTO each.
    let (mut h, _) = rack_request_sent(true);
    h.advance(ms(10));
    h.recv(sack_of_the_rest());
    h.fire();
    assert_eq!(h.sent_one().seq.0, 1001, "RACK's copy");
    h.fire();
    assert_eq!(h.conn.retries(), 1);
    assert_eq!(h.sent_one().seq.0, 1001, "the RTO's copy");
    h.advance(ms(11));
    h.recv(ack_seg(5001, 1501));
    let again = h.sent();
    assert_eq!(
        again.iter().map(|s| s.seq.0).collect::<Vec<_>>(),
        [1501, 2001],
        "the reneged segments go at once (one for the segment delivered, one more as the \
         ACK moved SND.UNA: PRR-SSRB), not at the RTO"
    );
    // And the peer that still holds what it SACKed says so on the same ACK: nothing sent.
    let (mut h, _) = rack_request_sent(true);
    h.advance(ms(10));
    h.recv(sack_of_the_rest());
    h.fire();
    let _ = h.sent();
    h.fire();
    let _ = h.sent();
    h.advance(ms(11));
    h.recv(ack_with_sack(1501, 2001, 2301));
    assert_eq!(
        h.sent().iter().map(|s| s.seq.0).collect::<Vec<_>>(),
        [1501],
        "only the hole, not the SACKed tail"
    );
}

#[test]
fn review16_path_mtu_resend_leaves_out_what_the_peer_sacked() {
    // A frag-needed after the peer SACKed the second long segment: that one got through
    // (the path shrank after it, or another way), so only the first goes again, cut —
    // Linux's tcp_simple_retransmit marks lost only what is not SACKed
    // (`tcp_mark_skb_lost`). Before, the SACKed segment went again too, counted as a
    // retransmission (and so did it in the black-hole fall back after two RTOs).
    let mut h = established_with_mss(1460, true);
    h.conn.send(&[b'x'; 3000]);
    assert_eq!(
        h.sent()
            .iter()
            .map(|s| (s.seq.0, s.payload.len()))
            .collect::<Vec<_>>(),
        [(1001, 1460), (2461, 1460), (3921, 80)]
    );
    h.advance(ms(10));
    h.recv(ack_with_sack(1001, 2461, 3921));
    let _ = h.sent();
    let _ = icmp(&mut h, too_big(1000), 1001);
    let again: Vec<(u32, usize)> = h
        .sent()
        .iter()
        .map(|s| (s.seq.0, s.payload.len()))
        .collect();
    assert_eq!(
        again,
        [(1001, 960), (1961, 500)],
        "only the unSACKed segment"
    );
}

#[test]
fn review16_one_ack_may_send_several_lost_segments_again() {
    // Not a bug: RACK sends as many lost segments as the ACK delivered (Linux's PRR), so
    // one ACK may queue more than review15's "two segments per input" — bounded by
    // MAX_RESEND. This pins the number so the hostile proptest's bound is known stale.
    let mut h = established_with_mss(100, true);
    h.conn.send(&[b'x'; 1000]);
    assert_eq!(h.sent().len(), 10);
    h.advance(ms(10));
    h.recv(ack_with_sack(1001, 1501, 2001));
    let again = h.conn.tx.len();
    assert_eq!(again, 5, "five delivered, five lost sent again by one ACK");
}

#[test]
fn rack_resends_that_a_later_ack_of_the_same_read_covers_do_not_leave() {
    // Walk 16 (reorder=25 %, gap=5 ms): the server's ACKs came in one tap read — a SACK
    // that made RACK call the segments before it lost (three SACKed: no reordering
    // window), then the cumulative ACK of everything, the late ones having arrived. The
    // resends, queued at the first packet, still left after the second: sent for bytes
    // already acknowledged (Wireshark: spurious retransmission; the server D-SACKed
    // them), and counted. Linux sends as it reads, so never sends what is acknowledged.
    let mut h = established_with_mss(500, true);
    h.conn.send(&[b'a'; 2300]);
    assert_eq!(h.sent().len(), 5);
    h.advance(ms(10));
    h.recv(ack_with_sack(1001, 1501, 3301));
    // Nothing polled yet (the same read): the first segment's late copy acknowledged.
    h.recv(ack_seg(5001, 3301));
    assert!(h.sent().is_empty(), "nothing left to send again");
    assert_eq!(h.conn.retransmissions(), 0);
    assert_eq!(h.conn.poll_timeout(), None);
    // Polled between the two, the resend goes (RACK's call, as before).
    let mut h = established_with_mss(500, true);
    h.conn.send(&[b'a'; 2300]);
    assert_eq!(h.sent().len(), 5);
    h.advance(ms(10));
    h.recv(ack_with_sack(1001, 1501, 3301));
    assert_eq!(h.sent_one().seq.0, 1001);
    h.recv(ack_seg(5001, 3301));
    assert_eq!(h.conn.retransmissions(), 1);
}

#[test]
fn rack_sends_one_more_when_the_ack_moves_snd_una() {
    // Walk 16 (every segment of a six-segment request dropped once): after the tail
    // probe's SACK, one lost segment went per ACK, so the rest took a round trip each —
    // 81 ms to the first byte at 10 ms RTT; curl on the same wire 59 ms (Linux's PRR
    // sent all four left on the first ACK that moved SND.UNA). An ACK that moves SND.UNA
    // now lets one more go (RFC 6937 §3.1, PRR-SSRB's "+ MSS" while the pipe is below
    // ssthresh, as Linux's `tcp_cwnd_reduction`); a SACK alone still lets one per segment
    // it delivered.
    let mut h = established_with_mss(500, true);
    h.conn.send(&[b'a'; 2300]);
    assert_eq!(h.sent().len(), 5);
    h.fire();
    let probe = h.sent_one();
    assert_eq!(probe.seq.0, 3001, "the tail loss probe");
    h.advance(ms(10));
    h.recv(ack_with_sack(1001, 3001, 3301));
    let seqs = |s: Vec<Segment>| s.iter().map(|s| s.seq.0).collect::<Vec<_>>();
    assert_eq!(seqs(h.sent()), [1001], "a SACK of one: one");
    h.advance(ms(10));
    h.recv(ack_with_sack(1501, 3001, 3301));
    assert_eq!(seqs(h.sent()), [1501, 2001], "SND.UNA moved: one more");
    h.advance(ms(10));
    h.recv(ack_with_sack(2501, 3001, 3301));
    assert_eq!(seqs(h.sent()), [2501]);
    h.advance(ms(10));
    h.recv(ack_seg(5001, 3301));
    assert_eq!(h.conn.poll_timeout(), None);
    assert_eq!(h.conn.retransmissions(), 5);
}

//! Review 15: records a hostile server can make, read back; HTTP heads and TLS bytes of
//! hostile shapes; the probe's deadlines.

use super::*;

/// A server that answers our SYN with a bare SYN (a "split handshake", nmap's
/// `split-handshake-syn`) makes a record with a `SYN-SENT → SYN-RECEIVED` transition. It is
/// written, but `ProbeResult::from_json_line` (what `report` reads saved records with)
/// refused it: `State::from_name` did not know `SYN-RECEIVED`.
#[test]
fn a_split_handshake_record_reads_back() {
    let mut p = Probe::new(config(1000, true));
    p.start(at(0));
    pump(&mut p, 0);
    p.handle_packet(
        at(50),
        false,
        &server_seg(7000, 0, TcpFlags::SYN, &[]),
        false,
    );
    pump(&mut p, 60);
    let r = p.result();
    let json = serde_json::to_string(&r).unwrap();
    assert!(json.contains("SYN-RECEIVED"), "{json}");
    let back = ProbeResult::from_json_line(&json);
    assert_eq!(back.as_ref().ok(), Some(&r), "{back:?}");
}

/// Every state's name reads back as the state.
#[test]
fn every_state_name_reads_back() {
    use State::*;
    for s in [
        Closed,
        SynSent,
        SynReceived,
        Established,
        FinWait1,
        FinWait2,
        Closing,
        TimeWait,
        CloseWait,
        LastAck,
    ] {
        assert_eq!(State::from_name(s.name()), Some(s), "{}", s.name());
    }
}

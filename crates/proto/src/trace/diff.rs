//! What changed between a packet as we sent it and as a hop quoted it, and at which hop
//! each change first appeared.
//!
//! [`compare`] reads the two views field by field ([`Field`]): only fields the quote
//! reaches are compared (a router that quotes 8 bytes of TCP, RFC 792, says nothing about
//! the options). [`attribute`] then walks the hops in TTL order and keeps, for each field,
//! what the last hop that saw it saw: a change is listed at the first hop whose view
//! differs from that (so a field rewritten at hop 3 is listed at hop 3 only, and a field
//! set back later is listed again where that shows).
//!
//! Some fields differ from probe to probe by design (the IPv4 identification, the
//! sequence number, TSval, the checksum that covers them): for those a hop's view is
//! "changed or not" rather than the value, so three probes with three identifications
//! agree. The TTL is a hop's own: a router quotes the TTL as it received it, so at the hop
//! where a probe expires it should be 1 — anything else (0: it quotes after decrementing;
//! more: a hop before it did not decrement, as inside an MPLS tunnel, RFC 4950) is listed
//! at that hop alone.

use crate::wire::quote::QuotedDatagram;
use crate::wire::{TcpFlags, TcpOptions};
use std::fmt::Write as _;

/// A header field that a hop may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    IpDscp,
    IpEcn,
    IpTtl,
    IpId,
    IpDf,
    IpFlowLabel,
    IpSrc,
    IpDst,
    IpLen,
    IpOptions,
    TcpSport,
    TcpDport,
    TcpSeq,
    TcpAck,
    TcpFlags,
    TcpWindow,
    TcpChecksum,
    TcpUrgent,
    TcpMss,
    TcpWscale,
    TcpSackPermitted,
    TcpTsval,
    TcpTsecr,
    TcpOtherOptions,
    TcpOptionBytes,
    TcpPayload,
}

impl Field {
    /// Whether the TCP checksum covers it: the segment, and the pseudo-header's addresses
    /// and length (RFC 9293 §3.1).
    fn covered_by_tcp_checksum(self) -> bool {
        !matches!(
            self,
            Field::IpDscp
                | Field::IpEcn
                | Field::IpTtl
                | Field::IpId
                | Field::IpDf
                | Field::IpFlowLabel
                | Field::IpOptions
                | Field::TcpChecksum
        )
    }

    /// The name in JSON and in the text table.
    pub fn name(self) -> &'static str {
        match self {
            Field::IpDscp => "ip.dscp",
            Field::IpEcn => "ip.ecn",
            Field::IpTtl => "ip.ttl",
            Field::IpId => "ip.id",
            Field::IpDf => "ip.df",
            Field::IpFlowLabel => "ip.flowlabel",
            Field::IpSrc => "ip.src",
            Field::IpDst => "ip.dst",
            Field::IpLen => "ip.len",
            Field::IpOptions => "ip.options",
            Field::TcpSport => "tcp.sport",
            Field::TcpDport => "tcp.dport",
            Field::TcpSeq => "tcp.seq",
            Field::TcpAck => "tcp.ack",
            Field::TcpFlags => "tcp.flags",
            Field::TcpWindow => "tcp.window",
            Field::TcpChecksum => "tcp.checksum",
            Field::TcpUrgent => "tcp.urgent",
            Field::TcpMss => "tcp.mss",
            Field::TcpWscale => "tcp.wscale",
            Field::TcpSackPermitted => "tcp.sack_permitted",
            Field::TcpTsval => "tcp.tsval",
            Field::TcpTsecr => "tcp.tsecr",
            Field::TcpOtherOptions => "tcp.options.other",
            Field::TcpOptionBytes => "tcp.options",
            Field::TcpPayload => "tcp.payload",
        }
    }
}

/// How a hop's view of a field is compared with the previous hop's.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Key {
    /// The value itself (fields that are the same in every probe we send).
    Value(String),
    /// Changed or not, and for a checksum whether it is (still) valid: fields that
    /// differ from probe to probe.
    Changed { changed: bool, valid: Option<bool> },
    /// A hop's own observation, never carried over (the quoted TTL).
    Own,
}

/// One field as one hop saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    pub field: Field,
    /// What we sent (for the TTL: what the hop should have received).
    pub sent: String,
    pub seen: String,
    /// The hop's view differs from what we sent.
    pub differs: bool,
    key: Key,
}

/// A change and the hop it is attributed to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub field: Field,
    pub sent: String,
    pub seen: String,
    /// Why it is listed although `seen` may equal `sent` (set back, or a checksum that a
    /// change left invalid).
    pub note: Option<String>,
}

/// RFC 4594 / RFC 8622 names of the common code points.
fn dscp_name(d: u8) -> Option<&'static str> {
    Some(match d {
        0 => "cs0",
        1 => "le",
        8 => "cs1",
        10 => "af11",
        12 => "af12",
        14 => "af13",
        16 => "cs2",
        18 => "af21",
        20 => "af22",
        22 => "af23",
        24 => "cs3",
        26 => "af31",
        28 => "af32",
        30 => "af33",
        32 => "cs4",
        34 => "af41",
        36 => "af42",
        38 => "af43",
        40 => "cs5",
        44 => "va",
        46 => "ef",
        48 => "cs6",
        56 => "cs7",
        _ => return None,
    })
}

pub fn dscp_str(d: u8) -> String {
    match dscp_name(d) {
        Some(n) => format!("{n} ({d})"),
        None => d.to_string(),
    }
}

/// RFC 3168 §5 code points.
pub fn ecn_str(e: u8) -> &'static str {
    match e & 3 {
        0 => "not-ect",
        1 => "ect(1)",
        2 => "ect(0)",
        _ => "ce",
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes.iter().take(40) {
        let _ = write!(s, "{b:02x}");
    }
    if bytes.is_empty() {
        s.push_str("none");
    }
    s
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "none".to_string(), |v| v.to_string())
}

fn yes(b: bool) -> String {
    (if b { "yes" } else { "no" }).to_string()
}

/// The option kinds we do not decode (and malformed ones), in order.
fn other_options(o: &TcpOptions) -> String {
    let kinds: Vec<String> = o
        .unknown_kinds()
        .map(|k| k.to_string())
        .chain(o.malformed_kinds().map(|k| format!("{k}(malformed)")))
        .collect();
    if kinds.is_empty() {
        "none".to_string()
    } else {
        kinds.join(",")
    }
}

/// Collects observations.
struct Obs(Vec<Observation>);

impl Obs {
    /// A field that is the same in every probe.
    fn stable(&mut self, field: Field, sent: String, seen: String) {
        let differs = sent != seen;
        self.0.push(Observation {
            field,
            key: Key::Value(seen.clone()),
            sent,
            seen,
            differs,
        });
    }

    /// A field that differs from probe to probe.
    fn per_probe(&mut self, field: Field, sent: String, seen: String) {
        let differs = sent != seen;
        self.0.push(Observation {
            field,
            key: Key::Changed {
                changed: differs,
                valid: None,
            },
            sent,
            seen,
            differs,
        });
    }
}

/// Compare what we sent with what a hop quoted. `expected_ttl` is the TTL the hop should
/// have received (1 where a probe expired). Fields the quote does not reach are left out.
pub fn compare(
    sent: &QuotedDatagram<'_>,
    seen: &QuotedDatagram<'_>,
    expected_ttl: u8,
) -> Vec<Observation> {
    let mut o = Obs(Vec::with_capacity(24));
    let (s, q) = (&sent.ip, &seen.ip);
    o.stable(Field::IpDscp, dscp_str(s.dscp()), dscp_str(q.dscp()));
    o.stable(
        Field::IpEcn,
        ecn_str(s.ecn()).into(),
        ecn_str(q.ecn()).into(),
    );
    o.0.push(Observation {
        field: Field::IpTtl,
        sent: expected_ttl.to_string(),
        seen: q.ttl.to_string(),
        differs: q.ttl != expected_ttl,
        key: Key::Own,
    });
    if !s.v6 && !q.v6 {
        o.per_probe(Field::IpId, s.ident.to_string(), q.ident.to_string());
        o.stable(
            Field::IpDf,
            (if s.dont_frag { "set" } else { "clear" }).into(),
            (if q.dont_frag { "set" } else { "clear" }).into(),
        );
    }
    if s.v6 && q.v6 {
        o.stable(
            Field::IpFlowLabel,
            format!("{:#07x}", s.flow_label),
            format!("{:#07x}", q.flow_label),
        );
    }
    o.stable(Field::IpSrc, s.src.to_string(), q.src.to_string());
    o.stable(Field::IpDst, s.dst.to_string(), q.dst.to_string());
    o.stable(Field::IpLen, s.length.to_string(), q.length.to_string());
    o.stable(
        Field::IpOptions,
        format!("{} bytes", s.options_len),
        format!("{} bytes", q.options_len),
    );
    let (Some(st), Some(qt)) = (sent.tcp, seen.tcp) else {
        return o.0;
    };
    // RFC 792's eight bytes: ports and sequence number.
    if let (Some(a), Some(b)) = (st.src_port(), qt.src_port()) {
        o.stable(Field::TcpSport, a.to_string(), b.to_string());
    }
    if let (Some(a), Some(b)) = (st.dst_port(), qt.dst_port()) {
        o.stable(Field::TcpDport, a.to_string(), b.to_string());
    }
    if let (Some(a), Some(b)) = (st.seq(), qt.seq()) {
        o.per_probe(Field::TcpSeq, a.0.to_string(), b.0.to_string());
    }
    // What RFC 1812 / RFC 4443 routers add.
    if let (Some(a), Some(b)) = (st.ack(), qt.ack()) {
        o.stable(Field::TcpAck, a.0.to_string(), b.0.to_string());
    }
    if let (Some(a), Some(b)) = (st.flags(), qt.flags()) {
        o.stable(Field::TcpFlags, flags_str(a), flags_str(b));
    }
    if let (Some(a), Some(b)) = (st.window(), qt.window()) {
        o.stable(Field::TcpWindow, a.to_string(), b.to_string());
    }
    if let (Some(a), Some(b)) = (st.urgent(), qt.urgent()) {
        o.stable(Field::TcpUrgent, a.to_string(), b.to_string());
    }
    if let (Some(sb), Some(qb)) = (st.option_bytes(), qt.option_bytes()) {
        let (so, qo) = (TcpOptions::parse(sb), TcpOptions::parse(qb));
        let before = o.0.len();
        o.stable(Field::TcpMss, opt(so.mss), opt(qo.mss));
        o.stable(Field::TcpWscale, opt(so.wscale), opt(qo.wscale));
        o.stable(
            Field::TcpSackPermitted,
            yes(so.sack_permitted),
            yes(qo.sack_permitted),
        );
        let tsval = |t: Option<(u32, u32)>| opt(t.map(|t| t.0));
        let tsecr = |t: Option<(u32, u32)>| opt(t.map(|t| t.1));
        o.per_probe(Field::TcpTsval, tsval(so.timestamps), tsval(qo.timestamps));
        o.per_probe(Field::TcpTsecr, tsecr(so.timestamps), tsecr(qo.timestamps));
        o.stable(
            Field::TcpOtherOptions,
            other_options(&so),
            other_options(&qo),
        );
        // The bytes themselves, when nothing decoded above explains their difference
        // (options reordered, padding replaced, SACK blocks): listed as per-probe, since
        // they hold TSval.
        let explained = o.0[before..].iter().any(|x| x.differs);
        if sb != qb && !explained {
            o.per_probe(Field::TcpOptionBytes, hex(sb), hex(qb));
        }
    }
    if let (Some(a), Some(b)) = (st.payload(), qt.payload()) {
        // A quote may end inside the payload: compare what both have.
        let n = a.len().min(b.len());
        if a.len() == b.len() || b.len() < a.len() {
            o.per_probe(Field::TcpPayload, hex(&a[..n]), hex(&b[..n]));
        } else {
            o.per_probe(Field::TcpPayload, hex(a), hex(b));
        }
    }
    // Last: the checksum covers everything above (and the pseudo-header).
    if let (Some(a), Some(b)) = (st.checksum(), qt.checksum()) {
        let valid = seen.tcp_checksum_valid();
        let changed = a != b;
        let v = match valid {
            Some(true) => " (valid)",
            Some(false) => " (invalid)",
            None => "",
        };
        o.0.push(Observation {
            field: Field::TcpChecksum,
            sent: format!("{a:#06x}"),
            seen: format!("{b:#06x}{v}"),
            differs: changed || valid == Some(false),
            key: Key::Changed { changed, valid },
        });
    }
    o.0
}

fn flags_str(f: TcpFlags) -> String {
    f.to_string()
}

/// Attribute the changes: `hops` in TTL order, each with the observations of its first
/// answered probe (or none). Returns, per hop, the changes that first appear there.
pub fn attribute(hops: &[Option<Vec<Observation>>]) -> Vec<Vec<Change>> {
    use std::collections::BTreeMap;
    // The view of each field at the last hop that saw it (initially: as sent, unchanged).
    let mut last: BTreeMap<Field, (Key, String)> = BTreeMap::new();
    let mut out = Vec::with_capacity(hops.len());
    for hop in hops {
        let mut changes = Vec::new();
        for obs in hop.iter().flatten() {
            if obs.key == Key::Own {
                if obs.differs {
                    changes.push(Change {
                        field: obs.field,
                        sent: obs.sent.clone(),
                        seen: obs.seen.clone(),
                        note: Some("TTL as this hop received it".into()),
                    });
                }
                continue;
            }
            let baseline = match &obs.key {
                Key::Value(_) => Key::Value(obs.sent.clone()),
                Key::Changed { valid, .. } => Key::Changed {
                    changed: false,
                    valid: valid.map(|_| true),
                },
                Key::Own => Key::Own,
            };
            let (prev, prev_seen) = last
                .get(&obs.field)
                .cloned()
                .unwrap_or((baseline.clone(), obs.sent.clone()));
            // A checksum's validity is compared only where both hops could tell.
            let same = match (&prev, &obs.key) {
                (
                    Key::Changed {
                        changed: a,
                        valid: va,
                    },
                    Key::Changed {
                        changed: b,
                        valid: vb,
                    },
                ) => a == b && (va.is_none() || vb.is_none() || va == vb),
                (a, b) => a == b,
            };
            // The checksum's view is "changed or not" (it differs from probe to probe), so
            // a second rewrite further on looks like the first: it changed wherever a field
            // it covers (the TCP header and options, the pseudo-header's addresses and
            // length, RFC 9293 §3.1) is listed at this hop — walk 15: listed only at the
            // first hop that clamped the MSS, not at the next that rewrote the window.
            let recomputed = obs.field == Field::TcpChecksum
                && obs.differs
                && changes
                    .iter()
                    .any(|c: &Change| c.field.covered_by_tcp_checksum());
            if !same || recomputed {
                let note = if !obs.differs {
                    Some(format!("as sent again (was {prev_seen})"))
                } else if obs.field == Field::TcpChecksum && obs.seen.ends_with("(invalid)") {
                    Some("not recomputed after a change".into())
                } else {
                    None
                };
                changes.push(Change {
                    field: obs.field,
                    sent: obs.sent.clone(),
                    seen: obs.seen.clone(),
                    note,
                });
            }
            last.insert(obs.field, (obs.key.clone(), obs.seen.clone()));
        }
        out.push(changes);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ip::{IpRepr, PROTO_TCP};
    use crate::wire::{SeqNumber, TcpRepr};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    const A4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
    const B4: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 130));
    const A6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1));
    const B6: IpAddr = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 1, 0, 0, 0, 0, 2));

    fn syn(src: IpAddr, dst: IpAddr, ident: u16, seq: u32, mss: u16, sack: bool) -> Vec<u8> {
        let mut options = TcpOptions::default()
            .with_mss(mss)
            .with_timestamps(1000 + seq, 0)
            .with_wscale(7);
        options.sack_permitted = sack;
        let tcp = TcpRepr {
            src_port: 40001,
            dst_port: 80,
            seq: SeqNumber(seq),
            ack: SeqNumber(0),
            flags: TcpFlags::SYN,
            window: 64240,
            urgent: 0,
            options,
            payload: &[],
        };
        let mut ip = IpRepr::new(src, dst, PROTO_TCP, 1, tcp.buffer_len());
        ip.ident = ident;
        let mut buf = vec![0u8; ip.header_len() + tcp.buffer_len()];
        let n = ip.emit(&mut buf).unwrap();
        tcp.emit(src, dst, &mut buf[n..]).unwrap();
        buf
    }

    fn fix_ip_checksum(b: &mut [u8]) {
        if b[0] >> 4 == 4 {
            b[10..12].fill(0);
            let c = crate::wire::checksum::internet_checksum(0, &b[..20]);
            b[10..12].copy_from_slice(&c.to_be_bytes());
        }
    }

    fn obs(sent: &[u8], seen: &[u8]) -> Vec<Observation> {
        compare(
            &QuotedDatagram::parse(sent).unwrap(),
            &QuotedDatagram::parse(seen).unwrap(),
            1,
        )
    }

    fn differing(o: &[Observation]) -> Vec<(Field, String, String)> {
        o.iter()
            .filter(|x| x.differs)
            .map(|x| (x.field, x.sent.clone(), x.seen.clone()))
            .collect()
    }

    #[test]
    fn nothing_changed() {
        let s = syn(A4, B4, 7, 100, 1460, true);
        assert!(differing(&obs(&s, &s)).is_empty());
        let s = syn(A6, B6, 0, 100, 1460, true);
        assert!(differing(&obs(&s, &s)).is_empty());
    }

    #[test]
    fn mss_clamp_with_recomputed_checksum() {
        let s = syn(A4, B4, 7, 100, 1460, true);
        let q = syn(A4, B4, 7, 100, 1200, true);
        let d = differing(&obs(&s, &q));
        assert_eq!(d[0], (Field::TcpMss, "1460".into(), "1200".into()));
        assert_eq!(d[1].0, Field::TcpChecksum);
        assert!(d[1].2.ends_with("(valid)"), "{d:?}");
        assert_eq!(d.len(), 2, "{d:?}");
    }

    #[test]
    fn the_checksum_is_listed_at_every_hop_that_rewrites_what_it_covers() {
        // Hop 1 clamps the MSS, hop 2 also strips SACK-permitted; both recompute the
        // checksum. Before: listed at hop 1 only (its view, "changed, valid", the same).
        let s = syn(A4, B4, 7, 100, 1460, true);
        let hop1 = obs(&s, &syn(A4, B4, 7, 100, 1200, true));
        let hop2 = obs(&s, &syn(A4, B4, 7, 100, 1200, false));
        let hop3 = hop2.clone();
        let changes = attribute(&[Some(hop1), Some(hop2), Some(hop3)]);
        let has_ck = |h: &[Change]| h.iter().any(|c| c.field == Field::TcpChecksum);
        assert!(has_ck(&changes[0]), "{changes:?}");
        assert!(has_ck(&changes[1]), "{changes:?}");
        // Nothing new at hop 3: nothing listed.
        assert!(changes[2].is_empty(), "{changes:?}");
    }

    #[test]
    fn mss_changed_without_checksum_is_invalid() {
        let s = syn(A4, B4, 7, 100, 1460, true);
        let mut q = s.clone();
        q[20 + 22..20 + 24].copy_from_slice(&1200u16.to_be_bytes());
        let d = differing(&obs(&s, &q));
        assert_eq!(d[0].0, Field::TcpMss);
        assert_eq!(d[1].0, Field::TcpChecksum);
        assert!(d[1].2.ends_with("(invalid)"));
        let changes = attribute(&[Some(obs(&s, &q))]);
        let ck = changes[0]
            .iter()
            .find(|c| c.field == Field::TcpChecksum)
            .unwrap();
        assert_eq!(ck.note.as_deref(), Some("not recomputed after a change"));
    }

    #[test]
    fn tos_flow_label_and_addresses() {
        let s = syn(A6, B6, 0, 100, 1460, true);
        let mut q = s.clone();
        // Traffic class cs1 + ECT(0) → and a new flow label.
        q[0..4].copy_from_slice(&(0x6000_0000u32 | (0x22 << 20) | 0xabcde).to_be_bytes());
        let d = differing(&obs(&s, &q));
        assert_eq!(d[0], (Field::IpDscp, "cs0 (0)".into(), "cs1 (8)".into()));
        assert_eq!(d[1], (Field::IpEcn, "not-ect".into(), "ect(0)".into()));
        assert_eq!(
            d[2],
            (Field::IpFlowLabel, "0x00000".into(), "0xabcde".into())
        );
        let s = syn(A4, B4, 7, 100, 1460, true);
        let mut q = s.clone();
        q[12..16].copy_from_slice(&[198, 18, 0, 77]);
        fix_ip_checksum(&mut q);
        let d = differing(&obs(&s, &q));
        assert_eq!(
            d[0],
            (Field::IpSrc, "198.18.0.1".into(), "198.18.0.77".into())
        );
        // The TCP checksum covers the pseudo-header: not fixed, it is now invalid.
        assert_eq!(d[1].0, Field::TcpChecksum);
    }

    #[test]
    fn rfc792_quote_compares_only_ports_and_seq() {
        let s = syn(A4, B4, 7, 100, 1460, true);
        let q = syn(A4, B4, 7, 100, 1200, true);
        let o = obs(&s, &q[..28]);
        assert!(
            o.iter()
                .all(|x| !matches!(x.field, Field::TcpMss | Field::TcpWindow))
        );
        assert!(o.iter().any(|x| x.field == Field::TcpSeq));
        assert!(differing(&o).is_empty());
    }

    #[test]
    fn ttl_is_the_hops_own() {
        let s = syn(A4, B4, 7, 100, 1460, true);
        let mut q = s.clone();
        q[8] = 3;
        fix_ip_checksum(&mut q);
        let hops = [Some(obs(&s, &q)), Some(obs(&s, &s)), Some(obs(&s, &q))];
        let c = attribute(&hops);
        assert_eq!(c[0].len(), 1);
        assert_eq!((c[0][0].field, c[0][0].seen.as_str()), (Field::IpTtl, "3"));
        assert!(
            c[1].is_empty(),
            "the quoted TTL is not carried over: {:?}",
            c[1]
        );
        assert_eq!(c[2].len(), 1);
    }

    #[test]
    fn attribution_first_hop_only_and_set_back() {
        let sent = |id: u16, seq: u32| syn(A4, B4, id, seq, 1460, true);
        // Hop 1: nothing. Hop 2: RFC 792 quote (cannot see options). Hop 3: MSS 1200 and
        // sack-permitted stripped. Hop 4: same as hop 3. Hop 5: MSS back to 1460.
        let h1 = obs(&sent(1, 10), &sent(1, 10));
        let h2 = obs(&sent(2, 20), &syn(A4, B4, 2, 20, 1200, false)[..28]);
        let h3 = obs(&sent(3, 30), &syn(A4, B4, 3, 30, 1200, false));
        let h4 = obs(&sent(4, 40), &syn(A4, B4, 4, 40, 1200, false));
        let h5 = obs(&sent(5, 50), &syn(A4, B4, 5, 50, 1460, false));
        let c = attribute(&[Some(h1), Some(h2), Some(h3), None, Some(h4), Some(h5)]);
        assert!(c[0].is_empty() && c[1].is_empty() && c[3].is_empty() && c[4].is_empty());
        let fields: Vec<Field> = c[2].iter().map(|x| x.field).collect();
        assert!(fields.contains(&Field::TcpMss) && fields.contains(&Field::TcpSackPermitted));
        assert!(fields.contains(&Field::TcpChecksum));
        // Different identifications and sequence numbers per probe are no change.
        assert!(!fields.contains(&Field::IpId) && !fields.contains(&Field::TcpSeq));
        // The MSS set back, and the checksum recomputed for it (SACK stays stripped).
        let back: Vec<&Change> = c[5].iter().collect();
        assert_eq!(back.len(), 2, "{back:?}");
        assert_eq!(back[0].field, Field::TcpMss);
        assert_eq!(back[0].note.as_deref(), Some("as sent again (was 1200)"));
        assert_eq!(back[1].field, Field::TcpChecksum);
    }

    #[test]
    fn rewritten_identification_and_sequence() {
        let s = syn(A4, B4, 7, 100, 1460, true);
        let mut q = syn(A4, B4, 99, 5000, 1460, true);
        // Same TSval as sent (it follows the seq in `syn`): only id and seq moved.
        q[20 + 28..20 + 32].copy_from_slice(&1100u32.to_be_bytes());
        let d = differing(&obs(&s, &q));
        let f: Vec<Field> = d.iter().map(|x| x.0).collect();
        assert!(
            f.contains(&Field::IpId) && f.contains(&Field::TcpSeq),
            "{d:?}"
        );
        let c = attribute(&[Some(obs(&s, &q)), Some(obs(&s, &q))]);
        assert!(c[1].is_empty(), "listed once: {:?}", c[1]);
    }

    #[test]
    fn names_of_code_points() {
        assert_eq!(dscp_str(46), "ef (46)");
        assert_eq!(dscp_str(9), "9");
        assert_eq!(ecn_str(3), "ce");
    }
}

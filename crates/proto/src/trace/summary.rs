//! The trace's record: the rows (one per TTL), what each hop answered and quoted, the
//! changes attributed to their first hop ([`super::diff`]), and the far end.

use super::diff::{self, Observation};
use super::record::{
    ChangeRecord, DestinationRecord, HopRecord, IcmpRecord, QuoteKind, TRACE_SCHEMA, TraceRecord,
};
use super::{AnswerKind, Slot, Trace};
use crate::probe::record::{PortState, Reason};
use crate::wire::quote::QuotedDatagram;

impl Trace {
    // --- the record ---

    pub fn into_record(self) -> TraceRecord {
        self.record()
    }

    pub fn record(&self) -> TraceRecord {
        let rows = self.rows();
        let mut hops = Vec::with_capacity(rows.len());
        let mut views: Vec<Option<Vec<Observation>>> = Vec::with_capacity(rows.len());
        for &ttl in &rows {
            let (hop, view) = self.hop_record(ttl);
            hops.push(hop);
            views.push(view);
        }
        for (hop, changes) in hops.iter_mut().zip(diff::attribute(&views)) {
            hop.changes = changes
                .into_iter()
                .map(|c| ChangeRecord {
                    field: c.field.name().to_string(),
                    sent: c.sent,
                    seen: c.seen,
                    note: c.note,
                })
                .collect();
        }
        let last_answered = self.last_answered();
        let reached = self.end.is_some() || self.untied_acks > 0;
        // Nothing left this host: no router was asked, so none is blamed.
        let unsent = self.nothing_seen_leaving();
        let silent = !reached && !unsent && (self.gap_reached() || self.all_silent_to_max());
        // Nothing answered: 0 says "not even the first hop" — only when TTL 1 was tried.
        // From --first-ttl 3 on, TTL 2 was never sent, and nothing is known of the hops
        // before: `null`, and a note (walk 15: "no reply beyond TTL 2 … dropped after hop
        // 2" for a TTL never sent).
        // On the target's own link no router is there to be silent: the target took every
        // probe and answered none (a walk: "dropped before the first router answers" of
        // a host on the link with its port filtered). Said as a note, and no TTL is blamed.
        let silent_on_link = silent && last_answered.is_none() && self.on_link;
        let lost_after_ttl = match last_answered {
            _ if !silent || silent_on_link => None,
            Some(t) => Some(t),
            None if self.cfg.first_ttl <= 1 => Some(0),
            None => None,
        };
        let silent_from_first =
            silent && last_answered.is_none() && self.cfg.first_ttl > 1 && !silent_on_link;
        let mut notes = self.notes.clone();
        // A host does not forward what is addressed to it, so no TTL runs out there
        // (RFC 1812 §5.3.1 is a router's, forwarding): a time-exceeded in the
        // destination's name comes from a NAT (conntrack rewrites the source of an ICMP
        // error from behind it), a middlebox that answers for it, or a forger. mtr
        // --tcp takes it for the destination and stops there; traceroute shows it as a hop.
        let remote = self.remote().ip();
        for hop in &hops {
            if hop.addr == Some(remote) && hop.reply.as_deref() == Some("time-exceeded") {
                notes.push(format!(
                    "hop {}: time-exceeded from the destination's own address ({remote}), \
                     which forwards nothing addressed to it: a NAT or port forward in front \
                     of it (the hops behind it answer in its name), a middlebox answering \
                     for it, or a forged error",
                    hop.ttl
                ));
            }
        }
        if let Some(end) = self.end.filter(|e| e.addr == remote) {
            notes.extend(distance_note(&hops, end.ttl, self.remote()));
        }
        if let Some(end) = self.end.filter(|e| e.addr != remote) {
            notes.extend(refused_note(&hops, end.ttl, end.addr, self.remote()));
        }
        notes.extend(icmp_limit_note(&hops));
        let error = match &self.unresolved {
            // The cause of everything else (an in-session handshake's timeout included),
            // in a probe's words.
            Some(what) if unsent => Some(format!("none of our SYNs left this host: {what}")),
            _ => self.error.clone(),
        };
        if unsent && error.is_none() && !self.interrupted {
            notes.push(format!(
                "none of the {} packets handed to the kernel was seen leaving this host (no \
                 copy of them on the tap): no hop was probed",
                self.handed
            ));
        }
        let untimed = self
            .slots
            .iter()
            .filter(|s| s.answer.is_some() && s.sent_at.is_none())
            .count();
        if untimed > 0 {
            notes.push(format!(
                "{untimed} answer(s) not timed: the copy of their probe leaving was not seen \
                 on the tap"
            ));
        }
        if self.end.is_none() && self.untied_acks > 0 {
            notes.push(format!(
                "the server answered {} probes, beyond hop {}; without timestamps its answers \
                 do not say which TTL reached it",
                self.untied_acks,
                last_answered.unwrap_or(0)
            ));
        }
        if self.challenge_acks > 0 {
            let (n, named) = (self.challenge_acks, self.challenge_answers);
            let rest = n - named.min(n);
            let is = |k: u32| if k == 1 { "is" } else { "are" };
            let mut note = format!(
                "the destination answered {n} SYN(s) with an ACK instead of a SYN-ACK: each \
                 met the half-open connection of an earlier probe on our 4-tuple (RFC 5961 \
                 §4; Linux sends one such ACK per 0.5 s and drops the other SYNs), which we \
                 reset at once"
            );
            if named > 0 {
                note.push_str(&format!(
                    "; the SYN reached the destination: {named} {} taken as the answer of the \
                     one probe that could have drawn it",
                    is(named)
                ));
            }
            if rest > 0 {
                note.push_str(&format!(
                    "; {rest} could be of several probes (SYNs beyond the destination's TTL \
                     too) and {} counted among the answers that matched no probe",
                    is(rest)
                ));
            }
            notes.push(note);
        }
        if silent_from_first {
            let f = self.cfg.first_ttl;
            notes.push(format!(
                "no reply from any hop from TTL {f} on: the probes are dropped before the \
                 first hop tried answers (TTLs below {f} were not probed: without \
                 --first-ttl the trace shows the hops before)"
            ));
        }
        if silent_on_link {
            notes.push(format!(
                "no reply: {remote} is on this host's link (no router in between) and \
                 answered none of the probes, though its link-layer address resolved: a \
                 firewall on it, or on the link, drops them"
            ));
        }
        if !reached
            && !unsent
            && lost_after_ttl.is_none()
            && !silent_from_first
            && !silent_on_link
            && !self.interrupted
            && error.is_none()
        {
            let n = self.cfg.max_ttl;
            notes.push(format!(
                "the destination was not reached within {n} {}",
                if n == 1 { "hop" } else { "hops" }
            ));
        }
        let started = self.first_sent.or(self.started).unwrap_or_default();
        let ended = self.finished_at.unwrap_or(started);
        TraceRecord {
            schema: TRACE_SCHEMA,
            command: "trace".into(),
            target: self.cfg.target.clone(),
            mode: self.cfg.mode,
            local: self.local().to_string(),
            remote: self.remote().to_string(),
            first_ttl: self.cfg.first_ttl,
            max_ttl: self.cfg.max_ttl,
            probes: self.cfg.probes,
            t_ns: started.as_nanos(),
            duration_ns: nanos(ended.saturating_since(started)),
            hops,
            destination: self.destination_record(),
            lost_after_ttl,
            on_link: self.on_link && !self.loopback,
            packets_sent: self.packets_sent,
            unmatched: self.unmatched,
            notes,
            interrupted: self.interrupted,
            error,
        }
    }

    // --- the record's parts ---

    /// The TTLs shown: up to the end, or to the last probed TTL.
    pub(super) fn rows(&self) -> Vec<u8> {
        if self.nothing_seen_leaving() {
            // No probe left: there is no hop to show.
            return Vec::new();
        }
        let last = match self.end {
            Some(e) if e.ttl >= self.cfg.first_ttl => e.ttl,
            Some(_) => return Vec::new(),
            // In-session without timestamps: the server answered, but not which TTL
            // reached it; the hops are those that answered.
            None if self.untied_acks > 0 => self.last_answered().unwrap_or(0),
            None => {
                let probed = self
                    .slots
                    .iter()
                    .filter(|s| s.queued.is_some())
                    .map(|s| s.ttl)
                    .max()
                    .unwrap_or(0);
                if self.gap_reached() {
                    // The answered hops and the silent run that ended the trace.
                    let last = self
                        .last_answered()
                        .unwrap_or(self.cfg.first_ttl.saturating_sub(1));
                    probed.min(last.saturating_add(self.cfg.gap.max(1)))
                } else {
                    probed
                }
            }
        };
        (self.cfg.first_ttl..=last).collect()
    }

    pub(super) fn hop_record(&self, ttl: u8) -> (HopRecord, Option<Vec<Observation>>) {
        // The probes that left (their copy seen on the tap, or answered): one the kernel
        // was handed but never sent is neither sent nor lost.
        let slots: Vec<&Slot> = self
            .slots_at(ttl)
            .filter(|s| s.sent_at.is_some() || s.answer.is_some())
            .collect();
        let answered: Vec<&Slot> = slots
            .iter()
            .copied()
            .filter(|s| s.answer.is_some())
            .collect();
        let first = answered
            .first()
            .and_then(|s| s.answer.as_ref().map(|a| (*s, a)));
        let mut other_addrs = Vec::new();
        for s in &answered {
            let from = s.answer.as_ref().map(|a| a.from);
            for a in from.into_iter().chain(s.others.iter().copied()) {
                if Some(a) != first.map(|f| f.1.from) && !other_addrs.contains(&a) {
                    other_addrs.push(a);
                }
            }
        }
        let rtt_ns = answered
            .iter()
            .filter_map(|s| Some(nanos(s.answer.as_ref()?.at.saturating_since(s.sent_at?))))
            .collect();
        let mut hop = HopRecord {
            ttl,
            addr: first.map(|f| f.1.from),
            other_addrs,
            reply: first.map(|f| reply_word(&f.1.kind)),
            icmp: None,
            rtt_ns,
            sent: slots.len() as u8,
            lost: slots.iter().filter(|s| s.answer.is_none()).count() as u8,
            quote_len: None,
            quote: None,
            rfc4884: false,
            quoted_ttl: None,
            reply_ttl: first.map(|f| f.1.reply_ttl),
            changes: Vec::new(),
        };
        let mut view = None;
        // The first answer that quotes our packet gives the hop's view.
        let quoted = answered
            .iter()
            .find_map(|s| match &s.answer.as_ref()?.kind {
                AnswerKind::Icmp {
                    icmp_type,
                    code,
                    quote,
                    quote_len,
                    rfc4884,
                    ..
                } => Some((*s, *icmp_type, *code, quote, *quote_len, *rfc4884)),
                AnswerKind::Tcp { .. } => None,
            });
        if let Some((s, icmp_type, code, quote, quote_len, rfc4884)) = quoted {
            hop.icmp = Some(IcmpRecord { icmp_type, code });
            hop.quote_len = Some(quote_len);
            hop.rfc4884 = rfc4884;
            if let (Ok(q), Ok(sent)) =
                (QuotedDatagram::parse(quote), QuotedDatagram::parse(&s.sent))
            {
                hop.quoted_ttl = Some(q.ip.ttl);
                hop.quote = Some(quote_kind(&q));
                view = Some(diff::compare(&sent, &q, 1));
            }
        }
        (hop, view)
    }

    pub(super) fn destination_record(&self) -> DestinationRecord {
        let handshake_rtt_ns = match (self.handshake_syn_at, self.handshake_synack_at) {
            (Some(a), Some(b)) => Some(nanos(b.saturating_since(a))),
            _ => None,
        };
        let close = self.close_outcome.clone();
        match self.end {
            Some(end) => {
                let rtt_ns = self
                    .slots_at(end.ttl)
                    .filter_map(|s| {
                        let a = s.answer.as_ref()?;
                        (a.from == end.addr).then_some(())?;
                        Some(nanos(a.at.saturating_since(s.sent_at?)))
                    })
                    .collect();
                DestinationRecord {
                    state: end.verdict.state,
                    reason: end.verdict.reason,
                    addr: Some(end.addr),
                    ttl: (end.ttl > 0).then_some(end.ttl),
                    rtt_ns,
                    handshake_rtt_ns,
                    close,
                }
            }
            None => {
                // In-session: the handshake said open even if no probe's echo came back.
                let (state, reason, addr) = if handshake_rtt_ns.is_some() {
                    (PortState::Open, Reason::SynAck, Some(self.remote().ip()))
                } else if self.interrupted {
                    (PortState::Interrupted, Reason::Interrupted, None)
                } else {
                    (PortState::Filtered, Reason::NoResponse, None)
                };
                DestinationRecord {
                    state,
                    reason,
                    addr,
                    ttl: None,
                    rtt_ns: Vec::new(),
                    handshake_rtt_ns,
                    close,
                }
            }
        }
    }
}

/// The initial TTL a packet most likely left with, and so how many routers it passed: the
/// next of the usual initial values at or above what arrived (64: Linux, the BSDs, macOS,
/// RFC 1700's default; 128: Windows; 255: much network gear).
pub(super) fn routers_passed(ttl: u8) -> (u8, u8) {
    let init = [64, 128, 255]
        .into_iter()
        .find(|&i| i >= ttl)
        .unwrap_or(255);
    (init, init - ttl)
}

/// The destination's answer says how far away it was sent from (its TTL on arrival); our
/// probe says how far the destination is (the smallest TTL that reached it). When the two
/// disagree the row that looks like the destination is not, or not all of, the path:
///
/// - fewer routers on the way back than on the way out: something before the destination
///   answered in its name — typically a firewall that rejects SYNs with a RST (nftables
///   `reject with tcp reset`), or a SYN proxy — or a router sets the TTL of what it
///   forwards in both directions (the answer leaves it with 64 again); the hop whose
///   time-exceeded came back with the same TTL is likely it either way;
/// - more on the way back: a router on the way out sets the TTL of what it forwards
///   toward the destination only
///   (nftables `ip ttl set`, some load balancers and tunnels), so the SYN that left it
///   reached the destination whatever TTL we gave it and the routers behind it never
///   showed; mtr and `traceroute -T` show the same short path, without saying so.
///
/// Either can also be an asymmetric path (RFC 1812 §2.2.8 puts no rule on the way back),
/// so the note says "likely". When no TTL below the answered one was tried (`--first-ttl`),
/// the destination may be nearer: fewer routers on the way back say only that. Returns
/// nothing when they agree or the TTL says nothing.
pub(super) fn distance_note(
    hops: &[HopRecord],
    ttl: u8,
    remote: std::net::SocketAddr,
) -> Option<String> {
    let row = hops.iter().find(|h| h.ttl == ttl)?;
    let reply = row.reply.as_deref()?;
    if !matches!(reply, "syn-ack" | "reset" | "ack") || row.addr != Some(remote.ip()) {
        return None;
    }
    let reply_ttl = row.reply_ttl?;
    let (init, back) = routers_passed(reply_ttl);
    let out = ttl.saturating_sub(1);
    let (host, port) = (remote.ip(), remote.port());
    let routers = |n: u8| {
        if n == 1 {
            "1 router".to_string()
        } else {
            format!("{n} routers")
        }
    };
    // A router's time-exceeded that came back through as many routers fewer (or more)
    // than it is away says the way back differs (asymmetric routing, which every
    // traceroute sees only through TTLs): that explains the destination's too, and no
    // middlebox or rewrite need be guessed.
    let skew = i16::from(back) - i16::from(out);
    let asymmetric = hops.iter().find(|h| {
        let (Some(t), Some("time-exceeded")) = (h.reply_ttl, h.reply.as_deref()) else {
            return false;
        };
        if h.ttl >= ttl {
            return false;
        }
        let k = i16::from(routers_passed(t).1) - i16::from(h.ttl - 1);
        skew != 0 && k.signum() == skew.signum() && k.abs() >= skew.abs()
    });
    if let Some(h) = asymmetric {
        let k_back = h.reply_ttl.map_or(0, |t| routers_passed(t).1);
        // A router that does not decrement the TTL (MPLS without TTL propagation, RFC
        // 3443; a transparent box) shows the same: every hop behind it one router fewer
        // on the way back, and it never shows as a hop itself.
        return Some(format!(
            "hop {ttl}: the {reply} from {host} came back through {} but our probe passed {}; \
             hop {}'s time-exceeded did likewise ({} back, {} on the way out): the way back \
             differs from the way out (asymmetric routing), or a router on the way does not \
             decrement the TTL (an MPLS tunnel, RFC 3443; a transparent box), which explains \
             it",
            routers(back),
            routers(out),
            h.ttl,
            routers(k_back),
            routers(h.ttl - 1),
        ));
    }
    if back < out && !hops.iter().any(|h| h.ttl == ttl - 1) {
        // No probe below this TTL (`--first-ttl`): how far the destination is, we do not
        // know — only that it is no farther. Its answer's TTL says nearer: no device need
        // be guessed.
        return Some(format!(
            "hop {ttl}: {host} answered the first TTL tried, and its {reply} came back through \
             {} (TTL {reply_ttl}, likely sent as {init}): it is likely {} away, nearer than \
             --first-ttl {ttl}; trace from a lower --first-ttl to see the hops",
            routers(back),
            if back == 0 {
                "1 hop".to_string()
            } else {
                format!("{} hops", back + 1)
            },
        ));
    }
    if back < out {
        // The hops that send their ICMP errors from the same distance. When the way back
        // is shorter than the way out (asymmetric routing, RFC 1812 §2.2.8), several hops'
        // errors may come back with one TTL: all are named, the nearest the destination
        // first — never one of them as if it were the only one (walk 15: the firewall at
        // hop 5 was blamed on hop 3, the lowest of three that matched).
        let twins: Vec<(u8, std::net::IpAddr)> = hops
            .iter()
            .filter(|h| {
                h.ttl < ttl
                    && h.reply.as_deref() == Some("time-exceeded")
                    && h.reply_ttl == Some(reply_ttl)
            })
            .filter_map(|h| Some((h.ttl, h.addr?)))
            .rev()
            .collect();
        let who = match twins[..] {
            [] => format!("a device {} hop(s) from here", back + 1),
            [(t, a)] => format!(
                "hop {t} ({a}), whose time-exceeded came back with the same TTL, or a device \
                 beside it"
            ),
            [(t, a), ref others @ ..] => {
                let others: Vec<String> = others
                    .iter()
                    .map(|(t, a)| format!("hop {t} ({a})"))
                    .collect();
                format!(
                    "hop {t} ({a}) or a device beside it — the nearest the destination of the \
                     hops whose time-exceeded came back with the same TTL; {} did too (their \
                     way back is as long: it may be any of them)",
                    others.join(", ")
                )
            }
        };
        Some(format!(
            "hop {ttl}: the {reply} in {host}'s name came back through {} (TTL {reply_ttl}, \
             likely sent as {init}), but our probe passed {} to reach {host}: it was likely \
             sent, or its TTL set, by {who} — a firewall or SYN proxy answering for port \
             {port}, or a router that sets the TTL of what it forwards both ways (which hides \
             the hops behind it); check that device's rules for port {port} (or the way back \
             is shorter than the way out)",
            routers(back),
            routers(out),
        ))
    } else if back > out {
        // A router that sets the TTL as packets leave (forward, postrouting) forwarded our
        // TTL-1 probe: the last hop shown; one that sets it as they arrive (prerouting)
        // never expires one: the next.
        let before = ttl - 1;
        let who = match hops
            .iter()
            .find(|h| h.ttl == before && h.reply.as_deref() == Some("time-exceeded"))
            .and_then(|h| h.addr)
        {
            Some(a) => format!("hop {before} ({a}) or the router after it"),
            None if before == 0 => "likely the first router".to_string(),
            None => format!("the router at hop {before} or {ttl}"),
        };
        Some(format!(
            "hop {ttl}: {host} answered our probe sent with TTL {ttl} ({} on the way), but \
             its {reply} came back through {} (TTL {reply_ttl}, likely sent as {init}): a \
             router on the way, {who}, likely sets the TTL of what it forwards (nftables \
             `ip ttl set`, some load balancers and tunnels), which hides the hops behind it, \
             so the path is longer than shown; or the way back is longer than the way out",
            routers(out),
            routers(back),
        ))
    } else {
        None
    }
}

/// An unreachable that ended the trace, from a router that also answered a lower TTL's
/// time-exceeded: the row of the TTL it refused shows that router's address again. A
/// router checks the TTL before it forwards (RFC 1812 §5.3.1), so TTL k expires there and
/// TTL k+1 meets what stops it: the router is hop k, not k+1, which the row alone seems to
/// say. What stopped it is the code's (RFC 1812 §5.2.7.1): only net/host/communication
/// prohibited (IPv4 codes 9, 10, 13; ICMPv6 1/1, and its reject route 1/6) and a port
/// unreachable from a router (nftables' and iptables' default `reject`) are a filter;
/// host unreachable (IPv4 code 1, ICMPv6 address unreachable 1/3) is the last router's
/// failed ARP / Neighbor Discovery for the address; net unreachable and no route, a
/// missing route.
pub(super) fn refused_note(
    hops: &[HopRecord],
    ttl: u8,
    from: std::net::IpAddr,
    remote: std::net::SocketAddr,
) -> Option<String> {
    let reason = hops.iter().find(|h| h.ttl == ttl)?.reply.clone()?;
    let k = hops
        .iter()
        .find(|h| {
            h.ttl < ttl && h.addr == Some(from) && h.reply.as_deref() == Some("time-exceeded")
        })?
        .ttl;
    let (host, port) = (remote.ip(), remote.port());
    let (resolution, rfc) = if host.is_ipv6() {
        ("Neighbor Discovery", "RFC 4443 §3.1: address unreachable")
    } else {
        ("ARP", "RFC 1812 §5.2.7.1: host unreachable")
    };
    let what = match reason.as_str() {
        "host-unreach" => format!(
            "that router could not deliver to {host} on its link: {host} did not answer its \
             {resolution} ({rfc}), so no host has that address there or it \
             is down — not a filter; the SYNs went no further"
        ),
        "net-unreach" | "no-route" => format!(
            "that router has no route to {host} ({reason}, RFC 1812 §5.2.7.1) — not a \
             filter; {host} never saw these probes; check hop {k}'s routes"
        ),
        "admin-prohibited" | "net-prohibited" | "host-prohibited" | "reject-route"
        | "port-unreach" => format!(
            "that router refuses what it would forward to {remote} (its filter for port \
             {port}), so {host} never saw these probes; check hop {k}'s rules"
        ),
        _ => format!(
            "that router did not forward these probes to {remote} ({reason}), so {host} never \
             saw them"
        ),
    };
    Some(format!(
        "hop {ttl}: {reason} from {from}, which is hop {k}: {what}"
    ))
}

/// Hops that lost probes while a hop beyond them lost none: our probes passed them, so
/// what they did not answer is ICMP they did not send — a router may limit its ICMP errors
/// (RFC 1812 §4.3.2.8; Linux sends 6 to a peer at once, then one a second,
/// `net.ipv4.icmp_ratelimit`) or send none at all — not loss on the path. mtr shows the
/// same loss column and leaves the reading to its user.
pub(super) fn icmp_limit_note(hops: &[HopRecord]) -> Option<String> {
    let clean = hops
        .iter()
        .rev()
        .find(|h| h.sent > 0 && h.lost == 0 && h.addr.is_some())?;
    let lossy: Vec<String> = hops
        .iter()
        .filter(|h| h.ttl < clean.ttl && h.sent > 0 && h.lost > 0)
        .map(|h| {
            let who = h
                .addr
                .map_or_else(|| "no answer".to_string(), |a| a.to_string());
            format!("{} ({who}, {} of {} lost)", h.ttl, h.lost, h.sent)
        })
        .collect();
    if lossy.is_empty() {
        return None;
    }
    let (which, who) = if lossy.len() == 1 {
        (
            "hop",
            "that router limits the ICMP errors it sends, or sends none",
        )
    } else {
        (
            "hops",
            "those routers limit the ICMP errors they send, or send none",
        )
    };
    // From a few probes a lossy link before the hop looks the same: hop N's probes may
    // just have been luckier (walk 15: 30 % loss on the link before hop 5, hop 6 clean).
    Some(format!(
        "{which} {}: unanswered, but hop {} beyond lost none, so our probes likely passed: \
         {who} (RFC 1812 §4.3.2.8; Linux: 6 at once, then 1 a second per peer); or, from \
         so few probes, loss on the path that hop {}'s probes escaped by chance (-q 10 tells \
         them apart; Linux's limit lets -q 6 or fewer through, or --interval 1s, with a \
         pause between runs)",
        lossy.join(", "),
        clean.ttl,
        clean.ttl
    ))
}

pub(super) use crate::time::nanos;

/// What answered, in a word: the ICMP error's reason, or the destination's segment.
pub(super) fn reply_word(kind: &AnswerKind) -> String {
    match kind {
        AnswerKind::Icmp { kind, .. } => kind.reason().to_string(),
        AnswerKind::Tcp { flags } if flags.syn() && flags.ack() => "syn-ack".into(),
        AnswerKind::Tcp { flags } if flags.rst() => "reset".into(),
        AnswerKind::Tcp { .. } => "ack".into(),
    }
}

/// How much of the TCP segment the quote holds.
pub(super) fn quote_kind(q: &QuotedDatagram<'_>) -> QuoteKind {
    let tcp = q.tcp_quoted();
    if tcp <= 8 {
        QuoteKind::Rfc792
    } else if tcp >= q.ip.segment_len() {
        QuoteKind::Full
    } else {
        QuoteKind::Partial
    }
}

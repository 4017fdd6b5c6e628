//! The trace's record: the rows (one per TTL), what each hop answered and quoted, the
//! changes attributed to their first hop ([`super::diff`]), and the far end.

use super::diff::{self, Observation};
use super::record::{
    ChangeRecord, DestinationRecord, HopRecord, IcmpRecord, QuoteKind, TRACE_SCHEMA, TraceRecord,
};
use super::{AnswerKind, Slot, Trace};
use crate::probe::record::{PortState, Reason};
use crate::wire::quote::QuotedDatagram;
use std::time::Duration;

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
        let lost_after_ttl = if reached || unsent {
            None
        } else if self.gap_reached() || self.all_silent_to_max() {
            Some(last_answered.unwrap_or(self.cfg.first_ttl.saturating_sub(1)))
        } else {
            None
        };
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
            notes.push(format!(
                "the destination sent {} challenge ACK(s): a SYN met the half-open connection \
                 of an earlier probe (not an answer; the verdict and round trip are the first \
                 SYN-ACK's)",
                self.challenge_acks
            ));
        }
        if !reached && !unsent && lost_after_ttl.is_none() && !self.interrupted && error.is_none() {
            notes.push(format!(
                "the destination was not reached within {} hops",
                self.cfg.max_ttl
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

pub(super) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

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

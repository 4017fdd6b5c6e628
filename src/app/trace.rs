//! `tcpshake trace`: one trace of the path to a target port; the table or the JSON; the
//! pcap.

use super::exit::Exit;
use super::{TlsShared, capture_mode, colour_stdout, open_captures, tcp_config};
use crate::config::{Exchange, TraceConfig, defaults};
use crate::report::text::Style;
use crate::report::trace as report;
use anyhow::{Context, Result};
use std::io::{self, Write};
use tcpshake_io::guard::{Guard, MARK};
use tcpshake_io::resolve::resolve;
use tcpshake_io::run::Path;
use tcpshake_io::{random, signals, teardown};
use tcpshake_proto::trace::{self, record::TraceMode};

pub(super) fn run(c: &TraceConfig) -> Result<Exit> {
    super::refuse_broadcast_targets(super::literal_addrs(std::slice::from_ref(&c.target)))?;
    let remote = resolve(&c.target, c.family)?;
    let stop = signals::stop_flag();
    let mut guard = Guard::install(MARK)?;
    let path = match c.source_port {
        Some(p) => Path::with_port(remote, None, p)?,
        None => Path::new(remote, None)?,
    };
    // The SYN a probe sends (its timers for the in-session connection).
    let exchange = Exchange {
        isn: c.isn,
        ..Exchange::default()
    };
    let tcp = tcp_config(&exchange, path.local, remote, path.mss());
    let plan = trace::TraceConfig {
        target: c.target.spec.clone(),
        mode: if c.in_session {
            TraceMode::InSession
        } else {
            TraceMode::Syn
        },
        tcp,
        first_ttl: c.first_ttl,
        max_ttl: c.max_ttl,
        probes: c.probes,
        parallel: c.parallel,
        timeout: c.timeout,
        interval: c.interval,
        gap: c.gap,
        tos: c.tos,
        ident: random::random_u32() as u16,
        hop_limit: 64,
        close_timeout: c.timeout.max(defaults::TRACE_CLOSE),
    };
    // A bad --pcap / --pcapng path fails before anything is sent.
    let mut captures = open_captures(
        c.pcap.as_deref(),
        c.pcapng.as_deref(),
        &mut TlsShared::default(),
    )?;
    let mode = capture_mode(&captures);
    let outcome = tcpshake_io::trace::run(path, plan, &mut guard, mode, stop)?;
    if let Some(f) = &mut captures {
        f.probe(&outcome.packets)
            .context("writing the capture file")?;
    }
    if let Some(f) = captures {
        f.finish().context("writing the capture file")?;
    }
    let r = &outcome.record;
    let mut out = io::stdout().lock();
    if c.json {
        serde_json::to_writer(&mut out, r)?;
        writeln!(out)?;
    } else {
        let style = Style {
            color: colour_stdout(),
        };
        write!(out, "{}", report::render(r, style))?;
    }
    out.flush()?;
    let exit = if r.reached_open() && r.error.is_none() {
        Exit::Ok
    } else {
        Exit::Failed
    };
    // The table goes while the tap is still closing (each waits for the kernel's RCU
    // grace periods: together, about as long as the longer one).
    teardown::close_together(vec![Box::new(guard)]);
    tcpshake_io::run::wait_closing();
    Ok(exit)
}

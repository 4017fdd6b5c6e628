//! `tcpshake probe TARGET…`: one exchange per target, one after the other, each shown
//! segment by segment (or as one JSON object).

use super::exit::Exit;
use super::{
    TlsShared, capture_mode, colour_stdout, http_request, open_captures, tcp_config, tls_setup,
};
use crate::config::{Exchange, ProbeConfig};
use crate::report::capture::CaptureFiles;
use crate::report::text::{self, Style};
use anyhow::{Context, Result};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::Path as FilePath;
use std::sync::atomic::{AtomicBool, Ordering};
use tcpshake_io::guard::Guard;
use tcpshake_io::guard::MARK;
use tcpshake_io::resolve::resolve;
use tcpshake_io::run::{self, Captured, Outcome, Path};
use tcpshake_io::{is_environment_error, signals, teardown};
use tcpshake_proto::probe;
use tcpshake_proto::probe::target::Target;

pub(super) fn run(c: &ProbeConfig) -> Result<Exit> {
    super::refuse_broadcast_targets(super::literal_addrs(&c.targets))?;
    let stop = signals::stop_flag();
    let mut guard = Guard::install(MARK)?;
    let mut session = Session::new(&c.exchange, c.json, c.pcap.as_deref(), c.pcapng.as_deref())?;
    for t in &c.targets {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let remote = match resolve(t, c.family) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("tcpshake: {e:#}");
                session.all_ok = false;
                continue;
            }
        };
        session.probe(t, remote, &mut guard, stop)?;
    }
    // The last tap closes while the record is written and the guard's table goes (each
    // waits out RCU grace periods in the kernel: together, about as long as the tap alone);
    // in a one-shot command both are kept and closed after it exits (teardown.rs).
    run::close_spare();
    let exit = session.finish();
    teardown::close_together(vec![Box::new(guard)]);
    run::wait_closing();
    exit
}

/// What every probe of one command shares: options, output, the capture files.
pub(super) struct Session<'a> {
    exchange: &'a Exchange,
    json: bool,
    capture: Option<CaptureFiles>,
    style: Style,
    /// Outlives its reader when there are capture files to finish (see [`super::Stdout`]):
    /// `probe A B --pcap f | head -1` probed A only and left f with A's packets.
    out: super::Stdout,
    all_ok: bool,
    /// What HTTPS probes share: trust anchors (loaded at the first), the key log.
    tls: TlsShared,
}

impl<'a> Session<'a> {
    pub(super) fn new(
        exchange: &'a Exchange,
        json: bool,
        pcap: Option<&FilePath>,
        pcapng: Option<&FilePath>,
    ) -> Result<Session<'a>> {
        let mut tls = TlsShared::default();
        let capture = open_captures(pcap, pcapng, &mut tls)?;
        Ok(Session {
            exchange,
            json,
            out: super::Stdout::new(capture.is_some()),
            capture,
            style: Style {
                color: colour_stdout(),
            },
            all_ok: true,
            tls,
        })
    }

    pub(super) fn probe(
        &mut self,
        t: &Target,
        remote: SocketAddr,
        guard: &mut Guard,
        stop: &AtomicBool,
    ) -> Result<()> {
        // A target with no route (or no source address) costs that target, not the ones
        // after it: its reason on stderr, exit 1 at the end, as a survey does.
        let path = match Path::new(remote, None) {
            Ok(p) => p,
            Err(e) => return self.target_failed(e),
        };
        let ex = self.exchange;
        let cfg = probe::ProbeConfig {
            target: t.spec.clone(),
            tcp: tcp_config(ex, path.local, remote, path.mss()),
            http: http_request(ex, t)?,
            timeout: ex.timeout,
            linger: ex.linger,
            tls: match ex.is_https(t) {
                true => Some(tls_setup(&ex.tls, t, &mut self.tls)?),
                false => None,
            },
            mss_hint: ex.mss_hint,
        };
        // Packets go to the capture files as the tap shows them, through the files' reorder
        // window: a flood costs the files their size, not our memory. The window is
        // written out first, so no write(2) of an earlier probe's packets lands in this
        // one's handshake.
        let mode = capture_mode(&self.capture);
        let mut capture_error: Option<io::Error> = None;
        let run = match self.capture.as_mut() {
            Some(c) => {
                c.flush().context("writing the capture file")?;
                let mut sink = |p: Captured| {
                    if capture_error.is_none()
                        && let Err(e) = c.seen(vec![p])
                    {
                        capture_error = Some(e);
                    }
                };
                run::run(path, cfg, guard, mode, &mut sink, stop)
            }
            None => run::run(path, cfg, guard, mode, &mut |_| {}, stop),
        };
        if let Some(e) = capture_error {
            return Err(e).context("writing the capture file");
        }
        let outcome = match run {
            Ok(o) => o,
            Err(e) => return self.target_failed(e),
        };
        self.emit(&outcome)
    }

    /// An error that costs this target only (its reason on stderr, exit 1 at the end), or,
    /// from the environment (privileges, the firewall), the whole command.
    fn target_failed(&mut self, e: anyhow::Error) -> Result<()> {
        if is_environment_error(&e) {
            return Err(e);
        }
        eprintln!("tcpshake: {e:#}");
        self.all_ok = false;
        Ok(())
    }

    fn emit(&mut self, outcome: &Outcome) -> Result<()> {
        let r = &outcome.result;
        self.all_ok &= r.succeeded();
        let mut text = match self.json {
            true => serde_json::to_vec(r)?,
            false => text::render(r, self.style).into_bytes(),
        };
        if self.json {
            text.push(b'\n');
        }
        self.say(&text)
    }

    /// Output to stdout, at once (a closed stdout ends the command, unless there are
    /// capture files to finish).
    pub(super) fn say(&mut self, text: &[u8]) -> Result<()> {
        self.out.write_all(text)?;
        self.out.flush()?;
        Ok(())
    }

    pub(super) fn finish(self) -> Result<Exit> {
        if let Some(c) = self.capture {
            c.finish().context("writing the capture file")?;
        }
        Ok(if self.all_ok { Exit::Ok } else { Exit::Failed })
    }
}

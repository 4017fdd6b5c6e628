//! `tcpshake lab`: two throwaway namespaces, a built-in HTTP peer, one probe over IPv4 and
//! one over IPv6, then nothing left behind.

use super::exit::{Exit, UsageError};
use super::probe::Session;
use crate::config::LabConfig;
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tcpshake_io::guard::Guard;
use tcpshake_io::guard::MARK;
use tcpshake_io::run;
use tcpshake_io::signals;
use tcpshake_lab::labnet::LabNet;
use tcpshake_proto::probe::target;

pub(super) fn run(c: &LabConfig) -> Result<Exit> {
    let lab = LabNet::create().context("building the lab namespaces")?;
    let peer = lab
        .start_http_peer(80)
        .context("starting the lab's HTTP peer")?;
    lab.enter_client()
        .context("entering the lab's client namespace")?;
    lab.wait_ready(Duration::from_secs(5))?;
    let stop = signals::stop_flag();
    let mut guard = Guard::install(MARK)?;
    let mut session = Session::new(&c.exchange, c.json, c.pcap.as_deref(), c.pcapng.as_deref())?;
    let targets = [
        SocketAddr::new(lab.server_v4().into(), 80),
        SocketAddr::new(lab.server_v6().into(), 80),
    ];
    // Written through the session, not println!: a closed stdout is an error to stop on
    // (not a panic), or with capture files to finish, the rest of the output dropped.
    if !c.json {
        session.say(
            format!(
                "lab: client {} / {} ⇄ server {} / {} (a kernel listener serving HTTP on port 80)\n\n",
                lab.client_v4(),
                lab.client_v6(),
                lab.server_v4(),
                lab.server_v6()
            )
            .as_bytes(),
        )?;
    }
    for remote in targets {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let t = target::parse(&remote.to_string(), None).map_err(UsageError)?;
        session.probe(&t, remote, &mut guard, stop)?;
        if !c.json {
            session.say(b"\n")?;
        }
    }
    drop(peer);
    run::close_spare();
    let exit = session.finish();
    drop(guard);
    run::wait_closing();
    exit
}

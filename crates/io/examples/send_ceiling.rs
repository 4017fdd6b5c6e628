//! How many SYNs a second each send path gets onto an interface: the micro-benchmark
//! behind the scan's choice of path (scripts/bench-send runs it in a lab and prints the
//! table). Each SYN is built as the scan builds it (keyed cookie, checksums), in batches
//! of `BATCH`, as fast as the kernel takes them, for `SECS` seconds; a tap on the same
//! interface, read from its socket's queue as the scan's receiver reads it, counts what it
//! sees leave.
//!
//!     send_ceiling DST DST_MAC MODE SECS [BATCH]
//!     MODE: raw | packet | packet-bypass | packet-bypass-ts | ring | ring-bypass | ring-bypass-ts
//!           | packet-bypass-ts-twin | ring-bypass-ts-twin
//!
//! `-ts`: with transmit timestamps from the error queue (SO_TIMESTAMPING, each with its
//! frame), read after every batch. `-twin`: two sockets, the second sending from a thread
//! of its own (link.rs, "Two senders"; the scan's path is `packet-bypass-ts-twin`). The
//! scan's guard is installed, as in a scan.
//!
//! Prints one line of JSON: mode, sent, seconds, pps, seen_by_tap, tap_drops, enobufs.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tcpshake_io::guard::MARK;
use tcpshake_io::link::{FrameSender, Mode};
use tcpshake_io::route;
use tcpshake_io::sender::RawSender;
use tcpshake_io::tap::Tap;
use tcpshake_proto::probe::scan::{Cookie, build_syn};
use tcpshake_proto::wire::ethernet::{ETHERTYPE_IPV4, ETHERTYPE_IPV6, EthernetRepr, MacAddr};

fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 5 {
        anyhow::bail!("usage: send_ceiling DST DST_MAC MODE SECS [BATCH]");
    }
    let dst: IpAddr = a[1].parse()?;
    let dst_mac: MacAddr = a[2].parse().map_err(anyhow::Error::msg)?;
    let mode = a[3].as_str();
    let secs: f64 = a[4].parse()?;
    let batch: usize = a.get(5).map_or(Ok(64), |b| b.parse())?;
    let r = route::lookup(dst)?;
    let src_mac = r.mac.unwrap_or(MacAddr::ZERO);
    let local = SocketAddr::new(r.src, 40_001);
    let cookie = Cookie::new(1, 2);
    let stop = AtomicBool::new(false);
    let seen = AtomicU64::new(0);
    let replies = AtomicU64::new(0);
    let drops = AtomicU64::new(0);
    // As a scan has it: the guard's table (its OUTPUT chain is on the raw socket's path).
    let mut guard = tcpshake_io::guard::Guard::install(MARK)?;
    guard.protect_port(local.port())?;
    let mut tap = Tap::open_queue(
        r.oif,
        &r.ifname,
        local.port(),
        false,
        32 << 20,
        &Default::default(),
    )?;
    let (sent, enobufs, took, stamped) = std::thread::scope(|s| {
        s.spawn(|| {
            let mut buf = vec![0u8; 2048];
            while !stop.load(Ordering::Relaxed) {
                let mut got = false;
                while let Ok(Some(m)) = tap.recv(&mut buf) {
                    got = true;
                    if m.outgoing {
                        seen.fetch_add(1, Ordering::Relaxed);
                    } else {
                        replies.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if !got {
                    let _ = tap.wait(Some(Duration::from_millis(5)));
                }
            }
            // What is left in the ring after the sender stopped.
            while let Ok(Some(m)) = tap.recv(&mut buf) {
                if m.outgoing {
                    seen.fetch_add(1, Ordering::Relaxed);
                } else {
                    replies.fetch_add(1, Ordering::Relaxed);
                }
            }
            drops.store(tap.losses().dropped, Ordering::Relaxed);
        });
        let out = blast(mode, &r, local, dst, src_mac, dst_mac, &cookie, secs, batch);
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        out
    })?;
    let pps = sent as f64 / took;
    println!(
        "{{\"mode\":\"{mode}\",\"batch\":{batch},\"sent\":{sent},\"seconds\":{took:.3},\"pps\":{pps:.0},\"seen_by_tap\":{},\"replies\":{},\"tap_drops\":{},\"enobufs\":{enobufs},\"tx_stamps\":{stamped}}}",
        seen.load(Ordering::Relaxed),
        replies.load(Ordering::Relaxed),
        drops.load(Ordering::Relaxed)
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn blast(
    mode: &str,
    r: &route::Route,
    local: SocketAddr,
    dst: IpAddr,
    src_mac: MacAddr,
    dst_mac: MacAddr,
    cookie: &Cookie,
    secs: f64,
    batch: usize,
) -> anyhow::Result<(u64, u64, f64, u64)> {
    let frame_mode = match mode {
        "raw" => None,
        "packet" => Some(Mode::Sendmmsg),
        "packet-bypass" => Some(Mode::SendmmsgBypass),
        "ring" => Some(Mode::TxRing),
        "ring-bypass" | "ring-bypass-ts" | "ring-bypass-ts-twin" => Some(Mode::TxRingBypass),
        "packet-bypass-ts" | "packet-bypass-ts-twin" => Some(Mode::SendmmsgBypass),
        m => anyhow::bail!("unknown mode {m}"),
    };
    let twin = mode.ends_with("-twin");
    let mut frames = frame_mode
        .map(|m| match twin {
            true => FrameSender::open_twinned(r.oif, m, MARK),
            false => FrameSender::open(r.oif, m, MARK),
        })
        .transpose()?;
    let stamps = mode.ends_with("-ts") || twin;
    if stamps && let Some(f) = &frames {
        anyhow::ensure!(f.enable_tx_stamps(), "SO_TIMESTAMPING refused");
    }
    let mut stamped = 0u64;
    let raw = match frames {
        None => Some(RawSender::new(r.src, MARK)?),
        Some(_) => None,
    };
    let l2 = usize::from(frames.is_some()) * 14;
    let eth = EthernetRepr {
        dst: dst_mac,
        src: src_mac,
        ethertype: if dst.is_ipv6() {
            ETHERTYPE_IPV6
        } else {
            ETHERTYPE_IPV4
        },
    };
    let mut bufs = vec![[0u8; 128]; batch];
    let mut lens = vec![0usize; batch];
    let (mut sent, mut enobufs, mut port) = (0u64, 0u64, 1u16);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    while Instant::now() < end {
        for (buf, len) in bufs.iter_mut().zip(lens.iter_mut()) {
            let remote = SocketAddr::new(dst, port);
            port = port.checked_add(1).unwrap_or(1);
            let seq = cookie.seq(local, remote, 0);
            eth.emit(buf)?;
            let n = if dst.is_ipv6() && frames.is_some() {
                build_syn_v6_frame(local, remote, seq, &mut buf[l2..])?
            } else {
                build_syn(local, remote, seq, 0, &mut buf[l2..])?
            };
            *len = l2 + n;
        }
        let mut done = 0;
        while done < batch {
            let res = match (&mut frames, &raw) {
                (Some(f), _) => {
                    let v: Vec<&[u8]> = (done..batch).map(|i| &bufs[i][..lens[i]]).collect();
                    f.send_batch(&v)
                }
                (None, Some(s)) => {
                    let v: Vec<(&[u8], IpAddr)> =
                        (done..batch).map(|i| (&bufs[i][..lens[i]], dst)).collect();
                    s.send_batch(&v)
                }
                _ => unreachable!(),
            };
            match res {
                Ok(n) => done += n,
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOBUFS | libc::EAGAIN)) => {
                    enobufs += 1;
                    std::thread::yield_now();
                }
                Err(e) => return Err(e.into()),
            }
        }
        sent += batch as u64;
        if stamps && let Some(f) = &mut frames {
            f.read_stamps(4 * batch, |_, _| stamped += 1)?;
        }
    }
    let took = start.elapsed().as_secs_f64();
    if stamps && let Some(f) = &mut frames {
        std::thread::sleep(Duration::from_millis(20));
        f.read_stamps(1 << 20, |_, _| stamped += 1)?;
    }
    Ok((sent, enobufs, took, stamped))
}

/// The IPv6 header and the SYN (build_syn gives the segment alone for the raw socket).
fn build_syn_v6_frame(
    local: SocketAddr,
    remote: SocketAddr,
    seq: tcpshake_proto::wire::SeqNumber,
    buf: &mut [u8],
) -> anyhow::Result<usize> {
    let n = build_syn(local, remote, seq, 0, &mut buf[40..])?;
    let ip = tcpshake_proto::wire::IpRepr::new(local.ip(), remote.ip(), 6, 64, n);
    ip.emit(buf)?;
    Ok(40 + n)
}

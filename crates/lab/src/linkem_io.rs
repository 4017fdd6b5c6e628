//! The link emulator's I/O: two AF_PACKET sockets (whole Ethernet frames) on the two
//! interfaces it bridges, and a loop that hands every frame to the pure
//! [`crate::linkem::Link`] of its direction and sends it out of the other interface when it
//! is due.
//!
//! Delay accuracy: the loop sleeps in `ppoll` (ns resolution, timer slack set to 1 ns) until
//! shortly before the next frame is due, then spins, and measures each frame's lateness
//! from its kernel receive timestamp: the emulator's own report says how well it kept time.

use crate::linkem::{FrameInfo, Link, LinkParams, LinkStats, complete_checksum, tcp_offset};
use anyhow::{Context, Result};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tcpshake_io::clock;
use tcpshake_io::frames::FramePort;
use tcpshake_io::poll::{set_timer_slack, wait_readable};
/// Wake this long before a frame is due and spin the rest: a sleep can overshoot by the
/// scheduler's wake-up latency, a spin cannot.
const SPIN_MARGIN: Duration = Duration::from_micros(1000);
/// Longest single sleep, so a stop request is noticed promptly.
const MAX_SLEEP: Duration = Duration::from_millis(50);

/// What the emulator did, per direction (`a→b`, `b→a`), and frames it had to checksum.
#[derive(Debug, Default)]
pub struct Report {
    pub ab: LinkStats,
    pub ba: LinkStats,
    pub checksums_completed: u64,
    pub send_errors: u64,
}

/// Asks for `SCHED_FIFO` at priority 2: the bridge then preempts ordinary processes when a
/// frame falls due, which keeps the delay's tail short on a busy machine — and tcpshake's
/// own real-time spin (priority 1) too, which a same-priority FIFO thread would wait out
/// (a full parallel suite once put a 10 ms delay's p90 at 10.102 ms that way). It sleeps
/// between frames and spins at most `SPIN_MARGIN` (1 ms) per wake-up, so it cannot hog a CPU.
/// Returns false when the kernel refuses (no CAP_SYS_NICE, RT throttling).
pub fn set_realtime() -> bool {
    tcpshake_io::set_realtime_above_tool()
}

/// Bridges interfaces `a` and `b` until `stop` is set.
pub fn run(
    a: &str,
    b: &str,
    ab: LinkParams,
    ba: LinkParams,
    seed: u64,
    stop: &AtomicBool,
) -> Result<Report> {
    let ports = [FramePort::open(a)?, FramePort::open(b)?];
    // Precise sleeps: the default 50 µs timer slack would be half our error budget.
    set_timer_slack(Duration::from_nanos(1));
    // Independent dice per direction, both from the one seed.
    let mut links = [
        Link::new(ab, seed),
        Link::new(ba, seed ^ 0x5851_f42d_4c95_7f2d),
    ];
    let mut report = Report::default();
    let mut buf = vec![0u8; 65536 + 64];
    while !stop.load(Ordering::Relaxed) {
        // Arrivals: port i feeds link i (a→b is link 0, b→a is link 1).
        for (i, port) in ports.iter().enumerate() {
            for _ in 0..256 {
                let Some(f) = port
                    .recv(&mut buf)
                    .with_context(|| format!("reading {}", port.name()))?
                else {
                    break;
                };
                let frame = &mut buf[..f.len];
                if f.csum_not_ready && complete_checksum(frame) {
                    report.checksums_completed += 1;
                }
                let info = FrameInfo {
                    tcp_offset: tcp_offset(frame),
                };
                links[i].push(f.at, frame.to_vec(), info);
            }
        }
        // Departures.
        let now = clock::now();
        for (i, link) in links.iter_mut().enumerate() {
            let out = &ports[1 - i];
            for _ in 0..1024 {
                let Some((due, frame)) = link.pop_due(now) else {
                    break;
                };
                // Stamped before the send: the syscall can run the receiving side's whole
                // path (veth hands the frame on in the sender's softirq), which is not
                // lateness of ours; the frame leaves at its start.
                let leaving = clock::now();
                match out.send(&frame) {
                    Ok(()) => link.record_sent(due, leaving),
                    // A full queue or a vanished interface: the frame is lost, as on a wire.
                    Err(_) => report.send_errors += 1,
                }
            }
        }
        let next = links.iter().filter_map(Link::next_due).min();
        let now = clock::now();
        let wait = next.map_or(MAX_SLEEP, |d| d.saturating_since(now).min(MAX_SLEEP));
        if wait > SPIN_MARGIN {
            wait_readable(
                &[ports[0].as_fd(), ports[1].as_fd()],
                Some(wait - SPIN_MARGIN),
            )?;
        } else {
            std::hint::spin_loop();
        }
    }
    report.ab = links[0].stats;
    report.ba = links[1].stats;
    Ok(report)
}

//! Did the scan send at `--rate`? If it fell short by more than a fifth, say so and why,
//! from what the driver measured while sending.
//!
//! The driver accounts for the sending time: made to wait by the kernel (`blocked`: a
//! full queue or ring, ENOBUFS/EAGAIN, or a send call that slept on a full socket buffer
//! — packets held in the kernel's neighbour resolution, a slow device), ready to run but
//! kept off the CPU by other work (`preempted`, the scheduler's run delay), and the rest:
//! running, in our code or in the kernel's send path (its softirq work included: on a
//! veth that is the peer's whole receive path). The reason:
//!
//! | measured | reason |
//! |---|---|
//! | blocked ≥ 20% of the sending time | the kernel held the packets back: the device, its driver or its neighbour resolution took them slower than `--rate` |
//! | preempted ≥ 20% | other work on this host kept the sender off the CPU |
//! | otherwise | the sender was running: this host's send path cannot go faster, `--rate` is above its ceiling |
//!
//! Without `--rate` (as fast as the host sends) there is no rate to miss: only the kernel
//! holding the packets back is worth saying (a slow device, or `--send-ip` into the
//! kernel's neighbour resolution), since that is a scan crawling for a reason outside it.
//!
//! Scans too short to judge (under 20 ms of sending, or fewer than 50 packets) are not
//! judged: the token bucket's 5 ms burst alone moves such a rate.

use std::fmt;
use std::time::Duration;

/// Below this share of `--rate`, the scan says so.
pub const SHORTFALL: f64 = 0.8;
const MIN_SEND_TIME: Duration = Duration::from_millis(20);
const MIN_PACKETS: u64 = 50;

/// What the driver measured while sending.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendLog {
    /// Packets that left (requests, SYNs, RSTs).
    pub sent: u64,
    /// First packet to last, summed over rounds (and resolution).
    pub send_time: Duration,
    /// On a CPU (the thread's own CPU time).
    pub busy: Duration,
    /// Ready to run but waiting for a CPU (the scheduler's run delay).
    pub preempted: Duration,
    /// Made to wait by the kernel: a full queue or ring, or a send call that blocked.
    pub blocked: Duration,
    /// How many times the kernel said its queue was full (ENOBUFS/EAGAIN).
    pub full: u64,
}

impl SendLog {
    pub fn add(&mut self, other: &SendLog) {
        self.sent += other.sent;
        self.send_time += other.send_time;
        self.busy += other.busy;
        self.preempted += other.preempted;
        self.blocked += other.blocked;
        self.full += other.full;
    }

    /// Packets per second while sending.
    pub fn achieved(&self) -> f64 {
        if self.send_time.is_zero() {
            0.0
        } else {
            self.sent as f64 / self.send_time.as_secs_f64()
        }
    }
}

/// Why the rate was not met.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Cause {
    /// The kernel held the packets back this long in all (its queue was full this many
    /// times).
    QueueFull { times: u64, waited: Duration },
    /// The sender was running (or in the kernel's send path) this share of the time.
    SendPath { busy: f64 },
    /// The sender waited for a CPU this share of the sending time.
    Preempted { idle: f64 },
}

/// A rate not met: what was achieved of what was asked, and why.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shortfall {
    /// `--rate`; none when it was not given.
    pub asked: Option<u64>,
    pub achieved: f64,
    pub cause: Cause,
}

/// The shortfall, if the scan sent below [`SHORTFALL`] of `rate`; without a rate, only
/// when the kernel held the packets back.
pub fn check(rate: Option<u64>, log: &SendLog) -> Option<Shortfall> {
    if log.send_time < MIN_SEND_TIME || log.sent < MIN_PACKETS {
        return None;
    }
    let achieved = log.achieved();
    if rate.is_some_and(|r| achieved >= SHORTFALL * r as f64) {
        return None;
    }
    let t = log.send_time.as_secs_f64();
    let share = |d: Duration| (d.as_secs_f64() / t).min(1.0);
    let cause = if share(log.blocked) >= 0.2 {
        Cause::QueueFull {
            times: log.full,
            waited: log.blocked,
        }
    } else if share(log.preempted) >= 0.2 {
        Cause::Preempted {
            idle: share(log.preempted),
        }
    } else {
        Cause::SendPath {
            busy: (1.0 - share(log.preempted) - share(log.blocked)).max(0.0),
        }
    };
    if rate.is_none() && !matches!(cause, Cause::QueueFull { .. }) {
        return None; // as fast as it could, and nothing outside held it back
    }
    Some(Shortfall {
        asked: rate,
        achieved,
        cause,
    })
}

/// `sent at 99 pps, 1% of --rate 10000: the interface's queue was full 1234 times (16.2 s
/// waiting): the link or its driver takes packets slower than that`.
impl fmt::Display for Shortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.asked {
            Some(asked) => write!(
                f,
                "sent at {:.0} pps, {:.0}% of --rate {asked}: ",
                self.achieved,
                100.0 * self.achieved / asked.max(1) as f64,
            )?,
            None => write!(f, "sent at {:.0} pps: ", self.achieved)?,
        }
        match self.cause {
            Cause::QueueFull { times, waited } => write!(
                f,
                "the kernel held the packets back for {:.1} s ({}): the device, its driver or \
                 the kernel's neighbour resolution takes them slower than that",
                waited.as_secs_f64(),
                if times > 0 {
                    format!("its queue was full {times} times")
                } else {
                    "its send calls blocked".to_string()
                }
            ),
            Cause::SendPath { busy } => write!(
                f,
                "the sender was busy {:.0}% of the time: this is about as fast as this host \
                 sends here; a lower --rate gives the same result",
                100.0 * busy
            ),
            Cause::Preempted { idle } => write!(
                f,
                "the sender waited for a CPU {:.0}% of the time: other work on this host \
                 took it",
                100.0 * idle
            ),
        }
    }
}

/// From this rate (packets per second) a scan may outrun one thread sending: here one
/// sends 350–450 k SYNs a second with transmit stamps, and a slower machine fewer.
pub const SECOND_SENDER_RATE: u64 = 100_000;
/// Fewer SYNs than this leave in a few tens of milliseconds from one sender: a second one
/// would save less than its thread and its socket cost.
pub const SECOND_SENDER_PAIRS: u64 = 10_000;

/// Whether a scan's frames should also go through a second socket sending on a thread of
/// its own (tcpshake-io link.rs, "Two senders"): only when sending is what bounds the
/// scan's time — a rate above one sender's reach, enough SYNs for it to matter — and there
/// is a second CPU to send on (the sending CPU does the kernel's whole send path).
pub fn second_sender(rate: u64, planned: u64, cpus: usize) -> bool {
    cpus >= 2 && rate >= SECOND_SENDER_RATE && planned >= SECOND_SENDER_PAIRS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_sender_only_for_fast_large_scans_with_a_cpu_to_spare() {
        // A full-port scan at the default (unlimited) rate on two CPUs.
        assert!(second_sender(100_000_000, 65_535, 2));
        assert!(second_sender(SECOND_SENDER_RATE, SECOND_SENDER_PAIRS, 8));
        // One CPU: the sending thread would only take turns with the other.
        assert!(!second_sender(100_000_000, 65_535, 1));
        // A rate one sender keeps with ease, or a scan too small to gain.
        assert!(!second_sender(SECOND_SENDER_RATE - 1, 65_535, 2));
        assert!(!second_sender(100_000_000, SECOND_SENDER_PAIRS - 1, 2));
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_rate_met_or_a_scan_too_short_says_nothing() {
        let log = SendLog {
            sent: 90_000,
            send_time: ms(1000),
            busy: ms(400),
            ..SendLog::default()
        };
        assert_eq!(check(Some(100_000), &log), None, "90% is fine");
        let short = SendLog {
            sent: 40,
            send_time: ms(10),
            ..SendLog::default()
        };
        assert_eq!(check(Some(1_000_000), &short), None);
    }

    /// Issue 15's on-link crawl: 99 pps of 10 000, ENOBUFS all along.
    fn onlink_crawl() -> SendLog {
        SendLog {
            sent: 1722,
            send_time: ms(17_400),
            busy: ms(200),
            preempted: ms(10),
            blocked: ms(16_900),
            full: 169_000,
        }
    }

    #[test]
    fn a_full_queue_is_the_reason_when_it_held_the_sender() {
        let s = check(Some(10_000), &onlink_crawl()).unwrap();
        assert_eq!(
            s.cause,
            Cause::QueueFull {
                times: 169_000,
                waited: ms(16_900)
            }
        );
        assert_eq!(
            s.to_string(),
            "sent at 99 pps, 1% of --rate 10000: the kernel held the packets back for 16.9 s \
             (its queue was full 169000 times): the device, its driver or the kernel's \
             neighbour resolution takes them slower than that"
        );
    }

    /// Without --rate: as fast as it could is no shortfall, nor a busy CPU; a kernel that
    /// held the packets back still is (a scan crawling for a reason outside it).
    #[test]
    fn without_a_rate_only_a_kernel_holding_back_is_said() {
        let s = check(None, &onlink_crawl()).unwrap();
        assert!(
            s.to_string()
                .starts_with("sent at 99 pps: the kernel held the packets back for 16.9 s"),
            "{s}"
        );
        let fast = SendLog {
            sent: 300_000,
            send_time: ms(1000),
            busy: ms(950),
            ..SendLog::default()
        };
        assert_eq!(check(None, &fast), None);
        let preempted = SendLog {
            preempted: ms(600),
            busy: ms(300),
            ..fast
        };
        assert_eq!(check(None, &preempted), None);
    }

    #[test]
    fn a_busy_sender_is_the_ceiling_a_waiting_one_was_preempted() {
        let busy = SendLog {
            sent: 400_000,
            send_time: ms(1000),
            busy: ms(700),
            preempted: ms(50),
            ..SendLog::default()
        };
        let s = check(Some(1_000_000), &busy).unwrap();
        assert!(matches!(s.cause, Cause::SendPath { busy } if (busy - 0.95).abs() < 1e-9));
        assert!(
            s.to_string()
                .starts_with("sent at 400000 pps, 40% of --rate 1000000: the sender was busy 95%")
        );
        let waiting = SendLog {
            sent: 40_000,
            send_time: ms(1000),
            busy: ms(100),
            preempted: ms(600),
            blocked: ms(50),
            full: 3,
        };
        let s = check(Some(100_000), &waiting).unwrap();
        match s.cause {
            Cause::Preempted { idle } => assert!((idle - 0.6).abs() < 1e-9, "{idle}"),
            c => panic!("{c:?}"),
        }
        assert!(s.to_string().ends_with(
            "the sender waited for a CPU 60% of the time: other work on this host took it"
        ));
    }
}

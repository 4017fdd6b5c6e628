//! Did the scan send at `--rate`? If it fell short by more than a fifth, say so and why,
//! from what the driver measured while sending.
//!
//! The driver accounts for every moment of the sending: inside the system calls that
//! hand packets to the kernel and building them (`busy`), waiting because the kernel's
//! queue or ring was full (`blocked`, ENOBUFS/EAGAIN), and the rest — waiting for tokens
//! on purpose, or not running at all. The reason is the largest of these, when it
//! explains the shortfall:
//!
//! | measured | reason |
//! |---|---|
//! | blocked ≥ 20% of the sending time | the interface or its driver took packets slower than `--rate` |
//! | busy ≥ 70% | this host's send path (CPU) cannot go faster: the rate is its ceiling |
//! | otherwise | the sending thread was not running: other work on this host took the CPU |
//!
//! Scans too short to judge (under 20 ms of sending, or fewer packets than a
//! second's worth of 50) are not judged: the token bucket's 5 ms burst alone moves such
//! a rate.

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
    /// Building packets and inside the send system calls.
    pub busy: Duration,
    /// Waiting because the kernel's queue or ring was full.
    pub blocked: Duration,
    /// How many times the kernel said its queue was full.
    pub full: u64,
}

impl SendLog {
    pub fn add(&mut self, other: &SendLog) {
        self.sent += other.sent;
        self.send_time += other.send_time;
        self.busy += other.busy;
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
    /// The kernel's queue was full this many times, for this long in all.
    QueueFull { times: u64, waited: Duration },
    /// Building and sending took this share of the sending time.
    SendPath { busy: f64 },
    /// The sender was not running for this share of the sending time.
    Preempted { idle: f64 },
}

/// A rate not met: what was achieved of what was asked, and why.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shortfall {
    pub asked: u64,
    pub achieved: f64,
    pub cause: Cause,
}

/// The shortfall, if the scan sent below [`SHORTFALL`] of `rate`.
pub fn check(rate: u64, log: &SendLog) -> Option<Shortfall> {
    if log.send_time < MIN_SEND_TIME || log.sent < MIN_PACKETS {
        return None;
    }
    let achieved = log.achieved();
    if achieved >= SHORTFALL * rate as f64 {
        return None;
    }
    let t = log.send_time.as_secs_f64();
    let share = |d: Duration| (d.as_secs_f64() / t).min(1.0);
    let cause = if share(log.blocked) >= 0.2 {
        Cause::QueueFull {
            times: log.full,
            waited: log.blocked,
        }
    } else if share(log.busy) >= 0.7 {
        Cause::SendPath {
            busy: share(log.busy),
        }
    } else {
        Cause::Preempted {
            idle: (1.0 - share(log.busy) - share(log.blocked)).max(0.0),
        }
    };
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
        write!(
            f,
            "sent at {:.0} pps, {:.0}% of --rate {}: ",
            self.achieved,
            100.0 * self.achieved / self.asked.max(1) as f64,
            self.asked
        )?;
        match self.cause {
            Cause::QueueFull { times, waited } => write!(
                f,
                "the interface's queue was full {times} times ({:.1} s waiting): the link or \
                 its driver takes packets slower than that",
                waited.as_secs_f64()
            ),
            Cause::SendPath { busy } => write!(
                f,
                "building and sending took {:.0}% of the time: this is about as fast as this \
                 host sends; a lower --rate gives the same result",
                100.0 * busy
            ),
            Cause::Preempted { idle } => write!(
                f,
                "the sending thread was not running {:.0}% of the time: other work on this \
                 host took the CPU",
                100.0 * idle
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(check(100_000, &log), None, "90% is fine");
        let short = SendLog {
            sent: 40,
            send_time: ms(10),
            ..SendLog::default()
        };
        assert_eq!(check(1_000_000, &short), None);
    }

    #[test]
    fn a_full_queue_is_the_reason_when_it_held_the_sender() {
        // Issue 15's on-link crawl: 99 pps of 10 000, ENOBUFS all along.
        let log = SendLog {
            sent: 1722,
            send_time: ms(17_400),
            busy: ms(200),
            blocked: ms(16_900),
            full: 169_000,
        };
        let s = check(10_000, &log).unwrap();
        assert_eq!(
            s.cause,
            Cause::QueueFull {
                times: 169_000,
                waited: ms(16_900)
            }
        );
        assert_eq!(
            s.to_string(),
            "sent at 99 pps, 1% of --rate 10000: the interface's queue was full 169000 times \
             (16.9 s waiting): the link or its driver takes packets slower than that"
        );
    }

    #[test]
    fn a_busy_sender_is_the_ceiling_an_idle_one_was_preempted() {
        let busy = SendLog {
            sent: 400_000,
            send_time: ms(1000),
            busy: ms(950),
            ..SendLog::default()
        };
        let s = check(1_000_000, &busy).unwrap();
        assert!(matches!(s.cause, Cause::SendPath { busy } if busy > 0.94));
        assert!(
            s.to_string()
                .starts_with("sent at 400000 pps, 40% of --rate 1000000: building")
        );
        let idle = SendLog {
            sent: 40_000,
            send_time: ms(1000),
            busy: ms(100),
            blocked: ms(50),
            full: 3,
        };
        let s = check(100_000, &idle).unwrap();
        match s.cause {
            Cause::Preempted { idle } => assert!((idle - 0.85).abs() < 1e-9, "{idle}"),
            c => panic!("{c:?}"),
        }
    }
}

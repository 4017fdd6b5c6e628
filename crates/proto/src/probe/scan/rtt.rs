//! How long a scan waits for replies, from the reply times it measures: RFC 6298's
//! estimator (§2: SRTT, RTTVAR, and SRTT + 4·RTTVAR), the idea nmap's scan timing uses too
//! (`srtt`, `rttvar`, `to` in its XML `<times>`), with a floor and a ceiling.
//!
//! - Before any sample the wait is [`INITIAL`], 1 s: RFC 6298 §2.1's initial RTO, and the
//!   fixed wait scans had before.
//! - After samples: SRTT + 4·RTTVAR, clamped to [`FLOOR`]..=[`CEILING`]. Samples are
//!   SYN→reply times from two kernel timestamps (scan/mod.rs); a retry's reply is matched
//!   to the retry by its cookie, so there is no retransmission ambiguity (Karn's rule,
//!   RFC 6298 §3, is moot).
//! - The floor, 50 ms, is nmap's `-T5` minimum RTT timeout: a lab's RTTs are tens of
//!   microseconds, but a reply can still be held up by the target's scheduler or a busy
//!   link; a reply later than the floor is not lost, it is asked for again by the retry
//!   round (when `--retries` allows one).
//! - The ceiling, 10 s, is nmap's default maximum RTT timeout.
//!
//! `--wait DUR` given explicitly replaces all this with a fixed wait ([`Wait::Fixed`]).

use crate::tcp::rto::Smoothed;
use std::time::Duration;

pub const INITIAL: Duration = Duration::from_secs(1);
pub const FLOOR: Duration = Duration::from_millis(50);
pub const CEILING: Duration = Duration::from_secs(10);

/// How long a round waits for replies after its last packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// `--wait DUR`: this long, whatever the replies say.
    Fixed(Duration),
    /// From the reply times measured (the module doc).
    Adaptive,
}

/// RFC 6298 §2's estimator (the connection's smoothing, `tcp::rto::Smoothed`), with its
/// own bounds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RttEstimator {
    smoothed: Smoothed,
    samples: u64,
}

impl RttEstimator {
    pub fn new() -> RttEstimator {
        RttEstimator::default()
    }

    /// One measured reply time (RFC 6298 §2.2, §2.3; α = 1/8, β = 1/4).
    pub fn sample(&mut self, r: Duration) {
        self.samples = self.samples.saturating_add(1);
        self.smoothed.sample(r);
    }

    pub fn srtt(&self) -> Option<Duration> {
        self.smoothed.srtt()
    }

    pub fn rttvar(&self) -> Duration {
        self.smoothed.rttvar()
    }

    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// SRTT + 4·RTTVAR within the floor and the ceiling; [`INITIAL`] before any sample.
    pub fn timeout(&self) -> Duration {
        match self.srtt() {
            None => INITIAL,
            Some(srtt) => srtt
                .saturating_add(self.rttvar().saturating_mul(4))
                .clamp(FLOOR, CEILING),
        }
    }

    /// The wait `policy` gives now.
    pub fn wait(&self, policy: Wait) -> Duration {
        match policy {
            Wait::Fixed(d) => d,
            Wait::Adaptive => self.timeout(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn one_second_until_the_first_sample() {
        let e = RttEstimator::new();
        assert_eq!(e.timeout(), INITIAL);
        assert_eq!(e.wait(Wait::Fixed(us(7))), us(7));
    }

    #[test]
    fn rfc_6298_first_and_later_samples() {
        let mut e = RttEstimator::new();
        // §2.2: SRTT = R, RTTVAR = R/2.
        e.sample(Duration::from_millis(100));
        assert_eq!(e.srtt(), Some(Duration::from_millis(100)));
        assert_eq!(e.rttvar(), Duration::from_millis(50));
        assert_eq!(e.timeout(), Duration::from_millis(300));
        // §2.3: RTTVAR = 3/4·RTTVAR + 1/4·|SRTT − R'|, then SRTT = 7/8·SRTT + 1/8·R'.
        e.sample(Duration::from_millis(200));
        assert_eq!(e.rttvar(), Duration::from_millis(62_500) / 1000);
        assert_eq!(e.srtt(), Some(Duration::from_micros(112_500)));
    }

    #[test]
    fn a_lab_waits_the_floor_a_far_path_more() {
        let mut lab = RttEstimator::new();
        for i in 0..1000 {
            lab.sample(us(40 + i % 20));
        }
        assert_eq!(lab.timeout(), FLOOR);
        let mut far = RttEstimator::new();
        for i in 0..1000 {
            far.sample(Duration::from_millis(150 + i % 40));
        }
        let t = far.timeout();
        assert!(
            t > Duration::from_millis(170) && t < Duration::from_millis(300),
            "{t:?}"
        );
    }

    #[test]
    fn an_absurd_sample_is_capped() {
        let mut e = RttEstimator::new();
        e.sample(Duration::from_secs(3600));
        assert_eq!(e.timeout(), CEILING);
        e.sample(Duration::MAX);
        assert_eq!(e.timeout(), CEILING);
    }

    proptest! {
        #[test]
        fn the_timeout_stays_within_its_bounds(samples in proptest::collection::vec(any::<u64>(), 1..50)) {
            let mut e = RttEstimator::new();
            for s in samples {
                e.sample(Duration::from_nanos(s));
                let t = e.timeout();
                prop_assert!((FLOOR..=CEILING).contains(&t));
            }
        }
    }

    /// No sample overflows the estimator, however absurd (`Duration::MAX` twice: the
    /// smoothing multiplied before it divided and panicked, in release too).
    #[test]
    fn absurd_samples_do_not_overflow() {
        let mut e = RttEstimator::new();
        e.sample(Duration::MAX);
        e.sample(Duration::MAX);
        e.sample(Duration::ZERO);
        assert!(e.wait(Wait::Adaptive) <= CEILING);
    }
}

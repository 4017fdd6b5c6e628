//! Retransmission timeout estimation, RFC 6298.

use std::time::Duration;

/// RFC 6298 §2: K = 4.
const K: u32 = 4;
/// RFC 6298 §2: clock granularity G. Our clock is in nanoseconds; 1 ms keeps the
/// variance term from collapsing to zero on a very steady path.
const G: Duration = Duration::from_millis(1);

/// RFC 6298 §2's smoothed round-trip time and its variation, shared by the connection's
/// retransmission timer (below) and the scan's reply wait (probe::scan::rtt).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Smoothed {
    srtt: Option<Duration>,
    rttvar: Duration,
}

impl Smoothed {
    /// One measurement (§2.2 for the first, §2.3 after; α = 1/8, β = 1/4). Each term is
    /// divided before the sum, which saturates: no sample, however absurd, overflows a
    /// `Duration`.
    pub(crate) fn sample(&mut self, r: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(r);
                // RTTVAR <- (1 - 1/4) * RTTVAR + 1/4 * |SRTT - R'|
                // (Written as a difference: `rttvar * 3` overflows near `Duration::MAX`.)
                self.rttvar = (self.rttvar - self.rttvar / 4).saturating_add(delta / 4);
                // SRTT <- (1 - 1/8) * SRTT + 1/8 * R'
                self.srtt = Some((srtt - srtt / 8).saturating_add(r / 8));
            }
        }
    }

    pub(crate) fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    pub(crate) fn rttvar(&self) -> Duration {
        self.rttvar
    }
}

#[derive(Clone, Copy, Debug)]
pub(super) struct RttEstimator {
    smoothed: Smoothed,
    rto: Duration,
    /// The RTO before any back-off (what [`RttEstimator::undo_back_off`] returns to).
    base: Duration,
    rto_min: Duration,
    rto_max: Duration,
}

impl RttEstimator {
    /// RFC 6298 §2.1: before any sample, RTO is the initial value.
    pub(super) fn new(initial: Duration, rto_min: Duration, rto_max: Duration) -> Self {
        // A misconfigured floor above the ceiling must not make `clamp` panic.
        let rto_max = rto_max.max(rto_min);
        let rto = initial.clamp(rto_min, rto_max);
        RttEstimator {
            smoothed: Smoothed::default(),
            rto,
            base: rto,
            rto_min,
            rto_max,
        }
    }

    pub(super) fn srtt(&self) -> Option<Duration> {
        self.smoothed.srtt()
    }

    pub(super) fn rto(&self) -> Duration {
        self.rto
    }

    /// RFC 6298 §2.2 (first sample) and §2.3 (later ones); the result is floored at
    /// `rto_min` (§2.4, with Linux's floor instead of 1 s) and capped at `rto_max` (§2.5).
    pub(super) fn on_sample(&mut self, r: Duration) {
        self.smoothed.sample(r);
        let srtt = self.smoothed.srtt().unwrap_or(r);
        let rto = srtt.saturating_add(self.smoothed.rttvar().saturating_mul(K).max(G));
        self.rto = rto.clamp(self.rto_min, self.rto_max);
        self.base = self.rto;
    }

    /// RFC 6298 §5.5: back off the timer on expiry.
    pub(super) fn back_off(&mut self) {
        self.rto = self.rto.saturating_mul(2).min(self.rto_max);
    }

    /// RFC 6069 §4: undo one back-off step (never below the RTO before any); false when
    /// there was none to undo.
    pub(super) fn undo_back_off(&mut self) -> bool {
        if self.rto <= self.base {
            return false;
        }
        self.rto = (self.rto / 2).max(self.base);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn first_sample_sets_srtt_and_rttvar() {
        let mut e = RttEstimator::new(ms(1000), ms(200), ms(60_000));
        assert_eq!(e.rto(), ms(1000));
        assert_eq!(e.srtt(), None);
        e.on_sample(ms(100));
        assert_eq!(e.srtt(), Some(ms(100)));
        // 100 + 4 * 50 = 300
        assert_eq!(e.rto(), ms(300));
    }

    #[test]
    fn later_samples_smooth_and_floor_applies() {
        let mut e = RttEstimator::new(ms(1000), ms(200), ms(60_000));
        e.on_sample(ms(100));
        e.on_sample(ms(200));
        // rttvar = (50*3 + 100)/4 = 62.5; srtt = (700 + 200)/8 = 112.5
        assert_eq!(e.srtt(), Some(Duration::from_micros(112_500)));
        assert_eq!(e.rto(), Duration::from_micros(112_500 + 250_000));
        let mut f = RttEstimator::new(ms(1000), ms(200), ms(60_000));
        f.on_sample(Duration::from_micros(10));
        assert_eq!(f.rto(), ms(200), "rto_min floor");
    }

    #[test]
    fn back_off_doubles_up_to_the_cap() {
        let mut e = RttEstimator::new(ms(1000), ms(200), ms(3000));
        e.back_off();
        assert_eq!(e.rto(), ms(2000));
        e.back_off();
        assert_eq!(e.rto(), ms(3000));
        e.back_off();
        assert_eq!(e.rto(), ms(3000));
    }
}

//! Who may start a `/probe` now: at most `max_in_flight` at once, and `rate` requests a
//! second on average with bursts of `burst` (a token bucket). A refused request gets 429
//! (with `Retry-After`) at once instead of queueing, so a flood costs the exporter no
//! memory and the surveys keep their share of the loop.

use crate::time::Instant;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Refusal {
    /// `max_in_flight` probes are running.
    Busy { in_flight: usize },
    /// The bucket is empty; a token comes after this long.
    Rate { retry_after: Duration },
}

#[derive(Clone, Debug)]
pub struct Admission {
    max_in_flight: usize,
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Option<Instant>,
    in_flight: usize,
}

impl Admission {
    pub fn new(max_in_flight: usize, rate: f64, burst: u32) -> Admission {
        let burst = f64::from(burst.max(1));
        Admission {
            max_in_flight: max_in_flight.max(1),
            rate: if rate.is_finite() && rate > 0.0 {
                rate
            } else {
                1.0
            },
            burst,
            tokens: burst,
            last: None,
            in_flight: 0,
        }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Take a place for one probe, or say why not. Every `Ok` must be followed by one
    /// [`Admission::release`].
    pub fn admit(&mut self, now: Instant) -> Result<(), Refusal> {
        if let Some(last) = self.last {
            let elapsed = now.saturating_since(last).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        }
        self.last = Some(now);
        if self.in_flight >= self.max_in_flight {
            return Err(Refusal::Busy {
                in_flight: self.in_flight,
            });
        }
        if self.tokens < 1.0 {
            let wait = (1.0 - self.tokens) / self.rate;
            return Err(Refusal::Rate {
                retry_after: Duration::from_secs_f64(wait.min(86_400.0)),
            });
        }
        self.tokens -= 1.0;
        self.in_flight += 1;
        Ok(())
    }

    pub fn release(&mut self) {
        self.in_flight = self.in_flight.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: u64) -> Instant {
        Instant::from_nanos(1_000_000_000_000 + ms * 1_000_000)
    }

    #[test]
    fn concurrency_is_bounded() {
        let mut a = Admission::new(2, 1000.0, 100);
        assert!(a.admit(t(0)).is_ok());
        assert!(a.admit(t(0)).is_ok());
        assert_eq!(a.admit(t(0)), Err(Refusal::Busy { in_flight: 2 }));
        a.release();
        assert!(a.admit(t(0)).is_ok());
        assert_eq!(a.in_flight(), 2);
    }

    #[test]
    fn the_rate_allows_a_burst_then_refills() {
        let mut a = Admission::new(100, 10.0, 3);
        for _ in 0..3 {
            assert!(a.admit(t(0)).is_ok());
            a.release();
        }
        match a.admit(t(0)) {
            Err(Refusal::Rate { retry_after }) => {
                assert_eq!(retry_after, Duration::from_millis(100))
            }
            other => panic!("{other:?}"),
        }
        // 100 ms later, one token.
        assert!(a.admit(t(100)).is_ok());
        a.release();
        assert!(a.admit(t(100)).is_err());
        // A long pause refills to the burst, no more.
        let mut ok = 0;
        for _ in 0..10 {
            if a.admit(t(60_000)).is_ok() {
                ok += 1;
                a.release();
            }
        }
        assert_eq!(ok, 3);
    }

    #[test]
    fn a_flood_is_refused_at_the_rate() {
        let mut a = Admission::new(1000, 50.0, 10);
        let mut ok = 0;
        // 10 000 requests over 10 s (one a millisecond).
        for ms in 0..10_000 {
            if a.admit(t(ms)).is_ok() {
                ok += 1;
                a.release();
            }
        }
        assert!((500..=511).contains(&ok), "{ok}");
    }
}

//! How many lines the exporter writes on stderr about failed `/probe` requests: a token
//! bucket of lines, so an outage seen by every scrape, or a flood of requests for a dead
//! target, costs the log a few lines a minute, not one per request. What is held back is
//! counted, and the next line that goes out says how many were.

use crate::time::Instant;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct LogLimit {
    /// Lines a second, on average.
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Option<Instant>,
    held: u64,
}

impl LogLimit {
    /// At most `burst` lines at once, then one every `every`.
    pub fn new(burst: u32, every: Duration) -> LogLimit {
        let burst = f64::from(burst.max(1));
        let secs = every.as_secs_f64();
        LogLimit {
            rate: if secs > 0.0 {
                1.0 / secs
            } else {
                f64::INFINITY
            },
            burst,
            tokens: burst,
            last: None,
            held: 0,
        }
    }

    /// May a line go out now? `Some(n)`: yes, and `n` lines were held back since the last
    /// one that went out (say so on it); `None`: no, it is counted.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        if let Some(last) = self.last {
            let elapsed = now.saturating_since(last).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        }
        self.last = Some(now);
        if self.tokens < 1.0 {
            self.held += 1;
            return None;
        }
        self.tokens -= 1.0;
        Some(std::mem::take(&mut self.held))
    }

    /// Lines held back since the last one that went out (to be said at the end).
    pub fn held(&self) -> u64 {
        self.held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::from_nanos(1_700_000_000_000_000_000 + ms * 1_000_000)
    }

    #[test]
    fn a_burst_then_one_line_an_interval_and_the_rest_counted() {
        let mut l = LogLimit::new(3, Duration::from_secs(6));
        // A flood of 1 000 failures in one second: the burst goes out, the rest is held.
        let out: Vec<Option<u64>> = (0..1000).map(|i| l.allow(at(i))).collect();
        assert_eq!(out.iter().filter(|o| o.is_some()).count(), 3);
        assert_eq!(&out[..3], &[Some(0), Some(0), Some(0)]);
        assert_eq!(l.held(), 997);
        // Six seconds later one more line goes out and says how many it stands for.
        assert_eq!(l.allow(at(7_000)), Some(997));
        assert_eq!(l.held(), 0);
        assert_eq!(l.allow(at(7_001)), None);
        // Bounded over any stretch: a minute of a failure every millisecond writes the
        // burst and one line every six seconds.
        let mut l = LogLimit::new(3, Duration::from_secs(6));
        let lines = (0..60_000).filter(|&i| l.allow(at(i)).is_some()).count();
        assert_eq!(lines, 3 + 9);
    }

    #[test]
    fn quiet_times_refill_only_up_to_the_burst() {
        let mut l = LogLimit::new(2, Duration::from_secs(1));
        assert_eq!(l.allow(at(0)), Some(0));
        let lines = (0..10)
            .filter(|k| l.allow(at(3_600_000 + k)).is_some())
            .count();
        assert_eq!(lines, 2);
    }
}

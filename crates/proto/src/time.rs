//! Time as tcpshake sees it: nanoseconds on the kernel's `CLOCK_REALTIME`, the clock that
//! stamps packets on AF_PACKET sockets (and in tcpdump's captures). Pure code never reads a
//! clock; `net` hands it kernel timestamps and "now".

use std::fmt;
use std::ops::{Add, AddAssign, Sub};
use std::time::Duration;

/// A point in time: nanoseconds since the Unix epoch (`CLOCK_REALTIME`).
#[derive(Copy, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    pub const fn from_nanos(ns: u64) -> Self {
        Instant(ns)
    }

    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// `self - earlier`, or zero when `earlier` is later (kernel timestamps of two sockets
    /// may disagree by a few ns; a leg is never negative).
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// Signed difference in nanoseconds, `self - other`.
    pub fn signed_nanos_since(self, other: Instant) -> i64 {
        self.0.wrapping_sub(other.0) as i64
    }
}

/// A duration in whole nanoseconds, saturating at `u64::MAX` (584 years).
pub fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(nanos(d)))
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, d: Duration) {
        *self = *self + d;
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_since(earlier)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:09}",
            self.0 / 1_000_000_000,
            self.0 % 1_000_000_000
        )
    }
}

/// A duration as every option writes it: a number and a unit, `250ms`, `2s`, `1.5s`,
/// `500us`, `800ns`, `1m` or `1min` (a minute: `m` alone is never milli, which is `ms`),
/// `1h` (0 to 24h); or several, added up, as Prometheus and Go write them: `1h30m`,
/// `1m30s`. The unit is required everywhere: a bare `5` could mean seconds to one reader
/// and milliseconds to another.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let not_a_duration = || format!("`{s}` is not a duration; write e.g. 250ms, 2s, 1.5s");
    if s.is_empty() {
        return Err(not_a_duration());
    }
    let mut rest = s;
    let mut secs = 0.0;
    // The unit of the term before (none yet: infinite).
    let mut last_scale = f64::INFINITY;
    // Bounded: each turn takes a number and a unit off `rest`, or returns.
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(split);
        let value: f64 = num.parse().map_err(|_| not_a_duration())?;
        // A unit is letters (µ is one): `1h-30m` is not a duration, not a unit `h-`.
        let unit_len = after
            .find(|c: char| !c.is_alphabetic())
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let first = last_scale.is_infinite();
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            // Something that is no unit follows (`5 parsecs`, `1h-30m`).
            "" if !after.is_empty() => return Err(not_a_duration()),
            // Zero is no example to give: where a wait must be positive (trace's -w) the
            // suggested `0s` was refused next.
            "" if first && value == 0.0 => {
                return Err(format!(
                    "`{s}` has no unit; write e.g. 1s or 500ms (0s for none)"
                ));
            }
            "" if first => return Err(format!("`{s}` has no unit; write e.g. {s}s or {s}ms")),
            "" => {
                // The next unit down from the one before (`1h30` → `1h30m`).
                let next = match last_scale {
                    x if x >= 3600.0 => "m",
                    x if x >= 60.0 => "s",
                    x if x >= 1.0 => "ms",
                    x if x >= 1e-3 => "us",
                    _ => "ns",
                };
                return Err(format!(
                    "`{s}` has no unit after its {num}; write e.g. {s}{next}"
                ));
            }
            _ => {
                return Err(format!(
                    "`{unit}` is not a unit; use ns, us, ms, s, m (or min) or h"
                ));
            }
        };
        // Largest unit first, each once, as Prometheus reads them: `30m1h` and `1h1h` are
        // more likely slips than sums.
        if scale >= last_scale {
            return Err(format!(
                "`{s}`: write its units from the largest down, each once (e.g. 1h30m)"
            ));
        }
        last_scale = scale;
        secs += value * scale;
        rest = next;
    }
    if !secs.is_finite() || !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("`{s}` is out of range (0 to 24h)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A duration written so that [`parse_duration`] reads it back exactly: the largest unit
/// that divides it (`5s`, `250ms`, `1500us`, `0s`).
pub fn format_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    for (unit, size) in [
        ("h", 3_600_000_000_000),
        ("m", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
    ] {
        if ns.is_multiple_of(size) && (ns > 0 || unit == "s") {
            return format!("{}{unit}", ns / size);
        }
    }
    format!("{ns}ns")
}

/// A duration in ns as people read it: `41.2 µs`, `12.345 ms`, `1.234 s`: the statistics
/// table's form, and the SLO verdicts' beside it.
pub fn human_ns(ns: u64) -> String {
    HumanNs(ns).to_string()
}

/// [`human_ns`] without the allocation, for the statistics table (eight of them a leg, eight
/// legs a target: a survey of 40 960 targets writes 2.6 million). Widths and alignment
/// (`{:>10}`) apply to the whole text. Rounded half up from the exact count of ns, in
/// integers: the value is exact, and a float's division by 1e3 would break ties by its
/// representation error (1.25 µs → `1.2`, 1.05 µs → `1.1`).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct HumanNs(pub u64);

impl fmt::Display for HumanNs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0;
        // (units of the last digit shown, digits after the point, unit name)
        let (step, decimals, unit) = if ns < 1_000_000 {
            (100, 1, "µs")
        } else if ns < 1_000_000_000 {
            (1_000, 3, "ms")
        } else {
            (1_000_000, 3, "s")
        };
        // Half up without overflow near u64::MAX.
        let q = ns / step + u64::from(ns % step >= step / 2);
        let scale = 10u64.pow(decimals);
        let mut buf = Text::default();
        // Writing to `Text` fails only past its 32 bytes; the longest is 17 bytes
        // (`18446744073.710 s`).
        fmt::write(
            &mut buf,
            format_args!(
                "{}.{:0w$} {unit}",
                q / scale,
                q % scale,
                w = decimals as usize
            ),
        )?;
        f.pad(buf.as_str())
    }
}

/// A short text on the stack.
#[derive(Default)]
struct Text {
    bytes: [u8; 32],
    len: usize,
}

impl Text {
    fn as_str(&self) -> &str {
        // Only whole `&str`s are ever appended.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl fmt::Write for Text {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let room = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
        room.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations_round_half_up_from_whole_ns() {
        assert_eq!(human_ns(0), "0.0 µs");
        assert_eq!(human_ns(41_200), "41.2 µs");
        assert_eq!(human_ns(1_249), "1.2 µs");
        assert_eq!(human_ns(1_250), "1.3 µs");
        assert_eq!(human_ns(1_050), "1.1 µs");
        // 999.95 µs rounds to the µs form's 1000.0, as the float form did.
        assert_eq!(human_ns(999_950), "1000.0 µs");
        assert_eq!(human_ns(999_999), "1000.0 µs");
        assert_eq!(human_ns(1_000_000), "1.000 ms");
        assert_eq!(human_ns(12_345_678), "12.346 ms");
        assert_eq!(human_ns(12_345_499), "12.345 ms");
        assert_eq!(human_ns(1_234_000_000), "1.234 s");
        assert_eq!(human_ns(1_234_500_000), "1.235 s");
        assert_eq!(human_ns(u64::MAX), "18446744073.710 s");
        assert_eq!(format!("[{:>10}]", HumanNs(5_400)), "[    5.4 µs]");
        assert_eq!(format!("[{:<9}]", HumanNs(5_400)), "[5.4 µs   ]");
    }

    #[test]
    fn human_durations_match_the_float_form_away_from_ties() {
        // The float form this replaced, for every value whose last shown digit is not a
        // tie (a tie is where the two may differ, by design).
        let float = |ns: u64| {
            if ns < 1_000_000 {
                format!("{:.1} µs", ns as f64 / 1e3)
            } else if ns < 1_000_000_000 {
                format!("{:.3} ms", ns as f64 / 1e6)
            } else {
                format!("{:.3} s", ns as f64 / 1e9)
            }
        };
        let mut ns = 1u64;
        let mut checked = 0;
        while ns < 100_000_000_000 {
            for v in [ns, ns + 1, ns + 37, ns * 3 + 11] {
                let step = match v {
                    0..1_000_000 => 100,
                    1_000_000..1_000_000_000 => 1_000,
                    _ => 1_000_000,
                };
                if v % step != step / 2 {
                    assert_eq!(human_ns(v), float(v), "{v} ns");
                    checked += 1;
                }
            }
            ns = ns * 7 / 5 + 1;
        }
        assert!(checked > 150, "{checked}");
    }

    #[test]
    fn legs_never_go_negative() {
        let a = Instant::from_nanos(10);
        let b = Instant::from_nanos(7);
        assert_eq!(a - b, Duration::from_nanos(3));
        assert_eq!(b - a, Duration::ZERO);
        assert_eq!(b.signed_nanos_since(a), -3);
    }

    #[test]
    fn adding_huge_durations_saturates() {
        let t = Instant::from_nanos(u64::MAX - 1) + Duration::from_secs(u64::MAX);
        assert_eq!(t.as_nanos(), u64::MAX);
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("800ns").unwrap(), Duration::from_nanos(800));
        assert!(parse_duration("3").unwrap_err().contains("no unit"));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("1e9s").is_err());
    }

    /// Minutes and hours, as `--timeout 1h` or `-i 1min` read; `m` is a minute, never a
    /// millisecond; the range's own bound (`24h`) is accepted as written.
    #[test]
    fn minutes_and_hours() {
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("2min"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("2ms"), Ok(Duration::from_millis(2)));
        assert_eq!(parse_duration("24h"), Ok(Duration::from_secs(86_400)));
        let e = parse_duration("25h").unwrap_err();
        assert_eq!(e, "`25h` is out of range (0 to 24h)");
        let e = parse_duration("1d").unwrap_err();
        assert!(e.contains("ms, s, m (or min) or h"), "{e}");
        assert!(parse_duration("1M").is_err() && parse_duration("1mins").is_err());
    }

    /// Several terms add up, as Prometheus writes durations (`--timeout 1h30m` was refused
    /// with "`h30m` is not a unit"); each term needs its unit, largest first, each once.
    #[test]
    fn compound_durations_add_up() {
        for (text, want) in [
            ("30m1h", "write its units from the largest down, each once"),
            ("1h1h", "write its units from the largest down, each once"),
            ("1h-30m", "is not a duration"),
        ] {
            let e = parse_duration(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1s500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("23h60m"), Ok(Duration::from_secs(86_400)));
        assert_eq!(
            parse_duration("24h1s").unwrap_err(),
            "`24h1s` is out of range (0 to 24h)"
        );
        assert_eq!(
            parse_duration("1h30").unwrap_err(),
            "`1h30` has no unit after its 30; write e.g. 1h30m"
        );
        assert!(
            parse_duration("1h 30m")
                .unwrap_err()
                .contains("is not a duration")
        );
        assert!(
            parse_duration("")
                .unwrap_err()
                .contains("is not a duration")
        );
        assert!(
            parse_duration("h")
                .unwrap_err()
                .contains("is not a duration")
        );
    }

    #[test]
    fn formatted_durations_parse_back() {
        for (d, text) in [
            (Duration::from_secs(5), "5s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_micros(1500), "1500us"),
            (Duration::from_nanos(7), "7ns"),
            (Duration::ZERO, "0s"),
            (Duration::from_secs(120), "2m"),
            (Duration::from_secs(7200), "2h"),
        ] {
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_duration(text), Ok(d));
        }
    }
}

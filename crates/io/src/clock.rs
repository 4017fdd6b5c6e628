//! The user-space clock, on the same timeline as kernel packet timestamps. Used for
//! deadlines only; no reported time comes from here.

use tcpshake_proto::time::Instant;

/// `CLOCK_REALTIME` now.
pub fn now() -> Instant {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write into; CLOCK_REALTIME always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    Instant::from_nanos((ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64)
}

/// A kernel `timespec` (a timestamp cmsg, `SO_TIMESTAMPNS`) as an [`Instant`].
pub fn instant_of(ts: &libc::timespec) -> Instant {
    Instant::from_nanos(
        u64::try_from(ts.tv_sec)
            .unwrap_or(0)
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::try_from(ts.tv_nsec).unwrap_or(0)),
    )
}

/// A duration as a `timespec` (a `ppoll` timeout).
pub fn timespec(d: std::time::Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: libc::time_t::try_from(d.as_secs()).unwrap_or(libc::time_t::MAX),
        tv_nsec: libc::c_long::from(d.subsec_nanos() as i32),
    }
}

/// CPU time the calling thread has used (`CLOCK_THREAD_CPUTIME_ID`): how much of a
/// stretch of wall time it spent running rather than waiting or preempted.
pub fn thread_cpu() -> std::time::Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write into; the clock exists on every Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    std::time::Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// The calling thread's scheduler accounting (`/proc/thread-self/schedstat`): time it
/// ran on a CPU, and time it was ready to run but waited for one (preempted by other
/// work). `None` where the kernel does not keep it (no CONFIG_SCHED_INFO).
pub fn thread_sched() -> Option<(std::time::Duration, std::time::Duration)> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let mut f = s.split_ascii_whitespace().map(|x| x.parse::<u64>().ok());
    let (run, wait) = (f.next()??, f.next()??);
    Some((
        std::time::Duration::from_nanos(run),
        std::time::Duration::from_nanos(wait),
    ))
}

//! Ctrl-C and SIGTERM: the first one asks the run loop to stop (it resets open
//! connections and still reports); a second one kills the process as usual — unless it
//! comes within [`SAME_REQUEST`] of the first, when it is the same request sent twice:
//! coreutils `timeout` signals the process and then its whole process group, so a command
//! run under it gets its signal twice, microseconds apart, and with the handler reset by
//! the first (`SA_RESETHAND`, as before) the second killed it before it wrote anything
//! (2 runs of 10 under `timeout -s TERM`).

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::time::Duration;

static STOP: AtomicBool = AtomicBool::new(false);
/// The signal that set [`STOP`] (0: none yet).
static SIGNAL: AtomicI32 = AtomicI32::new(0);
/// When the first signal came, CLOCK_MONOTONIC in ns (0: none yet).
static FIRST_AT: AtomicU64 = AtomicU64::new(0);

/// A signal this soon after the first is the same request (a double key press is slower,
/// ~150 ms at its quickest; `timeout`'s two are microseconds apart).
pub const SAME_REQUEST: Duration = Duration::from_millis(100);

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write; clock_gettime is async-signal-safe
    // (POSIX.1-2008, signal-safety(7)).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

extern "C" fn on_signal(sig: libc::c_int) {
    // Atomics, clock_gettime, signal and raise only: all async-signal-safe.
    let now = monotonic_ns().max(1);
    // One first signal, even if SIGINT and SIGTERM come at once on two threads.
    match FIRST_AT.compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed) {
        Ok(_) => {
            SIGNAL.store(sig, Ordering::Relaxed);
            STOP.store(true, Ordering::Relaxed);
        }
        Err(first) if now.saturating_sub(first) >= SAME_REQUEST.as_nanos() as u64 => {
            // A second request: the default action, as a process without a handler. The
            // signal is blocked while its handler runs, so the raised one ends the process as
            // this handler returns, reported as killed by `sig`.
            // SAFETY: signal(2) and raise(3) are async-signal-safe.
            unsafe {
                libc::signal(sig, libc::SIG_DFL);
                libc::raise(sig);
            }
        }
        Err(_) => {}
    }
}

/// The signal (SIGINT, SIGTERM) that asked the run to stop, if one did.
pub fn stop_signal() -> Option<i32> {
    STOP.load(Ordering::Relaxed)
        .then(|| SIGNAL.load(Ordering::Relaxed))
}

/// Install the handlers and return the flag they set.
pub fn stop_flag() -> &'static AtomicBool {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: sigaction is plain data; zeroed is valid. The handler is async-signal-
        // safe (see `on_signal`).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
    &STOP
}

/// Makes a child process die (SIGKILL) with the thread that spawned it, even if that one
/// is SIGKILLed, so no peer or capture outlives a crashed run (`PR_SET_PDEATHSIG`;
/// `ip netns exec` keeps the setting across its exec).
pub fn die_with_parent(cmd: &mut std::process::Command) -> &mut std::process::Command {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and only calls prctl(2), which is
    // async-signal-safe; it touches no memory shared with the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

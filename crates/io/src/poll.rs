//! Waiting for file descriptors, written once: `ppoll(2)` with a nanosecond timeout, and
//! the timer slack that decides how late a sleep may wake.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

/// The most descriptors one call waits on (a survey's taps, a bridge's two ports).
const MAX_FDS: usize = 16;

/// Sleeps until one of `fds` is readable or `timeout` passes; returns how many are
/// readable (0 on timeout). A signal ends the wait early and counts as a timeout, so
/// callers re-check their stop flags.
pub fn wait_readable(fds: &[BorrowedFd<'_>], timeout: Duration) -> io::Result<usize> {
    let mut pfds = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; MAX_FDS];
    let n = fds.len().min(MAX_FDS);
    for (p, fd) in pfds.iter_mut().zip(fds) {
        p.fd = fd.as_raw_fd();
        p.events = libc::POLLIN;
    }
    let ts = crate::clock::timespec(timeout);
    // SAFETY: `pfds[..n]` are valid pollfds whose fds are borrowed for the call, `ts` is a
    // valid timespec; a null sigmask keeps the current one.
    let rc = unsafe { libc::ppoll(pfds.as_mut_ptr(), n as libc::nfds_t, &ts, std::ptr::null()) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        return if e.kind() == io::ErrorKind::Interrupted {
            Ok(0)
        } else {
            Err(e)
        };
    }
    Ok(rc as usize)
}

/// Lets this thread's sleeps end within `slack` of their deadline (the default 50 µs is
/// too coarse for the link emulator's delays). Failure only costs precision.
pub fn set_timer_slack(slack: Duration) {
    let ns = libc::c_ulong::try_from(slack.as_nanos())
        .unwrap_or(libc::c_ulong::MAX)
        .max(1);
    // SAFETY: prctl(PR_SET_TIMERSLACK) takes an integer argument and touches no memory.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, ns) };
}

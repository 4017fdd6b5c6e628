//! Waiting for file descriptors, written once: `ppoll(2)` with a nanosecond timeout, and
//! the timer slack that decides how late a sleep may wake.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

/// Sleeps until one of `fds` is readable or `timeout` passes (`None`: no limit); returns
/// how many are readable (0 on timeout). A signal ends the wait early and counts as a
/// timeout, so callers re-check their stop flags. The timeout has nanosecond resolution
/// (`ppoll(2)`), so a 100 µs deadline is not rounded up to poll(2)'s 1 ms.
pub fn wait_readable(fds: &[BorrowedFd<'_>], timeout: Option<Duration>) -> io::Result<usize> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ts = timeout.map(crate::clock::timespec);
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `pfds` holds `pfds.len()` valid pollfds whose fds are borrowed for the call;
    // `ts_ptr` is null or points at `ts`, alive for the call; a null sigmask keeps ours.
    let rc = unsafe {
        libc::ppoll(
            pfds.as_mut_ptr(),
            pfds.len() as libc::nfds_t,
            ts_ptr,
            std::ptr::null(),
        )
    };
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

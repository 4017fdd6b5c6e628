//! tcpshake's I/O layer: the only crate that touches sockets, clocks and the firewall, and
//! the only one with `unsafe` (every block carries a `// SAFETY:` line). It runs the pure
//! machines of `tcpshake_proto` against the network. See ARCHITECTURE.md.

#![deny(clippy::undocumented_unsafe_blocks)]

mod bpf;
pub mod clock;
mod cmsg;
pub mod ebpf;
pub mod frames;
pub mod guard;
pub mod httpd;
pub mod link;
pub mod neighbour;
pub mod netlink;
pub mod netns;
mod packet;
pub mod poll;
pub mod ports;
pub mod random;
pub mod reflex;
pub mod resolve;
pub mod route;
pub mod run;
pub mod scan;
pub mod sender;
pub mod signals;
mod stamps;
pub mod survey;
pub mod tap;
mod tapqueue;
pub mod teardown;
pub mod trace;

use std::fmt;
use std::io;

/// The host cannot do what we need (privileges, kernel features). Exit code 3.
#[derive(Debug)]
pub struct EnvironmentError(pub String);

impl fmt::Display for EnvironmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EnvironmentError {}

/// `setsockopt(2)` with a value of type `T` (a c_int, a struct the kernel expects).
pub fn set_sockopt<T>(
    fd: &impl std::os::fd::AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &T,
) -> io::Result<()> {
    // SAFETY: `value` points at a live T for the duration of the call and we pass its
    // exact size; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Is `e` (or anything it wraps, or any context on it) an [`EnvironmentError`]?
pub fn is_environment_error(e: &anyhow::Error) -> bool {
    e.downcast_ref::<EnvironmentError>().is_some() || e.chain().any(|c| c.is::<EnvironmentError>())
}

/// Turn EPERM/EACCES into advice; other errors keep their cause.
pub fn privilege_error(e: io::Error, what: &str) -> anyhow::Error {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            let exe = std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "tcpshake".into());
            EnvironmentError(format!(
                "cannot {what}: permission denied. tcpshake needs CAP_NET_RAW and CAP_NET_ADMIN: \
                 run it with sudo, or grant them once with `sudo setcap cap_net_raw,cap_net_admin+ep {exe}`"
            ))
            .into()
        }
        _ => anyhow::Error::new(e).context(format!("cannot {what}")),
    }
}

/// Fault in and lock every page mapped now (our code, the buffers already allocated), so
/// the first time the run loop touches a code path after a SYN-ACK arrives it does not
/// wait for the page cache: page faults are microseconds, the whole reaction budget.
/// Failure (no CAP_IPC_LOCK, RLIMIT_MEMLOCK) only costs speed, so it is ignored.
pub fn lock_memory() {
    // SAFETY: mlockall has no memory-safety preconditions.
    unsafe {
        libc::mlockall(libc::MCL_CURRENT);
    }
}

/// While it lives, the calling thread runs at the lowest real-time priority
/// (`SCHED_FIFO` 1), so that no ordinary task — tcpdump waking up for the very SYN-ACK we
/// are waiting for, say — preempts our run loop between a segment's arrival and our
/// answer. Measured here with tcpdump capturing: SYN-ACK→ACK 55 µs without, 12 µs with.
/// Held only while waiting for a SYN-ACK (which no task of the peer's has to make); the
/// loop spins at it for at most 100 µs after each segment it sends, then sleeps until a
/// packet wakes it (`probe::spin`), so no other task waits longer than that for this CPU.
/// Only on
/// machines with at least two CPUs, so the peer and the capture still have one; without
/// CAP_SYS_NICE it silently does nothing.
pub struct Realtime {
    active: bool,
}

impl Realtime {
    pub fn enter() -> Realtime {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        if cpus < 2 {
            return Realtime { active: false };
        }
        Realtime {
            active: set_realtime(),
        }
    }

    /// Whether spinning is worth it: we hold a CPU of our own.
    pub fn active(&self) -> bool {
        self.active
    }
}

impl Drop for Realtime {
    fn drop(&mut self) {
        if self.active {
            set_ordinary();
        }
    }
}

/// Back to the default policy (`SCHED_OTHER`).
fn set_ordinary() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param for the call; pid 0 is the calling thread.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_OTHER, &param) };
}

/// Puts the calling thread in `SCHED_FIFO` at the lowest real-time priority (1). False
/// when the kernel refuses (no CAP_SYS_NICE, RT throttling).
pub fn set_realtime() -> bool {
    set_fifo(1)
}

/// Puts the calling thread in `SCHED_FIFO` one priority above [`set_realtime`]'s (2), for
/// the lab's link emulator: a tool under test spinning at priority 1 (up to 100 µs per
/// segment, see [`Realtime`]) must not hold back the frames it is being measured through,
/// and `SCHED_FIFO` does not preempt within one priority. False when the kernel refuses.
pub fn set_realtime_above_tool() -> bool {
    set_fifo(2)
}

fn set_fifo(priority: libc::c_int) -> bool {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: `param` is a valid sched_param for the call; pid 0 is the calling thread.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) == 0 }
}

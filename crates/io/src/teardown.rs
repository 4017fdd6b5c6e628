//! The kernel's last waits, after our exit.
//!
//! Closing an AF_PACKET socket waits out an RCU grace period (`packet_release`:
//! `synchronize_net`, and one more per ring), and so does closing the guard's netlink
//! socket after its table was deleted (the table's destroy work): 12–35 ms here, at the end
//! of every command, after its output is written — a fifth of a full-port scan's wall time.
//! Nothing of the command depends on that wait: the kernel only frees memory.
//!
//! So a one-shot command (`probe`, `scan`, `survey`, `trace`) [`arm`]s this module; what it
//! would close last ([`keep`], [`close_together`]) is kept instead, and at its very end
//! [`finish`] registers those sockets as the fixed files of an io_uring that is never used
//! otherwise. Then our own references go — the guard's table is deleted by a transaction
//! here, before we exit, so no rule of ours outlives the process — and the process exits:
//! the ring's release is queued to a kernel worker (`io_ring_exit_work`), which drops the
//! last references to the sockets and waits out their grace periods, not the caller's
//! `wait`. Until then (tens of milliseconds) the sockets only receive copies nobody reads.
//! No process outlives us (a forked child holding the sockets did the same, but left a
//! zombie wherever the init process reaps late).
//!
//! Without io_uring (kernel older than 5.1, `kernel.io_uring_disabled`, a seccomp profile
//! that refuses it) the sockets close here, together, as before. A long-running command
//! (the exporter) does not arm: what it closes closes.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

static ARMED: AtomicBool = AtomicBool::new(false);
static KEPT: Mutex<Vec<Box<dyn Send>>> = Mutex::new(Vec::new());
/// At most this many objects wait for the end; more close at once (a command that opens
/// and closes taps as it goes cannot pile up sockets this way).
const MAX_KEPT: usize = 32;

/// Keep what this command closes last until [`finish`].
pub fn arm() {
    ARMED.store(true, Ordering::Relaxed);
}

/// Keep `item` for [`finish`] when armed and there is room; otherwise it comes back for the
/// caller to close.
pub fn keep(item: Box<dyn Send>) -> Option<Box<dyn Send>> {
    if !ARMED.load(Ordering::Relaxed) {
        return Some(item);
    }
    let mut kept = KEPT.lock().unwrap_or_else(PoisonError::into_inner);
    if kept.len() >= MAX_KEPT {
        return Some(item);
    }
    kept.push(item);
    None
}

/// Close `items` together: kept for [`finish`] when armed, else each on a thread of its
/// own, waited for (their grace periods overlap: five sockets one after the other took
/// 75 ms here, at once about one period).
pub fn close_together(items: Vec<Box<dyn Send>>) {
    let rest: Vec<Box<dyn Send>> = items.into_iter().filter_map(keep).collect();
    std::thread::scope(|s| {
        for item in rest {
            s.spawn(move || drop(item));
        }
    });
}

/// The command is over and its output written: hand the kept sockets to the kernel to
/// close after we exit, drop ours, return. Call once, last.
pub fn finish() {
    ARMED.store(false, Ordering::Relaxed);
    let kept = std::mem::take(&mut *KEPT.lock().unwrap_or_else(PoisonError::into_inner));
    if kept.is_empty() {
        return;
    }
    let slow: Vec<RawFd> = open_fds()
        .into_iter()
        .filter(|&fd| slow_to_close(fd))
        .collect();
    if slow.is_empty() || !hand_over(&slow) {
        // Closed here, then, together (no longer armed: nothing is kept).
        close_together(kept);
        return;
    }
    // The ring holds the slow sockets: these drops only delete the guard's table and
    // release our references.
    drop(kept);
}

/// Register `slow` as the fixed files of a new io_uring that is never used otherwise and
/// stays open until we exit: its release at exit is queued to a kernel worker, which drops
/// the last references to those sockets, so their grace periods are waited out there.
/// False when the kernel has no io_uring for us (older than 5.1, disabled by
/// `kernel.io_uring_disabled` or a seccomp profile).
fn hand_over(slow: &[RawFd]) -> bool {
    // struct io_uring_params: 120 bytes, all zero asks for the defaults.
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup(2) with one entry and a zeroed params struct of the size the
    // kernel reads and writes.
    let ring = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    let Ok(ring) = RawFd::try_from(ring) else {
        return false;
    };
    if ring < 0 {
        return false;
    }
    let n = u32::try_from(slow.len()).unwrap_or(u32::MAX);
    // SAFETY: IORING_REGISTER_FILES reads `n` descriptors from `slow`, alive for the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            ring,
            IORING_REGISTER_FILES,
            slow.as_ptr(),
            n,
        )
    };
    if rc != 0 {
        // SAFETY: our own descriptor, not used after this.
        unsafe { libc::close(ring) };
        return false;
    }
    // The ring stays open until the process exits (it is O_CLOEXEC by default).
    true
}

const IORING_REGISTER_FILES: libc::c_uint = 2;

/// The descriptors open in this process.
fn open_fds() -> Vec<RawFd> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        // Without /proc nothing is handed over: everything closes here.
        return Vec::new();
    };
    let mut fds: Vec<RawFd> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    fds
}

/// An AF_PACKET socket, or a netfilter netlink socket (the guard's): the ones whose close
/// waits for RCU; and a BPF link (the survey's kernel program, reflex.rs: detaching it
/// from an interface waits out a grace period too).
fn slow_to_close(fd: RawFd) -> bool {
    if std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .is_ok_and(|p| p.as_os_str() == "anon_inode:bpf_link")
    {
        return true;
    }
    let get = |opt| {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `v` and `len` are live and sized for an int, as SO_DOMAIN and SO_PROTOCOL
        // return; a descriptor that is not a socket fails with ENOTSOCK.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&mut v as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        (rc == 0).then_some(v)
    };
    match get(libc::SO_DOMAIN) {
        Some(libc::AF_PACKET) => true,
        Some(libc::AF_NETLINK) => get(libc::SO_PROTOCOL) == Some(libc::NETLINK_NETFILTER),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn only_sockets_whose_close_waits_for_rcu_are_slow() {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").expect("a UDP socket");
        assert!(!slow_to_close(udp.as_raw_fd()));
        let file = std::fs::File::open("/proc/self/stat").expect("a file");
        assert!(!slow_to_close(file.as_raw_fd()));
        let netlink = |protocol| {
            socket2::Socket::new(
                socket2::Domain::from(libc::AF_NETLINK),
                socket2::Type::RAW,
                Some(socket2::Protocol::from(protocol)),
            )
            .expect("a netlink socket")
        };
        let route = netlink(libc::NETLINK_ROUTE);
        assert!(!slow_to_close(route.as_raw_fd()));
        let netfilter = netlink(libc::NETLINK_NETFILTER);
        assert!(slow_to_close(netfilter.as_raw_fd()));
        let open = open_fds();
        assert!(open.contains(&udp.as_raw_fd()) && open.contains(&netfilter.as_raw_fd()));
    }

    #[test]
    fn unarmed_keeps_nothing() {
        let back = keep(Box::new(7u8));
        assert!(back.is_some());
    }
}

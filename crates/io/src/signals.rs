//! Ctrl-C and SIGTERM: the first one asks the run loop to stop (it resets open
//! connections and still reports); a second one kills the process as usual.

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    STOP.store(true, Ordering::Relaxed);
}

/// Install the handlers and return the flag they set.
pub fn stop_flag() -> &'static AtomicBool {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: sigaction is plain data; zeroed is valid. The handler only stores to an
        // atomic, which is async-signal-safe; SA_RESETHAND restores the default action so a
        // second signal terminates the process.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            sa.sa_flags = libc::SA_RESETHAND;
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

/// Random bytes from the kernel's CSPRNG (for ISNs, RFC 9293 §3.4.1 / RFC 6528), drawn 256
/// bytes at a time: a survey needs two per probe, and a system call each was 1.5% of its
/// time.
pub fn random_u32() -> u32 {
    use std::cell::RefCell;
    thread_local! {
        static POOL: RefCell<([u8; 256], usize)> = const { RefCell::new(([0; 256], 256)) };
    }
    POOL.with_borrow_mut(|(bytes, used)| {
        if *used + 4 > bytes.len() {
            if getrandom::fill(bytes).is_err() {
                // getrandom(2) only fails on pre-3.17 kernels without /dev/urandom
                // fallback; mix the clock so the ISN is at least not constant.
                return super::clock::now().as_nanos() as u32 ^ std::process::id().rotate_left(16);
            }
            *used = 0;
        }
        let b = [
            bytes[*used],
            bytes[*used + 1],
            bytes[*used + 2],
            bytes[*used + 3],
        ];
        // Each value is handed out once.
        bytes[*used..*used + 4].fill(0);
        *used += 4;
        u32::from_ne_bytes(b)
    })
}

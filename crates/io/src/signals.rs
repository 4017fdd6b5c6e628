//! Ctrl-C and SIGTERM: the first one asks the run loop to stop (it resets open
//! connections and still reports); a second one kills the process as usual.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);
/// The signal that set [`STOP`] (0: none yet).
static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    // Only atomic stores: async-signal-safe.
    SIGNAL.store(sig, Ordering::Relaxed);
    STOP.store(true, Ordering::Relaxed);
}

/// The signal (SIGINT, SIGTERM) that asked the run to stop, if one did.
pub fn stop_signal() -> Option<i32> {
    STOP.load(Ordering::Relaxed)
        .then(|| SIGNAL.load(Ordering::Relaxed))
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

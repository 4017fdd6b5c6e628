//! Random numbers for what must not be guessable: ISNs (RFC 9293 §3.4.1, RFC 6528),
//! timestamp offsets (RFC 7323 §5.4), the scan's cookie key, the survey's first port.

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

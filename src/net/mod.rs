//! The only layer that touches sockets, clocks and the firewall. Every `unsafe` block
//! carries a `// SAFETY:` line.
#![allow(unsafe_code)]

pub mod clock;
pub mod guard;
pub mod labpeer;
pub mod linkem;
pub mod netlink;
pub mod netns;
pub mod resolve;
pub mod route;
pub mod run;
pub mod sender;
pub mod signals;
pub mod tap;

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

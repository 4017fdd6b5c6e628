//! tcpshake's protocol layer: everything that decides, nothing that does I/O.
//!
//! `wire` (packet formats) ← `tcp` (one client connection, RFC 9293) ← `probe` (one probe,
//! scans, surveys, port verdicts, the record schema). Time enters as [`time::Instant`]
//! values handed in by the I/O layer (kernel timestamps); nothing here reads a clock,
//! touches a socket or picks a random number. See ARCHITECTURE.md.

#![forbid(unsafe_code)]

pub mod monitor;
pub mod probe;
pub mod tcp;
pub mod time;
pub mod trace;
pub mod wire;

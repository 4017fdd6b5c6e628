//! Packet formats: Ethernet, ARP, IPv4, IPv6, TCP (with options), ICMP/ICMPv6 errors,
//! Neighbor Discovery's solicitations and advertisements, HTTP responses.
//!
//! # The no-panic contract
//! Every `parse` checks lengths before it touches a field; after a successful length check
//! no accessor may panic, whatever the bytes are. Bytes off the network never reach pnet's
//! accessors unchecked (pnet's `new()` checks only the fixed header). Odd but well-formed
//! packets (SYN|FIN, unknown options) parse fine and are reported by the layers above;
//! broken ones give a typed [`Error`]. This module reads no clock and allocates nothing per
//! packet (only [`http`] allocates, once per response head, and [`defrag`], for fragments
//! alone: whole packets pass it untouched).
//!
//! The contract is tested in `fuzz.rs`: arbitrary bytes into every entry point, and every
//! single-byte mutation, truncation and extension of real Linux packets.

pub mod arp;
pub mod checksum;
pub mod defrag;
pub mod ethernet;
pub mod http;
pub mod icmp;
pub mod ip;
pub mod ndp;
pub mod options;
pub mod quote;
pub mod seq;
pub mod tcp;

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod testdata;

pub use icmp::{IcmpError, IcmpKind};
pub use ip::{IpPacket, IpRepr};
pub use seq::SeqNumber;
pub use tcp::{TcpFlags, TcpOptions, TcpRepr};

use std::fmt;

/// Why bytes could not be parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Fewer bytes than the header (or a length field) says there are.
    Truncated,
    /// A length or offset field that cannot be right (IHL < 5, data offset < 5, …).
    BadLength,
    /// Not IPv4/IPv6, or not the protocol asked for.
    Unsupported,
    /// The checksum does not match.
    BadChecksum,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => f.write_str("truncated packet"),
            Error::BadLength => f.write_str("impossible length field"),
            Error::Unsupported => f.write_str("unsupported protocol"),
            Error::BadChecksum => f.write_str("bad checksum"),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

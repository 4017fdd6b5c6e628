//! The only layer that touches sockets, clocks and the firewall. Every `unsafe` block
//! carries a `// SAFETY:` line.
#![allow(unsafe_code)]

pub mod guard;
pub mod labpeer;
pub mod netlink;
pub mod netns;
pub mod route;

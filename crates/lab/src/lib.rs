//! The lab: throwaway network namespaces with a built-in HTTP peer (`tcpshake lab`), and
//! the user-space link emulator the tests put between client and server.

#![forbid(unsafe_code)]

pub mod labnet;
pub mod labpeer;
pub mod linkem;
pub mod linkem_io;

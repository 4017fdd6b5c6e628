//! tcpshake: a user-space TCP client that crafts, times and explains every segment.
//!
//! Layers (see ARCHITECTURE.md): `wire` ← `tcp` ← `probe` ← `net`; `report` formats;
//! `cli` validates. Only `net` does I/O and only `net` may use `unsafe`.

#![deny(unsafe_code)]

pub mod app;
pub mod cli;
pub mod linkem;
pub mod net;
pub mod probe;
pub mod report;
pub mod survey;
pub mod tcp;
pub mod time;
pub mod wire;

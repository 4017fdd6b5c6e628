//! The `tcpshake` binary's library half: the command line, the commands, the output
//! formats. The protocol (`tcpshake_proto`) and the I/O layer (`tcpshake_io`) are crates
//! of their own; see ARCHITECTURE.md.

#![forbid(unsafe_code)]

pub mod app;
pub mod cli;
pub mod config;
pub mod report;

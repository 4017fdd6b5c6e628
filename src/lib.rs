//! The `tcpshake` binary's library half: the command line as typed ([`cli`]), one
//! validated configuration per command with every default in one place ([`config`]), the
//! commands and their one exit-code table ([`app`], [`app::exit`]), the output formats
//! ([`report`]). The protocol (`tcpshake_proto`) and the I/O layer (`tcpshake_io`) are crates
//! of their own; see ARCHITECTURE.md.

#![forbid(unsafe_code)]

pub mod app;
pub mod cli;
pub mod config;
pub mod report;

//! The `tcpshake` binary's library half: the command line as typed ([`cli`]), one
//! validated configuration per command with every default in one place ([`config`]), the
//! commands and their one exit-code table ([`app`], [`app::exit`]), the output formats
//! ([`report`]). The protocol (`tcpshake_proto`) and the I/O layer (`tcpshake_io`) are crates
//! of their own; see ARCHITECTURE.md.

#![forbid(unsafe_code)]

/// `std`'s `eprintln!` panics when stderr cannot be written (`2>/dev/full`): a scan then
/// ended with exit 101 and no `-oX` (a walk). A message that cannot be said is lost; the
/// command goes on and exits as it would have. Defined before the modules, so it is the
/// `eprintln!` they see.
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// As [`eprintln!`], without the newline.
#[allow(unused_macros)]
macro_rules! eprint {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($arg)*);
    }};
}

pub mod app;
pub mod cli;
pub mod config;
pub mod report;

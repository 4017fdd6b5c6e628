//! The integration tests, one binary (after ripgrep's `tests/`): each module drives the
//! real `tcpshake` binary against real peers in throwaway network namespaces (`lab`, shared
//! with the conformance suite in `tests/conformance/`).
//!
//! A test that needs root (namespaces, nftables, raw sockets) is written `lab_test! { fn
//! name() { … } }`: it is `#[ignore = "needs root…"]`, so a plain `cargo test` lists it as
//! ignored instead of passing it by returning early, and it fails loudly when run without
//! root. `scripts/test` (and CI) run them all as root with `--run-ignored all`.

#[macro_use]
mod macros;
#[path = "../lab/mod.rs"]
mod lab;

mod burst;
mod cli;
mod exporter;
mod faults;
mod fragments;
mod icmp;
mod probe;
mod scan;
mod scan_link;
mod survey;
mod tls;
mod trace;

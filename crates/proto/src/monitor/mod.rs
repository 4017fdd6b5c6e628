//! `tcpshake exporter`, decided without I/O: what a Prometheus exporter built on tcpshake's
//! probes must decide, in pure code tested in virtual time.
//!
//! - [`config`]: the configuration file (TOML), validated once at start; every refusal
//!   names the file's line.
//! - [`allow`]: which targets `GET /probe` may reach (CIDR blocks, and names that must
//!   also resolve into them), so the exporter cannot be turned into a scanner.
//! - [`schedule`]: the continuous surveys: which target is due when, never two probes of
//!   one target at once.
//! - [`admission`]: bounded concurrency and request rate for `/probe`.
//! - [`loglimit`]: how many lines failed `/probe` requests may write on stderr.
//! - [`query`]: the HTTP request head and `/probe`'s query string: anything malformed is a
//!   400 with a reason, never a panic.
//! - [`samples`]: one probe's record as metric samples (`/probe`'s answer, the InfluxDB
//!   line protocol), and the buckets of the survey histograms.
//!
//! The exporter's I/O (HTTP server, the survey loop, signals) is `tcpshake-io`'s; the
//! OpenMetrics encoding (prometheus-client) is the binary's.

pub mod admission;
pub mod allow;
pub mod config;
pub mod loglimit;
pub mod query;
pub mod samples;
pub mod schedule;

#[cfg(test)]
mod review15;

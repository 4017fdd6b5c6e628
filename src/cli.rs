//! Command-line definitions (clap) and their validation into plain values.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "tcpshake",
    version,
    about = "A hand-made TCP client: every segment visible, every leg timed on the wire",
    after_help = "Exit codes: 0 every probe reached `open` (and its HTTP exchange worked), \
1 some port not open or an exchange failed, 2 usage, 3 environment (privileges, kernel)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Connect by hand, send HTTP HEAD, close; show and time every segment.
    Probe(ProbeArgs),
    /// Build a throwaway network namespace with a built-in HTTP peer, probe it, tear it down.
    Lab(LabArgs),
}

#[derive(Args, Debug, Clone)]
pub struct ProbeArgs {
    /// HOST:PORT, [V6ADDR]:PORT, HOST with -p, or http://HOST[:PORT]/PATH
    #[arg(required = true, value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Port for targets that do not name one.
    #[arg(short = 'p', long = "port", value_name = "PORT")]
    pub port: Option<u16>,
    /// Use IPv4 only (for host names).
    #[arg(short = '4', conflicts_with = "ipv6")]
    pub ipv4: bool,
    /// Use IPv6 only (for host names).
    #[arg(short = '6')]
    pub ipv6: bool,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// Request path for HEAD (a URL target's path wins).
    #[arg(long, default_value = "/", value_name = "PATH")]
    pub path: String,
    /// Host: header value (default: the name or address as given).
    #[arg(long, value_name = "HOST")]
    pub host_header: Option<String>,
    /// Handshake and close only; no HTTP request.
    #[arg(long)]
    pub no_http: bool,
    /// One JSON object per probe on stdout (schema in README.md).
    #[arg(long)]
    pub json: bool,
    /// Write every segment sent and received, with kernel timestamps, to a pcap file.
    #[arg(long, value_name = "FILE")]
    pub pcap: Option<PathBuf>,
    /// How long to wait for the server after the handshake (response, each close step).
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DUR")]
    pub timeout: Duration,
    /// SYN retransmissions before calling the port filtered.
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub retries: u32,
    /// Initial retransmission timeout (RFC 6298 §2.1: 1s).
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DUR")]
    pub rto: Duration,
    /// How long TIME-WAIT lasts (a retransmitted FIN is ACKed again meanwhile).
    #[arg(long, default_value = "250ms", value_parser = parse_duration, value_name = "DUR")]
    pub time_wait: Duration,
    /// After the response, how long to wait for the server to close first.
    #[arg(long, default_value = "200ms", value_parser = parse_duration, value_name = "DUR")]
    pub linger: Duration,
    /// Our initial sequence number, for tests (e.g. near 2^32 to cross the wrap); random
    /// otherwise (RFC 6528). Hidden: a fixed ISN is for labs only.
    #[arg(long, hide = true, value_name = "N")]
    pub isn: Option<u32>,
}

#[derive(Args, Debug, Clone)]
pub struct LabArgs {
    #[command(flatten)]
    pub common: CommonArgs,
}

/// `250ms`, `2s`, `1.5s`, `500us`, `1m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration; write e.g. 250ms, 2s, 1.5s"))?;
    let scale = match unit {
        "ns" => 1e-9,
        "us" | "µs" => 1e-6,
        "ms" => 1e-3,
        "s" | "" => 1.0,
        "m" => 60.0,
        _ => return Err(format!("`{unit}` is not a unit; use ns, us, ms, s or m")),
    };
    let secs = value * scale;
    if !secs.is_finite() || !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("`{s}` is out of range (0 to 24h)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("1e9s").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }
}

//! The commands: each runs a validated [`Config`], prints its results and says how it
//! ended ([`exit::Exit`]); `main` maps that, or an error, to the exit code — the same way
//! for every command.

pub mod exit;
mod exporter;
mod generate;
mod lab;
mod manmd;
mod probe;
mod report;
mod scan;
mod survey;
mod targets;
mod trace;

use crate::config::{Config, Exchange, Refused, TlsOptions, defaults};
use crate::report::capture::{CaptureFiles, KeyLogs, SessionKeys};
use crate::report::pcap::PcapWriter;
use crate::report::pcapng::PcapngWriter;
use anyhow::{Context, Result};
use exit::{Exit, UsageError};
use rustls::RootCertStore;
use rustls::pki_types::ServerName;
use std::io::{self, IsTerminal};
use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::sync::Arc;
use tcpshake_io::run::Capture;
use tcpshake_io::{random, signals, teardown};
use tcpshake_proto::probe::HttpRequest;
use tcpshake_proto::probe::target::{Host, Target};
use tcpshake_proto::probe::tls::TlsSetup;
use tcpshake_proto::tcp;
use tcpshake_proto::wire::SeqNumber;

pub fn main() -> ExitCode {
    let config = match Config::parse_from(std::env::args_os()) {
        Ok(c) => c,
        Err(Refused::Clap(e)) if e.use_stderr() => {
            // A mistake on the command line: said like every other refusal, after our name
            // (clap says `error:`), its usage line and hint kept.
            eprint!("{}", tcpshake_prefixed(&e.render().to_string()));
            return ExitCode::from(Exit::Usage.code());
        }
        Err(Refused::Clap(e)) => {
            // --help, --version: what was asked for, on stdout.
            let _ = e.print();
            return ExitCode::from(Exit::Ok.code());
        }
        Err(Refused::Usage(e)) => {
            eprintln!("tcpshake: {e}");
            return ExitCode::from(Exit::Usage.code());
        }
    };
    // A daemon's normal end is SIGTERM: the exporter exits 0 on it.
    let daemon = matches!(config, Config::Exporter(_));
    // A one-shot command's last sockets close after it exits (teardown.rs).
    if matches!(
        config,
        Config::Probe(_) | Config::Scan(_) | Config::Survey(_) | Config::Trace(_)
    ) {
        teardown::arm();
    }
    let exit = match run(config) {
        Ok(exit) => exit,
        Err(e) if exit::is_broken_pipe(&e) => Exit::Ok,
        Err(e) => {
            eprintln!("tcpshake: {}", exit::describe(&e));
            exit::classify(&e)
        }
    };
    // Ctrl-C or SIGTERM: the command cleared its live display, finished what it could and
    // wrote it; one line says why it stopped early, in every command.
    let exit = match signals::stop_signal() {
        Some(sig) if daemon && Exit::stopped_by(sig) == Exit::Terminated => {
            eprintln!("tcpshake: exporter stopped (SIGTERM); probes in flight were reset");
            exit
        }
        Some(sig) => {
            let stopped = Exit::stopped_by(sig);
            let by = if stopped == Exit::Terminated {
                "SIGTERM"
            } else {
                "Ctrl-C"
            };
            eprintln!("tcpshake: interrupted ({by}); what finished before was written");
            exit.and(stopped)
        }
        None => exit,
    };
    teardown::finish();
    ExitCode::from(exit.code())
}

fn run(config: Config) -> Result<Exit> {
    match config {
        Config::Probe(c) => probe::run(&c),
        Config::Survey(c) => survey::run(&c),
        Config::Lab(c) => lab::run(&c),
        Config::Scan(c) => scan::run(&c),
        Config::Report(c) => report::run(&c),
        Config::Trace(c) => trace::run(&c),
        Config::Exporter(c) => exporter::run(&c),
        Config::Generate(g) => generate::run(&g),
    }
}

/// Standard output for a command that also writes files of its own (`scan -oX FILE`,
/// `--pcap FILE`): when its reader goes (`tcpshake … | head`) the command would stop
/// quietly with 0, as every command does, and its files were left empty or cut short
/// (a walk: `scan … -oX out.xml | head -1` left no `out.xml`). With `outlive_reader`, a
/// closed pipe ends only what goes to stdout: the rest of the output is dropped and the
/// command runs to its end, so the files are whole. Without it, the write fails as before.
pub(super) struct Stdout {
    outlive_reader: bool,
    closed: bool,
}

impl Stdout {
    pub(super) fn new(outlive_reader: bool) -> Stdout {
        Stdout {
            outlive_reader,
            closed: false,
        }
    }

    fn closed_pipe<T>(&mut self, r: io::Result<T>, or: T) -> io::Result<T> {
        match r {
            Err(e) if self.outlive_reader && e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(or)
            }
            r => r,
        }
    }
}

impl io::Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.closed {
            return Ok(buf.len());
        }
        let r = io::Write::write(&mut io::stdout(), buf);
        self.closed_pipe(r, buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        let r = io::Write::flush(&mut io::stdout());
        self.closed_pipe(r, ())
    }
}

/// Whether stdout may be coloured: a terminal that understands escapes (not `TERM=dumb`),
/// and no `NO_COLOR` (no-color.org).
fn colour_stdout() -> bool {
    io::stdout().is_terminal()
        && capable_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Whether a live display (progress bar, running percentiles) may be drawn on stderr: it
/// redraws itself with cursor movements, which only a capable terminal understands.
fn live_stderr() -> bool {
    io::stderr().is_terminal() && capable_terminal()
}

fn capable_terminal() -> bool {
    std::env::var_os("TERM").is_none_or(|t| t != "dumb")
}

/// The request for `t`: a URL's own path, else `--path`; `--host-header`, else the
/// target's name or address (with the port when not the scheme's default).
fn http_request(exchange: &Exchange, t: &Target) -> Result<Option<HttpRequest>> {
    let Some(h) = &exchange.http else {
        return Ok(None);
    };
    let path = t.path.clone().unwrap_or_else(|| h.path.clone());
    let host = h
        .host_header
        .clone()
        .unwrap_or_else(|| t.host_header_for(exchange.is_https(t)));
    HttpRequest::new(path, host)
        .map(Some)
        .map_err(|e| UsageError(format!("`{}`: {e}", t.spec)).into())
}

/// Our side of the connection: Linux's SYN (window 64240, MSS from the route, SACK,
/// timestamps, window scale 7), a random ISN (RFC 6528), and the exchange's timers.
fn tcp_config(exchange: &Exchange, local: SocketAddr, remote: SocketAddr, mss: u16) -> tcp::Config {
    tcp::Config {
        local,
        remote,
        isn: SeqNumber(exchange.isn.unwrap_or_else(random::random_u32)),
        // `--mss` lowers what the route says; it never raises it (a segment bigger than
        // the route's MTU would not leave this host whole).
        mss: exchange.mss.map_or(mss, |m| m.min(mss)),
        syn_window: 64240,
        rcv_buf: 128 * 1024,
        wscale: 7,
        sack_permitted: true,
        timestamps: true,
        ts_offset: random::random_u32(),
        syn_retries: exchange.syn_retries,
        data_retries: 6,
        rto_initial: exchange.rto,
        rto_min: defaults::RTO_MIN,
        rto_max: defaults::RTO_MAX,
        time_wait: exchange.time_wait,
        ack_with_data: false,
        known_path_mtu: None,
    }
}

/// clap's rendering of a command-line mistake with `tcpshake:` where it says `error:`, so
/// that every refusal, the parser's and ours, starts the same way.
fn tcpshake_prefixed(rendered: &str) -> String {
    match rendered.strip_prefix("error: ") {
        Some(rest) => format!("tcpshake: {rest}"),
        None => rendered.to_string(),
    }
}

/// Command-line addresses that the route calls a broadcast (or multicast) destination — a
/// subnet's broadcast address, which the address alone does not show (`config` refused
/// the rest) — refused before anything is sent to any target: a usage error, exit 2, as
/// for 224.0.0.1 or 0.0.0.0. An address without a route is left to its probe, which says
/// so (exit 1): that is the host's state, not the command line's. `targets`: each
/// target as written, with its address.
pub(crate) fn refuse_broadcast_targets<'a>(
    targets: impl IntoIterator<Item = (&'a str, IpAddr)>,
) -> Result<()> {
    let mut router: Option<tcpshake_io::route::Router> = None;
    for (spec, ip) in targets {
        if router.is_none() {
            match tcpshake_io::route::Router::new() {
                Ok(r) => router = Some(r),
                // No rtnetlink socket: each probe meets the same and says why.
                Err(_) => return Ok(()),
            }
        }
        if let Some(r) = router.as_mut()
            && let Ok(route) = r.lookup(ip)
            && let Err(e) = route.connectable(ip)
        {
            // The spec is named when it says more than the address, as `config` does.
            let bare = spec.trim().trim_start_matches('[').trim_end_matches(']');
            return Err(match bare == ip.to_string() {
                true => UsageError(e.to_string()),
                false => UsageError(format!("`{spec}`: {e}")),
            }
            .into());
        }
    }
    Ok(())
}

/// The literal addresses among command-line targets (names are looked up later), with
/// the targets as written.
fn literal_addrs(targets: &[Target]) -> impl Iterator<Item = (&str, IpAddr)> + '_ {
    targets.iter().filter_map(|t| match t.host {
        Host::Ip(ip) => Some((t.spec.as_str(), ip)),
        Host::Name(_) => None,
    })
}

/// What every HTTPS probe of a run shares: the trust anchors, loaded once, and the key log.
#[derive(Default)]
struct TlsShared {
    roots: Option<(Arc<RootCertStore>, String)>,
    key_log: Option<Option<Arc<dyn rustls::KeyLog>>>,
    /// The pcapng file's keys, when one is written.
    capture_keys: Option<Arc<SessionKeys>>,
}

/// An input file the user named (`-iL`, `report FILE`, `--cacert`), opened now: one that
/// is missing, unreadable or a directory is a usage error (exit 2), whichever it is.
/// `what` names it (`--cacert`, `the target list`).
pub(crate) fn open_input(path: &std::path::Path, what: &str) -> Result<std::fs::File> {
    let refused = |why: String| {
        let what = if what.is_empty() {
            String::new()
        } else {
            format!("{what} ")
        };
        UsageError(format!("cannot read {what}{}: {why}", path.display()))
    };
    let f = std::fs::File::open(path).map_err(|e| refused(io_reason(&e)))?;
    if f.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(refused("it is a directory; give a file".into()).into());
    }
    Ok(f)
}

/// An output file the user named (`--pcap`, `-oX`, `--svg`, `--records`), created before
/// anything is probed: one that cannot be is a usage error (exit 2) in every command.
/// `flag` names the option.
pub(crate) fn create_output(path: &std::path::Path, flag: &str) -> Result<std::fs::File> {
    open_output(
        path,
        flag,
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true),
    )
}

/// An output file that keeps what it holds and is written at its end (`exporter
/// --records`: a restart must not erase the records of the runs before), refused as
/// [`create_output`]'s. A last line left unfinished (a run killed mid-write, a full disk)
/// is cut off, with a warning: ended with a newline instead, it stayed in the file as a
/// broken line among the records, which `report` skips but `jq` and pandas stop at (a
/// walk: `jq` read 3 of 44 records).
pub(crate) fn append_output(path: &std::path::Path, flag: &str) -> Result<std::fs::File> {
    let f = open_output(
        path,
        flag,
        std::fs::OpenOptions::new().append(true).create(true),
    )?;
    if let Some((keep, cut)) = unfinished_tail(path) {
        if whole_record_at(path, keep, cut) {
            // A whole record that lacks only its newline (written by hand, or by a writer
            // that does not end its lines): kept, and ended.
            let mut f = f;
            io::Write::write_all(&mut f, b"\n").with_context(|| {
                format!(
                    "{flag}: ending the unfinished last line of {}",
                    path.display()
                )
            })?;
            return Ok(f);
        }
        f.set_len(keep).with_context(|| {
            format!(
                "{flag}: cutting the unfinished last line off {}",
                path.display()
            )
        })?;
        eprintln!(
            "tcpshake: warning: {flag} {}: its last line was cut short ({cut} bytes without an \
             end, a run stopped while writing it): removed, the records before it kept",
            path.display()
        );
    }
    Ok(f)
}

/// Whether the `len` bytes at `start` of the file at `path` are one whole JSON value (a
/// record that lacks only its line's end), read when they are few enough to be a record.
fn whole_record_at(path: &std::path::Path, start: u64, len: u64) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    if len > 16 << 20 {
        return false;
    }
    let mut bytes = vec![0u8; len as usize];
    std::fs::File::open(path)
        .and_then(|mut r| {
            r.seek(SeekFrom::Start(start))?;
            r.read_exact(&mut bytes)
        })
        .is_ok()
        && serde_json::from_slice::<serde_json::Value>(&bytes).is_ok_and(|v| v.is_object())
}

/// Where the complete lines of the file at `path` end and how many bytes follow them,
/// when its last line has no newline; `None` when it ends with one (or is empty, or
/// cannot be read).
fn unfinished_tail(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut r = std::fs::File::open(path).ok()?;
    let len = r.metadata().ok()?.len();
    let mut end = len;
    let mut buf = vec![0u8; 64 * 1024];
    // Bounded by the file: each pass reads an earlier chunk of it.
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        r.seek(SeekFrom::Start(start)).ok()?;
        r.read_exact(chunk).ok()?;
        if end == len && chunk.last() == Some(&b'\n') {
            return None;
        }
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            let keep = start + i as u64 + 1;
            return Some((keep, len - keep));
        }
        end = start;
    }
    (len > 0).then_some((0, len))
}

fn open_output(
    path: &std::path::Path,
    flag: &str,
    how: &std::fs::OpenOptions,
) -> Result<std::fs::File> {
    how.open(path).map_err(|e| {
        // One reason, one hint: a directory needs a file name in it, anything else
        // another place.
        let (why, hint) = match e.kind() {
            io::ErrorKind::IsADirectory => (
                "it is a directory".to_string(),
                format!(
                    "give a file's path (e.g. {})",
                    path.join(example_name(flag)).display()
                ),
            ),
            _ => (
                io_reason(&e),
                "give a path in a directory you can write to".to_string(),
            ),
        };
        UsageError(format!(
            "{flag}: cannot create {}: {why}; {hint}",
            path.display()
        ))
        .into()
    })
}

/// A file name for an output option's example.
fn example_name(flag: &str) -> &'static str {
    match flag {
        "--pcap" => "capture.pcap",
        "--pcapng" => "capture.pcapng",
        "--svg" => "plot.svg",
        "--records" => "records.jsonl",
        "-oX" => "scan.xml",
        "-oG" => "scan.gnmap",
        "-oN" => "scan.nmap",
        _ => "out",
    }
}

/// An I/O error in words, without Rust's `(os error N)`.
pub(super) fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file or directory".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        io::ErrorKind::IsADirectory => "it is a directory; give a file".into(),
        _ => {
            let s = e.to_string();
            match s.find(" (os error") {
                Some(i) => s[..i].to_string(),
                None => s,
            }
        }
    }
}

/// The `--pcap` and `--pcapng` files, created now (a bad path is an error before any
/// probe); with a pcapng file, HTTPS probes log their session keys for it (into `tls`).
fn open_captures(
    pcap: Option<&std::path::Path>,
    pcapng: Option<&std::path::Path>,
    tls: &mut TlsShared,
) -> Result<Option<CaptureFiles>> {
    let create = |p: &std::path::Path, flag| create_output(p, flag).map(io::BufWriter::new);
    let pcap = pcap
        .map(|p| Ok::<_, anyhow::Error>(PcapWriter::new(create(p, "--pcap")?)?))
        .transpose()?;
    let pcapng = pcapng
        .map(|p| Ok::<_, anyhow::Error>(PcapngWriter::new(create(p, "--pcapng")?)?))
        .transpose()?;
    if pcap.is_none() && pcapng.is_none() {
        return Ok(None);
    }
    let keys = pcapng.is_some().then(|| Arc::new(SessionKeys::default()));
    tls.capture_keys = keys.clone();
    Ok(Some(CaptureFiles::new(pcap, pcapng, keys)))
}

/// What the run loops keep of the packets for these files.
fn capture_mode(files: &Option<CaptureFiles>) -> Capture {
    match files {
        None => Capture::Off,
        Some(f) if f.annotated() => Capture::Annotated,
        Some(_) => Capture::Packets,
    }
}

impl TlsShared {
    /// Load the trust anchors now (a bad `--cacert` is then an error before any probe).
    /// `option` names where the file was given (`--cacert`, or the exporter's `cacert`
    /// key), for the messages.
    fn preload(&mut self, c: &TlsOptions, option: &str) -> Result<()> {
        if self.roots.is_none() {
            self.roots = Some(load_roots(c.cacert.as_deref(), option)?);
        }
        Ok(())
    }
}

/// Whom the certificate must name (`--sni`, else the target's name or address) and whom
/// to trust (`--cacert`, else the system's roots).
fn tls_setup(c: &TlsOptions, t: &Target, shared: &mut TlsShared) -> Result<TlsSetup> {
    // Both were checked (`config`, `target`); a refusal here names the value anyway.
    let server_name = match (&c.sni, &t.host) {
        (Some(n), _) => ServerName::try_from(n.clone())
            .map_err(|_| UsageError(format!("--sni `{n}` is not a DNS name or an address")))?,
        (None, Host::Name(n)) => ServerName::try_from(n.clone()).map_err(|_| {
            UsageError(format!(
                "`{n}` is not a name a certificate can be checked for; give --sni NAME"
            ))
        })?,
        (None, Host::Ip(ip)) => ServerName::IpAddress((*ip).into()),
    };
    let (roots, roots_from) = match &shared.roots {
        Some(r) => r.clone(),
        None => shared
            .roots
            .insert(load_roots(c.cacert.as_deref(), "--cacert")?)
            .clone(),
    };
    // Like curl: secrets for tshark only when SSLKEYLOGFILE names a file; and for the
    // pcapng file's Decryption Secrets Block when one is written.
    let capture_keys = shared.capture_keys.clone();
    let key_log = shared
        .key_log
        .get_or_insert_with(|| {
            let file = std::env::var_os("SSLKEYLOGFILE")
                .is_some()
                .then(|| Arc::new(rustls::KeyLogFile::new()) as Arc<dyn rustls::KeyLog>);
            let logs: Vec<Arc<dyn rustls::KeyLog>> = file
                .into_iter()
                .chain(capture_keys.map(|k| k as Arc<dyn rustls::KeyLog>))
                .collect();
            match logs.len() {
                0 => None,
                1 => logs.into_iter().next(),
                _ => Some(Arc::new(KeyLogs(logs)) as Arc<dyn rustls::KeyLog>),
            }
        })
        .clone();
    Ok(TlsSetup {
        server_name,
        roots,
        roots_from,
        insecure: c.insecure,
        insecure_hint: c.insecure_hint.unwrap_or("--insecure"),
        key_log,
    })
}

/// Trust anchors: the certificates of a PEM file, or the system's store (what curl and
/// openssl use here: /etc/ssl/certs, or SSL_CERT_FILE / SSL_CERT_DIR).
fn load_roots(
    cacert: Option<&std::path::Path>,
    option: &str,
) -> Result<(Arc<RootCertStore>, String)> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = RootCertStore::empty();
    match cacert {
        Some(p) => {
            let mut pem = Vec::new();
            io::Read::read_to_end(&mut open_input(p, option)?, &mut pem)
                .with_context(|| format!("{option}: reading {}", p.display()))?;
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    UsageError(format!(
                        "{option} {}: not PEM certificates: {e}",
                        p.display()
                    ))
                })?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(UsageError(format!(
                    "{option} {}: no usable CA certificate in it",
                    p.display()
                ))
                .into());
            }
            Ok((Arc::new(roots), p.display().to_string()))
        }
        None => {
            // An empty store is not fatal here: the verification fails with a message that
            // says to install ca-certificates or give --cacert (or --insecure goes on).
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            Ok((Arc::new(roots), "system".to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::unfinished_tail;

    /// The complete lines are kept, whatever the length of the cut one (longer than the
    /// 64 KiB read back at a time too), and a file with no newline at all is all cut.
    #[test]
    fn an_unfinished_last_line_is_found_across_chunks() {
        let dir = std::env::temp_dir().join(format!("tcpshake-tail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("records.jsonl");
        let long = "x".repeat(200_000);
        for (text, want) in [
            (String::new(), None),
            ("{}\n{}\n".to_string(), None),
            ("{}\n{\"cut".to_string(), Some((3, 5))),
            (format!("{{}}\n{long}"), Some((3, 200_000))),
            (format!("{long}\n{long}"), Some((200_001, 200_000))),
            (long.clone(), Some((0, 200_000))),
        ] {
            std::fs::write(&p, &text).unwrap();
            assert_eq!(unfinished_tail(&p), want, "{} bytes", text.len());
        }
        // A whole record that lacks only its newline is told from a cut one.
        std::fs::write(&p, "{}\n{\"schema\":1}").unwrap();
        assert!(super::whole_record_at(&p, 3, 12));
        std::fs::write(&p, "{}\n{\"schema\":1").unwrap();
        assert!(!super::whole_record_at(&p, 3, 11));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

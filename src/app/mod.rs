//! The edge: turn a validated command line into probes, run them, print results, and map
//! errors to exit codes.

use crate::cli::{Cli, Command, CommonArgs, LabArgs, ProbeArgs};
use crate::report::pcap::PcapWriter;
use crate::report::text::{self, Style};
use anyhow::{Context, Result};
use clap::Parser;
use rustls::RootCertStore;
use rustls::pki_types::ServerName;
use std::io::{self, IsTerminal, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tcpshake_io::guard::Guard;
use tcpshake_io::guard::MARK;
use tcpshake_io::resolve::{Family, resolve};
use tcpshake_io::run::{self, Outcome, Path};
use tcpshake_io::{is_environment_error, random, signals};
use tcpshake_proto::probe::target::{self, Host, Target};
use tcpshake_proto::probe::tls::TlsSetup;
use tcpshake_proto::probe::{HttpRequest, ProbeConfig};
use tcpshake_proto::tcp;
use tcpshake_proto::wire::SeqNumber;

mod scan;
pub mod survey;

/// Exit codes (README.md documents them).
pub const EXIT_OK: u8 = 0;
pub const EXIT_NOT_OPEN: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_ENVIRONMENT: u8 = 3;

/// A command line that parsed but asks for something impossible. Exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse_from(crate::cli::nmap_spellings(std::env::args_os())) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { EXIT_OK });
        }
    };
    let outcome = match cli.command {
        Command::Probe(args) => probe_command(&args),
        Command::Lab(args) => lab_command(&args),
        Command::Scan(args) => scan::scan_command(&args),
        Command::Report(args) => crate::app::survey::report_command(&args),
    };
    match outcome {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::from(EXIT_OK);
            }
            eprintln!("tcpshake: {e:#}");
            ExitCode::from(exit_code_for(&e))
        }
    }
}

fn exit_code_for(e: &anyhow::Error) -> u8 {
    if is_environment_error(e) {
        EXIT_ENVIRONMENT
    } else if e.chain().any(|c| c.is::<UsageError>()) {
        EXIT_USAGE
    } else {
        EXIT_NOT_OPEN
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

fn probe_command(args: &ProbeArgs) -> Result<u8> {
    if args.survey.wanted() || args.port.len() > 1 {
        return crate::app::survey::survey_command(args);
    }
    let targets = args
        .targets
        .iter()
        .map(|t| target::parse(t, args.port.first().copied()))
        .collect::<Result<Vec<Target>, String>>()
        .map_err(UsageError)?;
    let family = match (args.ipv4, args.ipv6) {
        (true, _) => Family::V4,
        (_, true) => Family::V6,
        _ => Family::Any,
    };
    let stop = signals::stop_flag();
    let mut guard = Guard::install(MARK)?;
    let mut session = Session::new(&args.common)?;
    for t in &targets {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let remote = match resolve(t, family) {
            Ok(a) => a,
            Err(e) => {
                eprintln!("tcpshake: {e:#}");
                session.all_ok = false;
                continue;
            }
        };
        session.probe(t, remote, &mut guard, stop)?;
    }
    session.finish()
}

/// What every probe of one command shares: options, output, the pcap file.
struct Session<'a> {
    common: &'a CommonArgs,
    pcap: Option<PcapWriter<io::BufWriter<std::fs::File>>>,
    style: Style,
    all_ok: bool,
    /// What HTTPS probes share: trust anchors (loaded at the first), the key log.
    tls: TlsShared,
}

impl<'a> Session<'a> {
    fn new(common: &'a CommonArgs) -> Result<Session<'a>> {
        let pcap = match &common.pcap {
            Some(p) => {
                let f = std::fs::File::create(p)
                    .with_context(|| format!("cannot create {}", p.display()))?;
                Some(PcapWriter::new(io::BufWriter::new(f))?)
            }
            None => None,
        };
        let color =
            io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        Ok(Session {
            common,
            pcap,
            style: Style { color },
            all_ok: true,
            tls: TlsShared::default(),
        })
    }

    fn probe(
        &mut self,
        t: &Target,
        remote: SocketAddr,
        guard: &mut Guard,
        stop: &AtomicBool,
    ) -> Result<()> {
        let path = Path::new(remote, None)?;
        let mut cfg = self.config(t, remote, &path);
        if t.tls || self.common.tls {
            cfg.tls = Some(tls_setup(self.common, t, &mut self.tls)?);
            if let Some(h) = cfg.http.as_mut()
                && self.common.host_header.is_none()
            {
                h.host = t.host_header_for(true);
            }
        }
        let outcome = match run::run(path, cfg, guard, self.pcap.is_some(), stop) {
            Ok(o) => o,
            Err(e) if is_environment_error(&e) => return Err(e),
            Err(e) => {
                eprintln!("tcpshake: {e:#}");
                self.all_ok = false;
                return Ok(());
            }
        };
        self.emit(&outcome)
    }

    fn config(&self, t: &Target, remote: SocketAddr, path: &Path) -> ProbeConfig {
        let c = self.common;
        let http = (!c.no_http).then(|| HttpRequest {
            path: t.path.clone().unwrap_or_else(|| c.path.clone()),
            host: c.host_header.clone().unwrap_or_else(|| t.host_header()),
        });
        ProbeConfig {
            target: t.spec.clone(),
            tcp: tcp_config(path.local, remote, path.mss(), c),
            http,
            timeout: c.timeout,
            linger: c.linger,
            tls: None,
        }
    }

    fn emit(&mut self, outcome: &Outcome) -> Result<()> {
        let r = &outcome.result;
        self.all_ok &= r.succeeded();
        if let Some(w) = &mut self.pcap {
            for p in &outcome.packets {
                w.write(p.at.as_nanos(), &p.bytes)
                    .context("writing the pcap file")?;
            }
        }
        let mut out = io::stdout().lock();
        if self.common.json {
            serde_json::to_writer(&mut out, r)?;
            writeln!(out)?;
        } else {
            write!(out, "{}", text::render(r, self.style))?;
        }
        out.flush()?;
        Ok(())
    }

    fn finish(self) -> Result<u8> {
        if let Some(w) = self.pcap {
            w.into_inner().context("writing the pcap file")?;
        }
        Ok(if self.all_ok { EXIT_OK } else { EXIT_NOT_OPEN })
    }
}

/// Our side of the connection: Linux's SYN (window 64240, MSS from the route, SACK,
/// timestamps, window scale 7), a random ISN (RFC 6528), and the user's timers.
pub fn tcp_config(local: SocketAddr, remote: SocketAddr, mss: u16, c: &CommonArgs) -> tcp::Config {
    let ours = default_tcp_config(local, remote, mss);
    tcp::Config {
        isn: c.isn.map_or(ours.isn, SeqNumber),
        syn_retries: c.retries,
        rto_initial: c.rto,
        time_wait: c.time_wait,
        ..ours
    }
}

/// The same with `tcpshake probe`'s default timers (`--retries 2`, `--rto 1s`,
/// `--time-wait 250ms`), for connections no command line describes (`scan --complete`).
pub fn default_tcp_config(local: SocketAddr, remote: SocketAddr, mss: u16) -> tcp::Config {
    tcp::Config {
        local,
        remote,
        isn: SeqNumber(random::random_u32()),
        mss,
        syn_window: 64240,
        rcv_buf: 128 * 1024,
        wscale: 7,
        sack_permitted: true,
        timestamps: true,
        ts_offset: random::random_u32(),
        syn_retries: 2,
        data_retries: 6,
        rto_initial: Duration::from_secs(1),
        rto_min: Duration::from_millis(200),
        rto_max: Duration::from_secs(60),
        time_wait: Duration::from_millis(250),
        ack_with_data: false,
    }
}

/// What every HTTPS probe of a run shares: the trust anchors, loaded once, and the key log.
#[derive(Default)]
pub struct TlsShared {
    roots: Option<(Arc<RootCertStore>, String)>,
    key_log: Option<Option<Arc<dyn rustls::KeyLog>>>,
}

impl TlsShared {
    /// Load the trust anchors now (a bad `--cacert` is then an error before any probe).
    pub fn preload(&mut self, c: &CommonArgs) -> Result<()> {
        if self.roots.is_none() {
            self.roots = Some(load_roots(c.cacert.as_deref())?);
        }
        Ok(())
    }
}

/// Whom the certificate must name (`--sni`, else the target's name or address) and whom
/// to trust (`--cacert`, else the system's roots).
pub fn tls_setup(c: &CommonArgs, t: &Target, shared: &mut TlsShared) -> Result<TlsSetup> {
    let server_name = match (&c.sni, &t.host) {
        (Some(n), _) => {
            ServerName::try_from(n.clone()).map_err(|e| UsageError(format!("--sni `{n}`: {e}")))?
        }
        (None, Host::Name(n)) => ServerName::try_from(n.clone())
            .map_err(|e| UsageError(format!("`{n}` is not a TLS server name: {e}")))?,
        (None, Host::Ip(ip)) => ServerName::IpAddress((*ip).into()),
    };
    let (roots, roots_from) = match &shared.roots {
        Some(r) => r.clone(),
        None => shared
            .roots
            .insert(load_roots(c.cacert.as_deref())?)
            .clone(),
    };
    // Like curl: secrets for tshark only when SSLKEYLOGFILE names a file.
    let key_log = shared
        .key_log
        .get_or_insert_with(|| {
            std::env::var_os("SSLKEYLOGFILE")
                .is_some()
                .then(|| Arc::new(rustls::KeyLogFile::new()) as Arc<dyn rustls::KeyLog>)
        })
        .clone();
    Ok(TlsSetup {
        server_name,
        roots,
        roots_from,
        insecure: c.insecure,
        key_log,
    })
}

/// Trust anchors: the certificates of a PEM file, or the system's store (what curl and
/// openssl use here: /etc/ssl/certs, or SSL_CERT_FILE / SSL_CERT_DIR).
fn load_roots(cacert: Option<&std::path::Path>) -> Result<(Arc<RootCertStore>, String)> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = RootCertStore::empty();
    match cacert {
        Some(p) => {
            let pem = std::fs::read(p).with_context(|| format!("--cacert {}", p.display()))?;
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    UsageError(format!(
                        "--cacert {}: not PEM certificates: {e}",
                        p.display()
                    ))
                })?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(UsageError(format!(
                    "--cacert {}: no usable CA certificate in it",
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

fn lab_command(args: &LabArgs) -> Result<u8> {
    use tcpshake_lab::labnet::LabNet;

    let lab = LabNet::create().context("building the lab namespaces")?;
    let peer = lab
        .start_http_peer(80)
        .context("starting the lab's HTTP peer")?;
    lab.enter_client()
        .context("entering the lab's client namespace")?;
    lab.wait_ready(Duration::from_secs(5))?;
    let stop = signals::stop_flag();
    let mut guard = Guard::install(MARK)?;
    let mut session = Session::new(&args.common)?;
    let targets = [
        SocketAddr::new(lab.server_v4().into(), 80),
        SocketAddr::new(lab.server_v6().into(), 80),
    ];
    if !args.common.json {
        println!(
            "lab: client {} / {} ⇄ server {} / {} (a kernel listener serving HTTP on port 80)\n",
            lab.client_v4(),
            lab.client_v6(),
            lab.server_v4(),
            lab.server_v6()
        );
    }
    for remote in targets {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let t = target::parse(&remote.to_string(), None).map_err(UsageError)?;
        session.probe(&t, remote, &mut guard, stop)?;
        if !args.common.json {
            println!();
        }
    }
    drop(peer);
    session.finish()
}

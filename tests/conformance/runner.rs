//! Runs one script against one client: builds the lab, opens the peer's socket, starts
//! the client, then walks the events in order — injecting the peer's packets at their
//! times, checking each segment the client sends against the next expected line — and
//! finally checks the client's own verdict (tcpshake's JSON record, the Linux client's
//! errno) against the script's `@result` lines.
//!
//! Every wait has a deadline: a missing segment fails at its line's latest time plus the
//! tolerance, the client is killed when it outlives its budget, and the lab (namespaces,
//! processes) is removed by `Drop` whether the run passed, failed or panicked.

use crate::lab::{self, Lab, in_ns, run_ok};
use crate::packet::{self, IpOut, Opt, TcpIn, TcpOut};
use crate::script::{App, Body, Client, Event, IcmpSpec, OptSpec, Script, TcpSpec, Val};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Read;
use std::net::IpAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Host header both clients send, so the request's length does not depend on the
/// lab's addresses.
const HOST: &str = "conformance";
/// How long the first SYN may take to appear (the client's start-up).
const FIRST_SYN_WAIT: Duration = Duration::from_secs(5);
/// After the last event, how long the client may take to exit.
const EXIT_WAIT: Duration = Duration::from_secs(15);
/// A `*` expectation waits this long at most.
const ANY_TIME_WAIT: Duration = Duration::from_secs(10);

/// tcpshake's options for every run (a script's @args come after and win).
const TCPSHAKE_DEFAULTS: &[&str] = &["--timeout", "2s", "--retries", "2", "--linger", "200ms"];

/// The request both clients send: tcpshake's HEAD, its path padded so the whole request is
/// exactly `size` bytes.
pub fn request(size: usize) -> (String, Vec<u8>) {
    let ua = format!("tcpshake/{}", env!("CARGO_PKG_VERSION"));
    let build = |path: &str| {
        format!(
            "HEAD {path} HTTP/1.1\r\nHost: {HOST}\r\nUser-Agent: {ua}\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        )
    };
    let base = build("/").len();
    let path = format!("/{}", "x".repeat(size.saturating_sub(base)));
    let req = build(&path).into_bytes();
    (path, req)
}

/// What a run saw, for the failure report.
struct Trace {
    t0: Option<Instant>,
    lines: Vec<String>,
}

impl Trace {
    fn note(&mut self, at: Instant, what: String) {
        let t = self
            .t0
            .map_or(0.0, |t0| at.saturating_duration_since(t0).as_secs_f64());
        self.lines.push(format!("{t:9.6} {what}"));
    }
}

/// Sequence-space bookkeeping: everything relative in the script becomes absolute here.
struct Conn {
    v6: bool,
    client: IpAddr,
    server: IpAddr,
    router: IpAddr,
    server_port: u16,
    client_port: Option<u16>,
    client_isn: Option<u32>,
    peer_isn: u32,
    /// A script's outgoing `TS val V` → the TSval the client really sent there.
    ts_map: HashMap<u64, u32>,
    last_client_tsval: Option<u32>,
}

impl Conn {
    fn isn(&self) -> u32 {
        self.client_isn.unwrap_or(0)
    }

    fn rel_ours(&self, abs: u32) -> u32 {
        abs.wrapping_sub(self.isn())
    }

    fn rel_peer(&self, abs: u32) -> u32 {
        abs.wrapping_sub(self.peer_isn)
    }

    /// packetdrill's notation of a client segment, relative numbers.
    fn show(&self, s: &TcpIn) -> String {
        let seq = self.rel_ours(s.seq);
        let mut out = format!(
            "> {} {}:{}({})",
            packet::flags_str(s.flags),
            seq,
            seq.wrapping_add(s.payload.len() as u32),
            s.payload.len()
        );
        if s.flags & packet::ACK != 0 {
            let _ = write!(out, " ack {}", self.rel_peer(s.ack));
        }
        let _ = write!(out, " win {}", s.win);
        if s.urg != 0 || s.flags & packet::URG != 0 {
            let _ = write!(out, " urg {}", s.urg);
        }
        if !s.options.is_empty() {
            let opts: Vec<String> = s
                .options
                .iter()
                .map(|o| match o {
                    Opt::Nop => "nop".into(),
                    Opt::Eol => "eol".into(),
                    Opt::Mss(m) => format!("mss {m}"),
                    Opt::Wscale(w) => format!("wscale {w}"),
                    Opt::SackOk => "sackOK".into(),
                    Opt::Sack(b) => format!(
                        "sack {}",
                        b.iter()
                            .map(|(l, r)| format!("{}:{}", self.rel_peer(*l), self.rel_peer(*r)))
                            .collect::<Vec<_>>()
                            .join(" ")
                    ),
                    Opt::Ts(v, e) => format!("TS val {v} ecr {e}"),
                    Opt::Other(k, b) => format!("kind {k} {b:02x?}"),
                })
                .collect();
            let _ = write!(out, " <{}>", opts.join(","));
        }
        if !s.checksum_ok {
            out.push_str(" [bad checksum]");
        }
        out
    }

    fn tcp_out(&self, spec: &TcpSpec) -> Result<TcpOut, String> {
        let Val::Num(seq) = spec.seq else {
            return Err("an injected segment needs its seq".into());
        };
        let payload = match (&spec.payload, spec.len) {
            (Some(p), Val::Any) => p.clone(),
            (Some(p), Val::Num(n)) if n as usize == p.len() => p.clone(),
            (Some(p), Val::Num(n)) => {
                return Err(format!("({n}) but the data is {} bytes", p.len()));
            }
            (None, Val::Num(n)) => vec![0u8; n as usize],
            (None, Val::Any) => Vec::new(),
        };
        let mut options = Vec::new();
        for o in spec.options.iter().flatten() {
            match o {
                OptSpec::Nop => options.push(1),
                OptSpec::Eol => options.push(0),
                OptSpec::Mss(v) => {
                    options.extend_from_slice(&[2, 4]);
                    options.extend_from_slice(&(num(*v, "mss")? as u16).to_be_bytes());
                }
                OptSpec::Wscale(v) => options.extend_from_slice(&[3, 3, num(*v, "wscale")? as u8]),
                OptSpec::SackOk => options.extend_from_slice(&[4, 2]),
                OptSpec::Sack(blocks) => {
                    options.extend_from_slice(&[5, (2 + 8 * blocks.len()) as u8]);
                    for (l, r) in blocks {
                        let l = self.isn().wrapping_add(num(*l, "sack")? as u32);
                        let r = self.isn().wrapping_add(num(*r, "sack")? as u32);
                        options.extend_from_slice(&l.to_be_bytes());
                        options.extend_from_slice(&r.to_be_bytes());
                    }
                }
                OptSpec::Ts { val, ecr } => {
                    let ecr = match ecr {
                        Val::Any => self.last_client_tsval.unwrap_or(0),
                        Val::Num(n) => self.ts_map.get(n).copied().unwrap_or(*n as u32),
                    };
                    options.extend_from_slice(&[8, 10]);
                    options.extend_from_slice(&(num(*val, "TS val")? as u32).to_be_bytes());
                    options.extend_from_slice(&ecr.to_be_bytes());
                }
                OptSpec::Raw(b) => options.extend_from_slice(b),
            }
        }
        let ack = match spec.ack {
            Some(Val::Num(a)) => self.isn().wrapping_add(a as u32),
            _ => 0,
        };
        Ok(TcpOut {
            src_port: self.server_port,
            dst_port: self.client_port.unwrap_or(0),
            seq: self.peer_isn.wrapping_add(seq as u32),
            ack,
            flags: spec.flags,
            win: spec.win.map_or(Ok(65535), |w| num(w, "win"))? as u16,
            urg: spec.urg.map_or(Ok(0), |u| num(u, "urg"))? as u16,
            options,
            payload,
            bad_checksum: false,
        })
    }

    /// The quoted invoking packet of an ICMP error: the client's IP header and the first
    /// bytes of its TCP header, as a router would have seen them.
    fn quoted(&self, q: &IcmpSpec, quote_len: usize) -> Result<Vec<u8>, String> {
        let Val::Num(seq) = q.quoted.seq else {
            return Err("the quoted segment needs its seq".into());
        };
        let len = match q.quoted.len {
            Val::Num(n) => n as usize,
            Val::Any => 0,
        };
        let ack = match q.quoted.ack {
            Some(Val::Num(a)) => self.peer_isn.wrapping_add(a as u32),
            _ => 0,
        };
        let mut tcp = Vec::with_capacity(20);
        tcp.extend_from_slice(&self.client_port.unwrap_or(0).to_be_bytes());
        tcp.extend_from_slice(&self.server_port.to_be_bytes());
        tcp.extend_from_slice(&self.isn().wrapping_add(seq as u32).to_be_bytes());
        tcp.extend_from_slice(&ack.to_be_bytes());
        tcp.push(5 << 4);
        tcp.push(q.quoted.flags);
        tcp.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
        tcp.truncate(quote_len);
        // The IP header the client sent: its length covers the whole original segment.
        let orig = IpOut {
            src: self.client,
            dst: self.server,
            proto: packet::PROTO_TCP,
            ttl: 64,
            ident: 0,
            dont_fragment: true,
            tos: 0,
            ext: Vec::new(),
            frag: None,
        };
        let whole_len = 20 + len;
        let mut ip = packet::ip_packets(&orig, &vec![0u8; whole_len]).remove(0);
        ip.truncate(if self.v6 { 40 } else { 20 });
        ip.extend_from_slice(&tcp);
        Ok(ip)
    }
}

fn num(v: Val, what: &str) -> Result<u64, String> {
    match v {
        Val::Num(n) => Ok(n),
        Val::Any => Err(format!("`{what} ?` in an injected packet")),
    }
}

/// Checks a client segment against an expected line; `Err` says what differs.
fn check(
    conn: &mut Conn,
    spec: &TcpSpec,
    seg: &TcpIn,
    first: bool,
    ignore_psh: bool,
) -> Result<(), String> {
    let mut diffs = Vec::new();
    let mask = if ignore_psh { !packet::PSH } else { 0xff };
    if seg.flags & mask != spec.flags & mask {
        diffs.push(format!(
            "flags {} (expected {})",
            packet::flags_str(seg.flags),
            packet::flags_str(spec.flags)
        ));
    }
    if first {
        // The first segment names the client's ISN and port.
        let rel = match spec.seq {
            Val::Num(n) => n as u32,
            Val::Any => 0,
        };
        conn.client_isn = Some(seg.seq.wrapping_sub(rel));
        conn.client_port = Some(seg.src_port);
    } else if Some(seg.src_port) != conn.client_port {
        diffs.push(format!(
            "source port {} (the connection's is {:?})",
            seg.src_port, conn.client_port
        ));
    }
    let seq = conn.rel_ours(seg.seq);
    let len = seg.payload.len() as u64;
    if !spec.seq.matches(u64::from(seq)) {
        diffs.push(format!("seq {seq} (expected {})", spec.seq));
    }
    if !spec.len.matches(len) {
        diffs.push(format!("length {len} (expected {})", spec.len));
    }
    if !spec.end.matches(u64::from(seq.wrapping_add(len as u32))) {
        diffs.push(format!(
            "end {} (expected {})",
            seq.wrapping_add(len as u32),
            spec.end
        ));
    }
    if let Some(a) = spec.ack
        && seg.flags & packet::ACK != 0
    {
        let ack = conn.rel_peer(seg.ack);
        if !a.matches(u64::from(ack)) {
            diffs.push(format!("ack {ack} (expected {a})"));
        }
    }
    if let Some(w) = spec.win
        && !w.matches(u64::from(seg.win))
    {
        diffs.push(format!("win {} (expected {w})", seg.win));
    }
    if let Some(u) = spec.urg
        && !u.matches(u64::from(seg.urg))
    {
        diffs.push(format!("urg {} (expected {u})", seg.urg));
    }
    if let Some(p) = &spec.payload
        && *p != seg.payload
    {
        diffs.push(format!(
            "data {:?} (expected {:?})",
            String::from_utf8_lossy(&seg.payload),
            String::from_utf8_lossy(p)
        ));
    }
    if !seg.checksum_ok {
        diffs.push("bad TCP checksum".into());
    }
    // RFC 1191 path MTU discovery, which both clients do, needs DF on what they send.
    if !seg.payload.is_empty() && !seg.dont_fragment {
        diffs.push("data sent without IPv4's don't-fragment bit (RFC 1191)".into());
    }
    if let Some(opts) = &spec.options
        && !spec.any_options()
    {
        let mut actual: Vec<&Opt> = seg
            .options
            .iter()
            .filter(|o| !matches!(o, Opt::Nop | Opt::Eol))
            .collect();
        let mut missing = Vec::new();
        for want in opts
            .iter()
            .filter(|o| !matches!(o, OptSpec::Nop | OptSpec::Eol))
        {
            let found = actual.iter().position(|got| opt_matches(conn, want, got));
            match found {
                Some(i) => {
                    if let (
                        OptSpec::Ts {
                            val: Val::Num(v), ..
                        },
                        Opt::Ts(tv, _),
                    ) = (want, actual[i])
                    {
                        conn.ts_map.insert(*v, *tv);
                    }
                    actual.remove(i);
                }
                None => missing.push(format!("{want:?}")),
            }
        }
        if !missing.is_empty() || !actual.is_empty() {
            diffs.push(format!(
                "options: missing {missing:?}, unexpected {:?}",
                actual
            ));
        }
    }
    if let Some((v, _)) = seg.ts() {
        conn.last_client_tsval = Some(v);
    }
    if diffs.is_empty() {
        Ok(())
    } else {
        Err(diffs.join("; "))
    }
}

fn opt_matches(conn: &Conn, want: &OptSpec, got: &Opt) -> bool {
    match (want, got) {
        (OptSpec::Mss(v), Opt::Mss(m)) => v.matches(u64::from(*m)),
        (OptSpec::Wscale(v), Opt::Wscale(w)) => v.matches(u64::from(*w)),
        (OptSpec::SackOk, Opt::SackOk) => true,
        // The TSval is the client's clock: bound, not checked; the TSecr must echo ours.
        (OptSpec::Ts { ecr, .. }, Opt::Ts(_, e)) => ecr.matches(u64::from(*e)),
        (OptSpec::Sack(want), Opt::Sack(got)) => {
            want.len() == got.len()
                && want.iter().zip(got).all(|((wl, wr), (l, r))| {
                    wl.matches(u64::from(conn.rel_peer(*l)))
                        && wr.matches(u64::from(conn.rel_peer(*r)))
                })
        }
        (OptSpec::Raw(b), Opt::Other(k, body)) => b.first() == Some(k) && b.get(2..) == Some(body),
        _ => false,
    }
}

/// The client process and what it printed.
struct ClientRun {
    child: Child,
    out: std::thread::JoinHandle<Vec<u8>>,
    err: std::thread::JoinHandle<Vec<u8>>,
    cmd: String,
}

fn spawn(mut cmd: Command) -> ClientRun {
    // The command as a shell would read it, long arguments (the request in hex) cut.
    let desc = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| {
            let a = a.to_string_lossy();
            if a.len() > 60 {
                format!("{}…", &a[..60])
            } else {
                a.into_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ");
    lab::die_with_parent(&mut cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {desc}: {e}"));
    let mut o = child.stdout.take().expect("stdout");
    let mut e = child.stderr.take().expect("stderr");
    ClientRun {
        child,
        out: std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = o.read_to_end(&mut v);
            v
        }),
        err: std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = e.read_to_end(&mut v);
            v
        }),
        cmd: desc,
    }
}

impl Drop for ClientRun {
    fn drop(&mut self) {
        // Ends only the process we started, by its pid.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// An option of tcpshake's command line, as the Linux client should mirror it.
fn arg_value<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .rposition(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn client_command(script: &Script, client: Client, lab: &Lab) -> Command {
    let target = lab.target(script.v6, script.port);
    let (path, req) = request(script.request_size);
    // The defaults, less those the script sets itself, then the script's.
    let mut args: Vec<String> = Vec::new();
    for pair in TCPSHAKE_DEFAULTS.chunks(2) {
        if !script.args.iter().any(|a| a == pair[0]) {
            args.extend(pair.iter().map(|s| s.to_string()));
        }
    }
    args.extend(script.args.iter().cloned());
    match client {
        Client::Tcpshake => {
            let mut cmd = lab.client_cmd(["probe", &target, "--json"]);
            // The request's shape only when there is a request: tcpshake refuses options
            // that --no-http would leave unused.
            if script.app == App::NoHttp {
                cmd.arg("--no-http");
            } else {
                cmd.args(["--host-header", HOST, "--path", &path]);
            }
            cmd.args(&args);
            cmd
        }
        Client::Linux => {
            let py = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/conformance/linux_client.py"
            );
            let secs = |name: &str| {
                crate::script::duration(arg_value(&args, name).unwrap_or("0"))
                    .unwrap_or_default()
                    .as_secs_f64()
                    .to_string()
            };
            // -I -S: no site packages (their .pth files cost a third of a second here).
            let mut cmd = in_ns(&lab.client_ns, "python3");
            cmd.args(["-I", "-S"])
                .arg(py)
                .arg(lab.server_addr(script.v6).to_string())
                .arg(script.port.to_string())
                .arg(match script.app {
                    App::Http => "http",
                    App::NoHttp => "no-http",
                })
                .arg(hex(&req))
                .arg(secs("--timeout"))
                .arg(secs("--linger"))
                .arg(arg_value(&args, "--retries").unwrap_or("2"));
            cmd
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The lab for one run: client and server namespaces, the server's kernel kept out of TCP.
fn lab_for(name: &str, client: Client) -> Lab {
    let lab = Lab::new_unchecked(name);
    if client == Client::Linux {
        // Linux's defaults, whatever the host was tuned to: the receive buffer decides the
        // SYN's window scale (7 with these), as tcpshake's SYN says 7.
        run_ok(in_ns(&lab.client_ns, "sysctl").args([
            "-qw",
            "net.ipv4.tcp_rmem=4096 131072 6291456",
            "net.ipv4.tcp_wmem=4096 16384 4194304",
        ]));
    }
    run_ok(in_ns(&lab.server_ns, "nft").arg(
        "add table inet conformance; \
         add chain inet conformance input { type filter hook input priority -300; policy accept; }; \
         add rule inet conformance input meta l4proto tcp drop",
    ));
    lab
}

/// Runs `script` against `client`; `Err` is the failure report.
pub fn run(script: &Script, client: Client) -> Result<(), String> {
    let lab = lab_for(
        &format!(
            "{}{}",
            &script.name[..script.name.len().min(18)],
            client.name()
        ),
        client,
    );
    let peer = crate::peer::PeerSocket::open(
        &lab.server_ns,
        lab::SERVER_IF,
        &lab.client_ns,
        lab::CLIENT_IF,
    );
    let v6 = script.v6;
    let router: IpAddr = if v6 {
        let mut o = lab.server_v6.octets();
        o[15] = 0xfe;
        IpAddr::from(o)
    } else {
        let mut o = lab.server_v4.octets();
        o[3] = 254;
        IpAddr::from(o)
    };
    let mut conn = Conn {
        v6,
        client: lab.client_addr(v6),
        server: lab.server_addr(v6),
        router,
        server_port: script.port,
        client_port: None,
        client_isn: None,
        peer_isn: script.peer_isn,
        ts_map: HashMap::new(),
        last_client_tsval: None,
    };
    let mut trace = Trace {
        t0: None,
        lines: Vec::new(),
    };
    let mut proc_ = spawn(client_command(script, client, &lab));
    let wire = walk(script, client, &peer, &mut conn, &mut trace, &mut proc_);
    // The client's exit (bounded), then what it said.
    let exited = lab::wait_bounded(&mut proc_.child, Duration::from_secs(1));
    let code = proc_.child.wait().ok().and_then(|s| s.code());
    let stdout = String::from_utf8_lossy(
        &std::mem::replace(&mut proc_.out, std::thread::spawn(Vec::new))
            .join()
            .unwrap_or_default(),
    )
    .into_owned();
    let stderr = String::from_utf8_lossy(
        &std::mem::replace(&mut proc_.err, std::thread::spawn(Vec::new))
            .join()
            .unwrap_or_default(),
    )
    .into_owned();
    let mut problems = Vec::new();
    if let Err(e) = wire {
        problems.push(e);
    }
    if !exited && problems.is_empty() {
        problems.push("the client did not exit; killed".into());
    }
    if problems.is_empty() {
        problems.extend(check_results(script, client, code, &stdout));
    }
    if problems.is_empty() {
        if std::env::var_os("CONFORMANCE_TRACE").is_some() {
            eprintln!("{}\n{stdout}{stderr}", trace.lines.join("\n"));
        }
        return Ok(());
    }
    Err(format!(
        "{} against {}: {}\n\n--- wire (peer's view, relative seq; t=0 at the first SYN) ---\n{}\n--- client: {} ---\nexit code: {code:?}\nstdout:\n{stdout}\nstderr:\n{stderr}\n{}",
        script.path.display(),
        client.name(),
        problems.join("\n"),
        trace.lines.join("\n"),
        proc_.cmd,
        lab.describe()
    ))
}

/// Walks the events; `Err` names the line that failed and why.
fn walk(
    script: &Script,
    client: Client,
    peer: &crate::peer::PeerSocket,
    conn: &mut Conn,
    trace: &mut Trace,
    proc_: &mut ClientRun,
) -> Result<(), String> {
    let events: Vec<&Event> = script
        .events
        .iter()
        .filter(|e| e.only.is_none_or(|c| c == client))
        .collect();
    let tol = script.tolerance;
    let mut buf = vec![0u8; 65536 + 64];
    let mut prev: Option<Instant> = None;
    let started = Instant::now();
    let mut first = true;
    for ev in &events {
        let at = |ev: &Event| format!("line {}: `{}`", ev.line, ev.text);
        let base = if ev.time.relative { prev } else { trace.t0 };
        if ev.inbound {
            let base =
                base.ok_or_else(|| format!("{}: the client has sent nothing yet", at(ev)))?;
            let when = if ev.time.any {
                Instant::now()
            } else {
                base + secs(ev.time.lo)
            };
            // Until then, the client must stay quiet.
            if let Some((n, t)) = recv_tcp(peer, conn, when, &mut buf) {
                trace.note(t, conn.show(&n));
                return Err(format!(
                    "{}: before it, the client sent an unexpected segment: {}",
                    at(ev),
                    conn.show(&n)
                ));
            }
            let sent = inject(peer, conn, ev)?;
            let now = Instant::now();
            let shown = sent.find("< ").map_or(sent.as_str(), |i| &sent[i..]);
            trace.note(now, format!("{shown}   (line {})", ev.line));
            prev = Some(now);
        } else {
            let Body::Tcp(spec) = &ev.body else {
                return Err(format!("{}: only TCP is expected from the client", at(ev)));
            };
            let (lo, deadline) = match (base, ev.time.any) {
                (None, _) => (None, started + FIRST_SYN_WAIT),
                (Some(b), true) => (None, b + ANY_TIME_WAIT),
                (Some(b), false) => (
                    Some((b + secs(ev.time.lo)).checked_sub(tol).unwrap_or(b)),
                    b + secs(ev.time.hi) + tol,
                ),
            };
            let mut got = recv_tcp(peer, conn, deadline, &mut buf);
            // `{coalesce}`: pure ACKs short of this line's ack, in any number, come first;
            // before a FIN, also one with this line's ack (whether a client's close
            // carries the ACK of the peer's FIN or follows it is a race between its
            // application and its delayed-ACK timer).
            let fin = spec.flags & packet::FIN != 0;
            for _ in 0..10_000 {
                match &got {
                    Some((seg, t))
                        if ev.mods.coalesce
                            && !first
                            && seg.flags == packet::ACK
                            && seg.payload.is_empty()
                            && (fin
                                || spec.ack.is_some_and(|a| {
                                    !a.matches(u64::from(conn.rel_peer(seg.ack)))
                                })) =>
                    {
                        trace.note(*t, format!("{}   (coalesced)", conn.show(seg)));
                        got = recv_tcp(peer, conn, deadline, &mut buf);
                    }
                    _ => break,
                }
            }
            let Some((seg, t)) = got else {
                let exited = matches!(proc_.child.try_wait(), Ok(Some(_)));
                return Err(format!(
                    "{}: nothing came by its latest time{}",
                    at(ev),
                    if exited {
                        " (the client had exited)"
                    } else {
                        ""
                    }
                ));
            };
            if trace.t0.is_none() {
                trace.t0 = Some(t);
            }
            let checked = check(conn, spec, &seg, first, script.ignore_psh);
            trace.note(t, conn.show(&seg));
            checked
                .map_err(|d| format!("{}: the client sent `{}`: {d}", at(ev), conn.show(&seg)))?;
            first = false;
            if let (Some(lo), Some(b)) = (lo, base)
                && t < lo
            {
                return Err(format!(
                    "{}: came {:.3} s after the previous event, earlier than {}",
                    at(ev),
                    t.saturating_duration_since(b).as_secs_f64(),
                    ev.time.lo
                ));
            }
            prev = Some(t);
        }
    }
    // After the last line: nothing more from the client until it has exited and the
    // wire has been quiet for `@quiet` since the later of its exit and the last event.
    let last = prev.unwrap_or_else(Instant::now);
    let end = Instant::now() + EXIT_WAIT;
    let mut exit_at = None;
    loop {
        let now = Instant::now();
        if exit_at.is_none() && matches!(proc_.child.try_wait(), Ok(Some(_))) {
            exit_at = Some(now);
        }
        if let Some(x) = exit_at
            && now >= x.max(last) + script.quiet
        {
            return Ok(());
        }
        if now >= end {
            return Err(format!(
                "after the script's last line the client did not exit within {EXIT_WAIT:?}"
            ));
        }
        let until = (now + Duration::from_millis(20)).min(end);
        if let Some((seg, t)) = recv_tcp(peer, conn, until, &mut buf) {
            trace.note(t, conn.show(&seg));
            return Err(format!(
                "after the script's last line the client sent an unexpected segment: {}",
                conn.show(&seg)
            ));
        }
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

/// The next TCP segment from the client to the server, until `deadline`.
fn recv_tcp(
    peer: &crate::peer::PeerSocket,
    conn: &Conn,
    deadline: Instant,
    buf: &mut [u8],
) -> Option<(TcpIn, Instant)> {
    // Bounded by the deadline; each pass reads one frame.
    for _ in 0..100_000 {
        let (n, t) = peer.recv(deadline, buf)?;
        if let Some(seg) = packet::parse_frame(&buf[..n])
            && seg.src == conn.client
            && seg.dst == conn.server
            && seg.dst_port == conn.server_port
        {
            return Some((seg, t));
        }
    }
    None
}

/// Builds and sends one injected event; returns how it reads in the trace.
fn inject(peer: &crate::peer::PeerSocket, conn: &mut Conn, ev: &Event) -> Result<String, String> {
    let m = &ev.mods;
    let mut packets: Vec<(u8, Vec<u8>)> = Vec::new();
    match &ev.body {
        Body::Tcp(spec) => {
            let seg = conn
                .tcp_out(spec)
                .map_err(|e| format!("line {}: {e}", ev.line))?;
            let pieces: Vec<TcpOut> = match m.split {
                Some(n) if seg.payload.len() > n => {
                    let chunks: Vec<&[u8]> = seg.payload.chunks(n).collect();
                    let last = chunks.len() - 1;
                    let mut off = 0u32;
                    chunks
                        .into_iter()
                        .enumerate()
                        .map(|(i, c)| {
                            let mut p = seg.clone();
                            p.seq = seg.seq.wrapping_add(off);
                            p.payload = c.to_vec();
                            if i != last {
                                p.flags &= !(packet::FIN | packet::PSH);
                            }
                            off += c.len() as u32;
                            p
                        })
                        .collect()
                }
                _ => vec![seg],
            };
            for mut p in pieces {
                p.bad_checksum = m.bad_checksum;
                packets.push((packet::PROTO_TCP, p.bytes(conn.server, conn.client)));
            }
        }
        Body::Icmp(icmp) => {
            let quoted = conn
                .quoted(icmp, m.quote_len.unwrap_or(20))
                .map_err(|e| format!("line {}: {e}", ev.line))?;
            let src = if m.from_router {
                conn.router
            } else {
                conn.server
            };
            let mut b = packet::icmp_bytes(
                conn.v6,
                src,
                conn.client,
                icmp.icmp_type,
                icmp.code,
                icmp.rest,
                &quoted,
            );
            if m.bad_checksum {
                b[2] ^= 0x5a;
            }
            let proto = if conn.v6 {
                packet::PROTO_ICMPV6
            } else {
                packet::PROTO_ICMP
            };
            packets.push((proto, b));
        }
    }
    let ethertype = if conn.v6 {
        packet::ETH_P_IPV6
    } else {
        packet::ETH_P_IP
    };
    let mut frames = Vec::new();
    for (i, (proto, payload)) in packets.iter().enumerate() {
        let ip = IpOut {
            src: if m.from_router {
                conn.router
            } else {
                conn.server
            },
            dst: conn.client,
            proto: *proto,
            ttl: m.ttl.unwrap_or(64),
            ident: 0x1000 + (ev.line as u32) * 64 + i as u32,
            dont_fragment: !m.no_df && m.frag.is_none(),
            tos: m.tos.unwrap_or(0),
            ext: m.ext.clone(),
            frag: m.frag,
        };
        for p in packet::ip_packets(&ip, payload) {
            frames.push(packet::ethernet(
                peer.client_mac,
                peer.server_mac,
                ethertype,
                &p,
            ));
        }
    }
    match m.gap {
        // A paced flood: one copy at a time.
        Some(gap) => {
            for _ in 0..m.copies.max(1) {
                peer.send_burst(&frames);
                std::thread::sleep(gap);
            }
        }
        // Everything back to back.
        None => {
            let all: Vec<Vec<u8>> = (0..m.copies.max(1))
                .flat_map(|_| frames.iter().cloned())
                .collect();
            peer.send_burst(&all);
        }
    }
    Ok(ev.text.clone())
}

/// `@exit` and `@result` lines for this client.
fn check_results(script: &Script, client: Client, code: Option<i32>, stdout: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for (c, want) in &script.exit {
        if *c == client && code != Some(*want) {
            problems.push(format!("exit code {code:?}, expected {want}"));
        }
    }
    let asserts: Vec<_> = script
        .asserts
        .iter()
        .filter(|a| a.client == client)
        .collect();
    if asserts.is_empty() && client == Client::Linux {
        return problems;
    }
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    let record: serde_json::Value = match lines.as_slice() {
        [one] => match serde_json::from_str(one) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("the client's output is not JSON: {e}"));
                return problems;
            }
        },
        _ => {
            problems.push(format!(
                "expected one JSON line from the client, got {}",
                lines.len()
            ));
            return problems;
        }
    };
    for a in asserts {
        let got = lookup(&record, &a.path);
        if let Err(why) = compare(got.as_ref(), &a.op, &a.value) {
            problems.push(format!(
                "line {}: @result {} {} {} {}: {why}",
                a.line,
                client.name(),
                a.path,
                a.op,
                a.value
            ));
        }
    }
    problems
}

/// `a.b[0].c`, `a[-1]`, `a.len()`.
fn lookup(v: &serde_json::Value, path: &str) -> Option<serde_json::Value> {
    let mut cur = v.clone();
    for part in path.split('.') {
        if part == "len()" {
            cur = match &cur {
                serde_json::Value::Array(a) => a.len().into(),
                serde_json::Value::String(s) => s.len().into(),
                serde_json::Value::Object(o) => o.len().into(),
                _ => return None,
            };
            continue;
        }
        let (key, idx) = match part.split_once('[') {
            Some((k, rest)) => (
                k,
                rest.strip_suffix(']').and_then(|i| i.parse::<i64>().ok()),
            ),
            None => (part, None),
        };
        if !key.is_empty() {
            cur = cur.get(key)?.clone();
        }
        if let Some(i) = idx {
            let a = cur.as_array()?;
            let i = if i < 0 { a.len() as i64 + i } else { i };
            cur = a.get(usize::try_from(i).ok()?)?.clone();
        }
    }
    Some(cur)
}

fn compare(
    got: Option<&serde_json::Value>,
    op: &str,
    want: &serde_json::Value,
) -> Result<(), String> {
    use serde_json::Value;
    let shown = got.map_or("<missing>".to_string(), |g| g.to_string());
    let contains = |g: &Value| -> bool {
        let needle = want.as_str().unwrap_or_default();
        match g {
            Value::String(s) => s.contains(needle),
            Value::Array(a) => a.iter().any(|e| match e {
                Value::String(s) => s.contains(needle),
                other => other == want || other.to_string().contains(needle),
            }),
            other => other.to_string().contains(needle),
        }
    };
    let ok = match (op, got) {
        ("==", g) => g.unwrap_or(&Value::Null) == want,
        ("!=", g) => g.unwrap_or(&Value::Null) != want,
        ("~", Some(g)) => contains(g),
        ("!~", Some(g)) => !contains(g),
        ("!~", None) => true,
        (_, Some(g)) if g.is_number() && want.is_number() => {
            let (a, b) = (g.as_f64().unwrap_or(0.0), want.as_f64().unwrap_or(0.0));
            match op {
                "<" => a < b,
                "<=" => a <= b,
                ">" => a > b,
                ">=" => a >= b,
                _ => false,
            }
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!("found {shown}"))
    }
}

//! The script language: a subset of packetdrill's, plus what tcpshake's case needs.
//! README.md ("Conformance scripts") is the reference; this is the parser.

use crate::packet::{self, ExtHeader, Frag};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The clients a script can run against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Client {
    Tcpshake,
    Linux,
}

impl Client {
    pub const ALL: [Client; 2] = [Client::Tcpshake, Client::Linux];

    pub fn name(self) -> &'static str {
        match self {
            Client::Tcpshake => "tcpshake",
            Client::Linux => "linux",
        }
    }

    fn parse(s: &str) -> Result<Client, String> {
        match s {
            "tcpshake" => Ok(Client::Tcpshake),
            "linux" => Ok(Client::Linux),
            _ => Err(format!("unknown client `{s}` (tcpshake, linux)")),
        }
    }
}

/// What the client does once connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum App {
    /// Close right away (`tcpshake probe --no-http`; Linux: `connect`, `close`).
    NoHttp,
    /// Send a HEAD request, read the response head, wait `--linger` for the server's FIN,
    /// close (tcpshake's default; the Linux client does the same with a socket).
    Http,
}

/// A number in a script, or `?` (anything; on injected packets, computed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Val {
    Num(u64),
    Any,
}

impl Val {
    pub fn matches(self, actual: u64) -> bool {
        match self {
            Val::Num(n) => n == actual,
            Val::Any => true,
        }
    }
}

impl std::fmt::Display for Val {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Val::Num(n) => write!(f, "{n}"),
            Val::Any => f.write_str("?"),
        }
    }
}

/// When an event happens: absolute (since the script's first event) or relative to the
/// previous event's actual time (`+`), a single time or a range `lo~hi`, or `*` (any).
#[derive(Clone, Copy, Debug)]
pub struct TimeSpec {
    pub relative: bool,
    pub lo: f64,
    pub hi: f64,
    pub any: bool,
}

/// One TCP option as a script writes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OptSpec {
    Nop,
    Eol,
    Mss(Val),
    Wscale(Val),
    SackOk,
    /// Blocks relative to the sequence space of whoever is acknowledged.
    Sack(Vec<(Val, Val)>),
    Ts {
        val: Val,
        ecr: Val,
    },
    /// Bytes put on the wire as they are (injected packets only).
    Raw(Vec<u8>),
}

#[derive(Clone, Debug)]
pub struct TcpSpec {
    pub flags: u8,
    pub seq: Val,
    pub end: Val,
    pub len: Val,
    pub ack: Option<Val>,
    pub win: Option<Val>,
    pub urg: Option<Val>,
    /// `None`: not checked (outgoing) / none (injected). `<...>`: any options.
    pub options: Option<Vec<OptSpec>>,
    pub payload: Option<Vec<u8>>,
}

#[derive(Clone, Debug)]
pub struct IcmpSpec {
    pub icmp_type: u8,
    pub code: u8,
    /// The 4 bytes after the checksum: the MTU of frag-needed / packet too big, the
    /// pointer of a parameter problem, the gateway of a redirect.
    pub rest: u32,
    /// The quoted segment: flags, sequence space (relative to the client's ISN), ack
    /// (relative to the peer's ISN).
    pub quoted: TcpSpec,
}

/// IP-level modifiers of an injected packet: `{ttl 1}`, `{frag 8}`, `{hbh}`…
#[derive(Clone, Debug, Default)]
pub struct Mods {
    pub ttl: Option<u8>,
    pub tos: Option<u8>,
    pub frag: Option<Frag>,
    pub ext: Vec<ExtHeader>,
    pub bad_checksum: bool,
    pub no_df: bool,
    /// Sent from a router's address (the lab's .254 / ::fe), not the server's.
    pub from_router: bool,
    /// Bytes of the quoted TCP header in an ICMP error (default 20; RFC 792's minimum 8).
    pub quote_len: Option<usize>,
    /// Send this many identical copies.
    pub copies: usize,
    /// Between copies, wait this long (a paced flood rather than a burst).
    pub gap: Option<Duration>,
    /// Cut the payload into segments of this many bytes, sent back to back.
    pub split: Option<usize>,
    /// On an expected line: pure ACKs before it (delayed or not) may come in any number.
    pub coalesce: bool,
}

#[derive(Clone, Debug)]
pub enum Body {
    Tcp(TcpSpec),
    Icmp(IcmpSpec),
}

#[derive(Clone, Debug)]
pub struct Event {
    pub line: usize,
    pub text: String,
    /// `[tcpshake]` / `[linux]`: only for that client.
    pub only: Option<Client>,
    pub time: TimeSpec,
    /// `<` (the peer sends) or `>` (the client must send).
    pub inbound: bool,
    pub body: Body,
    pub mods: Mods,
}

/// `@result CLIENT PATH OP VALUE`.
#[derive(Clone, Debug)]
pub struct Assert {
    pub line: usize,
    pub client: Client,
    pub path: String,
    pub op: String,
    pub value: serde_json::Value,
}

#[derive(Clone, Debug)]
pub struct Script {
    pub name: String,
    pub path: PathBuf,
    pub v6: bool,
    pub app: App,
    pub port: u16,
    /// Bytes of the HEAD request both clients send (its path is padded to this).
    pub request_size: usize,
    pub args: Vec<String>,
    pub clients: Vec<Client>,
    pub tcpshake_only: Option<String>,
    pub peer_isn: u32,
    pub tolerance: Duration,
    /// After the last event: this long without a segment from the client.
    pub quiet: Duration,
    pub xfail: Vec<(Client, String)>,
    /// `@differs-from-linux ID: why`.
    pub differs: Vec<(String, String)>,
    pub asserts: Vec<Assert>,
    pub exit: Vec<(Client, i32)>,
    /// `@ignore-psh`: PSH is advisory (RFC 9293 §3.9.1.2); where clients set it differently
    /// and it does not matter, the script says so.
    pub ignore_psh: bool,
    pub events: Vec<Event>,
}

impl Script {
    pub fn xfail(&self, c: Client) -> Option<&str> {
        self.xfail
            .iter()
            .find(|(x, _)| *x == c)
            .map(|(_, why)| why.as_str())
    }
}

fn num(s: &str) -> Result<u64, String> {
    let r = match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    r.map_err(|_| format!("`{s}` is not a number"))
}

fn val(s: &str) -> Result<Val, String> {
    if s == "?" {
        Ok(Val::Any)
    } else {
        num(s).map(Val::Num)
    }
}

/// `1.5s`, `200ms`, `0.2` (seconds).
pub fn duration(s: &str) -> Result<Duration, String> {
    let (n, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = n.parse().map_err(|_| format!("`{s}` is not a duration"))?;
    Ok(Duration::from_secs_f64(v * scale))
}

fn parse_flags(s: &str) -> Result<u8, String> {
    let mut f = 0;
    for c in s.chars() {
        f |= match c {
            'S' => packet::SYN,
            'F' => packet::FIN,
            'R' => packet::RST,
            'P' => packet::PSH,
            'U' => packet::URG,
            'E' => packet::ECE,
            'W' => packet::CWR,
            '.' => packet::ACK,
            '-' => 0,
            _ => return Err(format!("`{s}`: unknown flag `{c}`")),
        };
    }
    Ok(f)
}

fn parse_time(s: &str) -> Result<TimeSpec, String> {
    if s == "*" {
        return Ok(TimeSpec {
            relative: true,
            lo: 0.0,
            hi: 0.0,
            any: true,
        });
    }
    let relative = s.starts_with('+');
    let (lo, hi) = match s.split_once('~') {
        Some((a, b)) => (a, b),
        None => (s, s),
    };
    let f = |x: &str| -> Result<f64, String> {
        x.trim_start_matches('+')
            .parse()
            .map_err(|_| format!("`{s}` is not a time"))
    };
    Ok(TimeSpec {
        relative,
        lo: f(lo)?,
        hi: f(hi)?,
        any: false,
    })
}

/// `seq:end(len)`.
fn parse_range(s: &str) -> Result<(Val, Val, Val), String> {
    let bad = || format!("`{s}` is not seq:end(len)");
    let (seq, rest) = s.split_once(':').ok_or_else(bad)?;
    let (end, rest) = rest.split_once('(').ok_or_else(bad)?;
    let len = rest.strip_suffix(')').ok_or_else(bad)?;
    Ok((val(seq)?, val(end)?, val(len)?))
}

fn parse_options(s: &str) -> Result<Option<Vec<OptSpec>>, String> {
    let inner = s.trim();
    if inner == "..." {
        return Ok(None);
    }
    let mut out = Vec::new();
    for item in inner.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let w: Vec<&str> = item.split_whitespace().collect();
        out.push(match w.as_slice() {
            ["nop"] => OptSpec::Nop,
            ["eol"] => OptSpec::Eol,
            ["sackOK"] => OptSpec::SackOk,
            ["mss", n] => OptSpec::Mss(val(n)?),
            ["wscale", n] => OptSpec::Wscale(val(n)?),
            ["TS", "val", v, "ecr", e] => OptSpec::Ts {
                val: val(v)?,
                ecr: val(e)?,
            },
            ["sack", blocks @ ..] => OptSpec::Sack(
                blocks
                    .iter()
                    .map(|b| {
                        let (l, r) = b
                            .split_once(':')
                            .ok_or_else(|| format!("sack block `{b}` is not left:right"))?;
                        Ok((val(l)?, val(r)?))
                    })
                    .collect::<Result<_, String>>()?,
            ),
            ["raw", hex] => OptSpec::Raw(
                (0..hex.len())
                    .step_by(2)
                    .map(|i| {
                        hex.get(i..i + 2)
                            .and_then(|b| u8::from_str_radix(b, 16).ok())
                            .ok_or_else(|| format!("`{hex}` is not hex bytes"))
                    })
                    .collect::<Result<_, String>>()?,
            ),
            _ => return Err(format!("unknown option `{item}`")),
        });
    }
    Ok(Some(out))
}

/// A C-style string: `\r`, `\n`, `\t`, `\\`, `\"`, `\xNN`.
fn parse_string(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut it = s.bytes();
    while let Some(b) = it.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match it.next() {
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'0') => out.push(0),
            Some(b'\\') => out.push(b'\\'),
            Some(b'"') => out.push(b'"'),
            Some(b'x') => {
                let h = [it.next().unwrap_or(b'?'), it.next().unwrap_or(b'?')];
                let h = std::str::from_utf8(&h).unwrap_or("??");
                out.push(u8::from_str_radix(h, 16).map_err(|_| format!("bad \\x{h}"))?);
            }
            other => return Err(format!("unknown escape \\{:?}", other.map(char::from))),
        }
    }
    Ok(out)
}

/// Splits a line into tokens; `<…>`, `[…]`, `{…}` and `"…"` are one token each.
fn tokens(line: &str) -> Result<Vec<String>, String> {
    let chars: Vec<char> = line.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        // `<` and `>` alone are directions; `<mss 1460>` is an option list.
        let alone = chars.get(i + 1).is_none_or(|n| n.is_whitespace());
        let close = match c {
            '<' if !alone => Some('>'),
            '[' => Some(']'),
            '{' => Some('}'),
            '"' => Some('"'),
            _ => None,
        };
        let mut tok = String::new();
        match close {
            Some(end) => {
                tok.push(c);
                i += 1;
                let mut escaped = false;
                loop {
                    let Some(&x) = chars.get(i) else {
                        return Err(format!("unclosed `{c}`"));
                    };
                    i += 1;
                    tok.push(x);
                    if end == '"' && x == '\\' && !escaped {
                        escaped = true;
                        continue;
                    }
                    if x == end && !escaped {
                        break;
                    }
                    escaped = false;
                }
            }
            None => {
                while let Some(&x) = chars.get(i) {
                    if x.is_whitespace() {
                        break;
                    }
                    tok.push(x);
                    i += 1;
                }
            }
        }
        out.push(tok);
    }
    Ok(out)
}

/// ICMP type and code names (packetdrill's where it has them; RFC 792, RFC 4443).
fn icmp_names(v6: bool, ty: &str, code: Option<&str>) -> Result<(u8, u8, bool), String> {
    // (type, code, whether the code token was used)
    let c = code.unwrap_or("");
    let v4 = |t: u8, codes: &[(&str, u8)]| -> Result<(u8, u8, bool), String> {
        match codes.iter().find(|(n, _)| *n == c) {
            Some((_, k)) => Ok((t, *k, true)),
            None => match num(c) {
                Ok(k) if !c.is_empty() => Ok((t, k as u8, true)),
                _ => Ok((t, 0, false)),
            },
        }
    };
    if v6 {
        match ty {
            "unreachable" => v4(
                1,
                &[
                    ("no_route", 0),
                    ("admin_prohibited", 1),
                    ("beyond_scope", 2),
                    ("address_unreachable", 3),
                    ("port_unreachable", 4),
                    ("source_policy", 5),
                    ("reject_route", 6),
                ],
            ),
            "packet_too_big" => Ok((2, 0, false)),
            "time_exceeded" => v4(3, &[("hop_limit", 0), ("frag_reassembly", 1)]),
            "parameter_problem" => v4(4, &[("header_field", 0), ("next_header", 1), ("option", 2)]),
            "echo_reply" => Ok((129, 0, false)),
            "type" => {
                let t = num(c)? as u8;
                Ok((t, 0, true))
            }
            _ => Err(format!("unknown ICMPv6 type `{ty}`")),
        }
    } else {
        match ty {
            "unreachable" => v4(
                3,
                &[
                    ("net_unreachable", 0),
                    ("host_unreachable", 1),
                    ("protocol_unreachable", 2),
                    ("port_unreachable", 3),
                    ("frag_needed", 4),
                    ("source_route_failed", 5),
                    ("net_unknown", 6),
                    ("host_unknown", 7),
                    ("source_host_isolated", 8),
                    ("net_prohibited", 9),
                    ("host_prohibited", 10),
                    ("net_tos", 11),
                    ("host_tos", 12),
                    ("packet_filtered", 13),
                    ("precedence_violation", 14),
                    ("precedence_cutoff", 15),
                ],
            ),
            "source_quench" => Ok((4, 0, false)),
            "redirect" => v4(
                5,
                &[("net", 0), ("host", 1), ("tos_net", 2), ("tos_host", 3)],
            ),
            "time_exceeded" => v4(11, &[("ttl", 0), ("frag_reassembly", 1)]),
            "parameter_problem" => v4(
                12,
                &[("pointer", 0), ("missing_option", 1), ("bad_length", 2)],
            ),
            "echo_reply" => Ok((0, 0, false)),
            "type" => {
                let t = num(c)? as u8;
                Ok((t, 0, true))
            }
            _ => Err(format!("unknown ICMP type `{ty}`")),
        }
    }
}

/// The TCP part of a line: `FLAGS seq:end(len) [ack N] [win N] [urg N] [<opts>] ["data"]`.
fn parse_tcp(toks: &[String]) -> Result<(TcpSpec, usize), String> {
    let flags = parse_flags(toks.first().ok_or("missing flags")?)?;
    let (seq, end, len) = parse_range(toks.get(1).ok_or("missing seq:end(len)")?)?;
    let mut spec = TcpSpec {
        flags,
        seq,
        end,
        len,
        ack: None,
        win: None,
        urg: None,
        options: None,
        payload: None,
    };
    let mut i = 2;
    while let Some(t) = toks.get(i) {
        match t.as_str() {
            "ack" | "win" | "urg" => {
                let v = val(toks
                    .get(i + 1)
                    .ok_or_else(|| format!("`{t}` needs a value"))?)?;
                match t.as_str() {
                    "ack" => spec.ack = Some(v),
                    "win" => spec.win = Some(v),
                    _ => spec.urg = Some(v),
                }
                i += 2;
            }
            _ if t.starts_with('<') => {
                spec.options = parse_options(&t[1..t.len() - 1])?;
                if spec.options.is_none() {
                    spec.options = Some(vec![OptSpec::Raw(b"...".to_vec())]);
                }
                i += 1;
            }
            // `"text"`, `"a"*870` (repeated), several in a row (concatenated).
            _ if t.starts_with('"') => {
                let mut bytes = parse_string(&t[1..t.len() - 1])?;
                if let Some(n) = toks.get(i + 1).and_then(|n| n.strip_prefix('*')) {
                    bytes = bytes.repeat(num(n)? as usize);
                    i += 1;
                }
                spec.payload.get_or_insert_with(Vec::new).extend(bytes);
                i += 1;
            }
            _ => break,
        }
    }
    Ok((spec, i))
}

impl TcpSpec {
    /// `<...>`: the script does not care which options the client sends.
    pub fn any_options(&self) -> bool {
        matches!(self.options.as_deref(), Some([OptSpec::Raw(r)]) if r == b"...")
    }
}

fn parse_mods(tok: &str, mods: &mut Mods) -> Result<(), String> {
    for item in tok[1..tok.len() - 1].split(',').map(str::trim) {
        let w: Vec<&str> = item.split_whitespace().collect();
        match w.as_slice() {
            ["ttl", n] | ["hlim", n] => mods.ttl = Some(num(n)? as u8),
            ["tos", n] => mods.tos = Some(num(n)? as u8),
            ["frag", n] => {
                mods.frag = Some(Frag {
                    size: num(n)? as usize,
                    reverse: false,
                })
            }
            ["frag", n, "reverse"] => {
                mods.frag = Some(Frag {
                    size: num(n)? as usize,
                    reverse: true,
                })
            }
            ["hbh"] => mods.ext.push(ExtHeader::HopByHop),
            ["dstopt"] => mods.ext.push(ExtHeader::DestOpts),
            ["rthdr", t] => mods.ext.push(ExtHeader::Routing {
                rtype: num(t)? as u8,
            }),
            ["atomic_frag"] => mods.ext.push(ExtHeader::AtomicFragment),
            ["badsum"] => mods.bad_checksum = true,
            ["nodf"] => mods.no_df = true,
            ["from", "router"] => mods.from_router = true,
            ["quote", n] => mods.quote_len = Some(num(n)? as usize),
            ["copies", n] => mods.copies = num(n)? as usize,
            ["gap", d] => mods.gap = Some(duration(d)?),
            ["split", n] => mods.split = Some((num(n)? as usize).max(1)),
            ["coalesce"] => mods.coalesce = true,
            _ => return Err(format!("unknown modifier `{item}`")),
        }
    }
    Ok(())
}

fn parse_event(line: usize, text: &str, v6: bool) -> Result<Option<Event>, String> {
    let mut toks = tokens(text)?;
    let mut only = None;
    if let Some(first) = toks.first()
        && let Some(c) = first.strip_prefix('[').and_then(|s| s.strip_suffix(']'))
        && let Ok(client) = Client::parse(c)
    {
        only = Some(client);
        toks.remove(0);
    }
    let time = parse_time(toks.first().ok_or("empty line")?)?;
    let Some(dir) = toks.get(1) else {
        return Err("a time and nothing else".into());
    };
    // packetdrill's system calls and shell commands drive its own client; ours are fixed
    // (see @app), so these lines are read and skipped.
    if dir.contains('(') || dir.starts_with('`') {
        return Ok(None);
    }
    let inbound = match dir.as_str() {
        "<" => true,
        ">" => false,
        _ => return Err(format!("expected `<` or `>`, found `{dir}`")),
    };
    let mut rest: Vec<String> = toks[2..].to_vec();
    // packetdrill also writes the quoted segment before `icmp`.
    let mut quote_first = None;
    if rest.first().is_some_and(|t| t.starts_with('[')) {
        quote_first = Some(rest.remove(0));
    }
    let mut mods = Mods {
        copies: 1,
        ..Mods::default()
    };
    let (body, used) = if rest.first().is_some_and(|t| t == "icmp") {
        if !inbound {
            return Err("the client's ICMP is not checked; only `< icmp`".into());
        }
        let ty = rest.get(1).ok_or("icmp needs a type")?;
        let code = rest.get(2).map(String::as_str);
        let (icmp_type, code, used_code) = icmp_names(v6, ty, code)?;
        let mut i = if used_code { 3 } else { 2 };
        let mut rest_field = 0u32;
        while let Some(t) = rest.get(i) {
            match t.as_str() {
                "mtu" | "pointer" | "gateway" => {
                    rest_field = num(rest.get(i + 1).ok_or("mtu/pointer needs a value")?)? as u32;
                    if t == "pointer" && !v6 {
                        rest_field <<= 24;
                    }
                    i += 2;
                }
                _ => break,
            }
        }
        let quote = match quote_first.take() {
            Some(q) => q,
            None => {
                let q = rest
                    .get(i)
                    .ok_or("icmp needs the quoted segment [seq:end(len)]")?;
                i += 1;
                q.clone()
            }
        };
        let inner: Vec<String> = tokens(&quote[1..quote.len() - 1])?;
        // The quote may start with flags (ours) or go straight to seq:end(len) (packetdrill).
        let inner = if inner.first().is_some_and(|t| t.contains(':')) {
            let mut v = vec![".".to_string()];
            v.extend(inner);
            v
        } else {
            inner
        };
        let (quoted, _) = parse_tcp(&inner)?;
        (
            Body::Icmp(IcmpSpec {
                icmp_type,
                code,
                rest: rest_field,
                quoted,
            }),
            i,
        )
    } else {
        let (spec, used) = parse_tcp(&rest)?;
        (Body::Tcp(spec), used)
    };
    for t in &rest[used..] {
        if t.starts_with('{') {
            parse_mods(t, &mut mods)?;
        } else {
            return Err(format!("unexpected `{t}`"));
        }
    }
    if let Body::Tcp(spec) = &body
        && inbound
        && (spec.seq == Val::Any || spec.ack == Some(Val::Any))
    {
        return Err("an injected segment needs its seq and ack".into());
    }
    Ok(Some(Event {
        line,
        text: text.trim().to_string(),
        only,
        time,
        inbound,
        body,
        mods,
    }))
}

pub fn parse_file(path: &Path) -> Result<Script, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    parse(&name, path, &text).map_err(|e| format!("{}:{e}", path.display()))
}

pub fn parse(name: &str, path: &Path, text: &str) -> Result<Script, String> {
    let mut s = Script {
        name: name.to_string(),
        path: path.to_path_buf(),
        v6: false,
        app: App::NoHttp,
        port: 80,
        request_size: 100,
        args: Vec::new(),
        clients: Client::ALL.to_vec(),
        tcpshake_only: None,
        peer_isn: 1_000_000_000,
        tolerance: Duration::from_millis(80),
        quiet: Duration::from_millis(100),
        xfail: Vec::new(),
        differs: Vec::new(),
        asserts: Vec::new(),
        exit: Vec::new(),
        ignore_psh: false,
        events: Vec::new(),
    };
    // Directives first (@family changes how ICMP names read), then events.
    let mut lines = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        let line = strip_comment(raw);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(d) = line.strip_prefix('@') {
            directive(&mut s, n, d).map_err(|e| format!("{n}: {e}"))?;
        } else {
            lines.push((n, line.to_string()));
        }
    }
    for (n, line) in lines {
        if let Some(ev) = parse_event(n, &line, s.v6).map_err(|e| format!("{n}: {e}: {line}"))? {
            s.events.push(ev);
        }
    }
    if s.events.is_empty() {
        return Err("no events".into());
    }
    let has_client_lines = s.events.iter().any(|e| e.only.is_some());
    if has_client_lines && s.differs.is_empty() && s.clients.len() > 1 {
        return Err(
            "lines for one client only ([tcpshake]/[linux]) need an @differs-from-linux note"
                .into(),
        );
    }
    if s.clients == [Client::Tcpshake] && s.tcpshake_only.is_none() {
        return Err("a script for tcpshake alone says why: @tcpshake-only: <why>".into());
    }
    Ok(s)
}

/// `//` and `#` start comments (outside strings).
fn strip_comment(line: &str) -> &str {
    let mut in_str = false;
    let b = line.as_bytes();
    for i in 0..b.len() {
        match b[i] {
            b'"' if i == 0 || b[i - 1] != b'\\' => in_str = !in_str,
            b'#' if !in_str => return &line[..i],
            b'/' if !in_str && b.get(i + 1) == Some(&b'/') => return &line[..i],
            _ => {}
        }
    }
    line
}

fn directive(s: &mut Script, n: usize, d: &str) -> Result<(), String> {
    let (key, rest) = d.split_once(char::is_whitespace).unwrap_or((d, ""));
    let (key, rest) = match key.strip_suffix(':') {
        Some(k) => (k, rest.trim()),
        None => (key, rest.trim()),
    };
    match key {
        "family" => {
            s.v6 = match rest {
                "ipv4" => false,
                "ipv6" => true,
                _ => return Err(format!("@family ipv4|ipv6, not `{rest}`")),
            }
        }
        "app" => {
            s.app = match rest {
                "http" => App::Http,
                "no-http" => App::NoHttp,
                _ => return Err(format!("@app http|no-http, not `{rest}`")),
            }
        }
        "ignore-psh" => s.ignore_psh = true,
        "port" => s.port = num(rest)? as u16,
        "request-size" => s.request_size = num(rest)? as usize,
        "args" => s.args.extend(rest.split_whitespace().map(String::from)),
        "peer-isn" => s.peer_isn = num(rest)? as u32,
        "tolerance" => s.tolerance = duration(rest)?,
        "quiet" => s.quiet = duration(rest)?,
        "tcpshake-only" => {
            s.clients = vec![Client::Tcpshake];
            s.tcpshake_only = Some(rest.to_string());
        }
        "xfail" => {
            let (c, why) = rest
                .split_once(':')
                .ok_or("@xfail CLIENT: why (issue item)")?;
            s.xfail
                .push((Client::parse(c.trim())?, why.trim().to_string()));
        }
        "differs-from-linux" => {
            let (id, why) = rest
                .split_once(':')
                .ok_or("@differs-from-linux ID: why, with the RFC")?;
            s.differs
                .push((id.trim().to_string(), why.trim().to_string()));
        }
        "result" => {
            let w: Vec<&str> = rest.splitn(4, ' ').collect();
            let [c, path, op, v] = w.as_slice() else {
                return Err("@result CLIENT PATH OP VALUE".into());
            };
            let value = serde_json::from_str(v.trim())
                .map_err(|e| format!("@result value `{v}` is not JSON: {e}"))?;
            if !["==", "!=", "~", "!~", "<", "<=", ">", ">="].contains(op) {
                return Err(format!("@result: unknown operator `{op}`"));
            }
            s.asserts.push(Assert {
                line: n,
                client: Client::parse(c)?,
                path: path.to_string(),
                op: op.to_string(),
                value,
            });
        }
        "exit" => {
            let (c, code) = rest.split_once(' ').ok_or("@exit CLIENT CODE")?;
            s.exit.push((Client::parse(c)?, num(code.trim())? as i32));
        }
        _ => return Err(format!("unknown directive @{key}")),
    }
    Ok(())
}

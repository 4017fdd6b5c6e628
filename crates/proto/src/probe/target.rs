//! Target syntax, one parser for `probe`, its surveys and `scan`'s host part:
//! `198.18.0.2:80`, `[fd00::2]:80`, `fd00::2` (with `-p`), `name:80`,
//! `http://name[:port]/path?query`, `https://name[:port]/path`. Parsing only; names are
//! resolved by the I/O layer.

use crate::wire::http::check_request_target;
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(a)) => write!(f, "[{a}]"),
            Host::Ip(a) => write!(f, "{a}"),
            Host::Name(n) => f.write_str(n),
        }
    }
}

/// The address family `-4` / `-6` ask for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Family {
    #[default]
    Any,
    V4,
    V6,
}

impl Family {
    /// From the `-4` and `-6` flags (the command line lets at most one be given).
    pub fn from_flags(ipv4: bool, ipv6: bool) -> Family {
        match (ipv4, ipv6) {
            (true, _) => Family::V4,
            (_, true) => Family::V6,
            _ => Family::Any,
        }
    }

    pub fn admits(self, ip: IpAddr) -> bool {
        match self {
            Family::Any => true,
            Family::V4 => ip.is_ipv4(),
            Family::V6 => ip.is_ipv6(),
        }
    }

    /// `IPv4` / `IPv6` (`any` for [`Family::Any`]).
    pub fn name(self) -> &'static str {
        match self {
            Family::Any => "any",
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    /// The command-line flag that asks for this family: `-6`, `-4`.
    pub fn flag(self) -> &'static str {
        match self {
            Family::V6 => "-6",
            _ => "-4",
        }
    }
}

impl Host {
    /// An address or a host name: the host part of every target syntax. `[v6addr]` is
    /// accepted too. The message says what is wrong with `s`.
    pub fn parse(s: &str) -> Result<Host, String> {
        let bare = s
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or(s);
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(Host::Ip(ip));
        }
        if bare.contains(':') {
            return Err(
                zone_refusal(bare).unwrap_or_else(|| format!("`{bare}` is not an IPv6 address"))
            );
        }
        if octet_ranges(bare) {
            return Err(format!(
                "`{bare}` is a range of addresses (nmap's octet ranges): ranges and blocks are \
                 for `tcpshake scan`; give one address or name per target"
            ));
        }
        if numeric_form(bare) {
            return Err(not_ipv4(bare));
        }
        validate_name(bare)?;
        Ok(Host::Name(bare.to_string()))
    }

    /// A literal address of the other family than `-4`/`-6` ask for is a contradiction the
    /// user must resolve; a name is looked up in the wanted family later.
    pub fn check_family(&self, family: Family) -> Result<(), String> {
        match self {
            Host::Ip(ip) if !family.admits(*ip) => {
                Err(family_mismatch(&ip.to_string(), ip.is_ipv6(), family))
            }
            _ => Ok(()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// As the user wrote it.
    pub spec: String,
    pub host: Host,
    pub port: u16,
    /// From a URL (`http://h/path?query`; the `#fragment` is never sent), if one was given.
    pub path: Option<String>,
    /// `https://`, or no scheme and port 443: TLS before the request.
    pub tls: bool,
}

impl Target {
    /// The `Host:` header value: the name or address, with the port when not 80
    /// (RFC 9110 §7.2).
    pub fn host_header(&self) -> String {
        self.host_header_for(self.tls)
    }

    /// The `Host:` value when the exchange is (`tls`) or is not HTTPS: the port is left out
    /// when it is the scheme's default, 443 or 80.
    pub fn host_header_for(&self, tls: bool) -> String {
        if self.port == if tls { 443 } else { 80 } {
            self.host.to_string()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// A message about `part` of the target `spec`, naming the spec when it is more than that
/// part (`198.18.0.2:99999`), once when it is all of it (`bad$host`).
pub fn in_spec(spec: &str, part: &str, e: String) -> String {
    if spec == part || e.starts_with(&format!("`{spec}`")) {
        e
    } else {
        format!("`{spec}`: {e}")
    }
}

/// Parse one target; `default_port` (`-p`) applies when the spec has none.
pub fn parse(spec: &str, default_port: Option<u16>) -> Result<Target, String> {
    parse_with(spec, default_port, true)
}

/// Parse one target that must name its port (`HOST:PORT`, `[V6ADDR]:PORT`, a URL): where there
/// is no `-p` to give, as in the exporter's configuration and its /probe.
pub fn parse_host_port(spec: &str) -> Result<Target, String> {
    parse_with(spec, None, false)
}

fn parse_with(spec: &str, default_port: Option<u16>, has_p: bool) -> Result<Target, String> {
    let s = spec.trim();
    if s.is_empty() {
        return Err("empty target".into());
    }
    let at = |e: String| in_spec(s, "", e);
    // RFC 3986 §3.1: schemes are case-insensitive.
    let url = match s.split_once("://") {
        Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
            "http" => Some((rest, 80, false)),
            "https" => Some((rest, 443, true)),
            _ => {
                return Err(at(format!(
                    "scheme `{scheme}://` is not supported; use http://, https:// or HOST:PORT"
                )));
            }
        },
        None => None,
    };
    let (authority, url_port, path, tls) = match url {
        Some((rest, port, tls)) => {
            // RFC 3986 §3.2: the authority ends at the first `/`, `?` or `#`.
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let (authority, tail) = rest.split_at(end);
            if authority.contains('@') {
                return Err(at(
                    "a user name or password in a URL (`user:pw@`) is not supported: \
                     tcpshake sends no credentials; leave it out"
                        .into(),
                ));
            }
            // §3.5: the fragment stays with the client; §3.4: the query is sent.
            let tail = tail.split('#').next().unwrap_or("");
            let path = match tail.strip_prefix('/') {
                Some(_) => tail.to_string(),
                None => format!("/{tail}"),
            };
            check_request_target(&path).map_err(|e| at(format!("path `{path}`: {e}")))?;
            (authority, Some(port), Some(path), tls)
        }
        None => {
            if let Some((before, after)) = s.split_once('/') {
                // `198.18.0.0/30:80`: an address block, not a host with a path (a walk: its
                // message began with paths and URLs).
                let addr = before
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .is_ok();
                let bits = after.starts_with(|c: char| c.is_ascii_digit());
                return Err(at(if addr && bits {
                    "an address block is for `tcpshake scan`; a probe takes one host \
                     (HOST:PORT, [V6ADDR]:PORT)"
                        .into()
                } else {
                    "a path needs a URL (http://HOST[:PORT]/PATH) or --path; \
                     address blocks are for `tcpshake scan`"
                        .into()
                }));
            }
            (s, None, None, false)
        }
    };
    let (host, port) = split_host_port(authority).map_err(at)?;
    let host = Host::parse(host).map_err(|e| in_spec(s, host, e))?;
    let port = match port.or(default_port).or(url_port) {
        Some(p) => p,
        None => return Err(at(no_port(&host, authority, has_p))),
    };
    if port == 0 {
        return Err(at(port_number("0", 1).unwrap_err()));
    }
    Ok(Target {
        spec: spec.to_string(),
        host,
        port,
        path,
        // Port 443 means HTTPS unless a scheme says otherwise (`http://host:443`): what
        // someone who lists `-p 80,443` wants.
        tls: tls || (url.is_none() && port == 443),
    })
}

/// One spec over the `-p` ports (none: the spec must name its own), its address checked
/// against `-4`/`-6`. A spec that names its own port is probed once; one that does not is
/// probed on each port, labelled `host:port` when there are several, so that statistics
/// keep them apart. A URL without a port takes `-p`'s ports too, labelled with the port
/// written into it (`http://host:81/x`) whenever that is not its scheme's port: its label
/// alone would read as port 80 (or 443).
pub fn expand(spec: &str, ports: &[u16], family: Family) -> Result<Vec<Target>, String> {
    let first = parse(spec, ports.first().copied())?;
    first
        .host
        .check_family(family)
        .map_err(|e| in_spec(spec, "", e))?;
    if let Host::Ip(ip) = first.host {
        // The message starts with the address: the spec is named only when it says more.
        let bare = spec.trim().trim_start_matches('[').trim_end_matches(']');
        connectable_address(ip).map_err(|e| match bare == ip.to_string() {
            true => e,
            false => format!("`{spec}`: {e}"),
        })?;
        if let IpAddr::V6(v6) = ip
            && let Some(v4) = v6.to_ipv4_mapped()
        {
            return Err(format!(
                "`{spec}`: {}; give the IPv4 address: {v4}:{}",
                mapped_message(v6),
                first.port
            ));
        }
    }
    if ports.is_empty() {
        return Ok(vec![first]);
    }
    let own_port = names_port(spec);
    let mut out: Vec<Target> = Vec::with_capacity(ports.len());
    for &p in ports {
        let mut t = parse(spec, Some(p))?;
        if out.iter().any(|o| o.port == t.port) {
            continue; // the spec names its own port: once is enough
        }
        match (own_port, is_url(spec)) {
            (true, _) => {}
            (false, true) => {
                if let Some(labelled) = url_with_port(spec, t.port) {
                    t.spec = labelled;
                }
            }
            (false, false) if ports.len() > 1 => t.spec = format!("{}:{}", t.host, t.port),
            (false, false) => {}
        }
        out.push(t);
    }
    Ok(out)
}

/// A URL that writes no port, with `port` written into it, when that is not the port its
/// scheme means (`http://host/x`, 81 → `http://host:81/x`); `None` for anything else.
fn url_with_port(spec: &str, port: u16) -> Option<String> {
    let s = spec.trim();
    let (scheme, rest) = s.split_once("://")?;
    let default = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    if port == default {
        return None;
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    Some(format!("{scheme}://{authority}:{port}{tail}"))
}

/// What `ip` is when no TCP peer can be there, from the address alone: the unspecified
/// address (a socket's "any": Linux would carry a SYN to it over loopback, RFC 1122
/// §3.2.1.3 allows it only as a source), a multicast group or IPv4's limited broadcast
/// (RFC 1122 §4.2.3.10: a SYN to either must be ignored). An IPv4-mapped IPv6 address is
/// the IPv4 address it carries. A subnet's broadcast address needs the route to be known
/// (the I/O layer asks it).
pub fn not_a_peer(ip: IpAddr) -> Option<&'static str> {
    match ip.to_canonical() {
        a if a.is_unspecified() => Some("the unspecified address"),
        IpAddr::V4(a) if a.is_broadcast() => Some("the limited broadcast address"),
        a if a.is_multicast() => Some("a multicast address"),
        _ => None,
    }
}

/// The one refusal of an address no TCP connection can be made to, in every command:
/// what it is (`what`, from [`not_a_peer`] or the route) and what to give instead.
pub fn not_a_peer_message(ip: IpAddr, what: &str) -> String {
    let hint = match ip.to_canonical() {
        IpAddr::V4(a) if a.is_unspecified() => {
            "give the server's address (127.0.0.1 for this host)"
        }
        IpAddr::V6(a) if a.is_unspecified() => "give the server's address (::1 for this host)",
        _ => "give a host's own (unicast) address",
    };
    format!("{ip} is {what}: no TCP connection can be made to it; {hint}")
}

/// Why an IPv4-mapped IPv6 address (::ffff:a.b.c.d) is no target: it stands for an IPv4
/// node inside an IPv6 socket and never appears on the wire (RFC 4291 §2.5.5.2); sent as
/// IPv6, its SYNs follow an IPv6 route where no such host is (walk 15: hops of the IPv6
/// path, then silence). The IPv4 address it carries is what to give.
pub fn mapped_message(ip: std::net::Ipv6Addr) -> String {
    format!(
        "{ip} is an IPv4-mapped IPv6 address (RFC 4291 §2.5.5.2), which stands for an IPv4 \
         host inside an IPv6 socket and is never sent on the wire"
    )
}

/// `Err` with [`not_a_peer_message`] when `ip` is [`not_a_peer`].
pub fn connectable_address(ip: IpAddr) -> Result<(), String> {
    match not_a_peer(ip) {
        Some(what) => Err(not_a_peer_message(ip, what)),
        None => Ok(()),
    }
}

/// Whether `spec` writes its own port (`host:80`, `[fd00::2]:80`, `http://host:8080/`):
/// then `-p` does not apply to it. A URL without one (`http://host/`) takes `-p`'s port
/// instead of its scheme's.
pub fn names_port(spec: &str) -> bool {
    let s = spec.trim();
    let authority = match s.split_once("://") {
        Some((_, rest)) => rest.split(['/', '?', '#']).next().unwrap_or(""),
        None => s,
    };
    matches!(split_host_port(authority), Ok((_, Some(_))))
}

/// Whether `spec` is a URL (`http://…`, `https://…`): its path is the request's.
pub fn is_url(spec: &str) -> bool {
    spec.trim().contains("://")
}

/// What to write instead of a target without a port (`has_p`: the command has `-p`).
/// `fd00::2:80` is a valid address whose last group happens to be 80, so the likely
/// meaning is said first.
fn no_port(host: &Host, written: &str, has_p: bool) -> String {
    let or_p = if has_p { ", or give -p PORT" } else { "" };
    if let Host::Ip(IpAddr::V6(_)) = host
        && !written.starts_with('[')
        && let Some((addr, port)) = written.rsplit_once(':')
        && addr.parse::<Ipv6Addr>().is_ok()
        && port.parse::<u16>().is_ok_and(|p| p > 0)
    {
        return format!(
            "no port; if you meant port {port}, write `[{addr}]:{port}` (an IPv6 address \
             with a port goes in brackets){or_p}"
        );
    }
    if has_p {
        format!("no port; write it as `{host}:80` or give -p PORT")
    } else {
        format!("no port; write it as HOST:PORT, e.g. `{host}:80`")
    }
}

/// RFC 6874's zone index (`fe80::1%eth0`): a link-local address needs its link named,
/// which tcpshake's route lookup and taps do not take. The refusal, when `s` is one.
fn zone_refusal(s: &str) -> Option<String> {
    let (addr, zone) = s.split_once('%')?;
    addr.parse::<Ipv6Addr>().ok()?;
    Some(format!(
        "`{s}`: an address with a zone index (`%{zone}`, a link-local scope) is not \
         supported; give a global or unique-local (fd00::/8) address of the host"
    ))
}

fn split_host_port(s: &str) -> Result<(&str, Option<u16>), String> {
    if let Some(inner) = s.strip_prefix('[') {
        let close = inner.find(']').ok_or("`[` without a closing `]`")?;
        let host = &inner[..close];
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(zone_refusal(host)
                .unwrap_or_else(|| format!("`{host}` inside brackets is not an IPv6 address")));
        }
        let after = &inner[close + 1..];
        return match after.strip_prefix(':') {
            Some(p) => Ok((host, Some(parse_port(p)?))),
            None if after.is_empty() => Ok((host, None)),
            None => Err(format!("unexpected `{after}` after `]`")),
        };
    }
    // A bare IPv6 address has several colons and no port.
    if s.matches(':').count() > 1 {
        if s.parse::<Ipv6Addr>().is_ok() {
            return Ok((s, None));
        }
        return Err(format!(
            "`{s}` is not an IPv6 address; to give a port, write `[ADDR]:PORT`"
        ));
    }
    match s.rsplit_once(':') {
        Some((h, p)) => Ok((h, Some(parse_port(p)?))),
        None => Ok((s, None)),
    }
}

fn parse_port(p: &str) -> Result<u16, String> {
    port_number(p, 1)
}

/// The one reading of a port, and the one message for what is not a port, in every
/// command: a number from `lowest` to 65535. `scan` takes port 0 as nmap does (`lowest`
/// 0: a SYN to it shows what answers there); a connection cannot be made to it, so the
/// others refuse it and say why.
pub fn port_number(text: &str, lowest: u16) -> Result<u16, String> {
    let t = text.trim();
    let give = format!("give a number from {lowest} to 65535");
    // Rust's parse takes a leading `+`: `host:+80` read as port 80. A port has no sign.
    if let Some(n) = t.strip_prefix('+').filter(|n| n.parse::<u16>().is_ok()) {
        return Err(format!("`{t}`: a port has no sign; write {n}"));
    }
    match t.parse::<u16>() {
        Ok(0) if lowest > 0 => Err(format!(
            "port 0 cannot be connected to (no server can listen on it; `tcpshake scan -p 0` \
             sends it a SYN); {give}"
        )),
        Ok(p) => Ok(p),
        Err(_) if t.is_empty() => Err(format!("a port is missing; {give}")),
        Err(_) => {
            // A service name (`http`), as scan's -p takes it: say its number — or, for a
            // name many ports share (`unknown`: 1 912), how many and where it works.
            let named: Vec<String> = if t.contains(['*', '?']) {
                Vec::new()
            } else {
                crate::probe::scan::ports::named(t)
                    .map(|p| p.to_string())
                    .collect()
            };
            let hint = match named.as_slice() {
                [] => String::new(),
                [p] => format!(" ({t} is port {p} in nmap's services list)"),
                ps if ps.len() <= 3 => {
                    format!(" ({t} is ports {} in nmap's services list)", ps.join(", "))
                }
                ps => format!(
                    " ({t} is {} ports in nmap's services list: `tcpshake scan HOST -p {t}` \
                     scans them)",
                    ps.len()
                ),
            };
            Err(format!(
                "`{}` is not a port; {give}{hint}",
                t.escape_debug()
            ))
        }
    }
}

/// The one message for a literal address of the other family than `-4`/`-6` ask for,
/// in every command: `text` as written (an address, a range, a block).
pub fn family_mismatch(text: &str, v6: bool, family: Family) -> String {
    let (is, want) = if v6 {
        ("IPv6", "IPv4")
    } else {
        ("IPv4", "IPv6")
    };
    let flag = family.flag();
    format!("`{text}` is {is} but {flag} asks for {want}; drop {flag} or give an {want} address")
}

/// Whether `s` is meant as an IPv4 address rather than a name: its last label is a number
/// (decimal, or `0x` hex). No host name ends so (RFC 1123 §2.1: the highest-level label is
/// alphabetic), and the resolver would read it as one of inet_aton's old forms — `010` as
/// octal 8, `198.18.200` as 198.18.0.200, `3323119618` as one 32-bit number — an address
/// the user did not write.
/// nmap's octet ranges (`198.18.0.1-20`, `198.18.0-3.1,5`, `198.18.*.1`): four parts of
/// digits, `-`, `,` and `*`, one at least with a range in it. A host name could be written
/// so (its labels may hold `-`), but no name ends in a label of digits and hyphens alone
/// that a resolver would be asked about on purpose.
fn octet_ranges(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_digit() || matches!(c, '-' | ',' | '*'))
        })
        && parts.iter().any(|p| p.contains(['-', ',', '*']))
}

fn numeric_form(s: &str) -> bool {
    let last = s
        .strip_suffix('.')
        .unwrap_or(s)
        .rsplit('.')
        .next()
        .unwrap_or("");
    let hex = last
        .strip_prefix("0x")
        .or_else(|| last.strip_prefix("0X"))
        .is_some_and(|h| h.chars().all(|c| c.is_ascii_hexdigit()));
    hex || (!last.is_empty() && last.chars().all(|c| c.is_ascii_digit()))
}

/// What is wrong with `s`, which [`numeric_form`] takes for an IPv4 address that did not
/// parse as one: the bad octet of four, or the form.
fn not_ipv4(s: &str) -> String {
    let parts: Vec<&str> = s.split('.').collect();
    if parts.len() == 4 && parts.iter().all(|p| p.chars().all(|c| c.is_ascii_digit())) {
        for (k, p) in parts.iter().enumerate() {
            if let Err(e) = ipv4_octet(p, k + 1, s) {
                return e;
            }
        }
    }
    format!(
        "`{s}` is not an IPv4 address: write four decimal octets, as 198.18.0.1 (a host \
         name never ends in a number)"
    )
}

/// Octet `k` (1-4) of the IPv4 address or range `whole`, in decimal: one rule for every
/// command. A leading zero is refused, not read: `010` is 8 to inet_aton and to ping, 10
/// to nmap.
pub fn ipv4_octet(t: &str, k: usize, whole: &str) -> Result<u8, String> {
    if t.len() > 1 && t.starts_with('0') && t.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "`{whole}`: octet {k} `{t}` has a leading zero, which some programs read as octal \
             (`010` is 8) and others as decimal; write it without"
        ));
    }
    t.parse::<u8>()
        .ok()
        .filter(|_| t.chars().all(|c| c.is_ascii_digit()))
        .ok_or_else(|| format!("`{whole}`: octet {k} `{t}` is not a number from 0 to 255"))
}

/// RFC 1123 §2.1 host names: letters, digits, hyphens, dots; labels of 1-63. The message
/// points at the first character that cannot be in one.
fn validate_name(name: &str) -> Result<(), String> {
    let bare = name.strip_suffix('.').unwrap_or(name);
    if bare.is_empty() {
        return Err("empty host name".into());
    }
    if bare.len() > 253 {
        return Err(format!("`{name}` is longer than a host name can be (253)"));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if let Some(c) = bare.chars().find(|&c| !(allowed(c) || c == '.')) {
        let c = if c.is_ascii_graphic() {
            format!("`{c}`")
        } else if c == ' ' {
            "space".to_string()
        } else {
            c.escape_unicode().to_string()
        };
        return Err(format!(
            "`{}` is neither an address nor a host name (character {c})",
            name.escape_debug()
        ));
    }
    for label in bare.split('.') {
        // Which rule the label breaks (RFC 1035 §2.3.4, RFC 1123 §2.1).
        let why = if label.is_empty() {
            "an empty label (two dots in a row, or a leading dot)".to_string()
        } else if label.len() > 63 {
            format!(
                "label `{label}` is {} characters long; a label holds at most 63",
                label.len()
            )
        } else if label.starts_with('-') || label.ends_with('-') {
            format!("label `{label}` starts or ends with a hyphen")
        } else {
            continue;
        };
        return Err(format!(
            "`{name}` is neither an address nor a host name ({why})"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An address block is said as one (it is `scan`'s), not as a host with a path.
    #[test]
    fn an_address_block_is_not_read_as_a_path() {
        for t in ["198.18.222.0/30:80", "[fd00::]/120:80", "fd00::/120"] {
            let e = parse(t, None).unwrap_err().to_string();
            assert!(
                e.contains("an address block is for `tcpshake scan`"),
                "{t}: {e}"
            );
        }
        let e = parse("198.18.0.2/index.html", None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("a path needs a URL"), "{e}");
    }

    #[test]
    fn forms_parse() {
        let t = parse("198.18.0.2:80", None).unwrap();
        assert_eq!(t.host, Host::Ip("198.18.0.2".parse().unwrap()));
        assert_eq!(t.port, 80);
        assert_eq!(t.host_header(), "198.18.0.2");
        let t = parse("[fd00::2]:8080", None).unwrap();
        assert_eq!(t.host, Host::Ip("fd00::2".parse().unwrap()));
        assert_eq!(t.host_header(), "[fd00::2]:8080");
        let t = parse("fd00::2", Some(443)).unwrap();
        assert_eq!(t.port, 443);
        let t = parse("http://lab.test:8000/x?y", None).unwrap();
        assert_eq!(t.host, Host::Name("lab.test".into()));
        assert_eq!((t.port, t.path.as_deref()), (8000, Some("/x?y")));
        let t = parse("http://198.18.0.2", None).unwrap();
        assert_eq!((t.port, t.path.as_deref(), t.tls), (80, Some("/"), false));
        let t = parse("https://198.18.0.2/", None).unwrap();
        assert_eq!((t.port, t.path.as_deref(), t.tls), (443, Some("/"), true));
        assert_eq!(t.host_header(), "198.18.0.2");
        // Port 443 without a scheme is HTTPS; a scheme says otherwise.
        assert!(parse("198.18.0.2:443", None).unwrap().tls);
        assert!(parse("198.18.0.2", Some(443)).unwrap().tls);
        assert!(!parse("http://198.18.0.2:443/", None).unwrap().tls);
        assert!(!parse("198.18.0.2", Some(8443)).unwrap().tls);
        let t = parse("https://lab.test:8443/x", None).unwrap();
        assert_eq!(
            (t.port, t.host_header()),
            (8443, "lab.test:8443".to_string())
        );
        let t = parse("198.18.0.2:443", None).unwrap();
        assert_eq!(t.host_header_for(true), "198.18.0.2");
        assert_eq!(
            parse("web-1.lab:81", None).unwrap().host,
            Host::Name("web-1.lab".into())
        );
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        assert!(parse("198.18.0.2", None).unwrap_err().contains("no port"));
        assert!(
            parse("198.18.0.2:99999", None)
                .unwrap_err()
                .contains("not a port")
        );
        assert!(parse("[fd00::2:80", None).unwrap_err().contains("closing"));
        assert!(parse("fd00::zz:1", None).unwrap_err().contains("IPv6"));
        assert!(parse("ftp://x/", None).unwrap_err().contains("ftp://"));
        assert!(
            parse("bad host:80", None)
                .unwrap_err()
                .contains("host name")
        );
        assert!(parse("h:0", None).unwrap_err().contains("port 0"));
        assert!(parse("", Some(80)).is_err());
    }

    #[test]
    fn urls_follow_rfc_3986() {
        // Schemes are case-insensitive (§3.1).
        let t = parse("HTTPS://lab.test/", None).unwrap();
        assert_eq!((t.port, t.tls), (443, true));
        assert_eq!(parse("Http://lab.test", None).unwrap().port, 80);
        // The query is sent (§3.4), the fragment is not (§3.5).
        let path = |u| parse(u, None).unwrap().path.unwrap();
        assert_eq!(path("http://h/a?b=1#frag"), "/a?b=1");
        assert_eq!(path("http://h?b=1"), "/?b=1");
        assert_eq!(path("http://h#top"), "/");
        assert_eq!(path("http://h:8080"), "/");
        // What would not be a well-formed request is refused, not sent.
        for (bad, why) in [
            ("http://user:pw@h/", "user:pw@"),
            ("http://h/a b", "space"),
            ("http://h/\r\nX: 1", "carriage return"),
            ("http://h/é", "percent-encode"),
        ] {
            let e = parse(bad, None).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn an_ipv6_address_with_a_port_is_told_to_use_brackets() {
        let e = parse("fd00::2:80", None).unwrap_err();
        assert!(e.contains("`[fd00::2]:80`"), "{e}");
        // With -p it is an address like any other.
        assert_eq!(parse("fd00::2:80", Some(443)).unwrap().port, 443);
        let e = parse("lab.test", None).unwrap_err();
        assert!(e.contains("`lab.test:80`") && e.contains("-p"), "{e}");
    }

    /// What inet_aton would read as another address is refused, with what is wrong.
    #[test]
    fn numeric_forms_are_addresses_or_refused() {
        for (bad, why) in [
            ("198.18.200.010:80", "octet 4 `010` has a leading zero"),
            (
                "198.18.200.256:80",
                "octet 4 `256` is not a number from 0 to 255",
            ),
            ("198.18.200:80", "four decimal octets"),
            ("3323119618:80", "four decimal octets"),
            ("0xc6.18.200.2:80", "four decimal octets"),
            ("lab.0x1f:80", "four decimal octets"),
            ("198.18.0.1.:80", "four decimal octets"),
        ] {
            let e = parse(bad, None).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        // A zone index is named as such.
        let e = parse("[fe80::1%eth0]:80", None).unwrap_err();
        assert!(e.contains("zone index (`%eth0`"), "{e}");
        // nmap's octet ranges are scan's.
        for range in ["198.18.0.1-2", "198.18.0-3.1,5", "198.18.*.1"] {
            let e = parse(range, Some(80)).unwrap_err();
            assert!(e.contains("`tcpshake scan`"), "{range}: {e}");
        }
        // Names with digits are names; 0 alone is an octet.
        for good in [
            "web-1.lab:80",
            "1lab.test:80",
            "lab.x10:80",
            "198.18.0.0:80",
        ] {
            assert!(parse(good, None).is_ok(), "{good}");
        }
    }

    #[test]
    fn host_messages_name_the_bad_part_once() {
        assert_eq!(
            parse("bad$host", Some(80)).unwrap_err(),
            "`bad$host` is neither an address nor a host name (character `$`)"
        );
        assert_eq!(
            parse("bad$host:80", None).unwrap_err(),
            "`bad$host:80`: `bad$host` is neither an address nor a host name (character `$`)"
        );
        assert!(parse("a b:80", None).unwrap_err().contains("space"));
        // Which rule a label breaks, not only which label.
        let long = format!("{}.lab.test", "a".repeat(64));
        assert!(
            parse(&long, Some(80))
                .unwrap_err()
                .contains("is 64 characters long; a label holds at most 63"),
            "{long}"
        );
        assert!(
            parse("-x.lab.test", Some(80))
                .unwrap_err()
                .contains("hyphen")
        );
        assert!(parse("a..b", Some(80)).unwrap_err().contains("empty label"));
        assert!(parse("198.18.0.0/24", None).unwrap_err().contains("scan"));
    }

    #[test]
    fn a_service_name_where_a_port_goes_is_told_its_number() {
        assert_eq!(
            port_number("https", 1).unwrap_err(),
            "`https` is not a port; give a number from 1 to 65535 (https is port 443 in \
             nmap's services list)"
        );
        assert!(
            port_number("http", 1)
                .unwrap_err()
                .ends_with("(http is ports 80, 8008 in nmap's services list)")
        );
        assert_eq!(
            port_number("htp", 1).unwrap_err(),
            "`htp` is not a port; give a number from 1 to 65535"
        );
        // A name many ports share is counted, not listed (`unknown` is ~1 900 of them).
        let many = port_number("unknown", 1).unwrap_err();
        assert!(
            many.ends_with(
                "ports in nmap's services list: `tcpshake scan HOST -p unknown` scans them)"
            ),
            "{many}"
        );
        assert!(many.len() < 200, "{many}");
        assert!(!port_number("http*", 1).unwrap_err().contains("services"));
    }

    #[test]
    fn expansion_over_ports_labels_each_pair() {
        let labels = |spec, ports: &[u16]| -> Vec<String> {
            expand(spec, ports, Family::Any)
                .unwrap()
                .into_iter()
                .map(|t| t.spec)
                .collect()
        };
        assert_eq!(
            labels("lab.test", &[80, 443]),
            ["lab.test:80", "lab.test:443"]
        );
        assert_eq!(labels("lab.test:81", &[80, 443]), ["lab.test:81"]);
        assert_eq!(labels("lab.test", &[80]), ["lab.test"]);
        assert_eq!(labels("[fd00::2]:80", &[]), ["[fd00::2]:80"]);
        assert_eq!(
            labels("fd00::2", &[80, 81]),
            ["[fd00::2]:80", "[fd00::2]:81"]
        );
        // A URL without a port: each port written into it where its scheme's is not meant
        // (the label alone would say port 80), so statistics keep them apart.
        assert_eq!(
            labels("http://lab.test/a?x=1", &[80, 81, 443]),
            [
                "http://lab.test/a?x=1",
                "http://lab.test:81/a?x=1",
                "http://lab.test:443/a?x=1"
            ]
        );
        assert_eq!(
            labels("https://[fd00::2]", &[8443]),
            ["https://[fd00::2]:8443"]
        );
        assert_eq!(labels("https://lab.test/", &[443]), ["https://lab.test/"]);
        assert_eq!(
            labels("http://lab.test:8080/", &[80, 81]),
            ["http://lab.test:8080/"]
        );
        let t = expand("http://lab.test/", &[443], Family::Any).unwrap();
        assert!(!t[0].tls, "the scheme says plain HTTP, on whatever port");
        assert!(expand("lab.test", &[], Family::Any).is_err());
        assert!(
            expand("lab.test", &[0], Family::Any)
                .unwrap_err()
                .contains("port 0")
        );
        let e = expand("198.18.0.2", &[80, 443], Family::V6).unwrap_err();
        assert!(e.starts_with("`198.18.0.2` is IPv4 but -6"), "{e}");
    }

    #[test]
    fn addresses_no_connection_can_be_made_to_are_refused() {
        for (spec, what) in [
            ("224.0.0.1:80", "a multicast address"),
            ("[ff02::1]:80", "a multicast address"),
            ("255.255.255.255:80", "the limited broadcast address"),
            ("0.0.0.0:80", "the unspecified address"),
            ("[::]:80", "the unspecified address"),
            ("[::ffff:0.0.0.0]:80", "the unspecified address"),
            ("http://224.0.0.1/", "a multicast address"),
        ] {
            let e = expand(spec, &[], Family::Any).unwrap_err();
            assert!(e.starts_with(&format!("`{spec}`: ")), "{e}");
            assert!(
                e.contains(&format!(
                    "is {what}: no TCP connection can be made to it; give"
                )),
                "{e}"
            );
        }
        // Written alone, the address is not named twice.
        let e = expand("0.0.0.0", &[80], Family::Any).unwrap_err();
        assert_eq!(
            e,
            "0.0.0.0 is the unspecified address: no TCP connection can be made to it; give \
             the server's address (127.0.0.1 for this host)"
        );
        let e = expand("::", &[80], Family::Any).unwrap_err();
        assert!(e.ends_with("(::1 for this host)"), "{e}");
        assert!(expand("198.18.0.255:80", &[], Family::Any).is_ok());
        assert!(expand("lab.test:80", &[], Family::Any).is_ok());
        assert_eq!(not_a_peer("198.18.0.2".parse().unwrap()), None);
    }

    #[test]
    fn a_spec_names_its_port_only_when_written() {
        for spec in [
            "198.18.0.2:80",
            "[fd00::2]:80",
            "lab.test:81",
            "http://lab.test:8080/x",
            "https://[fd00::2]:8443",
        ] {
            assert!(names_port(spec), "{spec}");
        }
        for spec in [
            "198.18.0.2",
            "fd00::2",
            "[fd00::2]",
            "lab.test",
            "http://lab.test/",
            "https://lab.test/a:b",
        ] {
            assert!(!names_port(spec), "{spec}");
        }
        assert!(is_url("HTTP://lab.test/") && !is_url("lab.test:80"));
    }

    #[test]
    fn a_literal_of_the_other_family_is_a_contradiction() {
        let v4 = Host::parse("198.18.0.2").unwrap();
        let e = v4.check_family(Family::V6).unwrap_err();
        assert_eq!(
            e,
            "`198.18.0.2` is IPv4 but -6 asks for IPv6; drop -6 or give an IPv6 address"
        );
        assert!(v4.check_family(Family::V4).is_ok());
        assert!(
            Host::parse("fd00::2")
                .unwrap()
                .check_family(Family::V4)
                .is_err()
        );
        assert!(
            Host::parse("lab.test")
                .unwrap()
                .check_family(Family::V6)
                .is_ok()
        );
    }
}

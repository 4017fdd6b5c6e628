//! Target syntax: `198.18.0.2:80`, `[fd00::2]:80`, `fd00::2` (with `-p`), `name:80`,
//! `http://name[:port]/path`, `https://name[:port]/path`. Parsing only; names are resolved
//! by `net`.

use std::fmt;
use std::net::IpAddr;

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

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// As the user wrote it.
    pub spec: String,
    pub host: Host,
    pub port: u16,
    /// From a URL (`http://h/path`), if one was given.
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

/// Parse one target; `default_port` applies when the spec has none.
pub fn parse(spec: &str, default_port: Option<u16>) -> Result<Target, String> {
    let s = spec.trim();
    if s.is_empty() {
        return Err("empty target".into());
    }
    let url = [("http://", 80, false), ("https://", 443, true)]
        .into_iter()
        .find_map(|(scheme, port, tls)| Some((s.strip_prefix(scheme)?, port, tls)));
    let tls = url.is_some_and(|(_, _, tls)| tls);
    let (rest, url_port, path) = if let Some((after, port, _)) = url {
        let (authority, path) = match after.find('/') {
            Some(i) => (&after[..i], after[i..].to_string()),
            None => (after, "/".to_string()),
        };
        (authority, Some(port), Some(path))
    } else if s.contains("://") {
        let scheme = &s[..s.find("://").unwrap_or(0)];
        return Err(format!(
            "`{spec}`: scheme `{scheme}://` is not supported; use http://, https:// or host:port"
        ));
    } else {
        (s, None, None)
    };
    let (host, port) = split_host_port(rest).map_err(|e| format!("`{spec}`: {e}"))?;
    let port = match port {
        Some(p) => p,
        None => default_port.or(url_port).ok_or_else(|| {
            format!("`{spec}`: no port; write it as `{rest}:80` (or `[v6addr]:80`) or give -p PORT")
        })?,
    };
    if port == 0 {
        return Err(format!("`{spec}`: port 0 cannot be probed"));
    }
    let host = match host.parse::<IpAddr>() {
        Ok(ip) => Host::Ip(ip),
        Err(_) => {
            validate_name(host).map_err(|e| format!("`{spec}`: {e}"))?;
            Host::Name(host.to_string())
        }
    };
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

fn split_host_port(s: &str) -> Result<(&str, Option<u16>), String> {
    if let Some(inner) = s.strip_prefix('[') {
        let close = inner.find(']').ok_or("`[` without a closing `]`")?;
        let host = &inner[..close];
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("`{host}` inside brackets is not an IPv6 address"));
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
        if s.parse::<std::net::Ipv6Addr>().is_ok() {
            return Ok((s, None));
        }
        return Err("not an IPv6 address; to give a port, write `[addr]:port`".into());
    }
    match s.rsplit_once(':') {
        Some((h, p)) => Ok((h, Some(parse_port(p)?))),
        None => Ok((s, None)),
    }
}

fn parse_port(p: &str) -> Result<u16, String> {
    p.parse::<u16>()
        .map_err(|_| format!("`{p}` is not a port (1-65535)"))
}

/// RFC 1123 §2.1 host names: letters, digits, hyphens, dots; labels of 1-63.
fn validate_name(name: &str) -> Result<(), String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return Err("empty or over-long host name".into());
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(format!(
                "`{name}` is neither an address nor a valid host name"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

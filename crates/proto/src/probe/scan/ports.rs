//! Port specs in nmap's syntax: `-p 22,80,8000-8100`, `-p-` (1–65535), `-p -1024`,
//! `-p 60000-`, service names (`-p http,ssh`, `-p 'http*'`), an optional `T:` prefix;
//! `--top-ports N` from nmap's frequency list; and the service name nmap prints for a port.

use super::nmap_services::{SERVICES, TOP_PORTS};

/// Parse a `-p` spec into sorted, distinct ports. Port 0 only when written explicitly
/// (as nmap does: `-p-` starts at 1). Messages are about a part of the spec; the caller
/// names the option and the whole spec (`-p `22,x`: …`).
pub fn parse(spec: &str) -> Result<Vec<u16>, String> {
    let s = spec.trim();
    if s.is_empty() {
        return Err("empty port list; write e.g. -p 22,80,8000-8100 or -p- for all".into());
    }
    let mut seen = vec![false; 65536];
    for item in s.split(',') {
        let item = item.trim();
        let body = match item.split_once(':') {
            Some(("T" | "t", rest)) => rest,
            Some((proto, _)) => {
                return Err(format!(
                    "`{item}`: only TCP ports are scanned (`T:`), not `{proto}:`"
                ));
            }
            None => item,
        };
        // A name, as nmap takes them: every TCP port its services file gives that name
        // (`http` is 80 and 8008), `*` and `?` as wildcards. A range or a number has no
        // letter in it, so `8o` is looked up as a name and said to be neither.
        if body
            .bytes()
            .any(|b| b.is_ascii_alphabetic() || b == b'*' || b == b'?')
        {
            let mut any = false;
            for p in named(body) {
                seen[usize::from(p)] = true;
                any = true;
            }
            if !any {
                return Err(format!(
                    "`{item}` is neither a port number nor a TCP service in nmap's services \
                     list; write a number, or a name such as http, https, ssh (wildcards * \
                     and ? as nmap takes them: 'http*')"
                ));
            }
            continue;
        }
        // The one port message every command gives (`target::port_number`).
        let num = |t: &str, dflt: u16| -> Result<u16, String> {
            if t.is_empty() {
                return Ok(dflt);
            }
            crate::probe::target::port_number(t, 0)
        };
        let (lo, hi) = match body.split_once('-') {
            Some((a, b)) => (num(a, 1)?, num(b, 65535)?),
            None if body.is_empty() => {
                return Err("an empty item between commas; write e.g. -p 22,80".into());
            }
            None => {
                let p = num(body, 0)?;
                (p, p)
            }
        };
        if hi < lo {
            return Err(format!(
                "`{item}`: the range ends before it starts; write e.g. -p {hi}-{lo}"
            ));
        }
        for p in lo..=hi {
            seen[usize::from(p)] = true;
        }
    }
    Ok((0..=u16::MAX).filter(|&p| seen[usize::from(p)]).collect())
}

/// The TCP ports nmap's services list gives a name matching `pattern` (`*` and `?` as
/// wildcards, ASCII case ignored), in port order: `http` is 80 and 8008.
pub fn named(pattern: &str) -> impl Iterator<Item = u16> + '_ {
    SERVICES
        .iter()
        .filter(move |(_, n)| wildcard_match(pattern, n))
        .map(|&(p, _)| p)
}

/// Whether service `name` matches `pattern`, nmap's way (`*` any run of characters, `?`
/// any one), ASCII case ignored: nmap refuses `-p HTTP`, which can only mean `http`.
/// Iterative, with one point to go back to: at most pattern × name steps, whatever the
/// pattern (no exponential blow-up on `*a*a*a*…`).
fn wildcard_match(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut i, mut j) = (0, 0);
    // After the last `*`: where it was in the pattern, and where the name stood then.
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        if i < p.len() && (p[i] == b'?' || p[i].eq_ignore_ascii_case(&n[j])) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == b'*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            // The `*` takes one more character of the name.
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == b'*')
}

/// The `n` ports nmap finds open most often, most frequent first.
pub fn top(n: usize) -> Result<Vec<u16>, String> {
    if n == 0 || n > TOP_PORTS.len() {
        return Err(format!(
            "--top-ports {n}: choose from 1 to {} (or use -p- for every port)",
            TOP_PORTS.len()
        ));
    }
    let mut v = TOP_PORTS[..n].to_vec();
    v.sort_unstable();
    Ok(v)
}

/// nmap's name for TCP `port` (from its services file: `unknown` for ports it lists as
/// such, `None` for ports it does not list, which nmap prints without a service).
pub fn service_name(port: u16) -> Option<&'static str> {
    SERVICES
        .binary_search_by_key(&port, |&(p, _)| p)
        .ok()
        .map(|i| SERVICES[i].1)
}

/// nmap's compact form for `<scaninfo services=…>`: `1-3,22,80`.
pub fn compact(ports: &[u16]) -> String {
    let mut out = String::new();
    let mut i = 0;
    while i < ports.len() {
        let start = ports[i];
        let mut end = start;
        while i + 1 < ports.len() && ports[i + 1] == end.wrapping_add(1) && end < u16::MAX {
            i += 1;
            end = ports[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out += &start.to_string();
        } else {
            out += &format!("{start}-{end}");
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_ranges_and_open_ends() {
        assert_eq!(
            parse("22,80,8000-8002").unwrap(),
            [22, 80, 8000, 8001, 8002]
        );
        assert_eq!(parse("-").unwrap().len(), 65535);
        assert_eq!(parse("-").unwrap()[0], 1);
        assert_eq!(parse("-3").unwrap(), [1, 2, 3]);
        assert_eq!(parse("65534-").unwrap(), [65534, 65535]);
        assert_eq!(parse("T:80,22,80").unwrap(), [22, 80]);
        assert_eq!(parse("0").unwrap(), [0]);
    }

    #[test]
    fn service_names_are_taken_as_nmap_takes_them() {
        // nmap -p http scans 80 and 8008: every port its services file names so.
        assert_eq!(parse("http").unwrap(), [80, 8008]);
        assert_eq!(parse("ssh,T:https,22").unwrap(), [22, 443]);
        assert_eq!(parse("HTTPS").unwrap(), [443]);
        let http = parse("http*").unwrap();
        assert!(
            [80, 443, 8008, 8080].iter().all(|p| http.contains(p)),
            "{http:?}"
        );
        assert!(!http.contains(&22));
        let ss = parse("ss?").unwrap();
        assert!(ss.contains(&22) && !ss.contains(&443), "{ss:?}");
        assert!(
            ss.iter()
                .all(|&p| service_name(p).is_some_and(|n| n.len() == 3))
        );
        let e = parse("22,htp").unwrap_err();
        assert!(
            e.contains("`htp` is neither a port number nor a TCP service"),
            "{e}"
        );
        assert!(wildcard_match("*", "anything"));
        assert!(wildcard_match("h*p", "http"));
        assert!(!wildcard_match("h*p", "https"));
        assert!(wildcard_match("*-alt", "http-alt"));
        assert!(!wildcard_match(
            "a*a*a*a*a*a*a*a*b",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        ));
    }

    #[test]
    fn bad_port_specs_point_at_the_bad_part() {
        let e = parse("22,8o").unwrap_err();
        assert!(e.contains("`8o` is neither a port number"), "{e}");
        let e = parse("22,70000").unwrap_err();
        assert!(e.contains("`70000`"), "{e}");
        let e = parse("90-80").unwrap_err();
        assert!(e.contains("ends before"), "{e}");
        assert!(parse("U:53").unwrap_err().contains("`U:`"));
        assert!(parse("22,,80").unwrap_err().contains("empty"));
        assert!(parse("").is_err());
    }

    #[test]
    fn top_ports_follow_nmaps_order() {
        assert_eq!(top(1).unwrap(), [80]);
        assert_eq!(top(5).unwrap(), [21, 22, 23, 80, 443]);
        assert_eq!(top(1000).unwrap().len(), 1000);
        assert!(top(0).is_err() && top(1001).is_err());
    }

    #[test]
    fn service_names_are_nmaps_for_every_port_it_lists() {
        assert_eq!(service_name(22), Some("ssh"));
        assert_eq!(service_name(81), Some("hosts2-ns"));
        assert_eq!(service_name(6001), Some("X11:1"));
        assert_eq!(service_name(40001), Some("unknown"));
        assert_eq!(service_name(39999), None);
        assert!(
            SERVICES.windows(2).all(|w| w[0].0 < w[1].0),
            "sorted, no duplicates"
        );
        // Every top port has a name (they come from the same file).
        assert!(TOP_PORTS.iter().all(|&p| service_name(p).is_some()));
    }

    #[test]
    fn compact_form() {
        assert_eq!(compact(&[1, 2, 3, 22, 80, 81]), "1-3,22,80-81");
        assert_eq!(compact(&[65535]), "65535");
        assert_eq!(compact(&[]), "");
    }
}

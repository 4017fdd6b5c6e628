//! Port specs in nmap's syntax: `-p 22,80,8000-8100`, `-p-` (1–65535), `-p -1024`,
//! `-p 60000-`, an optional `T:` prefix; `--top-ports N` from nmap's frequency list; and the
//! service name nmap prints for a port.

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
    fn bad_port_specs_point_at_the_bad_part() {
        let e = parse("22,8o").unwrap_err();
        assert!(e.contains("`8o`"), "{e}");
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

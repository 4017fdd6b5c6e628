//! Which targets `GET /probe` may reach: the exporter answers anyone who can reach its
//! port, so without a limit it would probe whatever a query names — a scanner for hire.
//!
//! The rule, in two steps:
//! 1. **Addresses decide.** A target is probed only if the address tcpshake sends its SYN
//!    to lies in one of the `allow` CIDR blocks. A literal address is checked as written
//!    (an IPv4-mapped IPv6 address as the IPv4 address it is).
//! 2. **Names only narrow.** A name is resolved only if it matches `allow_names` (exact,
//!    or `*.zone` for any name below `zone`), and then its address must pass step 1 too.
//!    The name is resolved once, and the address that passed is the one probed, so a DNS
//!    answer that changes between the check and the SYN (rebinding) cannot take the probe
//!    elsewhere. A name matching no pattern is never even looked up: a query cannot make
//!    the exporter send DNS queries for names of the caller's choosing.
//!
//! Unspecified, multicast and broadcast addresses are refused whatever the blocks say: no
//! TCP peer lives there.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address block, `198.18.0.0/15` or `fd00::/8` (a bare address is a /32 or /128).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl Cidr {
    /// A block in CIDR notation. Host bits must be zero (`198.18.0.1/15` is refused with
    /// the block it probably means): a typo should not silently widen or shift a block.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| {
            format!("`{s}` is not an address block; write e.g. 198.18.0.0/15 or fd00::/8")
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|&n| n <= max)
                .ok_or_else(|| format!("`{s}`: the prefix length must be 0 to {max}"))?,
        };
        let cidr = Cidr { addr, prefix };
        let base = cidr.network();
        if base != addr {
            return Err(format!(
                "`{s}` has host bits set; the block is {base}/{prefix}"
            ));
        }
        Ok(cidr)
    }

    fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => {
                let m = mask32(self.prefix);
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & m))
            }
            IpAddr::V6(a) => {
                let m = mask128(self.prefix);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & m))
            }
        }
    }

    /// What a block [`AllowList::too_wide`] names reaches, for its warning. Unique local
    /// addresses (fc00::/7, RFC 4193) are no part of the Internet: `fd00::/8` reaches every
    /// private IPv6 network this host is routed to (the warning called it "a large part of
    /// the Internet", in a lab whose addresses are all ULAs).
    pub fn reach(&self) -> &'static str {
        let ula = Cidr {
            addr: IpAddr::V6(std::net::Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0)),
            prefix: 7,
        };
        match self.addr {
            _ if self.prefix == 0 && self.addr.is_ipv4() => "every IPv4 address",
            _ if self.prefix == 0 => "every IPv6 address",
            IpAddr::V6(_) if self.prefix >= ula.prefix && ula.contains(self.addr) => {
                "the unique local addresses (RFC 4193) of every private network this host reaches"
            }
            _ => "a large part of the Internet",
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let m = mask32(self.prefix);
                u32::from(a) & m == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let m = mask128(self.prefix);
                u128::from(a) & m == u128::from(net)
            }
            _ => false,
        }
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

/// A name pattern: `www.lab.test` (that name), `*.lab.test` (any name below it, not
/// `lab.test` itself). Case-insensitive; a trailing dot is ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamePattern {
    /// Lower-cased, without the trailing dot or the `*.`.
    name: String,
    wildcard: bool,
}

impl fmt::Display for NamePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.wildcard {
            write!(f, "*.{}", self.name)
        } else {
            f.write_str(&self.name)
        }
    }
}

impl NamePattern {
    pub fn parse(s: &str) -> Result<NamePattern, String> {
        let t = s.trim().trim_end_matches('.').to_ascii_lowercase();
        let (wildcard, name) = match t.strip_prefix("*.") {
            Some(rest) => (true, rest.to_string()),
            None => (false, t.clone()),
        };
        if name.contains('*') {
            return Err(format!(
                "`{s}`: a wildcard is only `*.` at the start, e.g. *.lab.test"
            ));
        }
        check_dns_name(&name).map_err(|e| format!("`{s}`: {e}"))?;
        if wildcard && !name.contains('.') {
            return Err(format!(
                "`{s}` would allow every name in a top-level domain; name a zone below it"
            ));
        }
        Ok(NamePattern { name, wildcard })
    }

    pub fn matches(&self, name: &str) -> bool {
        let n = name.trim_end_matches('.').to_ascii_lowercase();
        if self.wildcard {
            n.len() > self.name.len() + 1
                && n.ends_with(&self.name)
                && n.as_bytes()[n.len() - self.name.len() - 1] == b'.'
        } else {
            n == self.name
        }
    }
}

/// A DNS host name (RFC 1123 §2.1): labels of letters, digits and `-`, 1 to 63 bytes,
/// not starting or ending with `-`; 253 bytes at most.
fn check_dns_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 253 {
        return Err("not a host name".into());
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
            return Err(format!("`{label}` is not a DNS label"));
        }
    }
    Ok(())
}

/// `allow` and `allow_names` of the `[probe]` section.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowList {
    pub cidrs: Vec<Cidr>,
    pub names: Vec<NamePattern>,
}

/// Why a target may not be probed (the 403's text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denied {
    /// The configuration allows no /probe target at all.
    Disabled,
    Address(IpAddr),
    Name(String),
    /// A name that is allowed resolved outside the blocks.
    ResolvedOutside {
        name: String,
        addr: IpAddr,
    },
    NotUnicast(IpAddr),
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denied::Disabled => f.write_str(
                "this exporter allows no /probe targets (the configuration's [probe] allow is empty)",
            ),
            Denied::Address(a) => write!(f, "{a} is not in the exporter's allowed address blocks"),
            Denied::Name(n) => write!(f, "the name `{n}` is not in the exporter's allowed names"),
            Denied::ResolvedOutside { name, addr } => write!(
                f,
                "`{name}` resolved to {addr}, which is not in the exporter's allowed address blocks"
            ),
            Denied::NotUnicast(a) => write!(f, "{a} is not a unicast address"),
        }
    }
}

/// The address as it would be probed: an IPv4-mapped IPv6 address is its IPv4 address.
pub fn canonical(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

impl AllowList {
    /// Blocks wider than an operator's: shorter than /8 (IPv4) or /32 (IPv6, a regional
    /// registry's allocation to an ISP). With one, whoever reaches the exporter can have it
    /// probe most of the Internet — the scanner `allow` is there to prevent: worth a
    /// warning, not a refusal (a lab may want it).
    pub fn too_wide(&self) -> impl Iterator<Item = &Cidr> {
        self.cidrs
            .iter()
            .filter(|c| c.prefix < if c.addr.is_ipv4() { 8 } else { 32 })
    }

    pub fn is_empty(&self) -> bool {
        self.cidrs.is_empty()
    }

    /// May a SYN be sent to `ip`? (`ip` canonical: see [`canonical`].)
    pub fn check_addr(&self, ip: IpAddr) -> Result<(), Denied> {
        if self.cidrs.is_empty() {
            return Err(Denied::Disabled);
        }
        let unicast = match ip {
            IpAddr::V4(a) => !(a.is_unspecified() || a.is_multicast() || a.is_broadcast()),
            IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast()),
        };
        if !unicast {
            return Err(Denied::NotUnicast(ip));
        }
        if self.cidrs.iter().any(|c| c.contains(ip)) {
            Ok(())
        } else {
            Err(Denied::Address(ip))
        }
    }

    /// May `name` be resolved at all? Checked before any DNS query.
    pub fn check_name(&self, name: &str) -> Result<(), Denied> {
        if self.cidrs.is_empty() {
            return Err(Denied::Disabled);
        }
        if self.names.iter().any(|p| p.matches(name)) {
            Ok(())
        } else {
            Err(Denied::Name(name.to_string()))
        }
    }

    /// The address `name` resolved to: it too must be allowed.
    pub fn check_resolved(&self, name: &str, ip: IpAddr) -> Result<(), Denied> {
        match self.check_addr(canonical(ip)) {
            Err(Denied::Address(addr)) => Err(Denied::ResolvedOutside {
                name: name.to_string(),
                addr,
            }),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn list(cidrs: &[&str], names: &[&str]) -> AllowList {
        AllowList {
            cidrs: cidrs.iter().map(|c| Cidr::parse(c).unwrap()).collect(),
            names: names
                .iter()
                .map(|n| NamePattern::parse(n).unwrap())
                .collect(),
        }
    }

    #[test]
    fn blocks_wider_than_an_operators_are_too_wide() {
        let l = list(
            &[
                "198.18.0.0/15",
                "10.0.0.0/8",
                "0.0.0.0/0",
                "128.0.0.0/1",
                "2001:db8::/32",
                "2000::/3",
                "::/0",
            ],
            &[],
        );
        let wide: Vec<String> = l.too_wide().map(|c| c.to_string()).collect();
        assert_eq!(wide, ["0.0.0.0/0", "128.0.0.0/1", "2000::/3", "::/0"]);
    }

    #[test]
    fn a_wide_block_says_what_it_reaches() {
        let reach = |c: &str| Cidr::parse(c).unwrap().reach();
        assert_eq!(reach("0.0.0.0/0"), "every IPv4 address");
        assert_eq!(reach("::/0"), "every IPv6 address");
        assert_eq!(reach("128.0.0.0/1"), "a large part of the Internet");
        assert_eq!(reach("2000::/3"), "a large part of the Internet");
        // fc00::/7 and the blocks inside it are private: unique local addresses.
        for ula in ["fd00::/8", "fc00::/7", "fd12::/16"] {
            assert!(reach(ula).contains("unique local addresses"), "{ula}");
        }
        // A block wider than fc00::/7 that holds it is more than private addresses.
        assert_eq!(reach("fc00::/6"), "a large part of the Internet");
    }

    #[test]
    fn cidr_blocks_contain_their_addresses_only() {
        let c = Cidr::parse("198.18.0.0/15").unwrap();
        assert!(c.contains("198.18.0.1".parse().unwrap()));
        assert!(c.contains("198.19.255.255".parse().unwrap()));
        assert!(!c.contains("198.20.0.0".parse().unwrap()));
        assert!(!c.contains("198.17.255.255".parse().unwrap()));
        assert!(!c.contains("fd00::1".parse().unwrap()));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        let one = Cidr::parse("198.18.0.7").unwrap();
        assert_eq!(one.prefix, 32);
        assert!(one.contains("198.18.0.7".parse().unwrap()));
        assert!(!one.contains("198.18.0.8".parse().unwrap()));
    }

    #[test]
    fn cidr_typos_are_refused_with_the_block_meant() {
        let e = Cidr::parse("198.18.0.1/15").unwrap_err();
        assert!(e.contains("198.18.0.0/15"), "{e}");
        assert!(Cidr::parse("198.18.0.0/33").is_err());
        assert!(Cidr::parse("fd00::/129").is_err());
        assert!(Cidr::parse("lab.test/24").is_err());
        assert!(Cidr::parse("198.18.0.0/").is_err());
        assert!(Cidr::parse("198.18.0.0/-1").is_err());
    }

    #[test]
    fn names_match_exactly_or_below_a_wildcard_zone() {
        let p = NamePattern::parse("*.Lab.Test.").unwrap();
        assert!(p.matches("www.lab.test"));
        assert!(p.matches("a.b.LAB.test."));
        assert!(!p.matches("lab.test"));
        assert!(!p.matches("evillab.test"));
        assert!(!p.matches("www.lab.test.evil"));
        let e = NamePattern::parse("www.lab.test").unwrap();
        assert!(e.matches("WWW.lab.test"));
        assert!(!e.matches("x.www.lab.test"));
        assert!(NamePattern::parse("*.test").is_err());
        assert!(NamePattern::parse("w*.lab.test").is_err());
        assert!(NamePattern::parse("bad name").is_err());
    }

    #[test]
    fn addresses_outside_the_blocks_are_denied() {
        let a = list(&["198.18.0.0/15", "fd00::/8"], &[]);
        assert!(a.check_addr("198.18.3.4".parse().unwrap()).is_ok());
        assert!(a.check_addr("fd00::2".parse().unwrap()).is_ok());
        assert_eq!(
            a.check_addr("127.0.0.1".parse().unwrap()),
            Err(Denied::Address("127.0.0.1".parse().unwrap()))
        );
        // A mapped address is the IPv4 address it carries.
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert!(a.check_addr(canonical(mapped)).is_err());
        let mapped_ok: IpAddr = "::ffff:198.18.0.2".parse().unwrap();
        assert!(a.check_addr(canonical(mapped_ok)).is_ok());
        let wide = list(&["0.0.0.0/0"], &[]);
        assert!(matches!(
            wide.check_addr("0.0.0.0".parse().unwrap()),
            Err(Denied::NotUnicast(_))
        ));
        assert!(matches!(
            wide.check_addr("255.255.255.255".parse().unwrap()),
            Err(Denied::NotUnicast(_))
        ));
        assert!(matches!(
            wide.check_addr("224.0.0.1".parse().unwrap()),
            Err(Denied::NotUnicast(_))
        ));
    }

    #[test]
    fn an_empty_list_allows_nothing() {
        let a = AllowList::default();
        assert_eq!(
            a.check_addr("198.18.0.1".parse().unwrap()),
            Err(Denied::Disabled)
        );
        assert_eq!(a.check_name("lab.test"), Err(Denied::Disabled));
    }

    #[test]
    fn names_must_match_and_then_resolve_inside() {
        let a = list(&["198.18.0.0/15"], &["*.lab.test"]);
        assert!(a.check_name("www.lab.test").is_ok());
        assert_eq!(
            a.check_name("www.example.com"),
            Err(Denied::Name("www.example.com".into()))
        );
        assert!(
            a.check_resolved("www.lab.test", "198.18.0.2".parse().unwrap())
                .is_ok()
        );
        assert!(matches!(
            a.check_resolved("www.lab.test", "10.0.0.1".parse().unwrap()),
            Err(Denied::ResolvedOutside { .. })
        ));
    }

    proptest! {
        #[test]
        fn membership_agrees_with_integer_ranges(a in any::<u32>(), net in any::<u32>(), prefix in 0u8..=32) {
            let base = if prefix == 0 { 0 } else { net & (u32::MAX << (32 - u32::from(prefix))) };
            let c = Cidr::parse(&format!("{}/{prefix}", Ipv4Addr::from(base))).unwrap();
            let size = 1u64 << (32 - u32::from(prefix));
            let inside = u64::from(a) >= u64::from(base) && u64::from(a) < u64::from(base) + size;
            prop_assert_eq!(c.contains(IpAddr::V4(Ipv4Addr::from(a))), inside);
        }

        #[test]
        fn parsing_never_panics(s in "\\PC{0,40}") {
            let _ = Cidr::parse(&s);
            let _ = NamePattern::parse(&s);
        }
    }
}

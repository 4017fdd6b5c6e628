//! Host names to addresses, through the system resolver (getaddrinfo), like curl.

use anyhow::{Result, bail};
use std::net::{SocketAddr, ToSocketAddrs};
use tcpshake_proto::probe::target::{Host, Target};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Any,
    V4,
    V6,
}

/// The address to probe for `target`: its literal address, or the resolver's first answer
/// of the wanted family.
pub fn resolve(target: &Target, family: Family) -> Result<SocketAddr> {
    let fits = |a: &SocketAddr| match family {
        Family::Any => true,
        Family::V4 => a.is_ipv4(),
        Family::V6 => a.is_ipv6(),
    };
    match &target.host {
        Host::Ip(ip) => {
            let a = SocketAddr::new(*ip, target.port);
            if !fits(&a) {
                bail!(
                    "{} is not an {} address (drop -4/-6 or give the other family)",
                    ip,
                    if family == Family::V4 { "IPv4" } else { "IPv6" }
                );
            }
            Ok(a)
        }
        Host::Name(name) => {
            let addrs: Vec<SocketAddr> = match (name.as_str(), target.port).to_socket_addrs() {
                Ok(it) => it.collect(),
                Err(e) => bail!(
                    "cannot resolve `{name}`: {e}; check the name, or give an address instead"
                ),
            };
            match addrs.iter().find(|a| fits(a)) {
                Some(a) => Ok(*a),
                None if addrs.is_empty() => bail!("`{name}` resolves to no address"),
                None => bail!(
                    "`{name}` has no {} address (it has {})",
                    if family == Family::V4 { "IPv4" } else { "IPv6" },
                    addrs
                        .iter()
                        .map(|a| a.ip().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }
        }
    }
}

//! Host names to addresses, through the system resolver (getaddrinfo), like curl. One
//! function and one set of messages for `probe`, its surveys and `scan`.

use anyhow::{Result, bail};
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
pub use tcpshake_proto::probe::target::Family;
use tcpshake_proto::probe::target::{Host, Target};

/// The address to probe for `target`: its literal address, or the resolver's first answer
/// of the wanted family.
pub fn resolve(target: &Target, family: Family) -> Result<SocketAddr> {
    let ip = match &target.host {
        Host::Ip(ip) => {
            if let Err(e) = target.host.check_family(family) {
                bail!(e);
            }
            *ip
        }
        Host::Name(name) => resolve_name(name, family)?[0],
    };
    Ok(SocketAddr::new(ip, target.port))
}

/// Every address of `name` in the wanted family, in the resolver's order; never empty.
pub fn resolve_name(name: &str, family: Family) -> Result<Vec<IpAddr>> {
    let all: Vec<IpAddr> = match (name, 0).to_socket_addrs() {
        Ok(it) => it.map(|a| a.ip()).collect(),
        Err(e) => {
            bail!("cannot resolve `{name}`: {e}; check the name, or give an address instead")
        }
    };
    let fit: Vec<IpAddr> = all.iter().copied().filter(|a| family.admits(*a)).collect();
    if !fit.is_empty() {
        return Ok(fit);
    }
    if all.is_empty() {
        bail!("`{name}` resolves to no address");
    }
    bail!(
        "`{name}` has no {} address (it has {})",
        family.name(),
        all.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

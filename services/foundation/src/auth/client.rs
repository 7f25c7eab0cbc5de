//! The client's address, for per-address limits. Behind an ingress every TCP peer is the
//! ingress: the client is then named by the proxy's `Forwarded` (RFC 7239) or
//! `X-Forwarded-For` header — but only when the peer is a configured trusted proxy, since
//! anyone else can write those headers. The chain is read from the right (the entry the
//! nearest proxy appended) and stops at the first address that is not a trusted proxy.

use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;
use poem::Request;

/// The address attempts from this request are counted under.
pub fn client_address(req: &Request, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = req.remote_addr().as_socket_addr().map(|a| a.ip())?;
    let forwarded: Vec<&str> = req
        .headers()
        .get_all("forwarded")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let chain: Vec<String> = if forwarded.is_empty() {
        req.headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|s| s.trim().to_owned())
            .collect()
    } else {
        forwarded
            .iter()
            .flat_map(|v| v.split(','))
            .filter_map(forwarded_for)
            .collect()
    };
    Some(resolve(peer, &chain, trusted))
}

/// The client among `peer` and the addresses proxies appended before it.
fn resolve(peer: IpAddr, chain: &[String], trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = peer;
    for entry in chain.iter().rev() {
        if !is_trusted(&client) {
            break;
        }
        // An entry that is not an address (`unknown`, an obfuscated name) ends the walk: the
        // last trusted hop is then the best name we have.
        match parse_node(entry) {
            Some(ip) => client = ip,
            None => break,
        }
    }
    client
}

/// The `for=` value of one `Forwarded` element.
fn forwarded_for(element: &str) -> Option<String> {
    element.split(';').find_map(|pair| {
        let (name, value) = pair.trim().split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("for")
            .then(|| value.trim().trim_matches('"').to_owned())
    })
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:443`, `[2001:db8::1]:443`,
/// `2001:db8::1`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    let (host, _port) = node.rsplit_once(':')?;
    host.parse().ok()
}

/// The key an address is limited under: IPv6 clients commonly hold a whole /64, so they are
/// counted per /64.
pub fn limit_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4.to_string();
            }
            let s = v6.segments();
            let prefix = Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
            format!("{prefix}/64")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().expect("réseau")).collect()
    }

    fn chain(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn headers_count_only_behind_a_trusted_proxy() {
        let peer: IpAddr = "10.0.0.5".parse().expect("ip");
        let spoofed = chain(&["198.51.100.1"]);
        // Nobody trusted: the header is ignored, whatever it says.
        assert_eq!(resolve(peer, &spoofed, &[]), peer);
        assert_eq!(
            resolve(peer, &spoofed, &nets(&["10.0.0.0/8"])),
            "198.51.100.1".parse::<IpAddr>().expect("ip")
        );
    }

    #[test]
    fn the_chain_is_read_from_the_right_up_to_the_first_untrusted_address() {
        let peer: IpAddr = "10.0.0.5".parse().expect("ip");
        let trusted = nets(&["10.0.0.0/8"]);
        // The client wrote a fake first entry; the ingress appended the real address.
        let c = chain(&["203.0.113.9", "198.51.100.1", "10.1.2.3"]);
        assert_eq!(
            resolve(peer, &c, &trusted),
            "198.51.100.1".parse::<IpAddr>().expect("ip")
        );
        // Only trusted hops: the leftmost is the client.
        let c = chain(&["10.9.9.9", "10.1.2.3"]);
        assert_eq!(
            resolve(peer, &c, &trusted),
            "10.9.9.9".parse::<IpAddr>().expect("ip")
        );
        // A name that is not an address stops the walk at the last trusted hop.
        let c = chain(&["unknown"]);
        assert_eq!(resolve(peer, &c, &trusted), peer);
    }

    #[test]
    fn forwarded_elements_and_ports_are_understood() {
        assert_eq!(
            forwarded_for("for=192.0.2.60;proto=http;by=203.0.113.43").as_deref(),
            Some("192.0.2.60")
        );
        assert_eq!(
            forwarded_for(r#"For="[2001:db8:cafe::17]:4711""#).as_deref(),
            Some("[2001:db8:cafe::17]:4711")
        );
        assert_eq!(forwarded_for("proto=https"), None);
        for (node, ip) in [
            ("192.0.2.1:443", "192.0.2.1"),
            ("[2001:db8::1]:443", "2001:db8::1"),
            ("2001:db8::1", "2001:db8::1"),
        ] {
            assert_eq!(parse_node(node), ip.parse().ok(), "{node}");
        }
        assert_eq!(parse_node("_hidden"), None);
    }

    #[test]
    fn ipv6_clients_are_limited_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().expect("ip");
        assert_eq!(limit_key(a), limit_key(b));
        assert_eq!(limit_key(a), "2001:db8:1:2::/64");
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().expect("ip");
        assert_eq!(limit_key(mapped), "192.0.2.7");
    }
}

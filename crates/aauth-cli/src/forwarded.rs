//! Who the client is. Rate limits and throttles count a request by [`client_addr`]; the
//! resource proxy tells its upstream in `X-Forwarded-For` and `X-Real-IP`, set from the
//! address the connection came from ([`set`]), never from what the client wrote. A client
//! could otherwise name any address to an upstream that logs or rate-limits by it, or
//! spread its guesses over addresses it made up.
//!
//! Only behind a proxy named in `trusted_proxies` (a TLS terminator, a load balancer) is
//! the incoming `X-Forwarded-For` believed: the client is the nearest address in the
//! chain that is not one of the trusted proxies, and the resource proxy appends the peer
//! to the chain, as every proxy in a chain does. `Forwarded` (RFC 7239) is always
//! dropped: the proxy writes the de-facto headers only.

use std::net::IpAddr;

use http::header::{HeaderMap, HeaderName, HeaderValue};

use crate::error::CliError;

/// `X-Forwarded-For`.
pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Real-IP`.
pub(crate) const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// The address of the peer a request came from, as the serving adapter saw it (the TCP
/// connection's other end, whatever it claims in its headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Peer(pub(crate) IpAddr);

/// The proxies whose `X-Forwarded-For` is believed: addresses and CIDR ranges.
#[derive(Debug, Clone, Default)]
pub(crate) struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// `trusted_proxies`: each an address (`10.0.0.5`, `::1`) or a range (`10.0.0.0/8`,
    /// `fd00::/8`), no wider than [`WIDEST_V4`] or [`WIDEST_V6`]: a wider one (`0.0.0.0/0`
    /// above all) would believe the `X-Forwarded-For` of most of the Internet, and every
    /// client could then name the address it is counted as.
    pub(crate) fn parse(entries: &[String]) -> Result<Self, CliError> {
        entries
            .iter()
            .map(|e| {
                let (net, len) = range(e).ok_or_else(|| CliError::Usage {
                    flag: "trusted_proxies",
                    reason: format!("{e:?}: not an IP address or a CIDR range"),
                })?;
                let widest = if net.is_ipv4() { WIDEST_V4 } else { WIDEST_V6 };
                if len < widest {
                    return Err(CliError::Usage {
                        flag: "trusted_proxies",
                        reason: format!(
                            "{e:?}: wider than a /{widest}, it would believe the \
                             X-Forwarded-For of clients that are no proxy of yours and let \
                             them choose the address they are counted as; name your proxies' \
                             addresses or their own network"
                        ),
                    });
                }
                Ok((net, len))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// Whether `ip` is one of the trusted proxies.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|&(net, len)| within(ip, net, len))
    }
}

/// The shortest IPv4 prefix `trusted_proxies` takes: `/8`, the widest private range
/// (`10.0.0.0/8`).
const WIDEST_V4: u8 = 8;
/// The shortest IPv6 prefix `trusted_proxies` takes: `/7`, the unique local addresses
/// (`fc00::/7`).
const WIDEST_V6: u8 = 7;

/// The client a request from `peer` counts as, in rate limits and throttles (`tls`: this
/// process terminates TLS). Behind a trusted proxy: the nearest address of its
/// `X-Forwarded-For` chain that is not a trusted proxy, none if the chain names no such
/// address (one address for every client would make the per-client throttles lock
/// everyone out at once). From any other peer: the peer, when it is known to be the
/// client, that is when this process terminates TLS or `trusted_proxies` names the
/// proxies in front (a peer not among them came directly); over plain HTTP with no
/// proxy named, none, for the peer may be a terminating proxy.
pub(crate) fn client_addr(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &TrustedProxies,
    tls: bool,
) -> Option<IpAddr> {
    let peer = peer.to_canonical();
    if trusted.contains(peer) {
        let chain: Vec<HeaderValue> = headers.get_all(X_FORWARDED_FOR).iter().cloned().collect();
        let client = client(peer, &chain, trusted);
        return (!trusted.contains(client)).then_some(client);
    }
    (tls || !trusted.0.is_empty()).then_some(peer)
}

/// `a.b.c.d`, `a.b.c.d/n`, `v6` or `v6/n` → the network and its prefix length.
fn range(entry: &str) -> Option<(IpAddr, u8)> {
    let entry = entry.trim();
    let (addr, len) = match entry.split_once('/') {
        Some((a, l)) if !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()) => {
            (a, Some(l.parse::<u8>().ok()?))
        }
        Some(_) => return None,
        None => (entry, None),
    };
    let ip = addr.parse::<IpAddr>().ok()?.to_canonical();
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let len = len.unwrap_or(max);
    (len <= max).then_some((ip, len))
}

/// Whether `ip` lies in `net/len`.
fn within(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// Sets `X-Forwarded-For` and `X-Real-IP` on `headers` (from which every header the
/// upstream could read as either, or as `Forwarded`, is gone already) for a request
/// from `peer` carrying `incoming` (the client's `X-Forwarded-For` values). Without a
/// known peer (a held call run at its poll) neither is set.
pub(crate) fn set(
    headers: &mut HeaderMap,
    peer: Option<Peer>,
    incoming: &[HeaderValue],
    trusted: &TrustedProxies,
) {
    let Some(Peer(peer)) = peer else {
        return;
    };
    let peer = peer.to_canonical();
    let own = HeaderValue::from_str(&peer.to_string());
    let Ok(own) = own else {
        return;
    };
    if !trusted.contains(peer) || incoming.is_empty() {
        headers.insert(X_FORWARDED_FOR, own.clone());
        headers.insert(X_REAL_IP, own);
        return;
    }
    let mut chain = Vec::new();
    for v in incoming {
        chain.extend_from_slice(v.as_bytes());
        chain.extend_from_slice(b", ");
    }
    chain.extend_from_slice(own.as_bytes());
    // Values that were header values joined by ", " are one too.
    let appended = HeaderValue::from_bytes(&chain).unwrap_or_else(|_| own.clone());
    headers.insert(X_FORWARDED_FOR, appended);
    let client = client(peer, incoming, trusted);
    if let Ok(v) = HeaderValue::from_str(&client.to_string()) {
        headers.insert(X_REAL_IP, v);
    }
}

/// The client behind trusted proxies: from the peer leftward through the chain, the first
/// address that is not a trusted proxy (or the last trusted one before an entry that is
/// no address: what such a proxy was told cannot be believed).
fn client(peer: IpAddr, incoming: &[HeaderValue], trusted: &TrustedProxies) -> IpAddr {
    // Byte by byte: a value with a byte past ASCII anywhere (a client's own entry, on the
    // left of what its proxy appended) would fail as a whole as text, and take the
    // proxy's entries with it.
    let entries = incoming
        .iter()
        .rev()
        .flat_map(|v| v.as_bytes().rsplit(|&b| b == b','))
        .map(|e| std::str::from_utf8(e).unwrap_or("?"));
    let mut client = peer;
    for entry in entries {
        if !trusted.contains(client) {
            break;
        }
        match entry.trim().parse::<IpAddr>() {
            Ok(ip) => client = ip.to_canonical(),
            Err(_) => break,
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(entries: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&entries.iter().map(|e| (*e).to_owned()).collect::<Vec<_>>()).unwrap()
    }

    fn ip(s: &str) -> Option<Peer> {
        Some(Peer(s.parse().unwrap()))
    }

    fn values(vs: &[&'static str]) -> Vec<HeaderValue> {
        vs.iter().map(|v| HeaderValue::from_static(v)).collect()
    }

    #[test]
    fn ranges_parse_and_match() {
        let t = trusted(&["10.0.0.0/8", "192.0.2.7", "fd00::/8", "fc00::/7"]);
        assert!(t.contains("10.200.1.1".parse().unwrap()));
        assert!(t.contains("::ffff:10.1.1.1".parse().unwrap()), "mapped v4");
        assert!(t.contains("fd12::1".parse().unwrap()));
        assert!(!t.contains("fe80::1".parse().unwrap()));
        let t = trusted(&["10.0.0.0/8", "192.0.2.7/32"]);
        assert!(!t.contains("11.0.0.1".parse().unwrap()));
        assert!(!t.contains("192.0.2.8".parse().unwrap()));
        for bad in [
            "10.0.0.0/33",
            "10.0.0.0/",
            "host",
            "::1/129",
            "1.2.3.4/+1",
            "",
            // Wider than a private network: believing everyone.
            "0.0.0.0/0",
            "::/0",
            "128.0.0.0/1",
            "10.0.0.0/7",
            "2000::/3",
            "::ffff:0.0.0.0/0",
        ] {
            assert!(TrustedProxies::parse(&[bad.to_owned()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_wrote() {
        let mut h = HeaderMap::new();
        let spoofed = values(&["203.0.113.9"]);
        set(
            &mut h,
            ip("198.51.100.4"),
            &spoofed,
            &TrustedProxies::default(),
        );
        assert_eq!(h[X_FORWARDED_FOR], "198.51.100.4");
        assert_eq!(h[X_REAL_IP], "198.51.100.4");
        // No peer known (a held call): neither is set.
        let mut h = HeaderMap::new();
        set(&mut h, None, &spoofed, &TrustedProxies::default());
        assert!(h.is_empty());
    }

    #[test]
    fn the_client_counted_is_the_peer_or_the_chains_nearest_untrusted_address() {
        let none = TrustedProxies::default();
        let t = trusted(&["10.0.0.0/8"]);
        let mut spoofed = HeaderMap::new();
        spoofed.insert(X_FORWARDED_FOR, HeaderValue::from_static("203.0.113.9"));
        let peer = |s: &str| s.parse::<IpAddr>().unwrap();
        // With TLS here, or proxies named, an untrusted peer is the client, whatever it wrote.
        assert_eq!(
            client_addr(peer("198.51.100.4"), &spoofed, &none, true),
            Some(peer("198.51.100.4"))
        );
        assert_eq!(
            client_addr(peer("198.51.100.4"), &spoofed, &t, false),
            Some(peer("198.51.100.4"))
        );
        // Plain HTTP, no proxy named: the peer may be a terminating proxy, so nobody.
        assert_eq!(
            client_addr(peer("198.51.100.4"), &spoofed, &none, false),
            None
        );
        // A trusted proxy: the chain's nearest untrusted address.
        let mut chain = HeaderMap::new();
        chain.append(
            X_FORWARDED_FOR,
            HeaderValue::from_static("6.6.6.6, 203.0.113.9"),
        );
        chain.append(X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.2"));
        assert_eq!(
            client_addr(peer("10.0.0.1"), &chain, &t, false),
            Some(peer("203.0.113.9"))
        );
        // A trusted proxy with no chain, or one naming only proxies: nobody.
        assert_eq!(
            client_addr(peer("10.0.0.1"), &HeaderMap::new(), &t, true),
            None
        );
        let mut inner = HeaderMap::new();
        inner.insert(X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.9"));
        assert_eq!(client_addr(peer("10.0.0.1"), &inner, &t, false), None);
    }

    #[test]
    fn a_trusted_peer_appends_itself_and_the_nearest_untrusted_address_is_the_client() {
        let t = trusted(&["10.0.0.0/8"]);
        let mut h = HeaderMap::new();
        let chain = values(&["6.6.6.6, 203.0.113.9", "10.0.0.2"]);
        set(&mut h, ip("10.0.0.1"), &chain, &t);
        assert_eq!(
            h[X_FORWARDED_FOR],
            "6.6.6.6, 203.0.113.9, 10.0.0.2, 10.0.0.1"
        );
        assert_eq!(
            h[X_REAL_IP], "203.0.113.9",
            "the spoofable left is not believed"
        );
        // No chain: the peer itself.
        let mut h = HeaderMap::new();
        set(&mut h, ip("10.0.0.1"), &[], &t);
        assert_eq!(h[X_FORWARDED_FOR], "10.0.0.1");
        assert_eq!(h[X_REAL_IP], "10.0.0.1");
        // A client's entry that is not even text spoils nothing its proxy appended.
        let mut h = HeaderMap::new();
        let wild = HeaderValue::from_bytes(b"\xff\xfe, 203.0.113.9").unwrap();
        set(&mut h, ip("10.0.0.1"), &[wild], &t);
        assert_eq!(h[X_REAL_IP], "203.0.113.9");
        // A garbled entry stops the walk at the trusted proxy that passed it on.
        let mut h = HeaderMap::new();
        set(
            &mut h,
            ip("10.0.0.1"),
            &values(&["1.2.3.4, junk, 10.0.0.3"]),
            &t,
        );
        assert_eq!(h[X_REAL_IP], "10.0.0.3");
    }
}

//! Each client's share of `max_connections`. Without one, a single address could open
//! every connection the service serves and leave everyone else waiting in the kernel's
//! queue. A client is the connection's peer address, an IPv6 one by its `/64` (the
//! least a network is given, within which one host can take any address it likes); the
//! peers in `trusted_proxies` have no share, for a proxy in front holds its clients'
//! connections. A connection past its client's share is closed as soon as it is
//! accepted ([`Shares::take`]), and counted in
//! [`CONNECTIONS_REFUSED`](crate::metrics::CONNECTIONS_REFUSED).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};

use crate::config::Config;
use crate::error::CliError;
use crate::forwarded::TrustedProxies;

/// The least default share of a client: a tenth of a small `max_connections` would
/// leave a browser (six connections a host), or the people behind one NAT, too few.
const LEAST_DEFAULT_SHARE: usize = 32;

/// The connections each client holds, and the most it may.
#[derive(Debug)]
pub(crate) struct Shares {
    /// `max_connections_per_client`, or its default.
    per_client: usize,
    /// The peers with no share.
    trusted: TrustedProxies,
    /// Each client's open connections; a client with none has no entry.
    open: Mutex<BTreeMap<IpAddr, usize>>,
}

/// A connection's place in its client's share, given back when dropped.
#[derive(Debug)]
pub(crate) struct Share {
    shares: Arc<Shares>,
    client: IpAddr,
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut open = self
            .shares
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.client);
            }
        }
    }
}

impl Shares {
    /// `max_connections_per_client` of `c` (at least 1), and `trusted_proxies`.
    pub(crate) fn of(c: &Config) -> Result<Self, CliError> {
        let per_client = match c.max_connections_per_client {
            Some(0) => {
                return Err(CliError::Usage {
                    flag: "max_connections_per_client",
                    reason: "0: a client must be able to open at least one connection".to_owned(),
                });
            }
            Some(n) => n,
            None => default_share(c.max_connections),
        };
        Ok(Self {
            per_client,
            trusted: TrustedProxies::parse(&c.trusted_proxies)?,
            open: Mutex::new(BTreeMap::new()),
        })
    }

    /// A place for one more connection from `peer`: `Some` to hold while the connection
    /// (or what it became) lasts, `None` for a trusted proxy, which has no share; `Err`
    /// with the client counted when its share is full.
    pub(crate) fn take(self: &Arc<Self>, peer: IpAddr) -> Result<Option<Share>, IpAddr> {
        let peer = peer.to_canonical();
        if self.trusted.contains(peer) {
            return Ok(None);
        }
        let client = client_of(peer);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let n = open.entry(client).or_insert(0);
        if *n >= self.per_client {
            return Err(client);
        }
        *n += 1;
        Ok(Some(Share {
            shares: Arc::clone(self),
            client,
        }))
    }
}

/// The default `max_connections_per_client`: a tenth of `max_connections`, at least
/// [`LEAST_DEFAULT_SHARE`], at most `max_connections`.
pub(crate) fn default_share(max_connections: usize) -> usize {
    (max_connections / 10)
        .max(LEAST_DEFAULT_SHARE)
        .min(max_connections)
}

/// The client `peer` (canonical) counts as: an IPv4 address itself, an IPv6 one its
/// `/64`.
fn client_of(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(_) => peer,
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shares(per_client: usize, trusted: &[&str]) -> Arc<Shares> {
        Arc::new(Shares {
            per_client,
            trusted: TrustedProxies::parse(
                &trusted.iter().map(|t| (*t).to_owned()).collect::<Vec<_>>(),
            )
            .unwrap(),
            open: Mutex::new(BTreeMap::new()),
        })
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_client_holds_its_share_and_no_more_until_one_is_given_back() {
        let s = shares(2, &[]);
        let a = s.take(ip("192.0.2.1")).unwrap();
        let b = s.take(ip("192.0.2.1")).unwrap();
        assert!(a.is_some() && b.is_some());
        assert_eq!(s.take(ip("192.0.2.1")).unwrap_err(), ip("192.0.2.1"));
        // A mapped IPv4 address is the same client.
        assert!(s.take(ip("::ffff:192.0.2.1")).is_err());
        // Another client has its own.
        assert!(s.take(ip("192.0.2.2")).unwrap().is_some());
        drop(a);
        let c = s.take(ip("192.0.2.1")).unwrap();
        assert!(c.is_some());
        drop((b, c));
        assert!(
            s.open.lock().unwrap().get(&ip("192.0.2.1")).is_none(),
            "a client with nothing open is forgotten"
        );
    }

    #[test]
    fn an_ipv6_client_is_its_slash_64_and_trusted_proxies_have_no_share() {
        let s = shares(1, &["10.0.0.0/8", "fd00::1"]);
        let _one = s.take(ip("2001:db8:1:2::1")).unwrap();
        assert_eq!(
            s.take(ip("2001:db8:1:2:ffff::9")).unwrap_err(),
            ip("2001:db8:1:2::")
        );
        assert!(s.take(ip("2001:db8:1:3::1")).unwrap().is_some());
        for _ in 0..5 {
            assert!(s.take(ip("10.1.2.3")).unwrap().is_none());
            assert!(s.take(ip("fd00::1")).unwrap().is_none());
        }
    }

    #[test]
    fn the_default_share_is_a_tenth_with_a_floor_never_past_the_whole() {
        assert_eq!(default_share(10_000), 1000);
        assert_eq!(default_share(100), 32);
        assert_eq!(default_share(10), 10);
        assert_eq!(default_share(1), 1);
    }
}

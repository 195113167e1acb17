//! The egress guard: which destinations metadata and JWKS fetches may reach (draft -11
//! §JWKS Discovery, Signature-Key -09 §7.3; the SSRF cases of the security catalogue's
//! family F, `docs/conformance.md`).
//!
//! A fetch is admitted in two steps: the URL (HTTPS, and an IP-literal host checked at
//! once), then every address the host resolves to. If any resolved address is in a
//! special-purpose range the whole destination is refused, and the connection must go to
//! exactly the addresses admitted ([`AdmittedDestination::addrs`]), never to a second resolution,
//! so DNS rebinding cannot swap them.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use async_trait::async_trait;

use crate::HttpsUrl;

/// Why a destination is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EgressError {
    /// The address is in a special-purpose range and the host is not allow-listed.
    #[error("{host} resolves to {addr}, a {range} address")]
    SpecialAddress {
        /// The host.
        host: String,
        /// The refused address.
        addr: IpAddr,
        /// The range it is in.
        range: &'static str,
    },
    /// The host resolved to no address.
    #[error("{host} has no address")]
    NoAddress {
        /// The host.
        host: String,
    },
    /// Name resolution failed.
    #[error("resolving {host}: {reason}")]
    Resolve {
        /// The host.
        host: String,
        /// Why.
        reason: String,
    },
    /// A redirect: never followed to another host.
    #[error("redirect from {from} to {to} refused")]
    Redirect {
        /// The URL requested.
        from: String,
        /// The `Location`.
        to: String,
    },
}

/// The special-purpose range `ip` is in, if any (RFC 6890 and its updates): unspecified,
/// loopback, private, shared, link-local, documentation, benchmarking, multicast, reserved,
/// unique-local, site-local, IPv4-mapped and -compatible, NAT64 local-use, 6to4, Teredo,
/// discard-only. A NAT64 `64:ff9b::/96` address is judged by the IPv4 address it embeds.
///
/// ```
/// use aauth_metadata::egress::special_range;
/// assert_eq!(special_range("10.1.2.3".parse().unwrap()), Some("private"));
/// assert_eq!(special_range("::ffff:127.0.0.1".parse().unwrap()), Some("IPv4-mapped"));
/// assert_eq!(special_range("93.184.216.34".parse().unwrap()), None);
/// ```
#[must_use]
pub fn special_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let o = ip.octets();
    let range = match o {
        [0, ..] => "this-network",
        [10, ..] | [172, 16..=31, ..] | [192, 168, ..] => "private",
        [100, 64..=127, ..] => "shared (CGN)",
        [127, ..] => "loopback",
        [169, 254, ..] => "link-local",
        [192, 0, 0, _] => "IETF protocol assignment",
        [192, 0, 2, _] | [198, 51, 100, _] | [203, 0, 113, _] => "documentation",
        [192, 88, 99, _] => "6to4 relay anycast",
        [198, 18..=19, ..] => "benchmarking",
        [224..=239, ..] => "multicast",
        [240..=255, ..] => "reserved",
        _ => return None,
    };
    Some(range)
}

fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    let range = match s {
        [0, 0, 0, 0, 0, 0xffff, _, _] => "IPv4-mapped",
        [0, 0, 0, 0, 0, 0, _, _] => "IPv4-compatible",
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => {
            let v4 = Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
            return special_v4(v4).map(|_| "NAT64 of a special IPv4 address");
        }
        [0x64, 0xff9b, 1, ..] => "NAT64 local-use",
        [0x100, 0, 0, 0, ..] => "discard-only",
        [0x2001, 0xdb8, ..] => "documentation",
        [0x2001, 0..=0x1ff, ..] => "IETF protocol assignment (incl. Teredo)",
        [0x2002, ..] => "6to4",
        [0x3fff, 0..=0x0fff, ..] => "documentation",
        [a, ..] if a & 0xfe00 == 0xfc00 => "unique-local",
        [a, ..] if a & 0xffc0 == 0xfe80 => "link-local",
        [a, ..] if a & 0xffc0 == 0xfec0 => "site-local",
        [a, ..] if a & 0xff00 == 0xff00 => "multicast",
        _ => return None,
    };
    Some(range)
}

/// Resolves a host and port to socket addresses. The HTTPS client uses the system
/// resolver; tests use a stub, and the demo world maps its names to loopback sockets.
#[async_trait]
pub trait Resolve: Send + Sync + 'static {
    /// The socket addresses of `host` at `port`.
    ///
    /// # Errors
    ///
    /// [`EgressError::Resolve`].
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, EgressError>;
}

/// Which destinations are admitted. By default every public address, and no
/// special-purpose one.
#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    allowed_hosts: BTreeSet<String>,
}

/// An admitted destination: connect to these addresses and no others.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdmittedDestination {
    /// The host (for SNI and `Host`).
    pub host: String,
    /// The addresses checked.
    pub addrs: Vec<SocketAddr>,
}

/// The settings of an [`EgressPolicy`] that open it, reached by
/// [`EgressPolicy::dangerous`].
#[derive(Debug)]
pub struct DangerousEgressPolicy<'a>(&'a mut EgressPolicy);

impl DangerousEgressPolicy<'_> {
    /// Admits `host` whatever its addresses (for example a deployment's own services on
    /// a private network, or the demo world's names on loopback). Exact host match. A
    /// name that an attacker can point at an internal address (by DNS) becomes a way in:
    /// admit only names the deployment controls.
    pub fn allow_host(&mut self, host: &str) -> &mut Self {
        self.0.allowed_hosts.insert(host.to_owned());
        self
    }
}

impl EgressPolicy {
    /// The default policy: public addresses only.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The settings that open the guard, behind a name that says so (as rustls's
    /// `dangerous()`).
    ///
    /// ```
    /// use aauth_metadata::EgressPolicy;
    /// let mut policy = EgressPolicy::new();
    /// policy.dangerous().allow_host("ps.internal");
    /// assert!(policy.is_allowed_host("ps.internal"));
    /// ```
    pub fn dangerous(&mut self) -> DangerousEgressPolicy<'_> {
        DangerousEgressPolicy(self)
    }

    /// Whether `host` is allow-listed.
    #[must_use]
    pub fn is_allowed_host(&self, host: &str) -> bool {
        self.allowed_hosts.contains(host)
    }

    /// Checks `addrs` (resolved for `url`) and returns the destination to connect to.
    ///
    /// # Errors
    ///
    /// [`EgressError::NoAddress`] or [`EgressError::SpecialAddress`] (for the first
    /// special address: one is enough to refuse the host).
    pub fn admit_addrs(
        &self,
        url: &HttpsUrl,
        addrs: &[SocketAddr],
    ) -> Result<AdmittedDestination, EgressError> {
        let host = url.host();
        if addrs.is_empty() {
            return Err(EgressError::NoAddress {
                host: host.to_owned(),
            });
        }
        if !self.is_allowed_host(host) {
            for addr in addrs {
                if let Some(range) = special_range(addr.ip()) {
                    return Err(EgressError::SpecialAddress {
                        host: host.to_owned(),
                        addr: addr.ip(),
                        range,
                    });
                }
            }
        }
        Ok(AdmittedDestination {
            host: host.to_owned(),
            addrs: addrs.to_vec(),
        })
    }

    /// Resolves `url`'s host with `resolver` (an IPv4 literal is not resolved) and admits
    /// the result.
    ///
    /// # Errors
    ///
    /// [`EgressError`].
    pub async fn admit(
        &self,
        url: &HttpsUrl,
        resolver: &dyn Resolve,
    ) -> Result<AdmittedDestination, EgressError> {
        let addrs = match url.host().parse::<Ipv4Addr>() {
            Ok(v4) => vec![SocketAddr::new(IpAddr::V4(v4), url.port())],
            Err(_) => resolver.resolve(url.host(), url.port()).await?,
        };
        self.admit_addrs(url, &addrs)
    }

    /// Classifies a redirect that a fetch of `from` was answered with: to another origin
    /// (or not an `https` URL) it is an egress refusal; to the same origin it is returned,
    /// for the caller's own error. Discovery follows neither.
    ///
    /// # Errors
    ///
    /// [`EgressError::Redirect`].
    pub fn check_redirect(&self, from: &HttpsUrl, location: &str) -> Result<HttpsUrl, EgressError> {
        let refused = || EgressError::Redirect {
            from: from.as_str().to_owned(),
            to: location.chars().take(200).collect(),
        };
        let to = HttpsUrl::parse(location).map_err(|_| refused())?;
        if to.same_origin(from) {
            Ok(to)
        } else {
            Err(refused())
        }
    }
}

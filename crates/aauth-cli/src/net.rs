//! Reaching servers from the command line: the egress-guarded HTTPS fetcher, with extra
//! trust roots (`--ca-file`) and curl-style address overrides (`--connect-to`).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use aauth_metadata::{
    EgressError, EgressPolicy, FetchLimits, GuardedFetch, HttpsTransport, Resolve, SystemResolver,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::cli::Net;
use crate::error::CliError;

/// The resolver: the operating system's, except for the names `--connect-to` overrides.
#[derive(Debug, Default)]
pub(crate) struct Overrides {
    map: BTreeMap<(String, u16), SocketAddr>,
}

#[async_trait::async_trait]
impl Resolve for Overrides {
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, EgressError> {
        match self.map.get(&(host.to_ascii_lowercase(), port)) {
            Some(addr) => Ok(vec![*addr]),
            None => SystemResolver.resolve(host, port).await,
        }
    }
}

/// How to reach servers as `net` says: the web's roots plus `--ca-file`, the overrides
/// admitted (the user named them), every other address checked by the egress guard as a
/// server would.
#[derive(Debug, Clone)]
pub(crate) struct Reach {
    policy: EgressPolicy,
    overrides: Arc<Overrides>,
    roots: Option<rustls::RootCertStore>,
}

impl Reach {
    pub(crate) fn new(net: &Net) -> Result<Self, CliError> {
        Self::with_names(&net.ca_file, &net.connect_to, ("--ca-file", "--connect-to"))
    }

    /// From CA files and `NAME:PORT:HOST:PORT` overrides (flags, or a service's
    /// `[egress]`).
    pub(crate) fn from_egress(
        ca_files: &[std::path::PathBuf],
        connect_to: &[String],
    ) -> Result<Self, CliError> {
        Self::with_names(
            ca_files,
            connect_to,
            ("egress.ca_files", "egress.connect_to"),
        )
    }

    /// As `from_egress`, errors naming the flags or keys `names` (CA files, overrides).
    fn with_names(
        ca_files: &[std::path::PathBuf],
        connect_to: &[String],
        names: (&'static str, &'static str),
    ) -> Result<Self, CliError> {
        let mut policy = EgressPolicy::new();
        let mut overrides = Overrides::default();
        for spec in connect_to {
            let (name, port, addr) = parse_connect_to(spec, names.1)?;
            policy.dangerous().allow_host(&name);
            overrides.map.insert((name, port), addr);
        }
        let roots = if ca_files.is_empty() {
            None
        } else {
            let mut roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            for path in ca_files {
                add_pem(&mut roots, path, names.0)?;
            }
            Some(roots)
        };
        Ok(Self {
            policy,
            overrides: Arc::new(overrides),
            roots,
        })
    }

    /// The trust roots: the web's, and the configured CA files'.
    pub(crate) fn roots(&self) -> rustls::RootCertStore {
        self.roots.clone().unwrap_or_else(|| rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })
    }

    fn transport(&self) -> HttpsTransport {
        match &self.roots {
            Some(roots) => HttpsTransport::with_roots(roots.clone()),
            None => HttpsTransport::with_webpki_roots(),
        }
    }

    /// A fetcher for metadata and JWKS.
    pub(crate) fn fetcher(&self) -> GuardedFetch<Overrides, HttpsTransport> {
        GuardedFetch::new(
            self.policy.clone(),
            Arc::clone(&self.overrides),
            Arc::new(self.transport()),
            FetchLimits::default(),
        )
    }

    /// The agent's HTTPS client.
    pub(crate) fn https_client(&self) -> aauth_agent::HttpsClient<Overrides> {
        aauth_agent::HttpsClient::with_resolver(Arc::clone(&self.overrides), self.transport())
            .egress(self.policy.clone())
    }
}

/// Adds the certificates of the PEM file `path` to `roots`; a file its group or others
/// can write is refused ([`CliError::WritableFile`]), for whoever could write it would
/// choose whom the command trusts.
fn add_pem(
    roots: &mut rustls::RootCertStore,
    path: &std::path::Path,
    flag: &'static str,
) -> Result<(), CliError> {
    let bad = |reason: String| CliError::Usage {
        flag,
        reason: format!("{}: {reason}", path.display()),
    };
    // Checked and read through one open file: no race with a rename between the two.
    let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    crate::keys::check_not_writable(flag, path, &file)?;
    let certs = CertificateDer::pem_reader_iter(std::io::BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    if certs.is_empty() {
        return Err(bad("no CERTIFICATE in it".to_owned()));
    }
    for cert in certs {
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    Ok(())
}

/// `value` as a server identifier; a usage error naming `flag` (or configuration key).
pub(crate) fn server_id(
    flag: &'static str,
    value: &str,
) -> Result<aauth_tokens::ServerId, CliError> {
    aauth_tokens::ServerId::parse(value).map_err(|e| CliError::Usage {
        flag,
        reason: e.to_string(),
    })
}

/// `NAME:PORT:HOST:PORT` (HOST an IP address; an IPv6 one in brackets).
fn parse_connect_to(spec: &str, flag: &'static str) -> Result<(String, u16, SocketAddr), CliError> {
    let bad = |reason: &str| CliError::Usage {
        flag,
        reason: format!("{spec:?}: {reason} (expected NAME:PORT:HOST:PORT)"),
    };
    let (name, rest) = spec.split_once(':').ok_or_else(|| bad("no port"))?;
    let (port, target) = rest.split_once(':').ok_or_else(|| bad("no target"))?;
    if name.is_empty() {
        return Err(bad("empty NAME"));
    }
    let port: u16 = port.parse().map_err(|_| bad("PORT is not a port number"))?;
    let (host, target_port) = target
        .rsplit_once(':')
        .ok_or_else(|| bad("no target port"))?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let ip: IpAddr = host
        .parse()
        .map_err(|_| bad("HOST must be an IP address"))?;
    let target_port: u16 = target_port
        .parse()
        .map_err(|_| bad("the target PORT is not a port number"))?;
    Ok((
        name.to_ascii_lowercase(),
        port,
        SocketAddr::new(ip, target_port),
    ))
}

#[cfg(test)]
mod tests {
    use super::parse_connect_to;

    #[test]
    fn connect_to_reads_curls_shape() {
        let (name, port, addr) =
            parse_connect_to("PS.example:443:127.0.0.1:8443", "--connect-to").unwrap();
        assert_eq!((name.as_str(), port), ("ps.example", 443));
        assert_eq!(addr.to_string(), "127.0.0.1:8443");
        let (_, _, addr) = parse_connect_to("ps.example:443:[::1]:8443", "--connect-to").unwrap();
        assert_eq!(addr.to_string(), "[::1]:8443");
        for bad in [
            "",
            "ps.example",
            "ps.example:443",
            "ps.example:x:127.0.0.1:1",
            ":443:127.0.0.1:1",
            "ps.example:443:localhost:1",
            "ps.example:443:127.0.0.1:99999",
        ] {
            assert!(parse_connect_to(bad, "--connect-to").is_err(), "{bad:?}");
        }
    }
}

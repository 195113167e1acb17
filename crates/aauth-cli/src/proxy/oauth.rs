//! `[resource_proxy.oauth]`: OAuth clients beside AAuth agents on the routes that say
//! `oauth_scope` (`aauth_resource::OAuthAccess`). Tokens of the configured issuers are
//! verified through their discovered keys, opaque ones at the introspection endpoint when
//! one is configured, HMAC-signed ones of `secret_issuers` with their configured secret
//! only, DPoP-bound ones when `dpop` is on (their proofs' `jti`s in the same
//! replay store as the AAuth signatures); the proxy publishes RFC 9728 metadata at
//! `/.well-known/oauth-protected-resource` and names it in its challenges. The upstream
//! receives the verified client in `x-aauth-oauth-*` headers, never the token.

use std::sync::Arc;

use aauth_keys::time::Clock;
use aauth_metadata::{CacheConfig, HttpsUrl};
use aauth_oauth::{
    AccessTokenPolicy, AccessTokenVerifier, AssertionAudience, ClientAuth, DpopCheck,
    HmacAlgorithm, Introspection, Issuer, ProtectedResourceMetadata, SharedSecret, TokenTypes,
    VerifyAccessToken,
};
use aauth_resource::{OAuthAccess, ReplayStore};
use aauth_tokens::ServerId;

use crate::config::{
    ProxyIntrospection, ProxyOAuth, ProxyRoute, ProxySecretIssuer, ResourceProxySection,
};
use crate::error::CliError;

/// What every OAuth route shares.
pub(super) struct OAuthBase {
    jwt: Arc<dyn VerifyAccessToken>,
    opaque: Option<Arc<dyn VerifyAccessToken>>,
    dpop: Option<DpopCheck>,
    metadata: ProtectedResourceMetadata,
    metadata_url: String,
}

fn usage(flag: &'static str, reason: String) -> CliError {
    CliError::Usage { flag, reason }
}

/// The section's checks, without building anything (also `aauth config check`).
pub(super) fn check(s: &ResourceProxySection) -> Result<(), CliError> {
    let routes = s.routes.iter().any(|r| r.oauth_scope.is_some());
    let Some(o) = &s.oauth else {
        if routes {
            return Err(usage(
                "resource_proxy.oauth",
                "a route has oauth_scope but there is no [resource_proxy.oauth] section".to_owned(),
            ));
        }
        return Ok(());
    };
    if o.issuers.is_empty() && o.secret_issuers.is_empty() {
        return Err(usage(
            "resource_proxy.oauth.issuers",
            "no issuers: no OAuth token could ever be accepted".to_owned(),
        ));
    }
    for i in &o.issuers {
        Issuer::discover(i)
            .map_err(|e| usage("resource_proxy.oauth.issuers", format!("{i}: {e}")))?;
    }
    let mut seen: Vec<&str> = o.issuers.iter().map(String::as_str).collect();
    for i in &o.secret_issuers {
        if i.issuer.is_empty() || seen.contains(&i.issuer.as_str()) {
            return Err(usage(
                "resource_proxy.oauth.secret_issuers.issuer",
                format!(
                    "{:?}: empty, or configured twice (an issuer signs one way)",
                    i.issuer
                ),
            ));
        }
        seen.push(&i.issuer);
        secret_issuer(i)?;
    }
    if let Some(i) = &o.introspection {
        HttpsUrl::endpoint(&i.endpoint).map_err(|e| {
            usage(
                "resource_proxy.oauth.introspection.endpoint",
                format!("{}: {e}", i.endpoint),
            )
        })?;
        introspection_client(i)?;
    }
    dpop_nonces(o)?;
    Ok(())
}

/// How the proxy authenticates at the introspection endpoint: `client_secret_basic` with
/// `client_secret_file`, or `private_key_jwt` with `client_key_file` and the assertion's
/// `aud` (`assertion_audience`; only with a key).
fn introspection_client(
    i: &ProxyIntrospection,
) -> Result<(ClientAuth, Option<AssertionAudience>), CliError> {
    let field = "resource_proxy.oauth.introspection.client_secret_file";
    match (&i.client_secret_file, &i.client_key_file) {
        (Some(file), None) => {
            if i.assertion_audience.is_some() {
                return Err(usage(
                    "resource_proxy.oauth.introspection.assertion_audience",
                    "only with client_key_file (private_key_jwt)".to_owned(),
                ));
            }
            let secret = crate::keys::read_secret_text(file)?
                .trim_end_matches(['\r', '\n'])
                .to_owned();
            if secret.is_empty() {
                return Err(usage(field, format!("{} is empty", file.display())));
            }
            let auth = ClientAuth::SecretBasic {
                client_id: i.client_id.clone(),
                secret,
            };
            Ok((auth, None))
        }
        (None, Some(file)) => {
            let audience = i
                .assertion_audience
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(|e: &str| {
                    usage(
                        "resource_proxy.oauth.introspection.assertion_audience",
                        e.to_owned(),
                    )
                })?;
            let (key, kid) = crate::keys::read_signing_key(file)?;
            let auth = ClientAuth::PrivateKeyJwt {
                client_id: i.client_id.clone(),
                key: Arc::new(key),
                kid,
            };
            Ok((auth, audience))
        }
        _ => Err(usage(
            field,
            "give exactly one of client_secret_file (client_secret_basic) and \
             client_key_file (private_key_jwt)"
                .to_owned(),
        )),
    }
}

/// What `[resource_proxy.oauth]` configures, if it is there.
pub(super) fn base(
    s: &ResourceProxySection,
    id: &ServerId,
    reach: &crate::net::Reach,
    clock: &Arc<dyn Clock>,
    replay: &Arc<dyn ReplayStore>,
) -> Result<Option<OAuthBase>, CliError> {
    check(s)?;
    let Some(o) = &s.oauth else {
        return Ok(None);
    };
    let audience = o.audience.clone().unwrap_or_else(|| id.as_str().to_owned());
    let mut policy = AccessTokenPolicy::new(audience.clone());
    if o.plain_jwt {
        policy = policy.with_types(TokenTypes::AtJwtOrPlain);
    }
    let mut issuers = o
        .issuers
        .iter()
        .map(|i| {
            Issuer::discover(i).map_err(|e| usage("resource_proxy.oauth.issuers", e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    for i in &o.secret_issuers {
        issuers.push(secret_issuer(i)?);
    }
    let jwt = AccessTokenVerifier::new(
        policy,
        issuers,
        Arc::new(reach.fetcher()),
        Arc::clone(clock),
        CacheConfig::default(),
    );
    let opaque = introspection(o, &audience, reach, clock)?;
    let nonces = dpop_nonces(o)?;
    let dpop = o.dpop.then(|| {
        let check = DpopCheck::new(id.as_str(), Arc::clone(replay));
        match nonces {
            Some(n) => check.nonces(n),
            None => check,
        }
    });
    let mut metadata = ProtectedResourceMetadata::new(audience);
    for i in &o.issuers {
        metadata = metadata.authorization_server(i.clone());
    }
    // A secret's issuer is named too when its identifier is a URL a client can read.
    for i in &o.secret_issuers {
        if HttpsUrl::endpoint(&i.issuer).is_ok() {
            metadata = metadata.authorization_server(i.issuer.clone());
        }
    }
    let mut scopes: Vec<String> = s
        .routes
        .iter()
        .filter_map(|r| r.oauth_scope.as_deref())
        .flat_map(|v| v.split(' '))
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect();
    scopes.sort();
    scopes.dedup();
    metadata = metadata.scopes(scopes);
    if let Some(name) = &s.name {
        metadata = metadata.name(name.clone());
    }
    if o.dpop {
        metadata = metadata.dpop(false);
    }
    let metadata_url = format!(
        "{}{}",
        id.as_str().trim_end_matches('/'),
        metadata.well_known_path()
    );
    Ok(Some(OAuthBase {
        jwt: Arc::new(jwt),
        opaque,
        dpop,
        metadata,
        metadata_url,
    }))
}

fn hmac_algorithm(i: &ProxySecretIssuer) -> Result<HmacAlgorithm, CliError> {
    HmacAlgorithm::parse(&i.alg).ok_or_else(|| {
        usage(
            "resource_proxy.oauth.secret_issuers.alg",
            format!("{:?}: not HS256, HS384 or HS512", i.alg),
        )
    })
}

/// An issuer of `secret_issuers`, its secret read from its file.
fn secret_issuer(i: &ProxySecretIssuer) -> Result<Issuer, CliError> {
    let alg = hmac_algorithm(i)?;
    let bytes = crate::keys::read_secret(&i.secret_file)?;
    let body = bytes
        .strip_suffix(b"\r\n")
        .or_else(|| bytes.strip_suffix(b"\n"))
        .unwrap_or(&bytes);
    let flag = "resource_proxy.oauth.secret_issuers.secret_file";
    let secret = SharedSecret::new(alg, body)
        .map_err(|e| usage(flag, format!("{}: {e}", i.secret_file.display())))?;
    Issuer::with_shared_secret(&i.issuer, secret).map_err(|e| usage(flag, e.to_string()))
}

/// The DPoP nonces `dpop_nonce_secret_file` asks for (RFC 9449 §9), if it does.
fn dpop_nonces(o: &ProxyOAuth) -> Result<Option<aauth_oauth::DpopNonces>, CliError> {
    let Some(path) = &o.dpop_nonce_secret_file else {
        return Ok(None);
    };
    if !o.dpop {
        return Err(usage(
            "resource_proxy.oauth.dpop_nonce_secret_file",
            "nonces are for DPoP proofs: set dpop = true".to_owned(),
        ));
    }
    let text = crate::keys::read_secret_text(path)?;
    let secret = zeroize::Zeroizing::new(crate::roles::hex32(&text).ok_or_else(|| {
        usage(
            "resource_proxy.oauth.dpop_nonce_secret_file",
            format!("{}: not 64 hex digits", path.display()),
        )
    })?);
    Ok(Some(aauth_oauth::DpopNonces::new(&secret)))
}

fn introspection(
    o: &ProxyOAuth,
    audience: &str,
    reach: &crate::net::Reach,
    clock: &Arc<dyn Clock>,
) -> Result<Option<Arc<dyn VerifyAccessToken>>, CliError> {
    Ok(introspector(o, audience, reach, clock)?.map(|i| Arc::new(i) as Arc<dyn VerifyAccessToken>))
}

fn introspector(
    o: &ProxyOAuth,
    audience: &str,
    reach: &crate::net::Reach,
    clock: &Arc<dyn Clock>,
) -> Result<Option<Introspection>, CliError> {
    let Some(i) = &o.introspection else {
        return Ok(None);
    };
    let (auth, assertion_audience) = introspection_client(i)?;
    let endpoint = HttpsUrl::endpoint(&i.endpoint)
        .map_err(|e| usage("resource_proxy.oauth.introspection.endpoint", e.to_string()))?;
    // The issuer the introspection endpoint speaks for: the first configured one (an
    // answer naming another is refused).
    let issuer = o
        .issuers
        .first()
        .or_else(|| o.secret_issuers.first().map(|i| &i.issuer))
        .cloned()
        .unwrap_or_default(); // default: unreachable, no issuers is refused above
    let mut introspection = Introspection::new(
        endpoint,
        auth,
        issuer,
        audience,
        Arc::new(reach.https_client()),
        Arc::clone(clock),
    )
    .max_ttl(i.max_ttl_secs);
    if let Some(a) = assertion_audience {
        introspection = introspection.assertion_audience(a);
    }
    Ok(Some(introspection))
}

impl OAuthBase {
    /// The OAuth side of route `r`, if it takes OAuth clients.
    pub(super) fn access(&self, r: &ProxyRoute) -> Option<OAuthAccess> {
        let scope = r.oauth_scope.as_deref()?;
        let mut access =
            OAuthAccess::new(Arc::clone(&self.jwt)).resource_metadata(self.metadata_url.clone());
        for v in scope.split(' ').filter(|v| !v.is_empty()) {
            access = access.require_scope(v);
        }
        if let Some(opaque) = &self.opaque {
            access = access.opaque_tokens(Arc::clone(opaque));
        }
        if let Some(dpop) = &self.dpop {
            access = access.dpop(dpop.clone());
        }
        Some(access)
    }

    /// The RFC 9728 document and where it is served.
    pub(super) fn metadata(&self) -> (String, String) {
        (self.metadata.well_known_path(), self.metadata.to_json())
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a failed expectation is a failed test"
)]
mod tests {
    use super::*;

    /// `[resource_proxy.oauth]` with introspection authenticated by `auth`.
    fn section(auth: ProxyIntrospection) -> ProxyOAuth {
        serde_json::from_value::<ProxyOAuth>(serde_json::json!({
            "issuers": ["https://login.example"],
        }))
        .map(|mut o| {
            o.introspection = Some(auth);
            o
        })
        .unwrap()
    }

    fn client(
        secret: Option<&std::path::Path>,
        key: Option<&std::path::Path>,
        aud: Option<&str>,
    ) -> ProxyIntrospection {
        serde_json::from_value(serde_json::json!({
            "endpoint": "https://login.example/introspect",
            "client_id": "files-api",
            "client_secret_file": secret,
            "client_key_file": key,
            "assertion_audience": aud,
        }))
        .unwrap()
    }

    #[test]
    fn the_introspection_assertion_names_the_configured_audience() {
        let dir = std::env::temp_dir().join(format!("aauth-proxy-oauth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("introspect.jwk");
        let jwk = aauth_keys::PrivateKey::ed25519_from_seed(&[8; 32])
            .to_private_jwk()
            .to_json();
        let secret = dir.join("introspect.secret");
        std::fs::write(&key, jwk).unwrap();
        std::fs::write(&secret, "pw\n").unwrap();
        #[cfg(unix)]
        for file in [&key, &secret] {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let reach = crate::net::Reach::from_egress(&[], &[]).unwrap();
        let clock: Arc<dyn Clock> = Arc::new(aauth_keys::time::SystemClock);
        for (aud, expected) in [
            (None, "https://login.example"),
            (Some("issuer"), "https://login.example"),
            (Some("endpoint"), "https://login.example/introspect"),
            (
                Some("https://login.example/token"),
                "https://login.example/token",
            ),
        ] {
            let o = section(client(None, Some(&key), aud));
            check_introspection(&o);
            let i = introspector(&o, "https://api.example", &reach, &clock)
                .unwrap()
                .unwrap();
            assert_eq!(i.assertion_aud(), expected, "{aud:?}");
        }
        // A secret still authenticates by client_secret_basic, and takes no audience.
        let o = section(client(Some(&secret), None, None));
        check_introspection(&o);
        for bad in [
            client(Some(&secret), None, Some("issuer")),
            client(Some(&secret), Some(&key), None),
            client(None, None, None),
            client(None, Some(&key), Some("")),
        ] {
            assert!(introspection_client(&bad).is_err(), "{bad:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn check_introspection(o: &ProxyOAuth) {
        introspection_client(o.introspection.as_ref().unwrap()).unwrap();
    }
}

//! The three-party parties served for another process: what a subprocess (the `aauth`
//! command's tests) needs to act as the assistant against them.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use aauth_keys::Jwk;
use zeroize::Zeroizing;

use std::sync::Arc;

use aauth_keys::time::{Clock, SystemClock};
use aauth_tokens::ServerId;

use crate::parties::{Options, Parties, parties, serve_resource};
use crate::world::World;

/// The parties, kept up while this value lives: agent.example (the provider, with the
/// assistant enrolled), ps.example (the Person Server, approving on its own) and
/// resource.example (an auth-token API: any path answers once admitted).
pub struct ServedParties {
    parties: Parties,
}

impl std::fmt::Debug for ServedParties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServedParties")
            .field("names", &self.parties.world.names())
            .finish_non_exhaustive()
    }
}

impl ServedParties {
    /// Serves them on loopback.
    ///
    /// # Errors
    ///
    /// What could not be set up.
    pub async fn start() -> Result<Self, String> {
        let parties = parties(Options::bound("calendar.read")).await?;
        Ok(Self { parties })
    }

    /// The world's CA, PEM (for `--ca-file`).
    #[must_use]
    pub fn ca_pem(&self) -> String {
        self.parties.world.ca_pem()
    }

    /// Each name with its loopback socket (for `--connect-to NAME:443:IP:PORT`).
    #[must_use]
    pub fn names(&self) -> BTreeMap<String, SocketAddr> {
        self.parties.world.names()
    }

    /// The assistant's identifier.
    #[must_use]
    pub fn agent(&self) -> String {
        self.parties.agent_id.as_str().to_owned()
    }

    /// The assistant's private key, as a JWK (the one its provider enrolled).
    #[must_use]
    pub fn agent_key(&self) -> Zeroizing<Jwk> {
        self.parties.agent_key.to_private_jwk()
    }

    /// The resource's identifier.
    #[must_use]
    pub fn resource(&self) -> String {
        self.parties.rs_id.as_str().to_owned()
    }
}

/// Serves resource.example alone in `world` (whose agent provider and Person Server are
/// processes the caller aliased in, e.g. `aauth serve`): an auth-token API with scope
/// `calendar.read`; any path answers `{"message":"Access granted",…}` once admitted.
///
/// # Errors
///
/// What could not be set up.
pub async fn serve_resource_for(world: &World) -> Result<String, String> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let o = Options::bound("calendar.read");
    let as_id = ServerId::parse("https://as.example").map_err(|e| e.to_string())?;
    let (rs_id, _) = serve_resource(world, &clock, &o, &as_id).await?;
    Ok(rs_id.as_str().to_owned())
}

/// A fresh browser opens the interaction `url` and signs in as `account` with
/// `password`: the browser, the site's origin and the sign-in's answer.
async fn signing_in<'w>(
    world: &'w World,
    url: &str,
    code: &str,
    account: &str,
    password: &str,
) -> Result<
    (
        crate::d04_consent::Browser<'w>,
        String,
        crate::world::Response,
    ),
    String,
> {
    use crate::d04_consent::{Browser, hidden};
    let origin = url
        .strip_prefix("https://")
        .and_then(|r| r.split('/').next())
        .map(|host| format!("https://{host}"))
        .ok_or_else(|| format!("not an https URL: {url}"))?;
    let mut browser = Browser {
        world,
        cookies: Vec::new(),
    };
    let (_, login) = browser.go("GET", url, &[]).await?;
    let csrf = hidden(&login, "csrf");
    let (_, signed_in) = browser
        .go(
            "POST",
            &format!("{origin}/interact/login"),
            &[
                ("code", code),
                ("csrf", &csrf),
                ("username", account),
                ("password", password),
            ],
        )
        .await?;
    Ok((browser, origin, signed_in))
}

/// A fresh browser opens the interaction `url` and signs in as `account` with
/// `password`: the sign-in's status (`303` in, `401` refused, `429` throttled).
///
/// # Errors
///
/// When a page cannot be fetched.
pub async fn sign_in(
    world: &World,
    url: &str,
    code: &str,
    account: &str,
    password: &str,
) -> Result<u16, String> {
    let (_, _, signed_in) = signing_in(world, url, code, account, password).await?;
    Ok(signed_in.status().as_u16())
}

/// The person at the consent page: opens `url` (the interaction URL with its code), signs
/// in as `account` with `password`, and approves. The Person Server is whatever `world`
/// reaches under the URL's host (a process aliased in, for one).
///
/// # Errors
///
/// The step that failed, with its status.
pub async fn approve(
    world: &World,
    url: &str,
    code: &str,
    account: &str,
    password: &str,
) -> Result<(), String> {
    use crate::d04_consent::hidden;
    let (mut browser, origin, signed_in) = signing_in(world, url, code, account, password).await?;
    if signed_in.status() != 303 {
        return Err(format!("sign-in failed: {}", signed_in.status()));
    }
    let back = signed_in
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or("no redirect after sign-in")?
        .to_owned();
    let (_, consent) = browser.go("GET", &format!("{origin}{back}"), &[]).await?;
    if consent.status() != 200 {
        return Err(format!("the consent page failed: {}", consent.status()));
    }
    let csrf = hidden(&consent, "csrf");
    let (_, done) = browser
        .go(
            "POST",
            &format!("{origin}/interact"),
            &[("code", code), ("csrf", &csrf), ("decision", "grant")],
        )
        .await?;
    if done.status().is_success() || done.status() == 303 {
        Ok(())
    } else {
        Err(format!("approving failed: {}", done.status()))
    }
}

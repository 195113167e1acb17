//! A stand-in Person Server for the agent's [`PersonServerClient`]: it issues person
//! tokens and three-party auth tokens in process, as `https://ps.example` signing as
//! `ps-1`, and can be told to get them wrong.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use aauth_agent::{
    Agent, AgentError, AuthTokenRequest, Interaction, PersonServerClient, PersonTokenRequest,
};
use aauth_keys::rand::OsRandom;
use aauth_keys::time::Clock;
use aauth_keys::{PrivateKey, PublicKey};
use aauth_tokens::{
    AuthIssuer, AuthTokenBuilder, PersonTokenBuilder, ResourceClaims, Unverified, Validation,
};
use async_trait::async_trait;

use crate::{id, key};

/// The stand-in's identifier.
pub const PS: &str = "https://ps.example";

/// What the stand-in Person Server gets wrong, for the agent's checks to catch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Auth tokens bound to another key.
    AuthForeignKey,
    /// Auth tokens for another person.
    AuthOtherSub,
    /// Person tokens for another resource.
    PersonWrongAud,
    /// The next auth-token request is refused with this `error` code (its -11 status),
    /// then the fault clears.
    AuthRefusedOnce(&'static str),
    /// Every auth-token request is refused with this `error` code.
    AuthRefused(&'static str),
    /// Auth tokens live 200 seconds: inside the agent's five-minute refresh margin when
    /// they arrive (as a Person Server's are when the tokens they derive from end soon).
    AuthShortLived,
}

/// What the agent last asked an auth token for: the resource token, the presented
/// token, the login hint.
pub type AuthRequestSeen = (String, String, Option<String>);

/// Issues person tokens (for `person-1`) and three-party auth tokens (for the resource
/// token's `sub`) as a Person Server would, counting its calls.
#[derive(Debug)]
pub struct StandInPs {
    key: Arc<PrivateKey>,
    resource_key: PublicKey,
    clock: Arc<dyn Clock>,
    /// Person tokens asked for.
    pub person_calls: AtomicUsize,
    /// Auth tokens asked for.
    pub auth_calls: AtomicUsize,
    /// What it gets wrong, if anything.
    pub fault: Mutex<Option<Fault>>,
    /// The last auth-token request.
    pub last_auth_request: Mutex<Option<AuthRequestSeen>>,
    /// Whether it takes the interactions relayed to it (it declines by default).
    pub relays_taken: AtomicBool,
    /// The interactions relayed to it.
    pub relayed: Mutex<Vec<Interaction>>,
}

impl StandInPs {
    /// Signs with `key`; reads resource tokens signed by `resource_key`; tells time by
    /// `clock`.
    #[must_use]
    pub fn new(key: Arc<PrivateKey>, resource_key: PublicKey, clock: Arc<dyn Clock>) -> Self {
        Self {
            key,
            resource_key,
            clock,
            person_calls: AtomicUsize::new(0),
            auth_calls: AtomicUsize::new(0),
            fault: Mutex::new(None),
            last_auth_request: Mutex::new(None),
            relays_taken: AtomicBool::new(false),
            relayed: Mutex::new(Vec::new()),
        }
    }

    fn fault(&self) -> Option<Fault> {
        *self.fault.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl PersonServerClient for StandInPs {
    /// # Panics
    ///
    /// If the token cannot be signed.
    async fn person_token(
        &self,
        agent: &Agent,
        req: PersonTokenRequest<'_>,
    ) -> Result<String, AgentError> {
        self.person_calls.fetch_add(1, Ordering::SeqCst);
        let aud = if self.fault() == Some(Fault::PersonWrongAud) {
            id("https://elsewhere.example")
        } else {
            req.resource.clone()
        };
        let mut b = PersonTokenBuilder::new(id(PS), aud, "person-1", agent.signer().public_key());
        if let Some(m) = req.mission_s256 {
            b = b.mission_s256(m);
        }
        Ok(
            b.sign(self.key.as_ref(), "ps-1", self.clock.now(), &mut OsRandom)
                .expect("the person token signs")
                .token,
        )
    }

    async fn relay_interaction(&self, _agent: &Agent, interaction: &Interaction) -> bool {
        self.relayed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(interaction.clone());
        self.relays_taken.load(Ordering::SeqCst)
    }

    /// # Panics
    ///
    /// If the resource token does not verify or the auth token cannot be signed.
    async fn auth_token(
        &self,
        agent: &Agent,
        req: AuthTokenRequest<'_>,
    ) -> Result<String, AgentError> {
        self.auth_calls.fetch_add(1, Ordering::SeqCst);
        if let Some(Fault::AuthRefusedOnce(code) | Fault::AuthRefused(code)) = self.fault() {
            if matches!(self.fault(), Some(Fault::AuthRefusedOnce(_))) {
                *self.fault.lock().unwrap_or_else(PoisonError::into_inner) = None;
            }
            let status = match code {
                "as_unreachable" => http::StatusCode::BAD_GATEWAY,
                c if c.starts_with("revoked_") => http::StatusCode::FORBIDDEN,
                _ => http::StatusCode::BAD_REQUEST,
            };
            return Err(AgentError::PersonServer {
                status,
                error: code.to_owned(),
            });
        }
        *self
            .last_auth_request
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((
            req.resource_token.to_owned(),
            req.presented_token.to_owned(),
            req.login_hint.map(str::to_owned),
        ));
        let me = id(PS);
        // Reads resource tokens as a Person Server under the compatibility profile does:
        // the agent, not this stand-in, is what decides whether a lagging one is taken.
        let v = Validation::new(self.clock.now())
            .audience(&me)
            .accept_person_token_jti(true);
        let rt = Unverified::<ResourceClaims>::decode(req.resource_token, &v)
            .expect("a resource token")
            .finish(&self.resource_key, &v)
            .expect("the resource token verifies")
            .claims;
        let other = key(99);
        let bound = if self.fault() == Some(Fault::AuthForeignKey) {
            other.public_key().clone()
        } else {
            agent.signer().public_key().clone()
        };
        let sub = if self.fault() == Some(Fault::AuthOtherSub) {
            "person-2".to_owned()
        } else {
            rt.sub.clone()
        };
        let mut b = AuthTokenBuilder::new(
            AuthIssuer::PersonServer,
            me.clone(),
            rt.iss.clone(),
            me,
            sub,
            &bound,
        )
        .scope(rt.scope.clone().unwrap_or_default());
        if let Some(m) = &rt.mission_s256 {
            b = b.mission_s256(m.clone());
        }
        if self.fault() == Some(Fault::AuthShortLived) {
            b = b.lifetime(std::time::Duration::from_secs(200));
        }
        Ok(
            b.sign(self.key.as_ref(), "ps-1", self.clock.now(), &mut OsRandom)
                .expect("the auth token signs")
                .token,
        )
    }
}

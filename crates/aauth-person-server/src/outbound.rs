//! What the Person Server sends to other servers, signed as itself under the `jwks_uri`
//! scheme (`dwk="aauth-person.json"`): revocation notices to resources and Access Servers
//! ([`RevocationNotifier`], [`HttpRevocationNotifier`]), and the requests of four-party
//! federation (`signed_post`, `signed_get`). Revocations this server *receives* are
//! `server/revocation.rs`.

use std::sync::Arc;

use aauth_keys::rand::SharedRandom;
use aauth_metadata::outbound::{Revoker, ServerSigner};
use aauth_tokens::ServerId;
use async_trait::async_trait;

/// Tells a resource that a token this Person Server issued for it is revoked.
#[async_trait]
pub trait RevocationNotifier: Send + Sync {
    /// Revokes token `jti` (expiring at `exp`) at `resource`.
    ///
    /// # Errors
    ///
    /// A description of the failed leg (`revocation_unsupported` or
    /// `revocation_unavailable` in the draft's terms).
    async fn notify(&self, resource: &ServerId, jti: &str, exp: u64) -> Result<(), String>;

    /// Revokes person token `jti` at Access Server `access_server`, which it was
    /// presented to (four-party, PS-113: the Access Server then revokes its own auth
    /// tokens at their resources). By default, `revocation_unsupported`.
    ///
    /// # Errors
    ///
    /// As [`RevocationNotifier::notify`].
    async fn notify_access_server(
        &self,
        access_server: &ServerId,
        jti: &str,
        exp: u64,
    ) -> Result<(), String> {
        let _ = (access_server, jti, exp);
        Err("revocation_unsupported".to_owned())
    }
}

/// Revocations sent over HTTP (through the agent crate's transport): the resource's
/// `revocation_endpoint` from its metadata, a `POST {"jti", "exp"}` signed by this Person
/// Server under `sig=jwks_uri;id;dwk="aauth-person.json";kid`, covering the body.
pub struct HttpRevocationNotifier {
    ps: ServerId,
    signer: Arc<dyn aauth_keys::Signer>,
    kid: String,
    transport: Arc<dyn aauth_metadata::Transport>,
    clock: Arc<dyn aauth_keys::time::Clock>,
    random: SharedRandom,
}

impl std::fmt::Debug for HttpRevocationNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpRevocationNotifier")
            .field("ps", &self.ps)
            .finish_non_exhaustive()
    }
}

impl HttpRevocationNotifier {
    /// Signs as Person Server `ps` with `signer` under `kid`, sends through `transport`.
    #[must_use]
    pub fn new(
        ps: ServerId,
        signer: Arc<dyn aauth_keys::Signer>,
        kid: &str,
        transport: Arc<dyn aauth_metadata::Transport>,
        clock: Arc<dyn aauth_keys::time::Clock>,
    ) -> Self {
        Self {
            ps,
            signer,
            kid: kid.to_owned(),
            transport,
            clock,
            random: SharedRandom::default(),
        }
    }

    /// Draws request nonces from `random` (the OS CSPRNG by default).
    #[must_use]
    pub fn random(mut self, random: SharedRandom) -> Self {
        self.random = random;
        self
    }
}

#[async_trait]
impl RevocationNotifier for HttpRevocationNotifier {
    async fn notify(&self, resource: &ServerId, jti: &str, exp: u64) -> Result<(), String> {
        self.revoker()
            .revoke::<aauth_metadata::ResourceMetadata>(resource, jti, exp, self.clock.now())
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }

    /// The Access Server answers with a `downstream` report, one entry per resource
    /// (checklist PS-114): a resource it could not reach is `revocation_unavailable`, and
    /// revocation is idempotent, so the revocation is sent once more (the Access Server
    /// re-attempts the resources that failed, AS-41). What still failed is the error.
    async fn notify_access_server(
        &self,
        access_server: &ServerId,
        jti: &str,
        exp: u64,
    ) -> Result<(), String> {
        let revoker = self.revoker();
        let endpoint = revoker
            .endpoint::<aauth_metadata::AccessServerMetadata>(access_server)
            .await
            .map_err(|e| e.to_string())?;
        let mut failed = Vec::new();
        for _attempt in 0..2 {
            let report = revoker
                .revoke_at(&endpoint, jti, exp, self.clock.now())
                .await
                .map_err(|e| e.to_string())?;
            failed = failed_recipients(report.as_ref());
            if failed.is_empty() {
                return Ok(());
            }
        }
        Err(format!("downstream: {}", failed.join(", ")))
    }
}

/// The entries of an Access Server's `downstream` report whose revocation did not
/// succeed, as `recipient: error`.
fn failed_recipients(report: Option<&serde_json::Value>) -> Vec<String> {
    report
        .and_then(|r| r["downstream"].as_array())
        .map(|entries| {
            entries
                .iter()
                .filter_map(|e| {
                    let error = e["error"].as_str()?;
                    let recipient = e["recipient"].as_str().unwrap_or("?"); // default: an entry without its recipient is still a failure
                    Some(format!("{recipient}: {error}"))
                })
                .collect()
        })
        .unwrap_or_default() // default: no report is no failed leg
}

impl HttpRevocationNotifier {
    /// Revocations signed as this Person Server.
    fn revoker(&self) -> Revoker {
        let signer = ServerSigner::new(
            self.ps.clone(),
            PS_DOCUMENT,
            Arc::clone(&self.signer),
            &self.kid,
        )
        .random(self.random.clone());
        Revoker::new(signer, Arc::clone(&self.transport))
    }
}

/// The document a Person Server's keys are published in (its `jwks_uri` scheme's `dwk`).
pub(crate) const PS_DOCUMENT: &str = "aauth-person.json";

/// A `POST` of `body` as JSON to `url`, signed by the Person Server as a server
/// (`sig=jwks_uri;id;dwk="aauth-person.json";kid`), covering `content-type` and
/// `content-digest` (PS-51), sent through `transport`.
pub(crate) async fn signed_post(
    transport: &dyn aauth_metadata::Transport,
    signer: &ServerSigner,
    now: aauth_keys::time::UnixTime,
    url: &str,
    body: &serde_json::Value,
) -> Result<http::Response<bytes::Bytes>, String> {
    let req = signer.request(http::Method::POST, url, Some(body), now)?;
    transport.send(req).await.map_err(|e| e.to_string())
}

/// A `GET` of `url` signed by the Person Server as a server (a poll of an Access
/// Server's pending URL), sent through `transport`.
pub(crate) async fn signed_get(
    transport: &dyn aauth_metadata::Transport,
    signer: &ServerSigner,
    now: aauth_keys::time::UnixTime,
    url: &str,
) -> Result<http::Response<bytes::Bytes>, String> {
    let req = signer.request(http::Method::GET, url, None, now)?;
    transport.send(req).await.map_err(|e| e.to_string())
}

/// A person or auth token this Person Server issued, to revoke: `(jti, aud, exp)`.
pub(crate) type IssuedToken = (String, ServerId, u64);

/// Revokes `tokens`, which this Person Server issued: every one here first (refused from
/// now on), then each sent on through `notifier` where it is used ([`notify_revoked`]).
/// Every local record is written before the first notice leaves: a notice that hangs, or
/// a process stopped meanwhile, leaves none of them live here, and a revocation sent
/// again (idempotent) sends the notices again.
pub(crate) async fn revoke_all(
    store: &dyn crate::PsStore,
    notifier: Option<&dyn RevocationNotifier>,
    tokens: &[IssuedToken],
    now: aauth_keys::time::UnixTime,
) -> Result<(), crate::StoreError> {
    revoke_here(store, tokens, now).await?;
    notify_revoked(store, notifier, tokens, now).await
}

/// Records every one of `tokens` revoked here (no notice sent).
pub(crate) async fn revoke_here(
    store: &dyn crate::PsStore,
    tokens: &[IssuedToken],
    now: aauth_keys::time::UnixTime,
) -> Result<(), crate::StoreError> {
    for (jti, _, exp) in tokens {
        store.revoke(jti, *exp, now).await?;
    }
    Ok(())
}

/// Sends on through `notifier` the revocation of `tokens` (already revoked here), where
/// each is used. Only the issuer revokes a token at the resource (draft -11 §Revocation;
/// checklist PS-113): an auth token an Access Server issued is revoked there, by revoking
/// at that Access Server the person token it was issued against. Where a person token was
/// presented, the Access Server revokes what it issued against it. A leg's outcome is not
/// reported (draft -11, "Revocation"): a failed leg is the resource's to catch up on, and
/// tokens expire within the hour.
pub(crate) async fn notify_revoked(
    store: &dyn crate::PsStore,
    notifier: Option<&dyn RevocationNotifier>,
    tokens: &[IssuedToken],
    now: aauth_keys::time::UnixTime,
) -> Result<(), crate::StoreError> {
    let Some(n) = notifier else {
        return Ok(());
    };
    for (jti, aud, exp) in tokens {
        if !issued_by_an_access_server(store, jti, now).await? {
            let _outcome = n.notify(aud, jti, *exp).await;
        }
        for access in store.presentations(jti).await? {
            let _outcome = n.notify_access_server(&access, jti, *exp).await;
        }
    }
    Ok(())
}

/// Revokes `jti`, issued in `account`'s name, and, for a person token, the auth tokens
/// obtained with it (what the operator and the person revoke by hand): all of them here,
/// then sent on ([`notify_revoked`]). Only `account`'s records are read: a token obtained with
/// `jti` is issued in the same person's name.
pub(crate) async fn revoke_with_obtained(
    store: &dyn crate::PsStore,
    notifier: Option<&dyn RevocationNotifier>,
    (jti, account): (&str, &str),
    aud: &ServerId,
    exp: u64,
    now: aauth_keys::time::UnixTime,
) -> Result<(), crate::StoreError> {
    // Revoked before the records are read: nothing is obtained with it from now on, so
    // the chain read below is whole.
    let mut tokens = vec![(jti.to_owned(), aud.clone(), exp)];
    revoke_here(store, &tokens, now).await?;
    let obtained = obtained_with(store, (jti, account), now).await?;
    revoke_here(store, &obtained, now).await?;
    tokens.extend(obtained);
    notify_revoked(store, notifier, &tokens, now).await
}

/// The auth tokens obtained with `jti` (issued in `account`'s name), then with those, to
/// the end of the chain (each once): step-ups present auth tokens, as `tokens_of_agent`
/// follows `presented_jti`.
async fn obtained_with(
    store: &dyn crate::PsStore,
    (jti, account): (&str, &str),
    now: aauth_keys::time::UnixTime,
) -> Result<Vec<IssuedToken>, crate::StoreError> {
    let (_, auth) = store.issued_records(Some(account), now).await?;
    let mut reached = std::collections::BTreeSet::from([jti.to_owned()]);
    let mut frontier = vec![jti.to_owned()];
    let mut out = Vec::new();
    while let Some(presented) = frontier.pop() {
        for r in auth.iter().filter(|r| r.presented_jti == presented) {
            if reached.insert(r.jti.clone()) {
                out.push((r.jti.clone(), r.aud.clone(), r.exp));
                frontier.push(r.jti.clone());
            }
        }
    }
    Ok(out)
}

/// Unbinds an agent, ends its missions in the person's name (`revoked`), and revokes every
/// person and auth token issued to it or to its sub-agents at its request, here and then
/// where they are used ([`revoke_all`]): the account it was bound to and how many tokens
/// were revoked.
pub(crate) async fn unbind_and_revoke(
    store: &dyn crate::PsStore,
    notifier: Option<&dyn RevocationNotifier>,
    provider: &ServerId,
    agent: &aauth_tokens::AgentId,
    now: aauth_keys::time::UnixTime,
) -> Result<(Option<String>, usize), crate::StoreError> {
    let account = store.binding(provider, agent).await?;
    if let Some(a) = &account {
        end_requests_of(store, (provider, agent), a).await?;
    }
    store.unbind(provider, agent).await?;
    if let Some(a) = &account {
        end_missions_of(store, (provider, agent), a, now).await?;
    }
    // Read after the unbinding: a token delivered since is revoked too (none is delivered
    // after it). They include the auth tokens obtained with its person tokens.
    let tokens = store.tokens_of_agent(provider, agent).await?;
    revoke_all(store, notifier, &tokens, now).await?;
    Ok((account, tokens.len()))
}

/// Terminates the agent's active missions for `account` (draft -11 §Mission Management:
/// `revoked`, the person withdrew them): the agent unlinked from the person acts in none
/// of them again. At most [`MAX_MISSIONS_LISTED`](crate::store::MAX_MISSIONS_LISTED) are read;
/// an older one left active is refused to the unlinked agent all the same (the mission
/// endpoints check the binding).
async fn end_missions_of(
    store: &dyn crate::PsStore,
    (provider, agent): (&ServerId, &aauth_tokens::AgentId),
    account: &str,
    now: aauth_keys::time::UnixTime,
) -> Result<(), crate::StoreError> {
    use crate::mission::TerminationReason;
    let owner = (provider.clone(), agent.clone());
    for mut m in store.missions_of(account).await? {
        // A mission changed by another writer meanwhile is read again, a few times.
        for _attempt in 0..8 {
            if m.agent != owner || m.account != account || m.terminated.is_some() {
                break;
            }
            m.terminate(TerminationReason::Revoked, now.as_secs());
            if store.replace_mission(&m).await? {
                let event = crate::AuditEvent::new(
                    now.as_secs(),
                    crate::AuditAction::Mission,
                    format!(
                        "mission {} terminated: revoked (its agent unlinked)",
                        m.s256
                    ),
                )
                .account(account)
                .agent(agent.as_str());
                store.record_event(event).await?;
                break;
            }
            match store.mission(&m.s256).await? {
                Some(again) => m = again,
                None => break,
            }
        }
    }
    Ok(())
}

/// Ends the requests the agent made in `account`'s name (or in nobody's yet) that wait for
/// the person or were approved and not yet delivered: each is denied, at its agent's next
/// poll (`403 denied`), and no longer answerable on the consent page. A request another
/// writer changes at the same moment is read again, a few times; delivery checks the
/// binding besides, so one that still slips through delivers nothing.
async fn end_requests_of(
    store: &dyn crate::PsStore,
    (provider, agent): (&ServerId, &aauth_tokens::AgentId),
    account: &str,
) -> Result<(), crate::StoreError> {
    use crate::pending::PendingState;
    for mut p in store.pending_of_agent(provider, agent).await? {
        for _attempt in 0..3 {
            let live = matches!(
                p.state,
                PendingState::Pending
                    | PendingState::Interacting
                    | PendingState::Approved { .. }
                    | PendingState::Delivering { .. }
            );
            // A chained request is its upstream person's, not this link's.
            if !live || p.person().is_some_and(|a| a != account) {
                break;
            }
            p.state = PendingState::Denied;
            if store.update_pending(&mut p).await? {
                break;
            }
            match store.pending(&p.id).await? {
                Some(again) => p = again,
                None => break,
            }
        }
    }
    Ok(())
}

/// Whether `jti` is an auth token an Access Server issued, relayed here: one obtained by
/// presenting a token this server presented to an Access Server.
async fn issued_by_an_access_server(
    store: &dyn crate::PsStore,
    jti: &str,
    now: aauth_keys::time::UnixTime,
) -> Result<bool, crate::StoreError> {
    let Some(record) = store.auth_token(jti, now).await? else {
        return Ok(false);
    };
    Ok(!store.presentations(&record.presented_jti).await?.is_empty())
}

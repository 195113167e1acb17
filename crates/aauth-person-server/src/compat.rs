//! Opt-in departures from draft -11 for agents and resources that lag it.

/// Opt-in departures from draft -11 for agents and resources that lag it, set with
/// [`PersonServer::compatibility`](crate::PersonServer::compatibility). The default is
/// strict -11 (every member off); each member is one documented departure, for the peers
/// named (`docs/interop.md`, "The compatibility profile"). Every check -11 makes is still
/// made: a departure only changes where a value is read from.
///
/// ```
/// use aauth_person_server::Compatibility;
/// assert_eq!(Compatibility::default(), Compatibility::strict());
/// let compat = Compatibility::strict()
///     .person_token_jti(true)
///     .missing_presented_token(true)
///     .clarification_without_action(true);
/// assert!(compat.reads_person_token_jti());
/// assert!(compat.accepts_missing_presented_token());
/// assert!(compat.accepts_clarification_without_action());
/// assert!(!Compatibility::strict().accepts_missing_presented_token());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Compatibility {
    person_token_jti: bool,
    missing_presented_token: bool,
    clarification_without_action: bool,
}

impl Compatibility {
    /// Strict draft -11: nothing is accepted that -11 does not define.
    #[must_use]
    pub const fn strict() -> Self {
        Self {
            person_token_jti: false,
            missing_presented_token: false,
            clarification_without_action: false,
        }
    }

    /// A resource token that names the presented token only by `person_token_jti`, the
    /// claim's name before -11 renamed it to `presented_jti` (§6.7.1), is read as if it
    /// carried `presented_jti`, then checked as any other (PS-31). For resources built on
    /// the TypeScript reference (`@aauth/resource`), whose resource tokens carry only
    /// `person_token_jti`. Strict -11 refuses them (`invalid_resource_token`); a token
    /// carrying both claims with different values is refused either way.
    #[must_use]
    pub const fn person_token_jti(mut self, on: bool) -> Self {
        self.person_token_jti = on;
        self
    }

    /// Whether resource tokens are read through `person_token_jti` when they have no
    /// `presented_jti`.
    #[must_use]
    pub const fn reads_person_token_jti(&self) -> bool {
        self.person_token_jti
    }

    /// An auth-token request without `presented_token` (REQUIRED by -11 §7.2.1, PS-30) is
    /// served from this server's records: the person token the resource token's
    /// `presented_jti` names must be one this server issued, to the agent (or sub-agent)
    /// asking, for the resource that issued the resource token, for the same person and
    /// mission (and no tenant), not revoked and not expired: what a presented person
    /// token is held to (PS-31, PS-32). For agents built on the TypeScript reference
    /// (`@aauth/agent`), which send no `presented_token`. Three-party only: a request a
    /// resource's Access Server must answer (four-party) still needs the token, which is
    /// forwarded to it (PS-52); so does a step-up, whose presented token is an auth token.
    /// Strict -11 refuses the request (`invalid_request`).
    #[must_use]
    pub const fn missing_presented_token(mut self, on: bool) -> Self {
        self.missing_presented_token = on;
        self
    }

    /// Whether an auth-token request without `presented_token` is served from records.
    #[must_use]
    pub const fn accepts_missing_presented_token(&self) -> bool {
        self.missing_presented_token
    }

    /// A `POST` to a pending URL whose body has no `action` but a
    /// `clarification_response` is taken as `action: "clarification_response"` (-11
    /// §7.5.2.1 requires the `action`). For agents built on the TypeScript reference
    /// (`@aauth/agent`), which post `{"clarification_response": "…"}`. A body with neither
    /// is still refused; strict -11 refuses both (`invalid_request`).
    #[must_use]
    pub const fn clarification_without_action(mut self, on: bool) -> Self {
        self.clarification_without_action = on;
        self
    }

    /// Whether a clarification answer without `action` is accepted.
    #[must_use]
    pub const fn accepts_clarification_without_action(&self) -> bool {
        self.clarification_without_action
    }
}

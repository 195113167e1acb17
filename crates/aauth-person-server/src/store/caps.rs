//! The bounds a new deferred request is stored within ([`PsStore::create_pending`]), and
//! what the store did.
//!
//! [`PsStore::create_pending`]: super::PsStore::create_pending

/// The bounds a new deferred request is stored within
/// ([`PsStore::create_pending`](super::PsStore::create_pending)), each counted by the store
/// in the one step that stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PendingCaps {
    /// The most unexpired requests one agent (provider and identifier) may have.
    pub per_agent: usize,
    /// The most unexpired requests the agents of one provider may have together; `None`:
    /// not bounded for this request.
    pub per_provider: Option<usize>,
    /// The most requests the store keeps in all, every agent's together: the unexpired
    /// ones and those kept [`PENDING_KEPT`](super::PENDING_KEPT) past their expiry for
    /// late polls; `None`: not bounded for this request.
    pub total: Option<usize>,
}

impl PendingCaps {
    /// At most `per_agent` unexpired requests of the request's agent, and no other bound.
    #[must_use]
    pub fn new(per_agent: usize) -> Self {
        Self {
            per_agent,
            per_provider: None,
            total: None,
        }
    }

    /// Also at most `max` unexpired requests of the agents of the request's provider
    /// together.
    #[must_use]
    pub fn with_per_provider(mut self, max: usize) -> Self {
        self.per_provider = Some(max);
        self
    }

    /// Also at most `max` requests kept in all.
    #[must_use]
    pub fn with_total(mut self, max: usize) -> Self {
        self.total = Some(max);
        self
    }
}

/// What [`PsStore::create_pending`](super::PsStore::create_pending) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PendingCreated {
    /// The request is stored.
    Created,
    /// Not stored: its agent already has [`PendingCaps::per_agent`] unexpired requests.
    AgentFull,
    /// Not stored: its provider's agents already have [`PendingCaps::per_provider`]
    /// unexpired requests.
    ProviderFull,
    /// Not stored: the store already keeps [`PendingCaps::total`] requests.
    Full,
    /// Not stored: its id, or its interaction code, is another request's.
    Taken,
}

//! Who the person on the Access Server's interaction page is.
//!
//! Binding a Person Server here (draft -11 §PS-AS Trust Establishment: "the user must
//! authenticate at the AS and confirm their PS") must be done by the person, signed in at
//! this Access Server, never by whoever holds the interaction code: the code travels
//! through the Person Server and the agent, so an agent could otherwise approve its own
//! binding. The Access Server has no accounts of its own; its deployment supplies a
//! [`PeopleAuthenticator`] (its login, an SSO session, …). Without one, a policy's
//! `RequireInteraction` is a server error, never a binding anyone can make.

use aauth_keys::time::UnixTime;
use http::request::Parts;

/// Signs people in on the Access Server's interaction page.
#[async_trait::async_trait]
pub trait PeopleAuthenticator: Send + Sync {
    /// The account of the person who sent this request, if they are signed in here (for
    /// example from a session cookie the deployment's login set, `SameSite` `Lax` or
    /// `Strict`).
    async fn account(&self, parts: &Parts, now: UnixTime) -> Option<String>;

    /// Where to send a person who is not signed in; after signing in they should be sent
    /// back to `return_to` (a path and query on this Access Server).
    fn login_url(&self, return_to: &str) -> String;
}

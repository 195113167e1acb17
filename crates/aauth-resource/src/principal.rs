//! Who a route admitted, whichever protocol admitted them.

use crate::Admitted;

/// The caller a route admitted: an AAuth agent (with the person, mission and scope its
/// tokens carry), or (feature `oauth`) an OAuth client with its verified access token.
/// What the handler of a route that takes both reads.
///
/// ```
/// use aauth_resource::Principal;
/// fn who(p: &Principal) -> String {
///     match p {
///         Principal::AAuth(a) => format!("agent {:?}", a.agent()),
///         #[cfg(feature = "oauth")]
///         Principal::OAuth(c) => format!("client {:?}", c.0.client_id()),
///         _ => "someone else".to_owned(),
///     }
/// }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Principal {
    /// Admitted by its AAuth signature (and tokens).
    AAuth(Box<Admitted>),
    /// Admitted by an OAuth access token.
    #[cfg(feature = "oauth")]
    OAuth(Box<crate::OAuthCaller>),
}

impl Principal {
    /// The principal the layer left in a request's extensions, if any.
    #[must_use]
    pub fn from_extensions(extensions: &http::Extensions) -> Option<Self> {
        if let Some(a) = extensions.get::<Admitted>() {
            return Some(Self::AAuth(Box::new(a.clone())));
        }
        #[cfg(feature = "oauth")]
        if let Some(c) = extensions.get::<crate::OAuthCaller>() {
            return Some(Self::OAuth(Box::new(c.clone())));
        }
        None
    }
}

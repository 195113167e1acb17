//! OAuth 2.0 protected-resource metadata (RFC 9728): what a resource tells OAuth clients
//! about itself, served beside its AAuth metadata and named by its challenges
//! (`resource_metadata`).

use crate::JwsAlgorithm;
use crate::client::json_string;

/// An RFC 9728 §2 document.
///
/// ```
/// use aauth_oauth::ProtectedResourceMetadata;
/// let doc = ProtectedResourceMetadata::new("https://api.example")
///     .authorization_server("https://login.example")
///     .scopes(["read", "write"])
///     .dpop(false);
/// assert_eq!(doc.well_known_path(), "/.well-known/oauth-protected-resource");
/// let json: serde_json::Value = serde_json::from_str(&doc.to_json()).unwrap();
/// assert_eq!(json["resource"], "https://api.example");
/// assert_eq!(json["bearer_methods_supported"][0], "header");
/// assert_eq!(json["dpop_signing_alg_values_supported"][0], "ES256");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProtectedResourceMetadata {
    /// `resource`: the resource's identifier.
    pub resource: String,
    /// `authorization_servers`: the issuers whose tokens it accepts.
    pub authorization_servers: Vec<String>,
    /// `scopes_supported`.
    pub scopes_supported: Vec<String>,
    /// `resource_name`.
    pub resource_name: Option<String>,
    /// Whether DPoP is accepted (`dpop_signing_alg_values_supported`), and required
    /// (`dpop_bound_access_tokens_required`).
    pub dpop: Option<bool>,
}

impl ProtectedResourceMetadata {
    /// The document of `resource`, with nothing else said.
    #[must_use]
    pub fn new(resource: impl Into<String>) -> Self {
        Self {
            resource: resource.into(),
            authorization_servers: Vec::new(),
            scopes_supported: Vec::new(),
            resource_name: None,
            dpop: None,
        }
    }

    /// Adds an authorization server.
    #[must_use]
    pub fn authorization_server(mut self, issuer: impl Into<String>) -> Self {
        self.authorization_servers.push(issuer.into());
        self
    }

    /// The scopes the resource understands.
    #[must_use]
    pub fn scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scopes_supported = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// `resource_name`, for people.
    #[must_use]
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.resource_name = Some(name.into());
        self
    }

    /// Says DPoP is accepted, and whether it is required.
    #[must_use]
    pub fn dpop(mut self, required: bool) -> Self {
        self.dpop = Some(required);
        self
    }

    /// Where it is served: `/.well-known/oauth-protected-resource`, followed by the
    /// resource identifier's path if it has one (RFC 9728 §3.1).
    #[must_use]
    pub fn well_known_path(&self) -> String {
        let path = self
            .resource
            .split_once("://")
            .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
            .unwrap_or("")
            .trim_end_matches('/');
        format!("/.well-known/oauth-protected-resource{path}")
    }

    /// The document as JSON.
    #[must_use]
    pub fn to_json(&self) -> String {
        let list = |items: &[String]| {
            let inner: Vec<String> = items.iter().map(|s| json_string(s)).collect();
            format!("[{}]", inner.join(","))
        };
        let mut out = format!("{{\"resource\":{}", json_string(&self.resource));
        if !self.authorization_servers.is_empty() {
            out.push_str(&format!(
                ",\"authorization_servers\":{}",
                list(&self.authorization_servers)
            ));
        }
        if !self.scopes_supported.is_empty() {
            out.push_str(&format!(
                ",\"scopes_supported\":{}",
                list(&self.scopes_supported)
            ));
        }
        out.push_str(",\"bearer_methods_supported\":[\"header\"]");
        if let Some(name) = &self.resource_name {
            out.push_str(&format!(",\"resource_name\":{}", json_string(name)));
        }
        if let Some(required) = self.dpop {
            let algs: Vec<String> = JwsAlgorithm::ALL
                .iter()
                .map(|a| a.as_str().to_owned())
                .collect();
            out.push_str(&format!(
                ",\"dpop_signing_alg_values_supported\":{},\"dpop_bound_access_tokens_required\":{required}",
                list(&algs)
            ));
        }
        out.push('}');
        out
    }
}

//! The signature base (RFC 9421 §2.5).

use aauth_headers::SignatureParams;
use http::request::Parts;

use crate::components::{AuthoritySource, Message};
use crate::error::ComponentError;

/// Whose view of the request the base is built from.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum View<'a> {
    /// The signer's: `@authority` from the absolute URI (else `Host`).
    Client,
    /// The verifier's: `@authority` from `Host` / `:authority` per the source.
    Server(&'a AuthoritySource),
}

/// Builds the signature base of `params` over the request `parts`.
///
/// Each covered component is a line `"<name>": <value>`; the last line is
/// `"@signature-params": <inner list>`; lines are joined by `\n`.
///
/// # Errors
///
/// [`ComponentError`] when a component cannot be produced.
///
/// ```
/// use aauth_headers::{Component, SignatureParams};
/// use aauth_signing::{View, signature_base};
/// let req = http::Request::get("https://api.example/data?x=1").body(())?;
/// let (parts, ()) = req.into_parts();
/// let params = SignatureParams::new(
///     vec![Component::new("@method"), Component::new("@authority"), Component::new("@path")],
///     1_800_000_000,
/// );
/// let base = signature_base(&parts, &params, View::Client)?;
/// assert_eq!(base, "\"@method\": GET\n\"@authority\": api.example\n\"@path\": /data\n\
///                   \"@signature-params\": (\"@method\" \"@authority\" \"@path\");created=1800000000");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn signature_base(
    parts: &Parts,
    params: &SignatureParams,
    view: View<'_>,
) -> Result<String, ComponentError> {
    let msg = match view {
        View::Client => Message::client(&parts.method, &parts.uri, &parts.headers)?,
        View::Server(source) => Message::server(&parts.method, &parts.uri, &parts.headers, source)?,
    };
    build(&msg, params)
}

pub(crate) fn build(msg: &Message<'_>, params: &SignatureParams) -> Result<String, ComponentError> {
    let mut out = String::with_capacity(1024);
    for c in &params.components {
        out.push('"');
        out.push_str(&c.name);
        out.push_str("\": ");
        msg.write_value(c, &mut out)?;
        out.push('\n');
    }
    out.push_str("\"@signature-params\": ");
    let serialized = params
        .serialize()
        .map_err(|_| ComponentError::UnsupportedParameter {
            component: "@signature-params".to_owned(),
        })?;
    out.push_str(&serialized);
    Ok(out)
}

//! One request's presentations of a client-credentials token, and what the API's answer
//! calls for: the `DPoP-Nonce` it gives learned for the next proofs, the request sent once
//! more with that nonce when the API asks for one (`use_dpop_nonce`, RFC 9449 §9), and
//! once more with a new token when it says the token is no longer valid (`invalid_token`,
//! RFC 6750 §3.1). [`BearerLayer`](super::BearerLayer) and the agent's OAuth fallback
//! both send through it.

use std::sync::Arc;

use bytes::Bytes;

use super::{ClientCredentials, ClientError, IssuedToken, challenged};

/// One request's presentations of a [`ClientCredentials`] token: at most three sends (a
/// retry with the nonce the API asked for, a retry with a new token after
/// `invalid_token`).
///
/// ```no_run
/// # async fn demo(
/// #     tokens: std::sync::Arc<aauth_oauth::ClientCredentials>,
/// #     transport: &dyn aauth_metadata::Transport,
/// # ) -> Result<(), Box<dyn std::error::Error>> {
/// use aauth_oauth::Presenter;
/// let mut presenter = Presenter::new(tokens);
/// let resp = loop {
///     let mut req = http::Request::get("https://api.example/data").body(bytes::Bytes::new())?;
///     presenter.present(&mut req).await?;
///     let resp = transport.send(req).await?;
///     if !presenter.again(&resp) {
///         break resp;
///     }
/// };
/// # drop(resp);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Presenter {
    tokens: Arc<ClientCredentials>,
    /// The token last presented, and the URL it was presented to.
    presented: Option<(Arc<IssuedToken>, String)>,
    /// The request went again with the nonce the API asked for.
    nonce_retried: bool,
    /// The request went again with a new token after `invalid_token`.
    token_retried: bool,
}

impl Presenter {
    /// Presentations of tokens from `tokens`.
    #[must_use]
    pub fn new(tokens: Arc<ClientCredentials>) -> Self {
        Self {
            tokens,
            presented: None,
            nonce_retried: false,
            token_retried: false,
        }
    }

    /// Puts the token to use now on `req` ([`ClientCredentials::token_now`], then
    /// [`ClientCredentials::present`]): `Authorization: Bearer`, or `DPoP` with a fresh
    /// proof for a bound token.
    ///
    /// # Errors
    ///
    /// As [`ClientCredentials::token_now`] and [`ClientCredentials::present`].
    pub async fn present(&mut self, req: &mut http::Request<Bytes>) -> Result<(), ClientError> {
        let token = self.tokens.token_now().await?;
        let (method, url) = (req.method().to_string(), req.uri().to_string());
        self.tokens
            .present(&token, &method, &url, req.headers_mut())?;
        self.presented = Some((token, url));
        Ok(())
    }

    /// Reads the API's answer to the request last presented: its `DPoP-Nonce` is learned;
    /// `true` when the request should be presented and sent again: the first time a
    /// bound token is refused with `use_dpop_nonce` and a nonce, and the first time the
    /// token is refused with `invalid_token` (it is dropped, so the next presentation
    /// fetches a new one).
    pub fn again<B>(&mut self, resp: &http::Response<B>) -> bool {
        let Some((token, url)) = &self.presented else {
            return false;
        };
        let has_nonce = resp.headers().contains_key("dpop-nonce");
        if has_nonce {
            self.tokens.learn_from(url, resp.headers());
        }
        // RFC 9449 §9: the API wants its nonce in the proof; the request goes again with
        // the nonce it just gave (once).
        let bound = token.token_type.eq_ignore_ascii_case("DPoP");
        if bound
            && has_nonce
            && !self.nonce_retried
            && challenged(resp, &["DPoP"], "use_dpop_nonce")
        {
            self.nonce_retried = true;
            return true;
        }
        if self.token_retried || !challenged(resp, &["Bearer", "DPoP"], "invalid_token") {
            return false;
        }
        self.tokens.invalidate_token(token);
        self.token_retried = true;
        true
    }
}

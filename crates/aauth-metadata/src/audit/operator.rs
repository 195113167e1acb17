//! The operator's audit endpoint: `GET /admin/audit?FILTERS` ([`OPERATOR_AUDIT_PATH`]),
//! answered only to a request signed (RFC 9421, AAuth's profile) under the `hwk` scheme
//! by one of the keys the server was given as its operators'. The filters are
//! [`AuditQuery::from_query_string`]'s; the answer is one [`AuditPage`]:
//!
//! - `application/json` (the default): `{"events": [...], "next": "CURSOR"}`, `next`
//!   `null` on the last page;
//! - `application/jsonl` when the request accepts it: one event per line, the log's
//!   export format;
//!
//! and, when there is a next page, `Link: </admin/audit?...&before=CURSOR>; rel="next"`
//! (RFC 8288) either way. An unsigned request, or one whose signature fails, is `401`
//! with `Signature-Error` (the draft's verification errors); a valid signature by a key
//! that is not an operator's is `403`; a filter that does not parse is `400`; a store
//! that cannot answer is `503` with `Retry-After`. Reading changes nothing, so a request
//! is not kept for replay: the signature's `created` window bounds its reuse.

use std::collections::BTreeSet;
use std::sync::Arc;

use aauth_keys::PublicKey;
use aauth_keys::time::UnixTime;
use aauth_signing::{KeyIdentity, SchemeResolver, Verifier, VerifyPolicy};
use aauth_tokens::ServerId;
use async_trait::async_trait;
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Method, Response, StatusCode, header};

use super::{AuditPage, AuditQuery};
use crate::serve::{json_response, problem_response, report_failure};
use crate::store::StoreError;

/// Where a server answers its operators' audit queries.
pub const OPERATOR_AUDIT_PATH: &str = "/admin/audit";

/// The media type of the JSON-lines export.
pub const JSON_LINES: &str = "application/jsonl";

/// Whatever keeps an audit log: a server's store.
#[async_trait]
pub trait AuditSource: Send + Sync {
    /// The page of events `q` selects, newest first.
    ///
    /// # Errors
    ///
    /// [`StoreError`].
    async fn audit_page(&self, q: &AuditQuery) -> Result<AuditPage, StoreError>;
}

/// The operators of a server: the keys whose signed requests read its audit log.
///
/// ```
/// use aauth_keys::PrivateKey;
/// use aauth_metadata::audit::operator::Operators;
/// use aauth_tokens::ServerId;
/// let ops = PrivateKey::ed25519_from_seed(&[7; 32]);
/// let server = ServerId::parse("https://ps.example")?;
/// let operators = Operators::new(&server, [ops.public_key().clone()]);
/// assert_eq!(operators.len(), 1);
/// # Ok::<(), aauth_tokens::IdentifierError>(())
/// ```
#[derive(Clone)]
pub struct Operators {
    verifier: Verifier,
    thumbprints: Arc<BTreeSet<String>>,
}

impl std::fmt::Debug for Operators {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operators")
            .field("keys", &self.thumbprints.len())
            .finish_non_exhaustive()
    }
}

impl Operators {
    /// The operators of `server` (the authority their requests are signed for): `keys`.
    pub fn new(server: &ServerId, keys: impl IntoIterator<Item = PublicKey>) -> Self {
        let policy = VerifyPolicy::for_server(server).accept_schemes(&["hwk"]);
        Self {
            verifier: Verifier::new(policy, Arc::new(SchemeResolver::new().hwk())),
            thumbprints: Arc::new(
                keys.into_iter()
                    .map(|k| k.thumbprint().as_str().to_owned())
                    .collect(),
            ),
        }
    }

    /// How many keys.
    #[must_use]
    pub fn len(&self) -> usize {
        self.thumbprints.len()
    }

    /// Whether there is none (every request is then refused).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.thumbprints.is_empty()
    }

    /// The answer to a request for [`OPERATOR_AUDIT_PATH`], read from `source`.
    pub async fn answer(
        &self,
        source: &dyn AuditSource,
        parts: &Parts,
        body: &[u8],
        now: UnixTime,
    ) -> Response<Bytes> {
        if parts.method != Method::GET {
            let mut r = problem(
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request",
                "GET only",
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET"));
            return r;
        }
        let verified = match self.verifier.verify(parts, body, now).await {
            Ok(v) => v,
            Err(e) => {
                return e
                    .into_http_response(self.verifier.policy())
                    .map(Bytes::from);
            }
        };
        let admitted = matches!(&verified.identity,
            KeyIdentity::Pseudonym { thumbprint } if self.thumbprints.contains(thumbprint.as_str()));
        if !admitted {
            return problem(
                StatusCode::FORBIDDEN,
                "access_denied",
                "the signing key is not one of this server's operators'",
            );
        }
        let q = match AuditQuery::from_query_string(parts.uri.query().unwrap_or_default()) {
            // default: no query string asks for the newest events, unfiltered
            Ok(q) => q,
            Err(e) => return problem(StatusCode::BAD_REQUEST, "invalid_request", &e.to_string()),
        };
        match source.audit_page(&q).await {
            Ok(page) => respond(&q, &page, wants_lines(parts)),
            Err(e) if e.is_transient() => {
                let mut r = problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "temporarily_unavailable",
                    "the audit log cannot be read just now",
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(2u64));
                r
            }
            Err(e) => {
                report_failure(&e);
                problem(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    "the audit log could not be read",
                )
            }
        }
    }
}

fn problem(status: StatusCode, error: &str, detail: &str) -> Response<Bytes> {
    problem_response(
        status,
        &serde_json::json!({
            "type": "about:blank",
            "status": status.as_u16(),
            "error": error,
            "detail": detail,
        }),
    )
}

/// Whether the request's `Accept` names the JSON-lines export.
fn wants_lines(parts: &Parts) -> bool {
    parts
        .headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|m| m.split(';').next())
        .any(|m| {
            let m = m.trim();
            m.eq_ignore_ascii_case(JSON_LINES) || m.eq_ignore_ascii_case("application/x-ndjson")
        })
}

fn respond(q: &AuditQuery, page: &AuditPage, lines: bool) -> Response<Bytes> {
    let mut r = if lines {
        let mut text = String::new();
        for e in &page.events {
            text.push_str(&e.to_json().to_string());
            text.push('\n');
        }
        let mut r = Response::new(Bytes::from(text));
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_LINES));
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    } else {
        let events: Vec<serde_json::Value> = page.events.iter().map(|e| e.to_json()).collect();
        json_response(
            StatusCode::OK,
            &serde_json::json!({
                "events": events,
                "next": page.next.map(|c| c.to_string()),
            }),
        )
    };
    if let Some(next) = page.next {
        let link = format!(
            "<{OPERATOR_AUDIT_PATH}?{}>; rel=\"next\"",
            q.clone().before(next).to_query_string()
        );
        if let Ok(v) = HeaderValue::from_str(&link) {
            r.headers_mut().insert(header::LINK, v);
        }
    }
    r
}

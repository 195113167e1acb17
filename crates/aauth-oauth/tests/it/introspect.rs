//! Opaque tokens by introspection (RFC 7662): what is admitted, what is refused, what is
//! kept and for how long, and that an unreachable endpoint fails closed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aauth_keys::time::{FixedClock, UnixTime};
use aauth_metadata::{HttpsUrl, Transport, TransportError};
use aauth_oauth::{AssertionAudience, ClientAuth, Introspection, OAuthError, VerifyAccessToken};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::support::{AUDIENCE, ISSUER, NOW};

/// What the endpoint answers for a token: a status and a JSON body.
type Answerer = Box<dyn Fn(&str) -> (u16, Value) + Send>;

/// An introspection endpoint answering from a function of the token.
struct Endpoint {
    answer: Mutex<Answerer>,
    calls: AtomicUsize,
    /// The `client_assertion` of each request that authenticated with one.
    assertions: Mutex<Vec<String>>,
}

impl Endpoint {
    fn new(f: impl Fn(&str) -> (u16, Value) + Send + 'static) -> Arc<Self> {
        Arc::new(Self {
            answer: Mutex::new(Box::new(f)),
            calls: AtomicUsize::new(0),
            assertions: Mutex::new(Vec::new()),
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl Transport for Endpoint {
    async fn send(
        &self,
        req: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, TransportError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let form: Vec<(String, String)> = form_urlencoded::parse(req.body()).into_owned().collect();
        match form.iter().find(|(k, _)| k == "client_assertion") {
            Some((_, a)) => self.assertions.lock().unwrap().push(a.clone()),
            None => assert!(
                req.headers()["authorization"]
                    .to_str()
                    .unwrap()
                    .starts_with("Basic ")
            ),
        }
        let token = form.iter().find(|(k, _)| k == "token").unwrap().1.clone();
        assert!(form.contains(&("token_type_hint".into(), "access_token".into())));
        let (status, body) = (self.answer.lock().unwrap())(&token);
        let mut r = http::Response::new(Bytes::from(body.to_string()));
        *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
        Ok(r)
    }
}

fn active(exp: u64) -> Value {
    json!({
        "active": true, "client_id": "svc", "scope": "read write", "iss": ISSUER,
        "aud": AUDIENCE, "exp": exp, "iat": NOW - 5, "token_type": "Bearer",
    })
}

fn introspection(ep: &Arc<Endpoint>, clock: &Arc<FixedClock>) -> Introspection {
    Introspection::new(
        HttpsUrl::parse("https://as.example/introspect").unwrap(),
        ClientAuth::SecretBasic {
            client_id: "resource".to_owned(),
            secret: "pw".to_owned(),
        },
        ISSUER,
        AUDIENCE,
        Arc::clone(ep) as Arc<dyn Transport>,
        clock.clone(),
    )
}

fn clock() -> Arc<FixedClock> {
    Arc::new(FixedClock::new(UnixTime(NOW)))
}

#[tokio::test]
async fn an_active_token_is_admitted_and_kept_until_the_cap() {
    let ep = Endpoint::new(|_| (200, active(NOW + 3600)));
    let c = clock();
    let i = introspection(&ep, &c);
    let claims = i.verify_bearer("opaque-1").await.unwrap();
    assert_eq!(claims.client_id(), Some("svc"));
    assert_eq!(claims.scopes().collect::<Vec<_>>(), ["read", "write"]);
    assert_eq!(claims.issuer(), ISSUER);
    i.verify_bearer("opaque-1").await.unwrap();
    assert_eq!(ep.calls(), 1, "kept");
    c.advance(Duration::from_secs(60));
    i.verify_bearer("opaque-1").await.unwrap();
    assert_eq!(ep.calls(), 2, "asked again after the 60 s cap");
}

#[tokio::test]
async fn an_answer_is_never_kept_past_the_tokens_expiry() {
    let ep = Endpoint::new(|_| (200, active(NOW + 10)));
    let c = clock();
    let i = introspection(&ep, &c);
    i.verify_bearer("t").await.unwrap();
    c.advance(Duration::from_secs(10));
    let e = i.verify_bearer("t").await.unwrap_err();
    assert!(matches!(e, OAuthError::Expired { .. }), "{e:?}");
    assert_eq!(ep.calls(), 2);
}

#[tokio::test]
async fn inactive_foreign_and_wrong_issuer_tokens_are_401_and_inactive_is_kept() {
    let ep = Endpoint::new(|t| {
        (
            200,
            match t {
                "foreign" => {
                    let mut a = active(NOW + 300);
                    a["aud"] = json!("https://other.example");
                    a
                }
                "other-issuer" => {
                    let mut a = active(NOW + 300);
                    a["iss"] = json!("https://evil.example");
                    a
                }
                "no-exp" => json!({"active": true, "aud": AUDIENCE}),
                _ => json!({"active": false}),
            },
        )
    });
    let i = introspection(&ep, &clock());
    let e = i.verify_bearer("revoked").await.unwrap_err();
    assert!(
        matches!(
            e,
            OAuthError::Claim {
                claim: "active",
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.status(), 401);
    i.verify_bearer("revoked").await.unwrap_err();
    assert_eq!(ep.calls(), 1, "an inactive answer is kept too");
    assert!(matches!(
        i.verify_bearer("foreign").await,
        Err(OAuthError::Audience { .. })
    ));
    assert!(matches!(
        i.verify_bearer("other-issuer").await,
        Err(OAuthError::UnknownIssuer { .. })
    ));
    assert!(matches!(
        i.verify_bearer("no-exp").await,
        Err(OAuthError::Claim { claim: "exp", .. })
    ));
}

#[tokio::test]
async fn an_endpoint_that_fails_is_503_and_nothing_is_kept() {
    let ep = Endpoint::new(|_| (500, json!({})));
    let i = introspection(&ep, &clock());
    let e = i.verify_bearer("t").await.unwrap_err();
    assert_eq!(e.status(), 503, "{e:?}");
    i.verify_bearer("t").await.unwrap_err();
    assert_eq!(ep.calls(), 2, "a failure is not cached");
    assert_eq!(i.cached(), 0);
    let garbage = Endpoint::new(|_| (200, json!({"active": "yes"})));
    let e = introspection(&garbage, &clock())
        .verify_bearer("t")
        .await
        .unwrap_err();
    assert_eq!(e.status(), 503, "{e:?}");
}

#[tokio::test]
async fn the_table_stays_within_its_bound() {
    let ep = Endpoint::new(|t| {
        let n: u64 = t.parse().unwrap();
        (200, active(NOW + 100 + n))
    });
    let i = introspection(&ep, &clock()).max_ttl(3600).max_entries(8);
    for n in 0..20 {
        i.verify_bearer(&n.to_string()).await.unwrap();
        assert!(i.cached() <= 8);
    }
    // The soonest-ending went first: the last ones are still kept.
    let before = ep.calls();
    i.verify_bearer("19").await.unwrap();
    assert_eq!(ep.calls(), before);
}

/// Refusals go first when the table is full: a flood of made-up tokens (each asked
/// about once, each inactive) does not push out the answer about a token that works,
/// and a token longer than any issuer mints is refused without asking.
#[tokio::test]
async fn made_up_tokens_do_not_push_out_working_ones() {
    let ep = Endpoint::new(|t| {
        if t == "works" {
            (200, active(NOW + 300))
        } else {
            (200, json!({"active": false}))
        }
    });
    let i = introspection(&ep, &clock()).max_ttl(3600).max_entries(8);
    i.verify_bearer("works").await.unwrap();
    for n in 0..50 {
        assert!(i.verify_bearer(&format!("made-up-{n}")).await.is_err());
        assert!(i.cached() <= 8);
    }
    let before = ep.calls();
    i.verify_bearer("works").await.unwrap();
    assert_eq!(ep.calls(), before, "still kept");
    let long = "a".repeat(aauth_oauth::MAX_TOKEN_BYTES + 1);
    assert!(matches!(
        i.verify_bearer(&long).await,
        Err(OAuthError::Malformed { .. })
    ));
    assert_eq!(ep.calls(), before, "not asked");
}

#[tokio::test]
async fn a_bound_token_is_not_a_bearer_token() {
    let ep = Endpoint::new(|_| {
        let mut a = active(NOW + 300);
        a["cnf"] = json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"});
        (200, a)
    });
    let i = introspection(&ep, &clock());
    assert!(matches!(
        i.verify_bearer("t").await,
        Err(OAuthError::Binding { .. })
    ));
    assert!(i.verify_token("t").await.unwrap().jkt().is_some());
}

/// The claims of a client assertion.
fn assertion_claims(assertion: &str) -> Value {
    let payload = assertion.split('.').nth(1).unwrap();
    serde_json::from_slice(&aauth_keys::base64url::decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn a_private_key_jwt_assertion_names_the_audience_chosen() {
    const ENDPOINT: &str = "https://as.example/introspect";
    let key = Arc::new(aauth_keys::PrivateKey::ed25519_from_seed(&[5; 32]));
    let clock = Arc::new(FixedClock::new(UnixTime(NOW)));
    let cases = [
        (None, ISSUER),
        (Some(AssertionAudience::Issuer), ISSUER),
        (Some(AssertionAudience::Endpoint), ENDPOINT),
        (
            Some(AssertionAudience::Value(
                "https://as.example/token".to_owned(),
            )),
            "https://as.example/token",
        ),
    ];
    for (choice, aud) in cases {
        let ep = Endpoint::new(|_| (200, active(NOW + 300)));
        let mut i = Introspection::new(
            HttpsUrl::parse(ENDPOINT).unwrap(),
            ClientAuth::PrivateKeyJwt {
                client_id: "resource".to_owned(),
                key: key.clone(),
                kid: "k1".to_owned(),
            },
            ISSUER,
            AUDIENCE,
            Arc::clone(&ep) as Arc<dyn Transport>,
            clock.clone(),
        );
        if let Some(choice) = choice.clone() {
            i = i.assertion_audience(choice);
        }
        assert_eq!(i.assertion_aud(), aud);
        i.introspect("opaque-1").await.unwrap();
        let sent = ep.assertions.lock().unwrap().clone();
        assert_eq!(sent.len(), 1, "{choice:?}");
        let c = assertion_claims(&sent[0]);
        assert_eq!(c["aud"], aud, "{choice:?}");
        // The rest of the claim set is RFC 7523 §3's, whatever the audience.
        assert_eq!(
            (c["iss"].as_str(), c["sub"].as_str()),
            (Some("resource"), Some("resource"))
        );
        assert_eq!(c["exp"].as_u64().unwrap(), NOW + 60);
        assert_eq!(c["iat"].as_u64().unwrap(), NOW);
        assert!(c["jti"].as_str().is_some_and(|j| !j.is_empty()));
        assert_eq!(c.as_object().unwrap().len(), 6);
    }
}

//! Budgets (draft-hardt-aauth-budgets) in resource and auth tokens: round trips, and the
//! claim shapes refused on read.

use aauth_keys::rand::OsRandom;
use aauth_tokens::{
    AuthClaims, AuthIssuer, AuthTokenBuilder, Budget, Consumption, ResourceClaims,
    ResourceTokenBuilder, TokenError, Validation, verify,
};

use crate::common::{agent_key, block, forge, issuers, ps_key, sid};

const NOW: aauth_keys::time::UnixTime = aauth_keys::time::UnixTime(1_800_000_000);

fn resource_token(budget: Budget, consumed: Vec<Consumption>) -> String {
    ResourceTokenBuilder::new(
        sid("https://resource.example"),
        sid("https://ps.example"),
        sid("https://ps.example"),
        "person-123",
        "pt-1",
        agent_key().public_key(),
        "inference",
    )
    .budget(budget, consumed)
    .sign(&ps_key(), "k1", NOW, &mut OsRandom)
    .unwrap()
    .token
}

#[test]
fn budgets_round_trip_in_resource_and_auth_tokens() {
    let offer = Budget::new(5_000_000, "USD", 6).unwrap();
    let token = resource_token(
        offer.clone(),
        vec![
            Consumption::new("at-1", 2_000_000),
            Consumption::new("at-0", 431_200),
        ],
    );
    let ps = sid("https://ps.example");
    let v = block(verify::<ResourceClaims>(
        &token,
        &Validation::new(NOW).audience(&ps),
        &issuers(),
    ))
    .unwrap();
    assert_eq!(v.claims.budget.as_ref(), Some(&offer));
    assert_eq!(v.claims.budget_consumed.as_ref().map(Vec::len), Some(2));
    assert_eq!(
        v.claims.budget_consumed.as_ref().unwrap()[0].consumed,
        2_000_000
    );

    let granted = offer.with_amount(2_000_000);
    let m = AuthTokenBuilder::new(
        AuthIssuer::PersonServer,
        sid("https://ps.example"),
        sid("https://resource.example"),
        sid("https://ps.example"),
        "person-123",
        agent_key().public_key(),
    )
    .budget(granted.clone())
    .sign(&ps_key(), "k1", NOW, &mut OsRandom)
    .unwrap();
    let res = sid("https://resource.example");
    let v = block(verify::<AuthClaims>(
        &m.token,
        &Validation::new(NOW).audience(&res),
        &issuers(),
    ))
    .unwrap();
    assert_eq!(v.claims.budget, Some(granted));
}

#[test]
fn malformed_budget_claims_are_refused() {
    let ps = sid("https://ps.example");
    let base = || {
        serde_json::json!({
            "iss": "https://resource.example", "dwk": "aauth-resource.json",
            "aud": "https://ps.example", "jti": "rt-1", "ps": "https://ps.example",
            "sub": "person-123", "presented_jti": "pt-1",
            "agent_jkt": agent_key().public_key().thumbprint().as_str(),
            "iat": NOW.0, "exp": NOW.0 + 300, "scope": "inference",
        })
    };
    let header = r#"{"alg":"Ed25519","typ":"aa-resource+jwt","kid":"k1"}"#;
    let records: Vec<serde_json::Value> = (0..21)
        .map(|i| serde_json::json!({"jti": format!("at-{i}"), "consumed": 1}))
        .collect();
    for (what, extra) in [
        (
            "amount over 15 digits",
            serde_json::json!({"budget": {"amount": 1_000_000_000_000_000u64, "unit": "USD", "decimals": 6}}),
        ),
        (
            "negative amount",
            serde_json::json!({"budget": {"amount": -1, "unit": "USD", "decimals": 6}}),
        ),
        (
            "fractional amount",
            serde_json::json!({"budget": {"amount": 1.5, "unit": "USD", "decimals": 6}}),
        ),
        (
            "no unit",
            serde_json::json!({"budget": {"amount": 1, "unit": "", "decimals": 6}}),
        ),
        (
            "unknown member",
            serde_json::json!({"budget": {"amount": 1, "unit": "USD", "decimals": 6, "cap": 2}}),
        ),
        (
            "too many decimals",
            serde_json::json!({"budget": {"amount": 1, "unit": "USD", "decimals": 19}}),
        ),
        (
            "consumed without budget",
            serde_json::json!({"budget_consumed": [{"jti": "at-1", "consumed": 1}]}),
        ),
        (
            "more than 20 records",
            serde_json::json!({"budget": {"amount": 1, "unit": "USD", "decimals": 6}, "budget_consumed": records}),
        ),
    ] {
        let mut payload = base();
        payload
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let token = forge(header, &payload.to_string(), &ps_key());
        let e = block(verify::<ResourceClaims>(
            &token,
            &Validation::new(NOW).audience(&ps),
            &issuers(),
        ))
        .unwrap_err();
        assert!(
            matches!(&e, TokenError::Claim { claim, .. } if claim.starts_with("budget")),
            "{what}: {e:?}"
        );
    }
}

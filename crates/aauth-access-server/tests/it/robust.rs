//! Whatever a trusted Person Server signs, and whatever anyone sends to the person's
//! page, the Access Server answers with a client error (or a deferral), never a panic or
//! a server error, and issues nothing from garbage.

use proptest::prelude::*;

use super::*;

/// Bodies shaped like token requests, claims and actions, with garbage in the members.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let member = prop_oneof![
        Just(serde_json::Value::Null),
        any::<i64>().prop_map(serde_json::Value::from),
        ".{0,40}".prop_map(serde_json::Value::from),
        "[A-Za-z0-9_-]{1,20}\\.[A-Za-z0-9_-]{1,40}\\.[A-Za-z0-9_-]{0,20}"
            .prop_map(serde_json::Value::from),
        prop::collection::vec(".{0,8}", 0..4).prop_map(|v| serde_json::json!(v)),
    ];
    let keys = prop::sample::select(vec![
        "resource_token",
        "agent_token",
        "presented_token",
        "subagent_token",
        "upstream_token",
        "budget",
        "action",
        "clarification_response",
        "email",
        "sub",
        "jti",
        "exp",
    ]);
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200),
        prop::collection::btree_map(keys, member, 0..6)
            .prop_map(|m| serde_json::to_vec(&m).unwrap()),
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(AUTH_TOKEN_PATH.to_owned()),
        Just("/revocation".to_owned()),
        "/pending/[A-Za-z0-9_-]{0,24}",
        Just("/interact".to_owned()),
        "/[a-z/%.]{0,20}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn signed_garbage_gets_a_client_error_and_issues_nothing(
        path in path(),
        body in body(),
        post in any::<bool>(),
        form in "[a-z=&%0-9A-Z]{0,60}",
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let w = world();
            let method = if post { "POST" } else { "GET" };
            let mut req = http::Request::builder()
                .method(method)
                .uri(format!("https://as.example{path}"))
                .header("content-type", "application/json")
                .body(body.clone())
                .unwrap();
            let scheme = Scheme::JwksUri {
                id: "https://ps.example".to_owned(),
                dwk: "aauth-person.json".to_owned(),
                kid: "ps-1".to_owned(),
            };
            // Some paths are not valid request targets: those are refused before here.
            if aauth_signing::sign_request(&mut req, &w.ps, &scheme, NOW).is_err() {
                return Ok(());
            }
            let (mut parts, body) = req.into_parts();
            parts.uri = match path.parse() {
                Ok(u) => u,
                Err(_) => return Ok(()),
            };
            parts.headers.insert("host", "as.example".parse().unwrap());
            let s = served(w.server.handle(&parts, &body, NOW).await).status();
            // A revocation of any {jti, exp} is taken (200); nothing else succeeds.
            prop_assert!(
                s.is_client_error() || (s == StatusCode::OK && path == "/revocation"),
                "{} {}: {}", method, path, s
            );
            // The person's page takes unsigned forms.
            let (s, _) = w.page(method, "/interact", &form).await;
            prop_assert!(s.is_client_error(), "interact: {s}");
            prop_assert_eq!(w.server.issued().await.unwrap(), 0);
            Ok(())
        })?;
    }
}

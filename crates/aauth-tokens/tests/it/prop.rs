//! Property tests: the decoders never panic, and minted tokens always verify.

use aauth_keys::rand::OsRandom;
use aauth_tokens::jws::CompactJws;
use aauth_tokens::{
    AgentClaims, AgentId, AgentTokenBuilder, AuthClaims, PersonClaims, PersonTokenBuilder,
    ServerId, Unverified, Validation, verify,
};
use proptest::prelude::*;

use crate::common::{NOW, agent_key, block, issuers, provider_key, ps_key, sid};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn decoders_never_panic(s in "\\PC{0,400}") {
        let v = Validation::new(NOW);
        let _ = CompactJws::parse(&s);
        let _ = Unverified::<AgentClaims>::decode(&s, &v);
        let _ = Unverified::<PersonClaims>::decode(&s, &v);
        let _ = Unverified::<AuthClaims>::decode(&s, &v);
        let _ = ServerId::parse(&s);
        let _ = AgentId::parse(&s);
    }

    #[test]
    fn decoders_never_panic_on_jws_shaped_input(h in "[A-Za-z0-9_-]{0,80}", p in "[A-Za-z0-9_-]{0,200}", g in "[A-Za-z0-9_-]{0,90}") {
        let t = format!("{h}.{p}.{g}");
        let _ = Unverified::<AgentClaims>::decode(&t, &Validation::new(NOW));
    }

    #[test]
    fn payload_json_never_panics(json in "\\PC{0,300}") {
        let t = crate::common::forge(crate::common::AGENT_HEADER, &json, &provider_key());
        let _ = block(verify::<AgentClaims>(&t, &Validation::new(NOW), &issuers()));
    }

    #[test]
    fn minted_tokens_verify(local in "[a-z][a-z0-9._-]{0,30}", sub in "[ -~]{1,60}", life in 1u64..=3600) {
        let m = AgentTokenBuilder::new(
            sid("https://agent.example"),
            AgentId::parse(&format!("aauth:{local}@agent.example")).unwrap(),
            agent_key().public_key(),
        )
        .lifetime(life)
        .sign(&provider_key(), "k1", NOW, &mut OsRandom)
        .unwrap();
        let v = block(verify::<AgentClaims>(&m.token, &Validation::new(NOW), &issuers())).unwrap();
        prop_assert_eq!(v.claims.sub.local(), local.as_str());
        let m = PersonTokenBuilder::new(sid("https://ps.example"), sid("https://resource.example"), sub.clone(), agent_key().public_key())
            .lifetime(life)
            .sign(&ps_key(), "k1", NOW, &mut OsRandom)
            .unwrap();
        let res = sid("https://resource.example");
        let v = block(verify::<PersonClaims>(&m.token, &Validation::new(NOW).audience(&res), &issuers())).unwrap();
        prop_assert_eq!(v.claims.sub, sub);
    }
}

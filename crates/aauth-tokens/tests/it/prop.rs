//! Property tests: the decoders never panic, and minted tokens always verify.

use std::time::Duration;

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
        .lifetime(Duration::from_secs(life))
        .sign(&provider_key(), "k1", NOW, &mut OsRandom)
        .unwrap();
        let v = block(verify::<AgentClaims>(&m.token, &Validation::new(NOW), &issuers())).unwrap();
        prop_assert_eq!(v.claims.sub.local(), local.as_str());
        let m = PersonTokenBuilder::new(sid("https://ps.example"), sid("https://resource.example"), sub.clone(), agent_key().public_key())
            .lifetime(Duration::from_secs(life))
            .sign(&ps_key(), "k1", NOW, &mut OsRandom)
            .unwrap();
        let res = sid("https://resource.example");
        let v = block(verify::<PersonClaims>(&m.token, &Validation::new(NOW).audience(&res), &issuers())).unwrap();
        prop_assert_eq!(v.claims.sub, sub);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any `iat`/`exp` a token may carry (0, `u64::MAX`, anything between, in any order)
    /// and any verifier clock give an answer, never a panic or a wrapped comparison: a
    /// token verifies exactly when it is unexpired, not issued in the future, and within
    /// its type's cap.
    #[test]
    fn arbitrary_times_never_panic_and_decide_exactly(
        iat in prop_oneof![Just(0u64), Just(u64::MAX), any::<u64>(), (NOW.0 - 100_000)..(NOW.0 + 100_000)],
        exp in prop_oneof![Just(0u64), Just(u64::MAX), any::<u64>(), (NOW.0 - 100_000)..(NOW.0 + 100_000)],
        now in prop_oneof![Just(0u64), Just(u64::MAX), Just(NOW.0), any::<u64>()],
        skew in prop_oneof![Just(0u64), Just(60u64), Just(u64::MAX)],
    ) {
        let mut p = crate::common::agent_payload();
        p["iat"] = iat.into();
        p["exp"] = exp.into();
        let t = crate::common::forge(crate::common::AGENT_HEADER, &p.to_string(), &provider_key());
        let v = Validation::new(aauth_keys::time::UnixTime(now)).max_iat_skew(Duration::from_secs(skew));
        let got = block(verify::<AgentClaims>(&t, &v, &issuers()));
        let valid = now < exp
            && u128::from(iat) <= u128::from(now) + u128::from(skew)
            && iat <= exp
            && exp - iat <= 86_400;
        prop_assert_eq!(got.is_ok(), valid, "{:?}", got.err());
    }
}

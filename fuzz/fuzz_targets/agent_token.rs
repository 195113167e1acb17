#![no_main]
use aauth_keys::time::UnixTime;
use aauth_tokens::{AgentClaims, AuthClaims, PersonClaims, ResourceClaims, Unverified, Validation};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let v = Validation::new(UnixTime(1_800_000_000));
        let _ = Unverified::<AgentClaims>::decode(s, &v);
        let _ = Unverified::<PersonClaims>::decode(s, &v);
        let _ = Unverified::<ResourceClaims>::decode(s, &v);
        let _ = Unverified::<AuthClaims>::decode(s, &v);
        let _ = aauth_tokens::verify_jkt_jwt(s, UnixTime(1_800_000_000), 60);
    }
});

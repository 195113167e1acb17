#![no_main]
// Arbitrary JSON as the payload of an otherwise well-formed agent token, so the claim
// readers (not the base64 layer) get the input.
use aauth_keys::base64url;
use aauth_keys::time::UnixTime;
use aauth_tokens::{AgentClaims, Unverified, Validation};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let header = base64url::encode(br#"{"alg":"Ed25519","kid":"k1","typ":"aa-agent+jwt"}"#);
    let token = format!(
        "{header}.{}.{}",
        base64url::encode(data),
        base64url::encode(&[0u8; 64])
    );
    let _ = Unverified::<AgentClaims>::decode(&token, &Validation::new(UnixTime(1_800_000_000)));
});

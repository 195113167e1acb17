//! Helpers.

use aauth_keys::{Jwk, base64url};

pub fn data(path: &str) -> serde_json::Value {
    let path = format!("{}/tests/data/{path}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

pub fn hex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

pub fn okp(x: &[u8]) -> Jwk {
    Jwk::from_json(&format!(
        r#"{{"kty":"OKP","crv":"Ed25519","alg":"Ed25519","x":"{}"}}"#,
        base64url::encode(x)
    ))
    .unwrap()
}

pub fn ec(x: &[u8], y: &[u8]) -> Jwk {
    Jwk::from_json(&format!(
        r#"{{"kty":"EC","crv":"P-256","alg":"ES256","x":"{}","y":"{}"}}"#,
        base64url::encode(x),
        base64url::encode(y)
    ))
    .unwrap()
}

/// RFC 8037 Appendix A.1's Ed25519 key.
pub const RFC8037_D: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
pub const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

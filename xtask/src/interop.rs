//! `cargo xtask interop`: runs every live peer test (the `interop*` tests of the
//! `aauth-demos` integration binary) and prints the interoperability matrix: peer ×
//! direction × feature, each a pass, a failure with its cause, or a known departure of the
//! peer with the section it departs from. `docs/interop.md` explains how to read it and
//! keeps the last one.

use std::collections::BTreeMap;
use std::process::Command;

/// What a test shows.
#[derive(Clone, Copy)]
enum Kind {
    /// Something that must work between us and the peer.
    Check,
    /// A departure of the peer, pinned: the test passes while the departure is there.
    Departure(&'static str),
}

/// One row of the matrix: (test name, peer, direction, feature, kind).
type Row = (&'static str, &'static str, &'static str, &'static str, Kind);

const HELLO: &str = "@hellocoop/httpsig 2.2.0";
const PY: &str = "aauth 0.5.0 + aauth-signing 0.2.0";
const MOCKIN: &str = "@hellocoop/mockin 2.0.0 (PS)";
const OP: &str = "oidc-provider 9.13.3 (OAuth AS)";
const MOCKIN_OP: &str = "@hellocoop/mockin 2.0.0 (OP)";

/// Every live peer test, with what it shows. A test of the binary's `interop` modules
/// missing here fails the command, so the matrix stays complete.
const ROWS: [Row; 39] = [
    (
        "interop::the_reference_verifies_what_we_sign",
        HELLO,
        "peer verifies ours",
        "request signatures",
        Kind::Check,
    ),
    (
        "interop::we_verify_what_the_reference_signs",
        HELLO,
        "we verify the peer's",
        "request signatures",
        Kind::Check,
    ),
    (
        "interop::the_reference_parses_our_signature_errors",
        HELLO,
        "peer reads ours",
        "Signature-Error (-08 codes)",
        Kind::Check,
    ),
    (
        "interop::departure_httpsig_cannot_parse_clock_skew_or_revoked_jwt",
        HELLO,
        "peer reads ours",
        "Signature-Error clock_skew revoked_jwt",
        Kind::Departure("Signature-Key -09 §5.4.13, §5.4.14; -11 §11.3.4"),
    ),
    (
        "interop_python::signatures::python_verifies_requests_we_sign",
        PY,
        "peer verifies ours",
        "request signatures (Ed25519, ES256)",
        Kind::Check,
    ),
    (
        "interop_python::signatures::we_verify_requests_python_signs",
        PY,
        "we verify the peer's",
        "request signatures",
        Kind::Check,
    ),
    (
        "interop_python::signatures::python_resource_accepts_a_request_under_our_auth_token",
        PY,
        "peer verifies ours",
        "a resource admitting our auth token",
        Kind::Check,
    ),
    (
        "interop_python::signatures::signature_bases_agree_byte_for_byte",
        PY,
        "both",
        "signature bases",
        Kind::Check,
    ),
    (
        "interop_python::tokens::python_verifies_tokens_we_mint",
        PY,
        "peer verifies ours",
        "agent, person, auth, resource tokens",
        Kind::Check,
    ),
    (
        "interop_python::tokens::we_verify_tokens_python_mints",
        PY,
        "we verify the peer's",
        "agent, person, auth, resource tokens",
        Kind::Check,
    ),
    (
        "interop_python::metadata::python_accepts_metadata_we_publish",
        PY,
        "peer reads ours",
        "metadata documents",
        Kind::Check,
    ),
    (
        "interop_python::metadata::we_parse_metadata_python_generates",
        PY,
        "we read the peer's",
        "metadata documents",
        Kind::Check,
    ),
    (
        "interop_python::revocation::python_records_a_revocation_our_person_server_sends",
        PY,
        "peer receives ours",
        "revocation requests",
        Kind::Check,
    ),
    (
        "interop_python::revocation::we_record_a_revocation_python_signs",
        PY,
        "we receive the peer's",
        "revocation requests",
        Kind::Check,
    ),
    (
        "interop_python::der_to_raw_reads_der_and_refuses_anything_else",
        PY,
        "(harness)",
        "DER to r||s adapter",
        Kind::Check,
    ),
    (
        "interop_python::departures::departure_python_writes_signature_in_url_safe_base64_without_padding",
        PY,
        "peer signs",
        "Signature byte sequence",
        Kind::Departure("RFC 8941 §3.3.5: standard base64, padded"),
    ),
    (
        "interop_python::departures::departure_python_verifier_accepts_only_its_own_encoding",
        PY,
        "peer verifies",
        "Signature byte sequence",
        Kind::Departure("RFC 8941 §4.2.7: parse standard base64"),
    ),
    (
        "interop_python::departures::departure_python_signs_es256_as_der",
        PY,
        "peer signs",
        "ES256 signature value",
        Kind::Departure("Signature-Key -09 §3.3; RFC 7518 §3.4: r||s"),
    ),
    (
        "interop_python::departures::departure_python_signs_authority_unnormalized",
        PY,
        "peer signs",
        "@authority",
        Kind::Departure("RFC 9421 §2.2.3: lowercase, no default port"),
    ),
    (
        "interop_mockin::we_parse_mockins_metadata",
        MOCKIN,
        "we read the peer's",
        "PS metadata and JWKS",
        Kind::Check,
    ),
    (
        "interop_mockin::our_agent_gets_a_person_token_from_mockin_and_our_resource_admits_it",
        MOCKIN,
        "our agent at peer PS",
        "person tokens",
        Kind::Check,
    ),
    (
        "interop_mockin::mockin_verifies_our_agent_token_against_the_keys_we_publish",
        MOCKIN,
        "peer verifies ours",
        "agent token (another key: refused)",
        Kind::Check,
    ),
    (
        "interop_mockin::deferred_consent_at_mockin_interaction",
        MOCKIN,
        "our agent at peer PS",
        "deferred consent (interaction, 202)",
        Kind::Check,
    ),
    (
        "interop_mockin::deferred_approval_at_mockin",
        MOCKIN,
        "our agent at peer PS",
        "deferred approval (202)",
        Kind::Check,
    ),
    (
        "interop_mockin::departure_mockin_reads_person_token_jti_not_presented_jti",
        MOCKIN,
        "peer reads ours",
        "resource token (strict) -> auth token",
        Kind::Departure("-11 §6.7.1: presented_jti"),
    ),
    (
        "interop_mockin::compat_our_agent_gets_an_auth_token_from_mockin_and_our_resource_admits_it",
        MOCKIN,
        "our agent at peer PS",
        "auth tokens (compat: person_token_jti)",
        Kind::Check,
    ),
    (
        "interop_mockin::compat_clarification_at_mockin",
        MOCKIN,
        "our agent at peer PS",
        "clarification (compat)",
        Kind::Check,
    ),
    (
        "interop_mockin::compat_deferred_auth_token_consent_at_mockin",
        MOCKIN,
        "our agent at peer PS",
        "deferred auth-token consent (compat)",
        Kind::Check,
    ),
    (
        "interop_oidc_provider::oidc_provider_rs256_and_es256_access_tokens_verify",
        OP,
        "we verify the peer's",
        "JWT access tokens RS256 ES256 (RFC 9068)",
        Kind::Check,
    ),
    (
        "interop_oidc_provider::oidc_provider_tokens_are_refused_where_they_must_be",
        OP,
        "we verify the peer's",
        "aud, exp, alg none/HS256, tampering",
        Kind::Check,
    ),
    (
        "interop_oidc_provider::oidc_provider_dpop_bound_tokens_are_not_bearer_tokens",
        OP,
        "we verify the peer's",
        "DPoP-bound: proof checked, bearer no",
        Kind::Check,
    ),
    (
        "interop_oidc_provider::oidc_provider_issues_our_client_tokens_by_each_authentication_method",
        OP,
        "peer issues to ours",
        "client credentials: basic, post, key JWT",
        Kind::Check,
    ),
    (
        "interop_oidc_provider::oidc_provider_short_tokens_are_refreshed_and_outlive_a_stopped_server_until_expiry",
        OP,
        "peer issues to ours",
        "refresh ahead; server down: stale, then error",
        Kind::Check,
    ),
    (
        "interop_oidc_provider::oidc_provider_down_opens_the_breaker_and_its_return_closes_it",
        OP,
        "peer issues to ours",
        "server down: breaker opens; back: closes",
        Kind::Check,
    ),
    (
        "interop_oidc_provider::oidc_provider_opaque_tokens_are_introspected_kept_and_dropped_once_revoked",
        OP,
        "we ask the peer",
        "introspection: active, cached, revoked",
        Kind::Check,
    ),
    (
        "interop_oidc_provider::oidc_provider_dpop_nonces_are_followed_by_our_token_source",
        OP,
        "peer issues to ours",
        "DPoP nonces at the token endpoint",
        Kind::Check,
    ),
    (
        "interop_mockin_oidc::a_person_signs_in_with_the_provider_by_code_and_pkce",
        MOCKIN_OP,
        "ours signs in at peer",
        "OIDC code + PKCE sign-in",
        Kind::Check,
    ),
    (
        "interop_mockin_oidc::forged_stale_and_foreign_sign_ins_are_refused",
        MOCKIN_OP,
        "ours signs in at peer",
        "state, nonce, expired, wrong key, denied",
        Kind::Check,
    ),
    (
        "interop_mockin_oidc::a_person_signs_in_at_the_person_server_with_mockin_in_chromium",
        MOCKIN_OP,
        "our PS signs in at peer",
        "Chromium: sign-in, consent; bad: no session",
        Kind::Check,
    ),
];

/// Runs the peer tests and prints the matrix.
///
/// # Errors
///
/// When a check fails, a departure is no longer there (the row should become a check),
/// or a peer test is missing from the matrix.
pub(crate) fn run(_args: &[String]) -> Result<(), String> {
    crate::ci::interop_deps()?;
    let out = Command::new(env!("CARGO"))
        .args([
            "test",
            "--locked",
            "-p",
            "aauth-demos",
            "--test",
            "it",
            "interop",
            "--",
            "--test-threads=2",
        ])
        .env("AAUTH_REQUIRE_INTEROP", "1")
        .current_dir(crate::root())
        .output()
        .map_err(|e| format!("cargo test: {e}"))?;
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let results = outcomes(&text);
    if results.is_empty() {
        return Err(format!("the peer tests did not run:\n{text}"));
    }
    let mut bad = Vec::new();
    println!(
        "{:<34} {:<22} {:<38} result",
        "peer", "direction", "feature"
    );
    for (name, peer, direction, feature, kind) in ROWS {
        let passed = results.get(name).copied();
        let result = match (kind, passed) {
            (Kind::Check, Some(true)) => "pass".to_owned(),
            (Kind::Check, Some(false)) => {
                bad.push(name);
                format!("FAIL: {}", cause(&text, name))
            }
            (Kind::Departure(section), Some(true)) => {
                format!("known departure of the peer ({section})")
            }
            (Kind::Departure(_), Some(false)) => {
                bad.push(name);
                "DEPARTURE GONE? the pin failed: make this row a check".to_owned()
            }
            (_, None) => {
                bad.push(name);
                "did not run".to_owned()
            }
        };
        println!("{peer:<34} {direction:<22} {feature:<38} {result}");
    }
    let unmapped: Vec<&String> = results
        .keys()
        .filter(|n| !ROWS.iter().any(|r| r.0 == n.as_str()))
        .collect();
    if !unmapped.is_empty() {
        return Err(format!(
            "peer tests missing from the matrix (add them to xtask/src/interop.rs): {unmapped:?}"
        ));
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!("{} row(s) need attention: {bad:?}", bad.len()))
    }
}

/// `test <name> ... ok|FAILED` lines of libtest's output: name → passed.
fn outcomes(text: &str) -> BTreeMap<String, bool> {
    text.lines()
        .filter_map(|l| l.strip_prefix("test "))
        .filter_map(|l| l.split_once(" ... "))
        .filter(|(name, _)| name.starts_with("interop"))
        .map(|(name, result)| (name.to_owned(), result.trim() == "ok"))
        .collect()
}

/// The first line of `name`'s failure message (libtest prints it after `---- name stdout
/// ----` and the `panicked at` line).
fn cause(text: &str, name: &str) -> String {
    let header = format!("---- {name} stdout ----");
    text.split(&header)
        .nth(1)
        .and_then(|rest| {
            rest.lines()
                .skip_while(|l| !l.contains("panicked at"))
                .nth(1)
                .map(|l| l.chars().take(160).collect())
        })
        .unwrap_or_else(|| "see `cargo test -p aauth-demos --test it interop`".to_owned())
}

#[cfg(test)]
mod tests {
    use super::{cause, outcomes};

    #[test]
    fn libtest_lines_are_read() {
        let text = "running 2 tests\ntest interop::a ... ok\ntest interop_python::b ... FAILED\ntest other::c ... ok\n\n---- interop_python::b stdout ----\n\nthread 'x' panicked at tests/it/x.rs:1:1:\nthe peer said no\n";
        let r = outcomes(text);
        assert_eq!(r.get("interop::a"), Some(&true));
        assert_eq!(r.get("interop_python::b"), Some(&false));
        assert!(!r.contains_key("other::c"));
        assert_eq!(cause(text, "interop_python::b"), "the peer said no");
    }
}

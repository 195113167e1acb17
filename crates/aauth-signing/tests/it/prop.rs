//! Property tests: sign → verify holds for any request; any change to a covered part or
//! the body breaks it; verification never panics on arbitrary signature headers; the
//! head verified before the body, then the body, decide as one verification does.

use aauth_signing::{BodyCoverage, BodyHint, DigestMode, SignOptions, VerifyError, prepare};
use proptest::prelude::*;

use crate::common::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn round_trip_and_tamper(path in "/[a-zA-Z0-9_./-]{0,40}", body in proptest::collection::vec(any::<u8>(), 0..256), flip in any::<prop::sample::Index>()) {
        let url = format!("https://resource.example{path}");
        let (p, b) = signed("POST", &url, &body, &SignOptions::default());
        let server = as_server(p);
        verify(&server, &b).unwrap();
        if !b.is_empty() {
            let mut changed = b;
            let i = flip.index(changed.len());
            changed[i] ^= 0x80;
            prop_assert!(verify(&server, &changed).is_err());
        }
    }

    #[test]
    fn prepare_never_panics(si in "\\PC{0,200}", sig in "\\PC{0,100}", sk in "\\PC{0,200}") {
        let mut p = http::Request::get("/x").header("host", "a.example").body(()).unwrap().into_parts().0;
        for (n, v) in [("signature-input", &si), ("signature", &sig), ("signature-key", &sk)] {
            if let Ok(v) = http::HeaderValue::from_str(v) {
                p.headers.insert(n, v);
            }
        }
        let _ = prepare(&p, b"", &policy(), NOW);
    }

    #[test]
    fn head_then_body_decides_as_verify(
        body in proptest::collection::vec(any::<u8>(), 0..64),
        digest in prop_oneof![Just(DigestMode::WhenBody), Just(DigestMode::Always), Just(DigestMode::Never)],
        required in any::<bool>(),
        sent in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
        announced in any::<bool>(),
    ) {
        let mut options = SignOptions::default();
        options.digest = digest;
        let (p, signed_body) = signed("POST", "https://resource.example/items", &body, &options);
        let server = as_server(p);
        // The body that arrives: the one signed, or another.
        let arrived = sent.unwrap_or(signed_body);
        let coverage = if required { BodyCoverage::Required } else { BodyCoverage::Optional };
        let v = verifier(policy().body_coverage(coverage));
        let whole = block(v.verify(&server, &arrived, NOW));
        let hint = match (announced, arrived.is_empty()) {
            (false, _) => BodyHint::Unknown,
            (true, true) => BodyHint::Empty,
            (true, false) => BodyHint::NonEmpty,
        };
        let halves = block(async {
            let head = v.verify_head(&server, hint, NOW).await?;
            v.verify_body(head, &server, &arrived, NOW).await
        });
        prop_assert_eq!(whole.is_ok(), halves.is_ok(), "{:?} / {:?}", whole, halves);
        if let (Err(a), Err(b)) = (&whole, &halves) {
            // The same refusal, but for missing body coverage, which an unannounced body
            // meets after the signature (where the signature fails first).
            let late = matches!(a, VerifyError::MissingComponents { .. }) && hint == BodyHint::Unknown;
            if !late {
                prop_assert_eq!(a.to_string(), b.to_string());
            }
        }
    }
}

/// The window is checked again when the body has been read: a replay whose head came
/// within the window and whose body came after it would otherwise find the replay store's
/// entry gone (kept only until the window closes) and be recorded afresh.
#[test]
fn a_body_that_comes_after_the_window_is_refused() {
    let (p, body) = signed(
        "POST",
        "https://resource.example/items",
        br#"{"n":1}"#,
        &SignOptions::default(),
    );
    let server = as_server(p);
    let v = verifier(policy());
    let window = aauth_signing::DEFAULT_WINDOW.as_secs();
    let late = block(async {
        let head = v.verify_head(&server, BodyHint::NonEmpty, NOW).await?;
        v.verify_body(head, &server, &body, NOW.plus(window + 1))
            .await
    });
    assert!(
        matches!(late, Err(VerifyError::CreatedTooOld { .. })),
        "{late:?}"
    );
    let in_time = block(async {
        let head = v.verify_head(&server, BodyHint::NonEmpty, NOW).await?;
        v.verify_body(head, &server, &body, NOW.plus(window)).await
    });
    assert!(in_time.is_ok(), "{in_time:?}");
}

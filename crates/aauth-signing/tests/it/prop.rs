//! Property tests: sign → verify holds for any request; any change to a covered part or
//! the body breaks it; verification never panics on arbitrary signature headers.

use aauth_signing::{SignOptions, prepare};
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
}

#![no_main]
use aauth_headers::SignatureKey;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(sk) = SignatureKey::parse(s)
    {
        for m in sk.members() {
            if let Ok(scheme) = &m.scheme {
                let v = SignatureKey::serialize([(m.label.as_str(), scheme)])
                    .expect("a parsed member serializes");
                let back = SignatureKey::parse(&v).expect("round trip");
                assert_eq!(
                    back.get(&m.label).map(|b| b.scheme.as_ref().ok()),
                    Some(Some(scheme))
                );
            }
        }
    }
});

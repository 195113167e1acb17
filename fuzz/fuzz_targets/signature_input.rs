#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(si) = aauth_headers::SignatureInput::parse(s)
    {
        for m in si.members() {
            if let Ok(p) = &m.params {
                // What parsed serializes, and serializes back to the same value.
                let again = p.serialize().expect("a parsed member serializes");
                let reparsed =
                    aauth_headers::SignatureInput::parse(&format!("{}={again}", m.label))
                        .expect("round trip");
                assert_eq!(
                    reparsed.get(&m.label).map(|r| r.params.as_ref().ok()),
                    Some(Some(p))
                );
            }
        }
    }
});

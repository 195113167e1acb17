#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(r) = aauth_headers::AAuthRequirement::parse(s)
        && let Ok(v) = r.serialize()
    {
        assert_eq!(
            aauth_headers::AAuthRequirement::parse(&v).expect("round trip"),
            r
        );
    }
});

#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = aauth_headers::AuthorizationAAuth::parse(s);
        let _ = aauth_headers::SessionToken::parse_aauth_access(s);
    }
});

#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(jws) = aauth_tokens::jws::CompactJws::parse(s)
    {
        let _ = jws.signing_input();
        let _ = jws.payload_segment();
    }
});

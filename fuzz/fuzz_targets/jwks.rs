#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(set) = aauth_keys::JwkSet::from_json(data) {
        let _ = set.find("k1");
        let _ = set.find("");
    }
});

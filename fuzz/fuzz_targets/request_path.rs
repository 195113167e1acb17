#![no_main]
// A request path as the protecting proxy reads it (aauth_resource::paths): never a
// panic, and the form routes are matched in a fixed point (matching it again changes
// nothing, in either case mode).
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = aauth_resource::paths::ambiguous_path(s);
        for fold in [false, true] {
            let form = aauth_resource::paths::match_form(s, fold);
            assert_eq!(aauth_resource::paths::match_form(&form, fold), form);
        }
    }
});

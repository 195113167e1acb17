#![no_main]
// The operator endpoint's query string: never a panic; what parses writes back to the
// same query.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(q) = aauth_metadata::audit::AuditQuery::from_query_string(s)
    {
        assert_eq!(
            aauth_metadata::audit::AuditQuery::from_query_string(&q.to_query_string())
                .expect("round trip"),
            q
        );
    }
});

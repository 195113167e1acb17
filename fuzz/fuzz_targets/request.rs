#![no_main]
// Arbitrary signature headers on a request, through the verifier's sans-IO first step.
use aauth_keys::time::UnixTime;
use aauth_signing::{AuthoritySource, VerifyPolicy, prepare};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = s.splitn(3, '\n');
    let mut req = http::Request::get("/x").header("host", "resource.example");
    for name in ["signature-input", "signature", "signature-key"] {
        if let Some(v) = parts.next()
            && let Ok(v) = http::HeaderValue::from_str(v)
        {
            req = req.header(name, v);
        }
    }
    if let Ok(r) = req.body(()) {
        let (p, ()) = r.into_parts();
        let policy = VerifyPolicy::new(
            AuthoritySource::names(["resource.example"]).unwrap_or_else(|_| unreachable!()),
        );
        let _ = prepare(&p, b"", &policy, UnixTime(1_800_000_000));
    }
});

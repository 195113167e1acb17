#![no_main]
// The Access Server's endpoints, past the signature: the first byte picks an endpoint, the
// rest is the body, signed as its trusted Person Server would; or the interaction page,
// unsigned, with an arbitrary form. No input may panic or be answered with a 5xx.
use std::sync::{Arc, OnceLock};

use aauth_access_server::AccessServer;
use aauth_headers::Scheme;
use aauth_keys::PrivateKey;
use aauth_keys::time::UnixTime;
use aauth_tokens::{ServerId, StaticIssuerKeys};

const NOW: UnixTime = UnixTime(1_800_000_000);

struct Fixture {
    server: AccessServer,
    ps: PrivateKey,
    rt: tokio::runtime::Runtime,
}

fn fixture() -> Option<&'static Fixture> {
    static F: OnceLock<Option<Fixture>> = OnceLock::new();
    F.get_or_init(|| {
        let ps = PrivateKey::ed25519_from_seed(&[1; 32]);
        let ps_id = ServerId::parse("https://ps.example").ok()?;
        let keys = StaticIssuerKeys::new().with(
            &ps_id,
            "aauth-person.json",
            "ps-1",
            ps.public_key().clone(),
        );
        let server = AccessServer::new(
            ServerId::parse("https://as.example").ok()?,
            Arc::new(PrivateKey::ed25519_from_seed(&[5; 32])),
            "as-1",
            Arc::new(keys),
        )
        .ok()?
        .trusted([ps_id]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .ok()?;
        Some(Fixture { server, ps, rt })
    })
    .as_ref()
}

const SIGNED: [(&str, &str); 4] = [
    ("POST", "/auth-token"),
    ("POST", "/pending/x"),
    ("GET", "/pending/x"),
    ("POST", "/revocation"),
];

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (Some(f), Some((&pick, body))) = (fixture(), data.split_first()) else {
        return;
    };
    let (parts, body) = if pick & 0x40 == 0 {
        let (method, path) = SIGNED[usize::from(pick) % SIGNED.len()];
        let Ok(mut req) = http::Request::builder()
            .method(method)
            .uri(format!("https://as.example{path}"))
            .header("content-type", "application/json")
            .body(body.to_vec())
        else {
            return;
        };
        let scheme = Scheme::JwksUri {
            id: "https://ps.example".to_owned(),
            dwk: "aauth-person.json".to_owned(),
            kid: "ps-1".to_owned(),
        };
        if aauth_signing::sign_request(&mut req, &f.ps, &scheme, NOW).is_err() {
            return;
        }
        let (mut parts, body) = req.into_parts();
        let Ok(uri) = path.parse() else { return };
        parts.uri = uri;
        parts
            .headers
            .insert("host", http::HeaderValue::from_static("as.example"));
        (parts, body)
    } else {
        let method = if pick & 1 == 0 { "GET" } else { "POST" };
        let query = String::from_utf8_lossy(body).replace(['#', ' '], "");
        let Ok(req) = http::Request::builder()
            .method(method)
            .uri(format!("/interact?{query}"))
            .header("host", "as.example")
            .header("origin", "https://as.example")
            .body(body.to_vec())
        else {
            return;
        };
        req.into_parts()
    };
    let resp = f.rt.block_on(f.server.handle(&parts, &body, NOW));
    // A path that is not the server's is `None` (its service answers 404).
    if let Some(resp) = resp {
        assert!(resp.status().as_u16() < 500, "{:?}", resp.status());
    }
});

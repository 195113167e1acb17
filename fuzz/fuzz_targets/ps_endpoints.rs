#![no_main]
// The Person Server's endpoints, past the signature: the first byte picks an endpoint, the
// rest is the body, signed as a real agent would (so the endpoint's own parsing is what is
// fuzzed), or sent unsigned to the consent pages as a form (with a session cookie after
// the first byte's high bit). No input may panic or take the server down.
use std::sync::{Arc, OnceLock};

use aauth_headers::Scheme;
use aauth_keys::PrivateKey;
use aauth_keys::rand::OsRandom;
use aauth_keys::time::UnixTime;
use aauth_person_server::{AlwaysAsk, MemoryStore, PersonServer};
use aauth_tokens::{AgentId, AgentTokenBuilder, ServerId, StaticIssuerKeys};

const NOW: UnixTime = UnixTime(1_800_000_000);

struct Fixture {
    ps: PersonServer,
    agent: PrivateKey,
    token: String,
    rt: tokio::runtime::Runtime,
}

fn fixture() -> Option<&'static Fixture> {
    static F: OnceLock<Option<Fixture>> = OnceLock::new();
    F.get_or_init(|| {
        let provider = PrivateKey::ed25519_from_seed(&[1; 32]);
        let agent = PrivateKey::ed25519_from_seed(&[2; 32]);
        let iss = ServerId::parse("https://agent.example").ok()?;
        let keys = StaticIssuerKeys::new().with(
            &iss,
            "aauth-agent.json",
            "k1",
            provider.public_key().clone(),
        );
        let ps = PersonServer::new(
            ServerId::parse("https://ps.example").ok()?,
            Arc::new(PrivateKey::ed25519_from_seed(&[3; 32])),
            "ps-1",
            Arc::new(keys),
            Arc::new(MemoryStore::default()),
            [9; 32],
        )
        .ok()?
        .policy(Arc::new(AlwaysAsk))
        .consent_pages(std::time::Duration::from_secs(600));
        let token = AgentTokenBuilder::new(
            iss,
            AgentId::parse("aauth:fuzz@agent.example").ok()?,
            agent.public_key(),
        )
        .sign(&provider, "k1", NOW, &mut OsRandom)
        .ok()?
        .token;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .ok()?;
        Some(Fixture {
            ps,
            agent,
            token,
            rt,
        })
    })
    .as_ref()
}

const SIGNED: [(&str, &str); 10] = [
    ("POST", "/person-token"),
    ("POST", "/auth-token"),
    ("POST", "/permission"),
    ("POST", "/audit"),
    ("POST", "/interaction"),
    ("POST", "/mission"),
    (
        "POST",
        "/mission/dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
    ),
    ("POST", "/pending/x"),
    ("DELETE", "/pending/x"),
    ("POST", "/revocation"),
];
const FORMS: [(&str, &str); 3] = [
    ("POST", "/interact"),
    ("POST", "/interact/login"),
    ("GET", "/interact"),
];

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (Some(f), Some((&pick, body))) = (fixture(), data.split_first()) else {
        return;
    };
    let signed = pick & 0x40 == 0;
    let req = if signed {
        let (method, path) = SIGNED[usize::from(pick) % SIGNED.len()];
        let Ok(mut req) = http::Request::builder()
            .method(method)
            .uri(format!("https://ps.example{path}"))
            .header("content-type", "application/json")
            .body(body.to_vec())
        else {
            return;
        };
        if aauth_signing::sign_request(&mut req, &f.agent, &Scheme::jwt(f.token.clone()), NOW)
            .is_err()
        {
            return;
        }
        let (mut parts, body) = req.into_parts();
        let Ok(uri) = path.parse() else { return };
        parts.uri = uri;
        parts
            .headers
            .insert("host", http::HeaderValue::from_static("ps.example"));
        (parts, body)
    } else {
        let (method, path) = FORMS[usize::from(pick) % FORMS.len()];
        // A GET carries its form as the query.
        let target = if method == "GET" {
            format!(
                "{path}?{}",
                String::from_utf8_lossy(body).replace(['#', ' '], "")
            )
        } else {
            path.to_owned()
        };
        let mut b = http::Request::builder()
            .method(method)
            .uri(target)
            .header("host", "ps.example")
            .header("content-type", "application/x-www-form-urlencoded");
        if pick & 0x80 != 0 {
            b = b.header(
                "cookie",
                "__Host-aauth-session=s; __Host-aauth-csrf=c; __Host-aauth-device=d.e",
            );
        }
        let Ok(req) = b.body(body.to_vec()) else {
            return;
        };
        req.into_parts()
    };
    let (parts, body) = req;
    if let Some(resp) = f.rt.block_on(f.ps.handle(&parts, &body, NOW)) {
        // The server's own failure is never the answer to what a client sent.
        assert!(resp.status().as_u16() != 500, "{:?}", resp.status());
    }
});

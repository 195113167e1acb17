//! Auth tokens issued per second by the two servers, each with the memory store, the
//! SQLite store and (when `AAUTH_POSTGRES_URL` names one) PostgreSQL, beside the cost of the signatures involved (four Ed25519 verifications
//! and one signature on both paths):
//!
//! - the Person Server's three-party `auth_token_endpoint` (the agent's request signature,
//!   agent token, resource token, presented token, record lookups, minting, the record
//!   written);
//! - the Access Server's `auth_token_endpoint` (the Person Server's request signature, the
//!   agent, resource and presented tokens, the revocation and binding lookups, minting,
//!   the issuance record written).
//!
//! Each iteration answers the same signed request, so both servers run without their
//! replay check here (`cargo xtask load --replay` measures that check on its own).
//!
//! `cargo bench -p aauth-demos --bench issuance` runs criterion, then paired ratios
//! (baseline, subject, baseline per round; median of rounds): one request at a time (the
//! latency of a token), then eight in flight on the same one thread (a server's tokens
//! per second when its store's round trips overlap other requests' work). Under
//! `cargo test` it does nothing.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::cast_precision_loss,
    reason = "a benchmark that prints its report"
)]

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use aauth_access_server::{AccessServer, AsStore};
use aauth_headers::Scheme;
use aauth_keys::rand::OsRandom;
use aauth_keys::{PrivateKey, Signer};
use aauth_person_server::{
    AUTH_TOKEN_PATH, MemoryStore, PERSON_TOKEN_PATH, PersonServer, PsStore, SqliteStore,
};
use aauth_tokens::{
    AgentId, AgentTokenBuilder, PersonClaims, PersonTokenBuilder, ResourceTokenBuilder, Unverified,
    Validation,
};
use criterion::Criterion;

use aauth_test_support::request;
use aauth_test_support::services::PgSchema;
use aauth_test_support::verify::issuer_keys;
use aauth_test_support::{NOW, id, key, tokens};

struct Fixture {
    ps: PersonServer,
    parts: http::request::Parts,
    body: Vec<u8>,
}

fn signed(
    path: &str,
    body: &serde_json::Value,
    agent: &PrivateKey,
    token: &str,
) -> (http::request::Parts, Vec<u8>) {
    let req = request::json("POST", &format!("https://ps.example{path}"), Some(body));
    let (parts, body) =
        request::signed(req, agent, &Scheme::jwt(token.to_owned()), NOW).into_parts();
    (parts, body)
}

fn fixture(rt: &tokio::runtime::Runtime, store: Arc<dyn PsStore>) -> Fixture {
    let provider = key(1);
    let rs = key(3);
    let agent = key(2);
    let keys = issuer_keys(&[
        (
            "https://agent.example",
            "aauth-agent.json",
            "key-1",
            provider.public_key(),
        ),
        (
            "https://resource.example",
            "aauth-resource.json",
            "rs-1",
            rs.public_key(),
        ),
    ]);
    let ps = PersonServer::new(
        id("https://ps.example"),
        Arc::new(key(4)),
        "ps-1",
        Arc::new(keys),
        store,
        [9; 32],
    )
    .unwrap()
    .policy(Arc::new(aauth_person_server::dangerous::AutoApprove))
    // The same signed request is issued against on every iteration: measured without
    // the replay check, whose cost `cargo xtask load --replay` measures on its own.
    .without_replay_check();
    let agent_id = AgentId::parse("aauth:assistant@agent.example").unwrap();
    let token = AgentTokenBuilder::new(
        id("https://agent.example"),
        agent_id.clone(),
        agent.public_key(),
    )
    .sign(&provider, "key-1", NOW, &mut OsRandom)
    .unwrap()
    .token;
    rt.block_on(
        ps.store()
            .bind(&id("https://agent.example"), &agent_id, "alice"),
    )
    .unwrap();
    let (parts, body) = signed(
        PERSON_TOKEN_PATH,
        &serde_json::json!({"resource": "https://resource.example"}),
        &agent,
        &token,
    );
    let resp = rt.block_on(ps.handle(&parts, &body, NOW)).unwrap();
    let json: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
    let person = json["person_token"].as_str().unwrap().to_owned();
    let aud = id("https://resource.example");
    let v = Validation::new(NOW).audience(&aud);
    let pc: PersonClaims = Unverified::<PersonClaims>::decode(&person, &v)
        .unwrap()
        .unverified_claims()
        .clone();
    let rt_token = ResourceTokenBuilder::new(
        id("https://resource.example"),
        id("https://ps.example"),
        id("https://ps.example"),
        pc.sub,
        pc.jti,
        agent.public_key(),
        "read",
    )
    .sign(&rs, "rs-1", NOW, &mut OsRandom)
    .unwrap()
    .token;
    let (parts, body) = signed(
        AUTH_TOKEN_PATH,
        &serde_json::json!({"resource_token": rt_token, "presented_token": person}),
        &agent,
        &token,
    );
    Fixture { ps, parts, body }
}

fn issue(rt: &tokio::runtime::Runtime, f: &Fixture) {
    rt.block_on(issue_async(f));
}

async fn issue_async(f: &Fixture) {
    let resp = f.ps.handle(&f.parts, &f.body, NOW).await.unwrap();
    assert_eq!(resp.status(), 200);
    black_box(resp);
}

/// The Access Server and a Person Server's signed four-party token request.
struct AsFixture {
    server: AccessServer,
    parts: http::request::Parts,
    body: Vec<u8>,
}

fn as_fixture(store: Arc<dyn AsStore>) -> AsFixture {
    let (ps, rs, provider, agent) = (key(4), key(3), key(1), key(2));
    let keys = issuer_keys(&[
        (
            "https://ps.example",
            "aauth-person.json",
            "ps-1",
            ps.public_key(),
        ),
        (
            "https://resource.example",
            "aauth-resource.json",
            "rs-1",
            rs.public_key(),
        ),
        (
            "https://agent.example",
            "aauth-agent.json",
            "key-1",
            provider.public_key(),
        ),
    ]);
    let server = AccessServer::new(
        id("https://as.example"),
        Arc::new(key(6)),
        "as-1",
        Arc::new(keys),
    )
    .unwrap()
    .trusted([id("https://ps.example")])
    .store(store)
    // As the Person Server's fixture: the replay check is measured by the load harness.
    .without_replay_check();
    let agent_token = tokens::assistant(agent.public_key())
        .sign(&provider, "key-1", NOW, &mut OsRandom)
        .unwrap()
        .token;
    let person = PersonTokenBuilder::new(
        id("https://ps.example"),
        id("https://resource.example"),
        "alice-at-resource",
        agent.public_key(),
    )
    .sign(&ps, "ps-1", NOW, &mut OsRandom)
    .unwrap();
    let resource_token = ResourceTokenBuilder::new(
        id("https://resource.example"),
        id("https://as.example"),
        id("https://ps.example"),
        "alice-at-resource",
        person.jti.clone(),
        agent.public_key(),
        "read",
    )
    .sign(&rs, "rs-1", NOW, &mut OsRandom)
    .unwrap()
    .token;
    let body = serde_json::json!({
        "resource_token": resource_token,
        "agent_token": agent_token,
        "presented_token": person.token,
    });
    let req = request::json("POST", "https://as.example/auth-token", Some(&body));
    let scheme = Scheme::JwksUri {
        id: "https://ps.example".to_owned(),
        dwk: "aauth-person.json".to_owned(),
        kid: "ps-1".to_owned(),
    };
    let (parts, body) = request::signed(req, &ps, &scheme, NOW).into_parts();
    AsFixture {
        server,
        parts,
        body,
    }
}

fn issue_as(rt: &tokio::runtime::Runtime, f: &AsFixture) {
    rt.block_on(issue_as_async(f));
}

async fn issue_as_async(f: &AsFixture) {
    let resp = f.server.handle(&f.parts, &f.body, NOW).await.unwrap();
    assert_eq!(resp.status(), 200);
    black_box(resp);
}

/// One token's issuance, as a future.
type Issue<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;

/// Starts one token's issuance.
type Flight<'a> = Box<dyn Fn() -> Issue<'a> + 'a>;

/// How many requests a server has in flight in the throughput rounds.
const IN_FLIGHT: usize = 8;

/// `lanes` requests in flight at once on `rt`'s one thread, each lane issuing `per_lane`
/// tokens one after another (as `lanes` agents asking together would): the wall time per
/// token. A lane waiting on its store leaves the thread to the others.
fn in_flight<'a: 'b, 'b>(
    rt: &tokio::runtime::Runtime,
    lanes: usize,
    per_lane: usize,
    issue: &'b Flight<'a>,
) -> f64 {
    let start = Instant::now();
    rt.block_on(async {
        let mut running: Vec<Issue<'b>> = (0..lanes)
            .map(|_| {
                Box::pin(async move {
                    for _ in 0..per_lane {
                        issue().await;
                    }
                }) as Issue<'b>
            })
            .collect();
        std::future::poll_fn(|cx| {
            running.retain_mut(|lane| lane.as_mut().poll(cx).is_pending());
            if running.is_empty() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    });
    start.elapsed().as_secs_f64() / (lanes * per_lane) as f64
}

/// The signatures the path cannot avoid: four verifications, one signature.
struct Crypto {
    key: PrivateKey,
    msg: Vec<u8>,
    sig: Vec<u8>,
}

impl Crypto {
    fn new() -> Self {
        let key = key(5);
        let msg = vec![7u8; 600];
        let sig = key.sign(&msg).unwrap();
        Self { key, msg, sig }
    }

    fn run(&self) {
        for _ in 0..4 {
            self.key
                .public_key()
                .verify(black_box(&self.msg), &self.sig)
                .unwrap();
        }
        black_box(self.key.sign(black_box(&self.msg)).unwrap());
    }
}

fn time(n: usize, f: &mut dyn FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_secs_f64() / n as f64
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("aauth-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let memory = fixture(&rt, Arc::new(MemoryStore::default()));
    let sqlite = fixture(
        &rt,
        Arc::new(SqliteStore::open(&dir.join("ps.sqlite")).unwrap()),
    );
    let as_memory = as_fixture(Arc::new(aauth_access_server::MemoryStore::default()));
    let as_sqlite = as_fixture(Arc::new(
        aauth_access_server::SqliteStore::open(&dir.join("as.sqlite")).unwrap(),
    ));
    let crypto = Crypto::new();
    // PostgreSQL rows when the machine has one (`AAUTH_POSTGRES_URL`), each server in a
    // schema of its own, dropped at the end.
    let pg = postgres(&rt);

    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    c.bench_function("person_server/memory_store", |b| {
        b.iter(|| issue(&rt, &memory));
    });
    c.bench_function("person_server/sqlite_store", |b| {
        b.iter(|| issue(&rt, &sqlite));
    });
    c.bench_function("access_server/memory_store", |b| {
        b.iter(|| issue_as(&rt, &as_memory));
    });
    c.bench_function("access_server/sqlite_store", |b| {
        b.iter(|| issue_as(&rt, &as_sqlite));
    });
    if let Some((ps, access, _)) = &pg {
        c.bench_function("person_server/postgres_store", |b| {
            b.iter(|| issue(&rt, ps));
        });
        c.bench_function("access_server/postgres_store", |b| {
            b.iter(|| issue_as(&rt, access));
        });
    }
    c.bench_function("crypto/4_verify_1_sign", |b| b.iter(|| crypto.run()));
    c.final_summary();

    let mut subjects: Vec<(&str, Subject<'_>)> = vec![
        (
            "Person Server, memory store",
            Box::new(|| issue(&rt, &memory)),
        ),
        (
            "Person Server, SQLite store",
            Box::new(|| issue(&rt, &sqlite)),
        ),
        (
            "Access Server, memory store",
            Box::new(|| issue_as(&rt, &as_memory)),
        ),
        (
            "Access Server, SQLite store",
            Box::new(|| issue_as(&rt, &as_sqlite)),
        ),
    ];
    if let Some((ps, access, _)) = &pg {
        subjects.push((
            "Person Server, PostgreSQL store",
            Box::new(|| issue(&rt, ps)),
        ));
        subjects.push((
            "Access Server, PostgreSQL store",
            Box::new(|| issue_as(&rt, access)),
        ));
    }
    for (name, mut subject) in subjects {
        let subject = &mut *subject;
        let n = 300;
        let mut ratios = Vec::new();
        let mut per = Vec::new();
        for _ in 0..15 {
            let b1 = time(n, &mut || crypto.run());
            let s = time(n, subject);
            let b2 = time(n, &mut || crypto.run());
            ratios.push(s / ((b1 + b2) / 2.0));
            per.push(s);
        }
        let s = median(&mut per);
        println!(
            "\n{name}: {:.0} auth tokens/s ({:.1} µs each) = {:.2} × the signatures involved (median of 15 paired rounds)",
            1.0 / s,
            s * 1e6,
            median(&mut ratios)
        );
    }
    // Throughput: the same servers with several requests in flight on the one thread, so
    // that a request's store round trips overlap the others' signatures (as a server
    // serving several agents runs); the database works on the other core.
    let mut flights: Vec<(&str, Flight<'_>)> = vec![
        (
            "Person Server, memory store",
            Box::new(|| Box::pin(issue_async(&memory))),
        ),
        (
            "Person Server, SQLite store",
            Box::new(|| Box::pin(issue_async(&sqlite))),
        ),
        (
            "Access Server, memory store",
            Box::new(|| Box::pin(issue_as_async(&as_memory))),
        ),
        (
            "Access Server, SQLite store",
            Box::new(|| Box::pin(issue_as_async(&as_sqlite))),
        ),
    ];
    if let Some((ps, access, _)) = &pg {
        flights.push((
            "Person Server, PostgreSQL store",
            Box::new(|| Box::pin(issue_async(ps))),
        ));
        flights.push((
            "Access Server, PostgreSQL store",
            Box::new(|| Box::pin(issue_as_async(access))),
        ));
    }
    for (name, issue) in &flights {
        let per_lane = 40;
        let mut ratios = Vec::new();
        let mut per = Vec::new();
        for _ in 0..15 {
            let b1 = time(IN_FLIGHT * per_lane, &mut || crypto.run());
            let s = in_flight(&rt, IN_FLIGHT, per_lane, issue);
            let b2 = time(IN_FLIGHT * per_lane, &mut || crypto.run());
            ratios.push(s / ((b1 + b2) / 2.0));
            per.push(s);
        }
        let s = median(&mut per);
        println!(
            "\n{name}, {IN_FLIGHT} in flight: {:.0} auth tokens/s ({:.1} µs each) = {:.2} × the signatures involved (median of 15 paired rounds)",
            1.0 / s,
            s * 1e6,
            median(&mut ratios)
        );
    }
    drop(flights);
    let _ = std::fs::remove_dir_all(&dir);
    if let Some((_, _, schemas)) = pg {
        for schema in schemas {
            rt.block_on(schema.drop_schema());
        }
    }
}

/// One measured subject: issues one token per call.
type Subject<'a> = Box<dyn FnMut() + 'a>;

/// The two servers on PostgreSQL (and the schemas to drop), if the machine has one.
fn postgres(rt: &tokio::runtime::Runtime) -> Option<(Fixture, AsFixture, [PgSchema; 2])> {
    let (ps_db, as_db) = (
        PgSchema::new("issuance bench")?,
        PgSchema::new("issuance bench")?,
    );
    let ps_store = rt
        .block_on(aauth_person_server::PgStore::connect(&ps_db.options))
        .unwrap();
    let as_store = rt
        .block_on(aauth_access_server::PgStore::connect(&as_db.options))
        .unwrap();
    let ps = fixture(rt, Arc::new(ps_store));
    let access = as_fixture(Arc::new(as_store));
    Some((ps, access, [ps_db, as_db]))
}

//! `[rate_limit]` in served roles: rules by agent counted by the Person Server once the
//! agent's signature verified, scopes a role does not count refused by their key, and,
//! with a Redis, the wrong-guess throttle of several instances counted together.

use aauth_demos::world::{Request, World};
use aauth_keys::PrivateKey;
use aauth_keys::rand::OsRandom;
use aauth_keys::time::{Clock, SystemClock};
use aauth_metadata::store::redis::{Redis, RedisConfig, client};

use crate::serve::{Flow, Served, flow, person_server_config};
use crate::{aauth, assert_fails, scratch};

/// A POST of `body` to `url`, signed by `key` under `scheme` now.
fn signed_post(url: &str, body: &str, key: &PrivateKey, scheme: &aauth_headers::Scheme) -> Request {
    let mut req = Request::new(body.as_bytes().to_vec());
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = url.parse().unwrap();
    req.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    aauth_signing::sign_request_unique(&mut req, key, scheme, SystemClock.now(), &mut OsRandom)
        .unwrap();
    req
}

/// `scope = "agent"` at a served Person Server: the assistant's person-token requests
/// past the rule are `429` with `Retry-After`, counted only once signed (unsigned requests
/// to the same paths are not), and the rule's path alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_person_server_limits_each_agent_it_verified() {
    let dir = scratch("serve-agent-limit");
    let Flow {
        world,
        provider,
        ps_config,
        ..
    } = flow(&dir, |text| {
        format!(
            "{text}\n[rate_limit]\n[[rate_limit.rules]]\nscope = \"agent\"\npath = \"/person-token\"\nrequests = 2\nper_secs = 60\n"
        )
    })
    .await;
    let ps = Served::start(&dir, "person-server", &ps_config);
    world.alias("ps.example", ps.addr);
    world.alias("agent.example", provider.addr);
    let assistant = PrivateKey::ed25519_from_seed(&[0x22; 32]);
    let got = world
        .send(signed_post(
            "https://agent.example/agent-token",
            r#"{"agent":"aauth:assistant@agent.example"}"#,
            &assistant,
            &aauth_signing::hwk_scheme(assistant.public_key()),
        ))
        .await
        .unwrap();
    assert_eq!(got.status(), 200, "{}", provider.log());
    let token: serde_json::Value = serde_json::from_slice(got.body()).unwrap();
    let scheme = aauth_headers::Scheme::jwt(token["agent_token"].as_str().unwrap().to_owned());
    // Unsigned, the same requests are refused at the signature and count for no one.
    for _ in 0..3 {
        let mut unsigned = Request::new(br#"{"resource":"https://resource.example"}"#.to_vec());
        *unsigned.method_mut() = http::Method::POST;
        *unsigned.uri_mut() = "https://ps.example/person-token".parse().unwrap();
        let r = world.send(unsigned).await.unwrap();
        assert_eq!(r.status(), 401, "{}", ps.log());
    }
    let ask = || {
        signed_post(
            "https://ps.example/person-token",
            r#"{"resource":"https://resource.example"}"#,
            &assistant,
            &scheme,
        )
    };
    for n in 0..2 {
        let r = world.send(ask()).await.unwrap();
        assert_eq!(
            r.status(),
            200,
            "request {n}: {}\n{}",
            String::from_utf8_lossy(r.body()),
            ps.log()
        );
    }
    let refused = world.send(ask()).await.unwrap();
    assert_eq!(refused.status(), 429, "{}", ps.log());
    assert_eq!(refused.headers()["retry-after"], "30");
    let json: serde_json::Value = serde_json::from_slice(refused.body()).unwrap();
    assert_eq!(json["error"], "rate_limited");
}

/// A rule by Person Server at a Person Server, or by agent at an agent provider, would
/// count nothing: refused at start, by its key.
#[test]
fn a_scope_the_role_does_not_count_is_refused_by_its_key() {
    let dir = scratch("serve-scope-refused");
    let world = World::new().unwrap();
    let config = person_server_config(&world, &dir, &[]);
    let text = std::fs::read_to_string(&config).unwrap();
    for (role, scope) in [
        ("person-server", "person_server"),
        ("agent-provider", "agent"),
        ("resource-proxy", "person_server"),
    ] {
        std::fs::write(
            &config,
            format!(
                "{text}\n[rate_limit]\n[[rate_limit.rules]]\nscope = \"{scope}\"\nrequests = 2\nper_secs = 60\n"
            ),
        )
        .unwrap();
        let o = aauth(&dir, &["serve", role, "--config", config.to_str().unwrap()]);
        assert_fails(&o, 2, "rate_limit.rules.scope");
        assert_fails(&o, 2, &format!("{scope:?} is counted only by"));
        // `config check` judges it for the role its section names (a Person Server's,
        // which counts "agent" and not "person_server"), as `serve person-server` would.
        let o = aauth(&dir, &["config", "check", config.to_str().unwrap()]);
        if scope == "person_server" {
            assert_fails(&o, 2, "rate_limit.rules.scope");
        } else {
            assert!(o.status.success(), "{role}: {}", crate::stderr(&o));
        }
    }
}

/// Forgets the keys `pattern` matches (what earlier runs of a test left in the shared
/// Redis under a service's fixed prefix).
async fn forget(url: &str, pattern: &str) {
    let redis = Redis::connect(&RedisConfig::new(url).prefix(""))
        .await
        .unwrap();
    let mut eval = client::cmd("EVAL");
    eval.arg(
        "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end return 0",
    )
    .arg(0)
    .arg(pattern);
    redis.query::<i64>("test", &eval).await.unwrap();
}

/// Two Person Servers with `[rate_limit] redis`: wrong passwords sent to them in turn
/// are counted together (five are free, the sixth blocks), where each alone would have
/// counted five at most and never blocked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn person_servers_on_one_redis_throttle_guesses_together() {
    let Some(url) = aauth_test_support::services::redis_url(
        "person_servers_on_one_redis_throttle_guesses_together",
    ) else {
        return;
    };
    forget(&url, "aauth:https://ps.example:throttle:*").await;
    let dir = scratch("serve-throttle-redis");
    let world = World::new().unwrap();
    let config = person_server_config(&world, &dir, &[]);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("store = \"sqlite:ps.sqlite\"", "store = \"memory\"");
    std::fs::write(
        &config,
        format!("{text}\n[rate_limit]\nredis = \"{url}\"\n"),
    )
    .unwrap();
    let instances = [
        Served::start(&dir, "person-server", &config),
        Served::start(&dir, "person-server", &config),
    ];
    let page = "https://ps.example/interact?code=ABCD-EFGH";
    let mut statuses = Vec::new();
    for n in 0..10 {
        world.alias("ps.example", instances[n % 2].addr);
        let status = aauth_demos::process::sign_in(&world, page, "ABCD-EFGH", "alice", "guess")
            .await
            .unwrap();
        statuses.push(status);
        if status == 429 {
            break;
        }
    }
    let logs = || format!("{}\n{}", instances[0].log(), instances[1].log());
    assert_eq!(
        statuses[..6],
        [401; 6],
        "five free, the sixth counted\n{}",
        logs()
    );
    // The seventh comes within the sixth's block (1 s) or, counted, makes a longer one.
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}\n{}", logs());
}

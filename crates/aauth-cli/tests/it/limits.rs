//! `[rate_limit]` in served roles: with a Redis, the wrong-guess throttle of several
//! instances counts together.

use aauth_demos::world::World;
use aauth_metadata::store::redis::{Redis, RedisConfig, client};

use crate::scratch;
use crate::serve::{Served, person_server_config};

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

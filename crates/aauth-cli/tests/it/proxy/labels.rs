//! The metrics' `route` label of the proxy's answers: a configured route's answers, its
//! refusals and its upstream's successes included, are counted under the label of its
//! configured path, and no path a client spells (another case of the letters, a path no
//! route has, a path under a `/*` route) takes one.

use super::*;

/// `/metrics` after one unsigned `GET` of each path (answered without the upstream).
async fn scraped(name: &str, fold_case: bool, paths: &[&str]) -> String {
    let dir = scratch(name);
    let world = World::new().unwrap();
    let config = proxy_config(
        &world,
        &dir,
        free_port(),
        &format!("http://127.0.0.1:{}", free_port()),
        &[],
    );
    let metrics = free_port();
    let mut text = std::fs::read_to_string(&config).unwrap().replace(
        "[egress]",
        &format!("[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\n[egress]"),
    );
    if fold_case {
        text = text.replace(
            "name = \"Example Files\"",
            "case_insensitive_paths = true\nname = \"Example Files\"",
        );
    }
    std::fs::write(&config, text).unwrap();
    let proxy = Served::start(&dir, "resource-proxy", &config);
    world.alias("resource.example", proxy.addr);
    for path in paths {
        let url = format!("https://resource.example{path}");
        let status = get(&world, &url, &[]).await.status();
        assert_ne!(status, StatusCode::OK, "{path}: answered unsigned");
    }
    scrape(metrics)
}

/// The requests counted under `route` with `status`, as the scrape says (0 if none).
fn count(scraped: &str, route: &str, status: u16) -> u32 {
    let labels = format!("route=\"{route}\",status=\"{status}\"");
    scraped
        .lines()
        .filter(|l| l.starts_with("aauth_http_requests_total{") && l.contains(&labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u32>().ok())
        .sum()
}

#[tokio::test]
async fn a_routes_refusals_are_counted_under_its_configured_path() {
    let text = scraped(
        "proxy-labels",
        false,
        &[
            "/files/a",
            "/files/b/c",
            "/agent/x",
            "/FILES/a",
            "/made-up/1",
        ],
    )
    .await;
    assert_eq!(count(&text, "/files", 401), 2, "{text}");
    assert_eq!(count(&text, "/agent", 401), 1, "{text}");
    // No route: 404, `other`.
    assert!(!text.contains("route=\"/FILES\""), "{text}");
    assert!(!text.contains("route=\"/made-up\""), "{text}");
    assert_eq!(count(&text, "other", 404), 2, "{text}");
}

#[tokio::test]
async fn a_case_a_client_spells_is_counted_under_the_configured_spelling() {
    let text = scraped(
        "proxy-labels-fold",
        true,
        &["/FILES/a", "/Files/b", "/files/c"],
    )
    .await;
    // Each under the route, and so under its configured spelling.
    assert_eq!(count(&text, "/files", 401), 3, "{text}");
    assert_eq!(count(&text, "other", 401), 0, "{text}");
    assert!(
        !text.contains("route=\"/FILES\"") && !text.contains("route=\"/Files\""),
        "{text}"
    );
}

/// A route of every path (`/*`) whose upstream answers whatever is asked: its successes
/// are counted under the route's label (`/`), never under the paths the client chose.
#[tokio::test]
async fn a_catch_all_routes_successes_take_its_label_not_the_clients_paths() {
    let metrics = free_port();
    let s = AgentSetup::start_with("proxy-labels-catch-all", |text| {
        text.replace(
            "[egress]",
            &format!("[metrics]\nlisten = \"127.0.0.1:{metrics}\"\n\n[egress]"),
        ) + "[[resource_proxy.routes]]\npath = \"/*\"\naccess = \"agent-token\"\n"
    })
    .await;
    for path in ["/made-up/1", "/invented/2", "/agent/x"] {
        let answer = signed_send(&s.world, s.proxy.addr, path, &[]).await;
        assert_eq!(answer.status(), StatusCode::OK, "{path}");
    }
    assert_eq!(s.seen.calls(), 3);
    let text = scrape(metrics);
    assert_eq!(count(&text, "/", 200), 2, "{text}");
    assert_eq!(count(&text, "/agent", 200), 1, "{text}");
    assert!(
        !text.contains("route=\"/made-up\"") && !text.contains("route=\"/invented\""),
        "{text}"
    );
}

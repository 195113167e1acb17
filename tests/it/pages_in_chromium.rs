//! The person's pages in headless Chromium (issue 16): sign-in, the consent page of a
//! token asked under a mission, the dashboard, a revocation confirmed there, and the
//! agent's next request with the revoked token refused. Screenshots of every page at
//! 1280×800 and 390×844 go to `target/screenshots/`; axe-core runs in each page and any
//! serious or critical violation fails the test.
//!
//! Needs `chromium`, `chromedriver` and `tests/interop/axe-core/node_modules` (`cargo xtask
//! ci interop-deps`). Without them the test says so loudly and returns, unless
//! `AAUTH_REQUIRE_BROWSER=1` (set by `.ci/run`), in which case it fails.

use std::path::Path;

use aauth_demos::browser::find_browser;
use aauth_demos::pages_in_browser::pages_in_browser;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_consents_under_a_mission_then_revokes_on_the_dashboard() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let axe = std::fs::read_to_string(
        root.join("tests/interop/axe-core/node_modules/axe-core/axe.min.js"),
    );
    let found = find_browser().and_then(|b| {
        axe.map(|a| (b, a)).map_err(|err| {
            format!("axe-core is not installed ({err}; run `cargo xtask ci interop-deps`)")
        })
    });
    let ((browser, driver), axe) = match found {
        Ok(found) => found,
        Err(why) => {
            assert!(
                std::env::var("AAUTH_REQUIRE_BROWSER").as_deref() != Ok("1"),
                "the browser test is required here but cannot run: {why}"
            );
            eprintln!("\n!!! SKIPPED the person's pages in a real browser: {why}.\n");
            return;
        }
    };
    let shots = root.join("target/screenshots");
    let seen = pages_in_browser(&browser, &driver, &shots, &axe)
        .await
        .unwrap_or_else(|err| panic!("{err}"));

    // The consent page: the resource by its name, the scope by its description, the
    // mission and its budget.
    for shown in [
        "Example Files",
        "calendar.read: Read your calendar",
        "Plan the team offsite",
        "Budget: 0.00 USD spent of 25.00 USD, 25.00 USD left.",
    ] {
        assert!(seen.consent.contains(shown), "{shown}: {}", seen.consent);
    }
    assert_eq!(seen.first_call, 200);
    // The dashboard: the agent, the mission, the token.
    for shown in [
        "aauth:assistant@agent.example",
        "Plan the team offsite",
        "auth token",
        "https://resource.example",
    ] {
        assert!(
            seen.dashboard.contains(shown),
            "{shown}: {}",
            seen.dashboard
        );
    }
    assert!(
        seen.revoked.contains("The token is revoked"),
        "{}",
        seen.revoked
    );
    // The resource, told by the Person Server, refuses the revoked token.
    let (status, headers) = seen.refused.expect("the agent asked the resource again");
    assert_eq!(status, 401, "{headers}");
    assert!(headers.contains("revoked_jwt"), "{headers}");

    // Every page photographed at both sizes, and accessible.
    assert_eq!(seen.screenshots.len(), 8, "{:?}", seen.screenshots);
    for shot in &seen.screenshots {
        let png = std::fs::read(shot).unwrap();
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000,
            "{}",
            shot.display()
        );
    }
    assert!(
        seen.violations.is_empty(),
        "axe-core: {:#?}",
        seen.violations
    );
}

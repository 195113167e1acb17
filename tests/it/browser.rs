//! The consent page in a real browser: headless Chromium signs in as alice, reads the
//! request, approves; the agent's poll then yields the person token and its call goes
//! through with an auth token. A screenshot of the consent page is saved under
//! `target/browser/`.
//!
//! Needs `chromium` and `chromedriver` (Debian: `apt-get install chromium
//! chromium-driver`; `.ci/run` installs them). Without them the test says so loudly and
//! returns, unless `AAUTH_REQUIRE_BROWSER=1` (set by `.ci/run`), in which case it fails.

use std::path::Path;

use aauth_demos::browser::{consent_in_browser, find_browser};

#[tokio::test]
async fn a_person_approves_in_chromium_and_the_agent_gets_through() {
    let (browser, driver) = match find_browser() {
        Ok(found) => found,
        Err(why) => {
            assert!(
                std::env::var("AAUTH_REQUIRE_BROWSER").as_deref() != Ok("1"),
                "the browser test is required here but cannot run: {why}"
            );
            eprintln!(
                "\n!!! SKIPPED the consent page in a real browser: {why}. The page was checked by the demos' form client only.\n"
            );
            return;
        }
    };
    let shots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/browser");
    let seen = consent_in_browser(&browser, &driver, &shots)
        .await
        .unwrap_or_else(|err| panic!("{err}"));

    // What the resource asserts and what the agent asserts are separate parts of the page.
    assert!(
        seen.resource_section.contains("https://resource.example"),
        "{}",
        seen.resource_section
    );
    // ... with what its metadata says of it (PS-12).
    assert!(
        seen.resource_section.contains("Example Files")
            && seen.resource_section.contains("auth-token"),
        "{}",
        seen.resource_section
    );
    assert!(
        !seen
            .resource_section
            .contains("aauth:assistant@agent.example"),
        "{}",
        seen.resource_section
    );
    assert!(
        seen.agent_section.contains("aauth:assistant@agent.example")
            && seen.agent_section.contains("https://agent.example"),
        "{}",
        seen.agent_section
    );
    assert!(
        seen.agent_section.contains("Approving links it"),
        "an unbound agent is said to be unbound: {}",
        seen.agent_section
    );
    let png = std::fs::read(&seen.screenshot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000);
    assert!(seen.done_page.contains("Approved"), "{}", seen.done_page);

    // The agent's poll yielded the person token, and the call went through as alice.
    assert_eq!(seen.status, 200, "{}", seen.body);
    assert_eq!(seen.body["message"], "Access granted");
    assert_eq!(seen.body["person"]["iss"], "https://ps.example");
    assert!(
        seen.body["person"]["sub"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert_eq!(seen.body["scope"], "calendar.read");
}

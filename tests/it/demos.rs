//! Each ready demo runs and its transcript shows what the draft requires.

use aauth_demos::DEMOS;
use aauth_demos::Step as TranscriptStep;

fn run(n: u8) -> aauth_demos::Transcript {
    let d = DEMOS.iter().find(|d| d.number == n).unwrap();
    (d.run)().unwrap_or_else(|e| panic!("demo {n}: {e}"))
}

#[test]
fn d00_core() {
    let t = run(0);
    let text = t.render();
    assert_eq!(t.steps.len(), 14, "{text}");
    assert!(
        text.contains("verifies the signature and the agent token: aauth:assistant@agent.example")
    );
    assert!(text.contains(r#"signature-input: sig=("@method" "@authority" "@path" "signature-key");created=1800000000"#), "{text}");
    assert!(
        text.contains(r#""content-type" "content-digest" "signature-key""#),
        "{text}"
    );
    // The eight refusals, with the draft's codes and headers.
    let refusals: Vec<&aauth_demos::Step> = t
        .steps
        .iter()
        .filter(|s| {
            s.detail
                .first()
                .is_some_and(|d| d.starts_with("HTTP/1.1 401"))
        })
        .collect();
    assert_eq!(refusals.len(), 8, "{text}");
    let codes: Vec<&str> = refusals.iter().map(|s| s.detail[1].as_str()).collect();
    assert_eq!(
        codes,
        [
            "signature-error: error=invalid_signature",
            "signature-error: error=invalid_signature",
            "signature-error: error=invalid_signature",
            "signature-error: error=invalid_signature",
            "signature-error: error=clock_skew",
            "signature-error: error=invalid_signature",
            r#"signature-error: error=invalid_input, required_input=("@method" "@authority" "@path" "signature-key" "content-digest" "content-type")"#,
            "signature-error: error=unsupported_scheme",
        ],
        "{text}"
    );
    assert_eq!(refusals[7].detail[2], "accept-signature-scheme: jwt");
    // The captured POST sent again, and relayed to another host: both refused.
    assert!(refusals[1].detail[2].contains("replay"), "{text}");
    assert!(
        refusals[2].detail[2].contains("addressed to ps.example, not to this server"),
        "{text}"
    );
    assert!(
        refusals[5].detail[2].contains("Content-Digest sha-256 does not match"),
        "{text}"
    );
}

#[test]
fn registry_numbers_run_0_to_13() {
    let numbers: Vec<u8> = DEMOS.iter().map(|d| d.number).collect();
    assert_eq!(numbers, (0..=13).collect::<Vec<_>>());
    let slugs: std::collections::BTreeSet<&str> = DEMOS.iter().map(|d| d.slug).collect();
    assert_eq!(slugs.len(), DEMOS.len(), "each demo has its own slug");
}

#[test]
fn d01_pseudonymous() {
    let t = run(1);
    let text = t.render();
    assert_eq!(t.steps.len(), 7, "{text}");
    // The unsigned request to an agent-token route, as -11 names it.
    assert!(
        text.contains("GET https://resource.example/agents\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "HTTP/1.1 401 Unauthorized\n      aauth-requirement: requirement=agent-token"
        ),
        "{text}"
    );
    // Pseudonymous access names the key's thumbprint, GET and POST.
    assert!(
        text.contains(r#"signature-key: sig=hwk;kty="OKP";crv="Ed25519";x=""#),
        "{text}"
    );
    assert_eq!(text.matches("HTTP/1.1 200 OK").count(), 2, "{text}");
    assert!(
        text.contains(r#""scheme":"hwk""#) && text.contains(r#""method":"POST""#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"("@method" "@authority" "@path" "content-type" "content-digest" "signature-key")"#
        ),
        "{text}"
    );
    // hwk where an agent token is required.
    assert!(
        text.contains(
            "signature-error: error=unsupported_scheme\n      accept-signature-scheme: jwt"
        ),
        "{text}"
    );
}

#[test]
fn d02_agent_identity() {
    let t = run(2);
    let text = t.render();
    assert_eq!(t.steps.len(), 9, "{text}");
    // The agent's client fetched its token from the provider, signed with its enrolled
    // key, and an unenrolled key got nothing.
    assert!(
        text.contains("POST https://agent.example/agent-token")
            && text.contains("signature-key: sig=hwk;kty=\"OKP\""),
        "{text}"
    );
    assert!(
        text.contains(r#""error":"unauthorized_agent""#) && text.contains("HTTP/1.1 403 Forbidden"),
        "{text}"
    );
    // The provider's document and the token's decoded claims are shown.
    assert!(
        text.contains(
            r#"{"issuer":"https://agent.example","jwks_uri":"https://agent.example/jwks.json","accept_signature_algs":["Ed25519","ES256"]}"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"header: {"alg":"Ed25519","kid":"key-1","typ":"aa-agent+jwt"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#""sub":"aauth:assistant@agent.example""#)
            && text.contains(r#""cnf":{"jwk":"#),
        "{text}"
    );
    // Unsigned → agent-token requirement; signed → admitted and named, one discovery fetch.
    assert!(
        text.contains("aauth-requirement: requirement=agent-token"),
        "{text}"
    );
    assert!(
        text.contains(
            r#"body: {"agent":"aauth:assistant@agent.example","message":"Access granted"}"#
        ),
        "{text}"
    );
    assert!(
        text.contains("(the resource fetched metadata and JWKS once: 1 fetch)"),
        "{text}"
    );
    assert!(
        text.contains(
            "verified the token once and checks only this request's signature now (still 1 fetch)"
        ),
        "{text}"
    );
    // An unpublished key: unknown_key.
    assert!(
        text.contains("signature-error: error=unknown_key"),
        "{text}"
    );
}

#[test]
fn d03_autonomous_three_party() {
    let t = run(3);
    let text = t.render();
    assert_eq!(t.steps.len(), 12, "{text}");
    // The order the draft prescribes: agent token → person-token challenge → person token
    // → auth-token challenge with a resource token → auth token → admitted.
    let agent_steps: Vec<&str> = t
        .steps
        .iter()
        .filter(|s| s.actor == "agent")
        .map(|s| s.detail.first().map_or("", String::as_str))
        .collect();
    assert_eq!(
        agent_steps,
        [
            "POST https://agent.example/agent-token",
            "GET https://resource.example/files/report",
            "GET https://ps.example/.well-known/aauth-person.json",
            "POST https://ps.example/person-token",
            "GET https://resource.example/files/report",
            "POST https://ps.example/auth-token",
            "GET https://resource.example/files/report",
            "GET https://resource.example/files/report",
        ],
        "{text}"
    );
    assert!(
        text.contains("aauth-requirement: requirement=person-token"),
        "{text}"
    );
    assert!(
        text.contains("aauth-requirement: requirement=auth-token;resource-token=\""),
        "{text}"
    );
    // The tokens: typ and the claims that chain them.
    assert!(
        text.contains(r#"header: {"alg":"Ed25519","kid":"ps-1","typ":"aa-person+jwt"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"header: {"alg":"Ed25519","kid":"rs-1","typ":"aa-resource+jwt"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"header: {"alg":"Ed25519","kid":"ps-1","typ":"aa-auth+jwt"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#""aud":"https://ps.example","#) && text.contains(r#""presented_jti":"#),
        "{text}"
    );
    assert!(text.contains(r#""scope":"files.read""#), "{text}");
    // Admitted as the person (the directed sub at this resource), twice, the second time
    // with nothing but the cached auth token.
    let admitted = text
        .matches(r#""person":{"iss":"https://ps.example","sub":"#)
        .count();
    assert_eq!(admitted, 2, "{text}");
}

#[test]
fn d04_consent() {
    let t = run(4);
    let text = t.render();
    // The 202 carries a pending URL, Retry-After, and a Crockford code in the requirement.
    assert!(
        text.contains("HTTP/1.1 202 Accepted\n      location: /pending/"),
        "{text}"
    );
    assert!(
        text.contains(
            "aauth-requirement: requirement=interaction;url=\"https://ps.example/interact\";code=\""
        ),
        "{text}"
    );
    // The person signs in (cookies are __Host-, Secure, HttpOnly, SameSite=Strict),
    // sees the request, approves; secrets never appear in the transcript.
    assert!(
        text.contains(
            "set-cookie: __Host-aauth-session=…; Path=/; Secure; HttpOnly; SameSite=Strict"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "page: An agent asks for your approval Signed in as alice . Not you? Sign out The resource https://resource.example"
        ),
        "{text}"
    );
    assert!(text.contains("page: Person Server Approved."), "{text}");
    assert!(
        !text.contains("correct horse"),
        "the password leaked into the transcript"
    );
    // The long poll returns the person token; the flow completes as alice.
    assert!(text.contains("prefer: wait=20"), "{text}");
    assert!(text.contains(r#""person_token":"#), "{text}");
    assert!(
        text.contains(r#""scope":"calendar.read""#)
            && text.contains(
                "HTTP/1.1 200 OK\n      body: {\"message\":\"Access granted\",\"person\""
            ),
        "{text}"
    );
    let person_steps = t.steps.iter().filter(|s| s.actor == "person").count();
    assert_eq!(person_steps, 4, "{text}");
}

/// The claims of a compact JWT, unverified (the demo verified it on the wire).
fn claims_of(token: &str) -> serde_json::Value {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn d07_call_chaining() {
    let t = run(7);
    let text = t.render();
    let firsts = |actor: &str| -> Vec<&str> {
        t.steps
            .iter()
            .filter(|s| s.actor == actor)
            .map(|s| s.detail.first().map_or("", String::as_str))
            .collect()
    };
    assert_eq!(
        firsts("agent"),
        [
            "POST https://agent.example/agent-token",
            "GET https://travel.example/trips/next",
            "GET https://ps.example/.well-known/aauth-person.json",
            "POST https://ps.example/person-token",
            "GET https://travel.example/trips/next",
            "POST https://ps.example/auth-token",
            "GET https://travel.example/trips/next",
        ],
        "{text}"
    );
    assert_eq!(
        firsts("travel.example"),
        [
            "GET https://resource.example/calendar/today",
            "GET https://ps.example/.well-known/aauth-person.json",
            "POST https://ps.example/person-token",
            "GET https://resource.example/calendar/today",
            "POST https://ps.example/auth-token",
            "GET https://resource.example/calendar/today",
        ],
        "{text}"
    );
    // Both of the intermediary's Person Server requests carry the upstream token: the
    // agent's auth token for travel.example.
    let step = |actor: &str, n: usize| -> &aauth_demos::Step {
        t.steps.iter().filter(|s| s.actor == actor).nth(n).unwrap()
    };
    // The request's body (0) or the response's (1).
    let body_of = |s: &aauth_demos::Step, which: usize| -> serde_json::Value {
        let line = s
            .detail
            .iter()
            .filter(|l| l.starts_with("body: "))
            .nth(which)
            .unwrap();
        serde_json::from_str(line.trim_start_matches("body: ")).unwrap()
    };
    let upstream = body_of(step("agent", 5), 1)["auth_token"]
        .as_str()
        .unwrap()
        .to_owned();
    for n in [2, 4] {
        let sent = body_of(step("travel.example", n), 0);
        assert_eq!(
            sent["upstream_token"].as_str(),
            Some(upstream.as_str()),
            "{text}"
        );
    }
    let person = claims_of(
        body_of(step("travel.example", 2), 1)["person_token"]
            .as_str()
            .unwrap(),
    );
    let down = claims_of(
        body_of(step("travel.example", 4), 1)["auth_token"]
            .as_str()
            .unwrap(),
    );
    let up = claims_of(&upstream);
    // Issued for the person the upstream names, with a sub of their own at the calendar,
    // bound to the planner's key, never outliving the upstream token, and no `act`.
    assert_eq!(up["aud"], "https://travel.example");
    assert_eq!(down["aud"], "https://resource.example");
    assert_eq!(person["sub"], down["sub"]);
    assert_ne!(
        down["sub"], up["sub"],
        "directed: another sub at another resource"
    );
    assert_ne!(
        down["cnf"], up["cnf"],
        "bound to the planner's key, not the agent's"
    );
    assert!(person["exp"].as_u64() <= up["exp"].as_u64());
    assert!(down["exp"].as_u64() <= up["exp"].as_u64());
    assert!(down.get("act").is_none() && person.get("act").is_none());
    // The trip came back with alice's calendar, read as her sub at the calendar.
    assert!(
        text.contains(r#""message":"Trip planned around your calendar""#),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            r#""person":{{"iss":"https://ps.example","sub":"{}"}}"#,
            down["sub"].as_str().unwrap()
        )),
        "{text}"
    );
}

// A section of a transcript (from its `proposes a mission naming …` step): its mission, its steps
// by `actor`, a step's request (0) or response (1) body, and the mission's log as (event,
// decision, detail) for a resource.
fn mission(steps: &[TranscriptStep]) -> String {
    steps
        .iter()
        .find_map(|s| s.summary.strip_prefix("mission approved: "))
        .unwrap()
        .to_owned()
}
fn of<'a>(steps: &'a [TranscriptStep], actor: &str) -> Vec<&'a TranscriptStep> {
    steps.iter().filter(|s| s.actor == actor).collect()
}
fn find<'a>(steps: &'a [TranscriptStep], actor: &str, prefix: &str) -> &'a TranscriptStep {
    of(steps, actor)
        .into_iter()
        .find(|s| s.summary.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {actor} step {prefix}"))
}
fn body_of(s: &TranscriptStep, which: usize) -> serde_json::Value {
    let line = s
        .detail
        .iter()
        .filter(|l| l.starts_with("body: "))
        .nth(which)
        .unwrap_or_else(|| panic!("no body {which} in {s:?}"));
    serde_json::from_str(line.trim_start_matches("body: ")).unwrap()
}
fn logged(steps: &[TranscriptStep], resource: &str) -> Vec<(String, String, String)> {
    let s = steps
        .iter()
        .find(|s| s.summary.starts_with("the log of mission "))
        .unwrap();
    assert_eq!(s.summary, format!("the log of mission {}", mission(steps)));
    s.detail
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["resource"] == resource)
        .map(|e| {
            (
                e["event"].as_str().unwrap().to_owned(),
                e["decision"].as_str().unwrap().to_owned(),
                e["detail"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Call chaining under a mission: the planner's tokens at the calendar carry the mission
/// of the auth token the agent brought travel.example, and the Person Server logs its
/// chained requests in that mission's log; a mission that does not name the calendar
/// refuses the chained request.
#[test]
fn d07_call_chaining_under_a_mission() {
    let t = aauth_demos::demo7_under_mission().unwrap_or_else(|e| panic!("{e}"));
    let text = t.render();
    let sections: Vec<usize> = t
        .steps
        .iter()
        .enumerate()
        .filter(|(_, s)| s.summary.starts_with("proposes a mission naming "))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(sections.len(), 2, "{text}");
    let (named, unnamed) = (&t.steps[sections[0]..sections[1]], &t.steps[sections[1]..]);
    let s256 = mission(named);

    // The agent asked under the mission, and its auth token for travel.example (the
    // upstream token) carries it.
    let asked = body_of(
        find(named, "agent", "POST https://ps.example/person-token"),
        0,
    );
    assert_eq!(asked["mission_s256"], s256.as_str(), "{text}");
    let upstream = body_of(
        find(named, "agent", "POST https://ps.example/auth-token"),
        1,
    )["auth_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let up = claims_of(&upstream);
    assert_eq!(up["aud"], "https://travel.example");
    assert_eq!(up["mission_s256"], s256.as_str(), "{text}");

    // The planner's chained calls: every Person Server request carries the upstream token
    // and names no mission of its own; the calendar read succeeds.
    assert_eq!(
        of(named, "travel.example")
            .iter()
            .map(|s| s.summary.as_str())
            .collect::<Vec<_>>(),
        [
            "GET https://resource.example/calendar/today → 401 Unauthorized",
            "GET https://ps.example/.well-known/aauth-person.json → 200 OK",
            "POST https://ps.example/person-token → 200 OK",
            "GET https://resource.example/calendar/today → 401 Unauthorized",
            "POST https://ps.example/auth-token → 200 OK",
            "GET https://resource.example/calendar/today → 200 OK",
        ],
        "{text}"
    );
    let person_step = find(
        named,
        "travel.example",
        "POST https://ps.example/person-token",
    );
    let auth_step = find(
        named,
        "travel.example",
        "POST https://ps.example/auth-token",
    );
    for step in [person_step, auth_step] {
        let sent = body_of(step, 0);
        assert_eq!(sent["upstream_token"], upstream.as_str(), "{text}");
        assert!(sent.get("mission_s256").is_none(), "{text}");
    }
    // The downstream person and auth tokens carry the upstream token's mission.
    let person = claims_of(body_of(person_step, 1)["person_token"].as_str().unwrap());
    let down = claims_of(body_of(auth_step, 1)["auth_token"].as_str().unwrap());
    assert_eq!(person["aud"], "https://resource.example");
    assert_eq!(down["aud"], "https://resource.example");
    assert_eq!(person["mission_s256"], up["mission_s256"], "{text}");
    assert_eq!(down["mission_s256"], up["mission_s256"], "{text}");
    assert_ne!(down["cnf"], up["cnf"], "the planner's key, not the agent's");
    assert_eq!(
        of(named, "agent").last().unwrap().summary,
        "GET https://travel.example/trips/next → 200 OK",
        "{text}"
    );
    assert!(
        text.contains(r#""message":"Trip planned around your calendar""#),
        "{text}"
    );
    // The mission's log records the chained requests, beside the agent's own.
    let permitted = |event: &str| (event.to_owned(), "permit".to_owned(), String::new());
    assert_eq!(
        logged(named, "https://travel.example"),
        [permitted("person_token"), permitted("auth_token")],
        "{text}"
    );
    assert_eq!(
        logged(named, "https://resource.example"),
        [permitted("person_token"), permitted("auth_token")],
        "{text}"
    );

    // A mission naming travel.example alone: the chained request for the calendar is
    // held to it, refused, and logged as refused; the trip is not planned.
    let s256 = mission(unnamed);
    let upstream = body_of(
        find(unnamed, "agent", "POST https://ps.example/auth-token"),
        1,
    )["auth_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        claims_of(&upstream)["mission_s256"],
        s256.as_str(),
        "{text}"
    );
    let refused = find(
        unnamed,
        "travel.example",
        "POST https://ps.example/person-token",
    );
    assert!(refused.summary.ends_with("→ 403 Forbidden"), "{text}");
    assert_eq!(body_of(refused, 0)["upstream_token"], upstream.as_str());
    assert!(
        refused
            .detail
            .iter()
            .any(|l| l.contains("resource_not_approved")),
        "{text}"
    );
    assert_eq!(
        of(unnamed, "agent").last().unwrap().summary,
        "GET https://travel.example/trips/next → 502 Bad Gateway",
        "{text}"
    );
    assert_eq!(
        logged(unnamed, "https://resource.example"),
        [(
            "person_token".to_owned(),
            "deny".to_owned(),
            "resource_not_approved".to_owned()
        )],
        "{text}"
    );
}

#[test]
fn d08_clarification() {
    let t = run(8);
    let text = t.render();
    // The person asks on the consent page; the agent's long poll returns the question.
    assert!(
        text.contains("aauth-requirement: requirement=clarification"),
        "{text}"
    );
    assert!(
        text.contains(
            r#"body: {"clarification":"Why do you need to know who I am at the calendar?","status":"interacting"}"#
        ),
        "{text}"
    );
    // The agent answers at the pending URL, and the request goes back to the person.
    assert!(
        text.contains(r#"body: {"action":"clarification_response","clarification_response":"To find a free slot"#),
        "{text}"
    );
    assert!(
        text.contains("answers at the pending URL: action clarification_response"),
        "{text}"
    );
    // The person reads the answer labelled as the agent's assertion, with one question
    // fewer left, and approves.
    assert!(
        text.contains("The agent answered: To find a free slot for the team meeting"),
        "{text}"
    );
    assert!(text.contains("Ask (4 of 5 questions left)"), "{text}");
    assert!(
        text.contains("page: Person Server Approved. You can return to your agent."),
        "{text}"
    );
    // Then the ordinary path to an admitted call.
    let last = t.steps.last().unwrap();
    assert!(last.detail.iter().any(|d| d == "HTTP/1.1 200 OK"), "{text}");
    assert!(
        last.detail
            .iter()
            .any(|d| d.contains(r#""message":"Access granted""#)),
        "{text}"
    );
}

#[test]
fn d09_interaction_chaining() {
    let t = run(9);
    let text = t.render();
    let of = |actor: &str| -> Vec<&aauth_demos::Step> {
        t.steps.iter().filter(|s| s.actor == actor).collect()
    };
    // travel.example answers the agent with its own 202 and code, not the Person Server's.
    let agent = of("agent");
    let deferred = agent[6];
    assert!(
        deferred.detail.iter().any(|l| l == "HTTP/1.1 202 Accepted")
            && deferred.detail.iter().any(|l| l.starts_with(
                r#"aauth-requirement: requirement=interaction;url="https://travel.example/interact";code=""#
            )),
        "{text}"
    );
    // Offered to the Person Server first, which has no channel of its own: 424.
    assert!(
        agent[7]
            .detail
            .iter()
            .any(|l| l == "HTTP/1.1 424 Failed Dependency"),
        "{text}"
    );
    assert!(
        agent[8]
            .summary
            .starts_with("tells alice: open https://travel.example/interact?code="),
        "{text}"
    );
    // The person goes through travel.example to the Person Server, signs in, approves
    // what the planner asks.
    let person = of("person");
    assert!(
        person[0]
            .detail
            .iter()
            .any(|l| l.starts_with("location: https://ps.example/interact?code=")),
        "{text}"
    );
    let consent = person[3].detail.join("\n");
    assert!(
        consent.contains("https://resource.example")
            && consent.contains("aauth:planner@travel.example"),
        "{text}"
    );
    // Downstream: the planner's person-token request carried the upstream token and was
    // deferred for alice; once she approved, its poll got the token, and the calendar
    // was read with tokens from the same chain.
    let planner = of("travel.example");
    let asked = planner
        .iter()
        .find(|s| s.summary.contains("deferred (202)"))
        .expect("the planner's request was deferred");
    assert!(
        asked
            .detail
            .iter()
            .any(|l| l.contains("\"upstream_token\":\"")),
        "{text}"
    );
    assert!(
        planner
            .iter()
            .any(|s| s.detail.iter().any(|l| l.contains("\"person_token\":\""))),
        "{text}"
    );
    assert_eq!(
        planner.last().map(|s| s.detail.first().map(String::as_str)),
        Some(Some("GET https://resource.example/calendar/today")),
        "{text}"
    );
    // The agent's poll of travel.example's pending URL returns the trip.
    let last = agent.last().unwrap();
    assert!(
        last.detail
            .iter()
            .any(|l| l.contains("Trip planned around your calendar")),
        "{text}"
    );
}

#[test]
fn d11_four_party() {
    let t = run(11);
    let text = t.render();
    let by = |actor: &str| -> Vec<&str> {
        t.steps
            .iter()
            .filter(|s| s.actor == actor)
            .map(|s| s.detail.first().map_or("", String::as_str))
            .collect()
    };
    // The agent's client does exactly what it does in three-party access.
    assert_eq!(
        by("agent"),
        [
            "POST https://agent.example/agent-token",
            "GET https://resource.example/files/report",
            "GET https://ps.example/.well-known/aauth-person.json",
            "POST https://ps.example/person-token",
            "GET https://resource.example/files/report",
            "POST https://ps.example/auth-token",
            "GET https://resource.example/files/report",
            "GET https://resource.example/files/report",
        ],
        "{text}"
    );
    // The Person Server asks the resource's Access Server, signed as itself.
    assert_eq!(
        by("person server"),
        [
            "GET https://as.example/.well-known/aauth-access.json",
            "POST https://as.example/auth-token",
        ],
        "{text}"
    );
    assert!(
        text.contains(r#"signature-key: sig=jwks_uri;id="https://ps.example";dwk="aauth-person.json";kid="ps-1""#),
        "{text}"
    );
    assert!(
        text.contains(r#""aud":"https://as.example""#),
        "the resource token is for the AS: {text}"
    );
    assert!(
        text.contains(r#"header: {"alg":"Ed25519","kid":"as-1","typ":"aa-auth+jwt"}"#)
            && text.contains(r#""iss":"https://as.example","dwk":"aauth-access.json","aud":"https://resource.example""#)
            && text.contains(r#""ps":"https://ps.example""#),
        "{text}"
    );
    // Admitted twice, the second time with the cached token only.
    assert_eq!(
        text.matches(r#""message":"Access granted""#).count(),
        2,
        "{text}"
    );
}

#[test]
fn d10_authorization_endpoint() {
    let t = run(10);
    let text = t.render();
    let requests: Vec<&str> = t
        .steps
        .iter()
        .filter(|s| s.actor == "agent")
        .map(|s| s.detail.first().map_or("", String::as_str))
        .collect();
    assert_eq!(
        requests,
        [
            "GET https://resource.example/.well-known/aauth-resource.json",
            // AG-70: the agent token, fresh enough to cap a person token, before the
            // Person Server is asked.
            "POST https://agent.example/agent-token",
            "GET https://ps.example/.well-known/aauth-person.json",
            "POST https://ps.example/person-token",
            "POST https://resource.example/authorize",
            "POST https://ps.example/auth-token",
            "GET https://resource.example/calendar/today",
            "GET https://resource.example/.well-known/aauth-resource.json",
            "POST https://resource.example/authorize",
        ],
        "{text}"
    );
    // The authorization request is signed with the person token and covers its body.
    let authorize = t
        .steps
        .iter()
        .find(|s| {
            s.detail
                .first()
                .is_some_and(|l| l == "POST https://resource.example/authorize")
        })
        .unwrap();
    let lines = authorize.detail.join("\n");
    assert!(
        lines.contains(r#"body: {"scope":"calendar.read"}"#),
        "{lines}"
    );
    assert!(lines.contains("\"content-digest\""), "{lines}");
    assert!(lines.contains(r#"body: {"resource_token":"#), "{lines}");
    // The first call needs no challenge; an unknown scope is refused by name.
    assert!(
        !text.contains("requirement=person-token") && !text.contains("requirement=auth-token"),
        "{text}"
    );
    assert!(text.contains(r#""error":"invalid_scope""#), "{text}");
}

#[test]
fn d06_subagents() {
    let t = run(6);
    let text = t.render();
    assert!(
        text.contains(r#""sub":"aauth:assistant+search@agent.example""#)
            && text.contains(r#""parent_agent":"aauth:assistant@agent.example""#),
        "{text}"
    );
    // The parent signs every Person Server request and carries the sub-agent's token.
    let ps_posts: Vec<&aauth_demos::Step> = t
        .steps
        .iter()
        .filter(|s| {
            s.detail
                .first()
                .is_some_and(|l| l.starts_with("POST https://ps.example/"))
        })
        .collect();
    assert_eq!(ps_posts.len(), 3, "{text}");
    for step in &ps_posts[..2] {
        let lines = step.detail.join("\n");
        assert!(lines.contains(r#""subagent_token":""#), "{lines}");
        assert!(lines.contains("HTTP/1.1 200 OK"), "{lines}");
    }
    // The sub-agent's own request (the third) is refused.
    assert!(
        ps_posts[2]
            .detail
            .join("\n")
            .contains("HTTP/1.1 400 Bad Request"),
        "{text}"
    );
    assert!(
        text.contains(r#""error":"invalid_subagent_token""#),
        "{text}"
    );
    assert!(
        text.contains(r#""person":{"iss":"https://ps.example""#),
        "{text}"
    );
}

#[test]
fn d05_missions() {
    let t = run(5);
    let text = t.render();
    // The blob: the draft's members, no approver, the constraints pinned inside.
    assert!(
        text.contains(r#""agent":"aauth:assistant@agent.example""#),
        "{text}"
    );
    assert!(text.contains(r#""aauth-rs:constraints":{"#), "{text}");
    assert!(!text.contains(r#""approver""#), "{text}");
    assert!(
        text.contains(r#""person_tokens":{"https://resource.example":"#),
        "{text}"
    );
    // mission_s256 through the chain: two tokens shown, both carrying it.
    let under = t
        .steps
        .iter()
        .filter(|s| s.summary == "a token under the mission")
        .filter(|s| s.detail.iter().any(|l| l.contains(r#""mission_s256":"#)))
        .count();
    assert_eq!(under, 2, "{text}");
    assert!(
        text.contains(r#""violation":"resource_not_approved""#),
        "{text}"
    );
}

#[test]
fn d12_mission_lifecycle() {
    let t = run(12);
    let text = t.render();
    assert!(text.contains("page: An agent asks for your approval Signed in as alice . Not you? Sign out Your Person Server https://ps.example asks for your approval of a mission"), "{text}");
    assert!(
        text.contains("The agent says: Plan the team offsite"),
        "{text}"
    );
    assert!(
        text.contains(r#""action":"update""#) && text.contains(r#""action":"completion""#),
        "{text}"
    );
    assert!(
        text.contains("The agent says: Friday the 12th works for everyone"),
        "{text}"
    );
    assert!(
        text.contains(r#""error":"mission_terminated","mission_status":"terminated""#)
            && text.contains(r#""termination_reason":"completed""#),
        "{text}"
    );
    assert_eq!(
        t.steps.iter().filter(|s| s.actor == "person").count(),
        4,
        "{text}"
    );
}

#[test]
fn d11_trust_established_by_interaction_at_the_access_server() {
    let t = aauth_demos::demo11_trust_by_interaction().unwrap_or_else(|e| panic!("{e}"));
    let text = t.render();
    // The agent is sent to the Access Server's own page (passed through unchanged).
    assert!(
        t.steps.iter().any(|s| s.actor == "agent"
            && s.summary
                .contains("send alice to https://as.example/interact?code=")),
        "{text}"
    );
    // Its first auth-token request was deferred by its Person Server with the Access
    // Server's requirement; its poll of the Person Server returned the token.
    let agent: Vec<&str> = t
        .steps
        .iter()
        .filter(|s| s.actor == "agent")
        .map(|s| s.summary.as_str())
        .collect();
    assert!(
        agent
            .iter()
            .any(|s| s.starts_with("POST https://ps.example/auth-token → 202")),
        "{text}"
    );
    assert!(
        agent
            .iter()
            .any(|s| s.starts_with("GET https://ps.example/pending/") && s.ends_with("→ 200 OK")),
        "{text}"
    );
    assert_eq!(
        agent.last().copied(),
        Some("GET https://resource.example/files/report → 200 OK"),
        "{text}"
    );
    // The Person Server asked, then polled the Access Server's pending URL, signed as itself.
    let ps: Vec<&str> = t
        .steps
        .iter()
        .filter(|s| s.actor == "person server")
        .map(|s| s.summary.as_str())
        .collect();
    assert!(
        ps.iter()
            .any(|s| s.starts_with("POST https://as.example/auth-token → 202")),
        "{text}"
    );
    assert!(
        ps.iter()
            .any(|s| s.starts_with("GET https://as.example/pending/") && s.ends_with("→ 200 OK")),
        "{text}"
    );
    assert!(
        text.contains(
            "aauth-requirement: requirement=interaction;url=\"https://as.example/interact\""
        ),
        "{text}"
    );
    // The person saw her Person Server and the resource named at the Access Server.
    assert!(
        t.steps.iter().any(|s| s.actor == "person"
            && s.detail.iter().any(
                |l| l.contains("https://ps.example") && l.contains("https://resource.example")
            )),
        "{text}"
    );
}

#[test]
fn d11_payment_then_a_question_from_the_access_server_on_one_pending_url() {
    let t = aauth_demos::demo11_billing_and_question().unwrap_or_else(|e| panic!("{e}"));
    let text = t.render();
    let of = |actor: &str| -> Vec<String> {
        t.steps
            .iter()
            .filter(|s| s.actor == actor)
            .map(|s| s.summary.clone())
            .collect()
    };
    // The Person Server paid once, with the Access Server's challenge.
    assert!(
        of("person server").iter().any(|s| s
            == &format!(
                "settled the Access Server's payment challenge: {}",
                aauth_demos::DEMO11_BILLING_CHALLENGE
            )),
        "{text}"
    );
    // The agent answered the Access Server's question, relayed by its Person Server.
    assert!(
        of("agent").iter().any(|s| s
            == &format!(
                "was asked, through its Person Server: {}",
                aauth_demos::DEMO11_AS_QUESTION
            )),
        "{text}"
    );
    let ps = of("person server");
    let position = |pred: &dyn Fn(&str) -> bool| ps.iter().position(|s| pred(s));
    let asked = position(&|s| s.starts_with("POST https://as.example/auth-token → 402"))
        .unwrap_or_else(|| panic!("no 402 from the Access Server: {text}"));
    let clarified =
        position(&|s| s.starts_with("POST https://as.example/pending/") && s.ends_with("→ 200 OK"))
            .unwrap_or_else(|| panic!("the answer was not forwarded to the Access Server: {text}"));
    assert!(asked < clarified, "{text}");
    assert!(
        text.contains("aauth-requirement: requirement=clarification"),
        "{text}"
    );
    // Every step of the Access Server kept one pending URL.
    let pendings: std::collections::BTreeSet<&str> = ps
        .iter()
        .filter_map(|s| s.split_whitespace().nth(1))
        .filter(|u| u.starts_with("https://as.example/pending/"))
        .collect();
    assert_eq!(pendings.len(), 1, "{text}");
    assert_eq!(
        of("agent").last().map(String::as_str),
        Some("GET https://resource.example/files/report → 200 OK"),
        "{text}"
    );
}

#[test]
fn d09_interaction_chaining_when_the_access_server_needs_the_person() {
    let t = aauth_demos::demo9_via_access_server().unwrap_or_else(|e| panic!("{e}"));
    let text = t.render();
    let of = |actor: &str| -> Vec<String> {
        t.steps
            .iter()
            .filter(|s| s.actor == actor)
            .map(|s| s.summary.clone())
            .collect()
    };
    // The agent only ever sees travel.example's own link.
    assert!(
        of("agent")
            .iter()
            .any(|s| s.starts_with("tells alice: open https://travel.example/interact?code=")),
        "{text}"
    );
    // The planner was deferred by the Person Server with the Access Server's link.
    assert!(
        text.contains(
            "aauth-requirement: requirement=interaction;url=\"https://as.example/interact\""
        ),
        "{text}"
    );
    // The Person Server asked the Access Server, then polled its pending URL to the token.
    let ps = of("person server");
    assert!(
        ps.iter()
            .any(|s| s.starts_with("POST https://as.example/auth-token → 202")),
        "{text}"
    );
    assert!(
        ps.iter()
            .any(|s| s.starts_with("GET https://as.example/pending/") && s.ends_with("→ 200 OK")),
        "{text}"
    );
    // The planner's upstream token went to the Access Server with the downstream request.
    assert!(text.contains("upstream_token"), "{text}");
    assert!(
        of("agent").iter().any(
            |s| s.starts_with("GET https://travel.example/pending/") && s.ends_with("→ 200 OK")
        ),
        "{text}"
    );
}

#[test]
fn d13_oauth() {
    let t = run(13);
    let text = t.render();
    assert_eq!(t.steps.len(), 16, "{text}");
    // One 401 for both kinds of client.
    assert!(
        text.contains("aauth-requirement: requirement=agent-token"),
        "{text}"
    );
    assert!(
        text.contains(r#"www-authenticate: Bearer realm="resource.example", scope="files.read""#),
        "{text}"
    );
    assert!(
        text.contains(r#"www-authenticate: DPoP realm="resource.example""#),
        "{text}"
    );
    // Each admitted by its own protocol, on one route.
    assert!(text.contains(r#""protocol":"AAuth""#), "{text}");
    assert!(
        text.contains(r#""bound_to_key":false,"client_id":"demo-client","protocol":"OAuth""#),
        "{text}"
    );
    assert!(text.contains(r#""bound_to_key":true"#), "{text}");
    // The replayed proof refused.
    assert!(text.contains(r#""error":"invalid_dpop_proof""#), "{text}");
    // The person signs in through the provider: code + PKCE, a sealed Lax cookie, the
    // session after the ID token's checks, then consent, and the agent's call goes through.
    assert!(text.contains("Sign in with Example Corp"), "{text}");
    assert!(
        text.contains("code_challenge_method=S256") && text.contains("nonce="),
        "{text}"
    );
    assert!(
        text.contains("set-cookie: __Host-aauth-oidc=…; Path=/; Secure; HttpOnly; SameSite=Lax"),
        "{text}"
    );
    assert!(
        text.contains("location: https://ps.example/interact/oidc/callback?code="),
        "{text}"
    );
    assert!(
        text.contains("set-cookie: __Host-aauth-session=…"),
        "{text}"
    );
    assert!(text.contains("bound to corp:alice-7c1f"), "{text}");
    assert!(text.contains(r#""scope":"calendar.read""#), "{text}");
}

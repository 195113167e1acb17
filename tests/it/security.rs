//! The attacks of `aauth_demos::attacks`, over the demo world's real TLS: each one that got
//! through before is refused now, and nothing it touched changed.

use aauth_demos::attacks;

fn run(attack: fn() -> Result<(), String>) {
    if let Err(why) = attack() {
        panic!("{why}");
    }
}

#[test]
fn a_provider_cannot_speak_for_another_providers_agents() {
    run(attacks::a_provider_cannot_speak_for_another_providers_agents);
}

#[test]
fn a_ten_year_agent_token_is_refused() {
    run(attacks::a_ten_year_agent_token_is_refused);
}

#[test]
fn a_request_signed_for_one_host_is_refused_by_another() {
    run(attacks::a_request_signed_for_one_host_is_refused_by_another);
}

#[test]
fn a_captured_request_is_accepted_once() {
    run(attacks::a_captured_request_is_accepted_once);
}

#[test]
fn every_content_digest_line_is_checked() {
    run(attacks::every_content_digest_line_is_checked);
}

#[test]
fn interaction_codes_cannot_be_guessed() {
    run(attacks::interaction_codes_cannot_be_guessed);
}

#[test]
fn passwords_cannot_be_guessed() {
    run(attacks::passwords_cannot_be_guessed);
}

#[test]
fn one_approval_delivers_one_token() {
    run(attacks::one_approval_delivers_one_token);
}

#[test]
fn an_agent_cannot_flood_the_person_with_requests() {
    run(attacks::an_agent_cannot_flood_the_person_with_requests);
}

#[test]
fn a_revocation_with_the_largest_exp_holds() {
    run(attacks::a_revocation_with_the_largest_exp_holds);
}

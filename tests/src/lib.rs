//! The AAuth demos.
//!
//! Each demo is a function that plays a scenario through the workspace's public API and
//! returns a [`Transcript`] of what went over the wire. `cargo xtask demo` prints them;
//! the integration tests in `it/` run them and assert on the transcripts.
//!
//! Demo 0 shows the protocol core (keys, tokens, request signing and verification). The
//! twelve phase demos (one per phase of the protocol, from pseudonymous access to
//! interaction chaining) run over the demo world of real TLS servers on loopback;
//! [`DEMOS`] lists each with its status.

pub mod attacks;
pub mod browser;
mod d00_core;
mod d01_pseudonymous;
mod d02_agent_identity;
mod d03_three_party;
mod d04_consent;
pub mod pages_in_browser;
pub use d04_consent::run_live as demo4_live;
mod d05_missions;
mod d06_subagents;
mod d07_call_chaining;
pub use d07_call_chaining::run_under_mission as demo7_under_mission;
mod d08_clarification;
mod d09_interaction_chaining;
pub use d09_interaction_chaining::run_via_access_server as demo9_via_access_server;
mod d10_authorization_endpoint;
mod d11_four_party;
mod d13_oauth;
pub use d11_four_party::run_billing as demo11_billing_and_question;
pub use d11_four_party::run_binding as demo11_trust_by_interaction;
pub use d11_four_party::{
    AS_QUESTION as DEMO11_AS_QUESTION, BILLING_CHALLENGE as DEMO11_BILLING_CHALLENGE,
};
mod intermediary;
mod parties;
pub mod process;
pub mod world;

use std::fmt::Write as _;

/// One exchange or step of a demo.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Step {
    /// Who acts: `agent provider`, `agent`, `resource`, …
    pub actor: &'static str,
    /// What happened, in one line.
    pub summary: String,
    /// Wire detail: request line and headers, or a status and headers.
    pub detail: Vec<String>,
}

/// What a demo did, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transcript {
    /// The steps.
    pub steps: Vec<Step>,
}

impl Transcript {
    /// Records a step.
    pub fn step(&mut self, actor: &'static str, summary: impl Into<String>, detail: Vec<String>) {
        self.steps.push(Step {
            actor,
            summary: summary.into(),
            detail,
        });
    }

    /// The transcript as text.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (i, s) in self.steps.iter().enumerate() {
            let _ = writeln!(out, "{:>2}. [{}] {}", i + 1, s.actor, s.summary);
            for d in &s.detail {
                let _ = writeln!(out, "      {d}");
            }
        }
        out
    }
}

/// A demo in the registry.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Demo {
    /// Its number (0 is the core; 1–12 are the phases).
    pub number: u8,
    /// A short name.
    pub slug: &'static str,
    /// Its title.
    pub title: &'static str,
    /// Runs it over the demo world's TLS and returns its transcript.
    pub run: fn() -> Result<Transcript, String>,
}

/// Every demo, in order.
pub const DEMOS: [Demo; 14] = [
    Demo {
        number: 0,
        slug: "core",
        title: "The protocol core: agent token, signed requests, verification",
        run: d00_core::run,
    },
    Demo {
        number: 1,
        slug: "pseudonymous",
        title: "Phase 1: pseudonymous access (hwk) and the answer to an unsigned request",
        run: d01_pseudonymous::run,
    },
    Demo {
        number: 2,
        slug: "agent-identity",
        title: "Phase 2: agent identity (an agent token from its provider, admitted and named)",
        run: d02_agent_identity::run,
    },
    Demo {
        number: 3,
        slug: "autonomous",
        title: "Phase 3: autonomous three-party authorization (person token, resource token, auth token from the PS)",
        run: d03_three_party::run,
    },
    Demo {
        number: 4,
        slug: "consent",
        title: "Phase 4: user delegation (deferred 202, interaction code, consent page)",
        run: d04_consent::run,
    },
    Demo {
        number: 5,
        slug: "missions",
        title: "Phase 5: missions",
        run: d05_missions::run,
    },
    Demo {
        number: 6,
        slug: "sub-agents",
        title: "Phase 6: agent delegation (sub-agents)",
        run: d06_subagents::run,
    },
    Demo {
        number: 7,
        slug: "call-chaining",
        title: "Phase 7: call chaining",
        run: d07_call_chaining::run,
    },
    Demo {
        number: 8,
        slug: "clarification",
        title: "Phase 8: clarification chat",
        run: d08_clarification::run,
    },
    Demo {
        number: 9,
        slug: "interaction-chaining",
        title: "Phase 9: interaction chaining",
        run: d09_interaction_chaining::run,
    },
    Demo {
        number: 10,
        slug: "authorization-endpoint",
        title: "Phase 10: the resource's authorization endpoint (proactive resource token)",
        run: d10_authorization_endpoint::run,
    },
    Demo {
        number: 11,
        slug: "four-party",
        title: "Phase 11: PS–AS trust (federated four-party path)",
        run: d11_four_party::run,
    },
    Demo {
        number: 12,
        slug: "mission-lifecycle",
        title: "Phase 12: mission lifecycle end to end",
        run: d05_missions::run_lifecycle,
    },
    Demo {
        number: 13,
        slug: "oauth",
        title: "OAuth beside AAuth: an agent, a Bearer client and a DPoP client on one route; a person signs in with their OpenID Provider",
        run: d13_oauth::run,
    },
];

/// The README's examples, compiled and run as doctests so they stay true.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

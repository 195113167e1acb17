//! The AAuth demos.
//!
//! Each demo is a function that plays a scenario through the workspace's public API and
//! returns a [`Transcript`] of what went over the wire. `cargo xtask demo` prints them;
//! the integration tests in `it/` run them and assert on the transcripts.
//!
//! Demo 0 shows the protocol core (keys, tokens, request signing and verification). The
//! twelve phase demos of `docs/phases.md` arrive with the role crates (agent and resource,
//! Person Server, Access Server) and the demo world of real TLS servers on loopback;
//! [`DEMOS`] lists each with its status.

mod d00_core;
mod d01_pseudonymous;
mod d02_agent_identity;
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

/// Whether a demo runs yet.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Status {
    /// Implemented: run it.
    Ready(fn() -> Result<Transcript, String>),
    /// Waiting for the issue that brings its roles.
    Pending {
        /// What it needs.
        needs: &'static str,
    },
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
    /// Whether it runs.
    pub status: Status,
}

const PERSON_SERVER: &str = "the Person Server (issue: Person Server)";
const ACCESS_SERVER: &str = "the Access Server and federation (issue: Access Server)";

/// Every demo, in order.
pub const DEMOS: [Demo; 13] = [
    Demo {
        number: 0,
        slug: "core",
        title: "The protocol core: agent token, signed requests, verification",
        status: Status::Ready(d00_core::run),
    },
    Demo {
        number: 1,
        slug: "pseudonymous",
        title: "Phase 1: pseudonymous access (hwk) and the answer to an unsigned request",
        status: Status::Ready(d01_pseudonymous::run),
    },
    Demo {
        number: 2,
        slug: "agent-identity",
        title: "Phase 2: agent identity (an agent token from its provider, admitted and named)",
        status: Status::Ready(d02_agent_identity::run),
    },
    Demo {
        number: 3,
        slug: "person-identity",
        title: "Phase 3: person identity (person token)",
        status: Status::Pending {
            needs: PERSON_SERVER,
        },
    },
    Demo {
        number: 4,
        slug: "three-party",
        title: "Phase 4: three-party authorization (auth token from the PS)",
        status: Status::Pending {
            needs: PERSON_SERVER,
        },
    },
    Demo {
        number: 5,
        slug: "consent",
        title: "Phase 5: consent and deferred responses",
        status: Status::Pending {
            needs: PERSON_SERVER,
        },
    },
    Demo {
        number: 6,
        slug: "clarification",
        title: "Phase 6: clarification chat",
        status: Status::Pending {
            needs: PERSON_SERVER,
        },
    },
    Demo {
        number: 7,
        slug: "call-chaining",
        title: "Phase 7: call chaining",
        status: Status::Pending {
            needs: ACCESS_SERVER,
        },
    },
    Demo {
        number: 8,
        slug: "missions",
        title: "Phase 8: missions",
        status: Status::Pending {
            needs: PERSON_SERVER,
        },
    },
    Demo {
        number: 9,
        slug: "interaction-chaining",
        title: "Phase 9: interaction chaining",
        status: Status::Pending {
            needs: ACCESS_SERVER,
        },
    },
    Demo {
        number: 10,
        slug: "sub-agents",
        title: "Phase 10: sub-agents",
        status: Status::Pending {
            needs: PERSON_SERVER,
        },
    },
    Demo {
        number: 11,
        slug: "four-party",
        title: "Phase 11: PS–AS federation (four-party)",
        status: Status::Pending {
            needs: ACCESS_SERVER,
        },
    },
    Demo {
        number: 12,
        slug: "governance",
        title: "Phase 12: governance (permission, audit, revocation)",
        status: Status::Pending {
            needs: PERSON_SERVER,
        },
    },
];

/// The README's examples, compiled and run as doctests so they stay true.
#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

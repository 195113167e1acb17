//! Identifier rules beyond the vectors.

use aauth_tokens::{AgentId, IdentifierError, ServerId};

#[test]
fn server_id_accessors_and_rules() {
    let s = ServerId::parse("https://ps.example").unwrap();
    assert_eq!(s.host(), "ps.example");
    assert_eq!(
        s.well_known("aauth-person.json"),
        "https://ps.example/.well-known/aauth-person.json"
    );
    for bad in [
        "https://-ps.example",
        "https://ps-.example",
        "https://ps..example",
        "https://ps.example.",
        "https://",
        "https://[::1]",
        "HTTPS://ps.example",
        "https://ps.example?x",
        "https://ps.example#f",
        &format!("https://{}.example", "a".repeat(64)),
    ] {
        assert!(
            matches!(
                ServerId::parse(bad),
                Err(IdentifierError::NotServerId { .. })
            ),
            "{bad}"
        );
    }
    assert!(ServerId::parse(&format!("https://{}.example", "a".repeat(63))).is_ok());
}

#[test]
fn agent_id_rules() {
    let a = AgentId::parse("aauth:planner.7f3c@vendor.example").unwrap();
    let s = AgentId::parse("aauth:planner.7f3c+search1@vendor.example").unwrap();
    assert!(s.is_named_subagent_of(&a));
    assert!(!a.is_named_subagent_of(&s));
    assert!(
        !AgentId::parse("aauth:planner.7f3cx+s@vendor.example")
            .unwrap()
            .is_named_subagent_of(&a)
    );
    // Comparison is exact: case is significant.
    assert_ne!(
        AgentId::parse("aauth:Agent@a.example").unwrap(),
        AgentId::parse("aauth:agent@a.example").unwrap()
    );
    for bad in [
        "aauth:a+b+c@a.example",
        "aauth:a@b@c.example",
        "aauth:a b@a.example",
        "aauth:a@a.example:1",
    ] {
        assert!(
            matches!(AgentId::parse(bad), Err(IdentifierError::NotAgentId { .. })),
            "{bad}"
        );
    }
}

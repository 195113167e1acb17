//! The Person Server pages' language: `aauth config messages` prints the catalogue to
//! translate, and `[person_server] messages_file` is checked whole by `aauth config check`
//! (and at start): every key, each text with its placeholders.

use aauth_demos::world::World;

use crate::{aauth, assert_fails, scratch, stdout};

#[test]
fn a_translation_is_printed_to_start_from_and_checked_whole() {
    let dir = scratch("messages");
    let world = World::new().unwrap();
    let config = crate::serve::person_server_config(&world, &dir, &[]);
    let o = aauth(&dir, &["config", "messages"]);
    assert!(o.status.success(), "{}", crate::stderr(&o));
    let english = stdout(&o);
    assert!(english.starts_with("lang = \"en\"\n"), "{english}");
    for line in [
        "[texts.consent]",
        "approve = \"Approve\"",
        "signed_in_as = \"Signed in as {account}.\"",
    ] {
        assert!(english.contains(line), "{line}: {english}");
    }

    let german = english
        .replace("lang = \"en\"", "lang = \"de\"")
        .replace("approve = \"Approve\"", "approve = \"Erlauben\"");
    std::fs::write(dir.join("de.toml"), &german).unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    let with = text.replace(
        "consent = \"auto-approve\"\n",
        "consent = \"auto-approve\"\nmessages_file = \"de.toml\"\n",
    );
    assert_ne!(with, text);
    std::fs::write(&config, with).unwrap();
    let o = aauth(&dir, &["config", "check", "ps.toml"]);
    assert!(o.status.success(), "{}", crate::stderr(&o));
    assert!(stdout(&o).contains("messages_file = \"de.toml\""));

    // A text that lost its placeholder, a key the catalogue does not have: refused,
    // each naming what is wrong.
    for (broken, named) in [
        (
            german.replace("Signed in as {account}.", "Angemeldet."),
            "session.signed_in_as",
        ),
        (
            german.replace("[texts.consent]", "[texts.consent]\nsmile = \":)\""),
            "consent.smile",
        ),
        (german.replace("lang = \"de\"\n", ""), "lang"),
    ] {
        std::fs::write(dir.join("de.toml"), broken).unwrap();
        assert_fails(&aauth(&dir, &["config", "check", "ps.toml"]), 2, named);
    }
}

//! `aauth keygen` and `aauth jwk`.

use aauth_keys::{JwkSet, PrivateKey};

use crate::{aauth, aauth_with_input, assert_fails, scratch, stdout};

#[test]
fn keygen_writes_a_private_key_only_its_owner_reads_and_prints_the_public_jwks() {
    let dir = scratch("keygen");
    let o = aauth(
        &dir,
        &["keygen", "--out", "agent.jwk", "--public", "agent.jwks"],
    );
    assert!(o.status.success(), "{}", crate::stderr(&o));

    // The private key reads back, and its public half is what was printed and written.
    let private = std::fs::read_to_string(dir.join("agent.jwk")).unwrap();
    let key = PrivateKey::from_jwk_json(&private).unwrap();
    let json = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
    let written = std::fs::read_to_string(dir.join("agent.jwks")).unwrap();
    assert_eq!(json(&stdout(&o)), json(&written));
    let printed = JwkSet::from_json(stdout(&o).as_bytes()).unwrap();
    let thumbprint = key.public_key().thumbprint().as_str().to_owned();
    let public = printed
        .find(&thumbprint)
        .expect("the kid defaults to the thumbprint");
    assert_eq!(&public, key.public_key());
    assert!(!stdout(&o).contains("\"d\""));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join("agent.jwk"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // `jwk thumbprint` agrees, for the private file, the JWKS and standard input.
    for file in ["agent.jwk", "agent.jwks"] {
        let o = aauth(&dir, &["jwk", "thumbprint", file]);
        assert_eq!(stdout(&o).trim(), thumbprint, "{file}");
    }
    let o = aauth_with_input(&dir, &["jwk", "thumbprint", "-"], &private);
    assert_eq!(stdout(&o).trim(), thumbprint);

    // Never overwritten without --force; replaced with it.
    let again = aauth(&dir, &["keygen", "--out", "agent.jwk"]);
    assert_fails(&again, 3, "already exists");
    assert_eq!(
        std::fs::read_to_string(dir.join("agent.jwk")).unwrap(),
        private
    );
    let forced = aauth(&dir, &["keygen", "--out", "agent.jwk", "--force"]);
    assert!(forced.status.success());
    assert_ne!(
        std::fs::read_to_string(dir.join("agent.jwk")).unwrap(),
        private
    );
}

#[test]
fn keygen_makes_es256_keys_under_the_kid_given() {
    let dir = scratch("keygen-es256");
    let o = aauth(
        &dir,
        &[
            "keygen", "--alg", "ES256", "--kid", "ps-2026", "--out", "ps.jwk",
        ],
    );
    assert!(o.status.success(), "{}", crate::stderr(&o));
    let set = JwkSet::from_json(stdout(&o).as_bytes()).unwrap();
    let jwk = set.find_jwk("ps-2026").unwrap();
    assert_eq!(
        (jwk.kty.as_str(), jwk.crv.as_deref()),
        ("EC", Some("P-256"))
    );
    let key =
        PrivateKey::from_jwk_json(&std::fs::read_to_string(dir.join("ps.jwk")).unwrap()).unwrap();
    assert_eq!(key.algorithm(), aauth_keys::Algorithm::Es256);

    assert_fails(
        &aauth(&dir, &["keygen", "--alg", "RS256", "--out", "x.jwk"]),
        2,
        "RS256",
    );
    assert_fails(
        &aauth(&dir, &["keygen", "--kid", "", "--out", "y.jwk"]),
        2,
        "--kid",
    );
    assert!(
        !dir.join("y.jwk").exists(),
        "nothing written on a usage error"
    );
}

#[cfg(unix)]
#[test]
fn a_private_key_file_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch("mode");
    assert!(aauth(&dir, &["keygen", "--out", "k.jwk"]).status.success());
    std::fs::set_permissions(dir.join("k.jwk"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = aauth(&dir, &["jwk", "thumbprint", "k.jwk"]);
    assert_fails(&o, 3, "chmod 600 k.jwk");
    assert!(stdout(&o).is_empty());
}

#[test]
fn bad_key_files_are_named_with_the_problem() {
    let dir = scratch("bad-keys");
    assert_fails(
        &aauth(&dir, &["jwk", "thumbprint", "missing.jwk"]),
        3,
        "missing.jwk",
    );
    std::fs::write(dir.join("broken.jwk"), "{").unwrap();
    assert_fails(
        &aauth(&dir, &["jwk", "thumbprint", "broken.jwk"]),
        1,
        "broken.jwk",
    );
    std::fs::write(
        dir.join("rsa.jwk"),
        r#"{"kty":"RSA","n":"AQAB","e":"AQAB"}"#,
    )
    .unwrap();
    assert_fails(
        &aauth(&dir, &["jwk", "thumbprint", "rsa.jwk"]),
        1,
        "rsa.jwk",
    );
    std::fs::write(dir.join("two.jwks"), r#"{"keys":[{},{}]}"#).unwrap();
    assert_fails(&aauth(&dir, &["jwk", "public", "two.jwks"]), 2, "2 keys");
}

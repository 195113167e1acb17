//! `aauth fetch` against the demo world's three parties: the agent provider, the Person
//! Server and an auth-token resource, each a TLS server on loopback.

use std::path::Path;
use std::process::Output;

use aauth_demos::process::ServedParties;

use crate::{aauth, assert_fails, scratch, stderr, stdout};

/// The parties and a profile directory for the assistant (its key, mode 0600, and
/// `profile.toml`), with the flags that reach the world.
async fn setup(name: &str) -> (ServedParties, std::path::PathBuf, Vec<String>) {
    let served = ServedParties::start().await.unwrap();
    let dir = scratch(name);
    let profile = dir.join("profile");
    std::fs::create_dir_all(&profile).unwrap();
    let key = profile.join("agent.jwk");
    std::fs::write(&key, served.agent_key().to_json()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    std::fs::write(
        profile.join("profile.toml"),
        format!(
            "agent = \"{}\"\nprovider = \"https://agent.example\"\n",
            served.agent()
        ),
    )
    .unwrap();
    std::fs::write(dir.join("ca.pem"), served.ca_pem()).unwrap();
    let mut flags = vec!["--ca-file".to_owned(), "ca.pem".to_owned()];
    for (name, addr) in served.names() {
        flags.push("--connect-to".to_owned());
        flags.push(format!("{name}:443:{}:{}", addr.ip(), addr.port()));
    }
    (served, dir, flags)
}

/// `aauth args… flags…` in `dir`, off the runtime's thread.
async fn run(dir: &Path, args: &[&str], flags: &[String]) -> Output {
    let dir = dir.to_owned();
    let mut all: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    all.extend(flags.iter().cloned());
    tokio::task::spawn_blocking(move || {
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        aauth(&dir, &all)
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn fetch_answers_every_challenge_and_prints_the_body() {
    let (_served, dir, flags) = setup("fetch").await;
    let o = run(
        &dir,
        &[
            "fetch",
            "https://resource.example/calendar/today",
            "--profile",
            "profile",
            "-i",
            "-v",
        ],
        &flags,
    )
    .await;
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.starts_with("HTTP/1.1 200 OK\n"), "{out}");
    let body = out.split("\n\n").nth(1).unwrap_or_default();
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["message"], "Access granted", "{out}");
    assert_eq!(json["person"]["iss"], "https://ps.example", "{out}");

    // -v shows the way there: the agent token from the provider, the resource's
    // challenges, the person and auth tokens from the Person Server.
    for needle in [
        "> POST https://agent.example/agent-token",
        "< 401 Unauthorized",
        "aauth-requirement: requirement=person-token",
        "aauth-requirement: requirement=auth-token",
        "> POST https://ps.example/",
        "> GET https://resource.example/calendar/today",
        "< 200 OK",
    ] {
        assert!(
            err.to_ascii_lowercase()
                .contains(&needle.to_ascii_lowercase()),
            "{needle:?} not in:\n{err}"
        );
    }
}

#[tokio::test]
async fn flags_override_the_profile_and_missing_pieces_are_named() {
    let (_served, dir, flags) = setup("fetch-flags").await;

    // The key from a flag, the identity from flags: no profile needed.
    let o = run(
        &dir,
        &[
            "fetch",
            "https://resource.example/x",
            "--profile",
            "profile",
            "--agent",
            "aauth:stranger@agent.example",
        ],
        &flags,
    )
    .await;
    // The provider enrolled the assistant only: it refuses a stranger (exit 1).
    assert_fails(&o, 1, "agent provider");

    // No agent identifier anywhere.
    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    std::fs::write(empty.join("profile.toml"), "").unwrap();
    let o = run(
        &dir,
        &["fetch", "https://resource.example/x", "--profile", "empty"],
        &flags,
    )
    .await;
    assert_fails(&o, 2, "no agent identifier: pass --agent");

    // A profile with a wrong type names the key and its line.
    std::fs::write(empty.join("profile.toml"), "\nagent = 7\n").unwrap();
    let o = run(
        &dir,
        &["fetch", "https://resource.example/x", "--profile", "empty"],
        &flags,
    )
    .await;
    assert_fails(&o, 3, "line 2");
    assert!(stderr(&o).contains("agent"), "{}", stderr(&o));

    // An unknown key is refused, not ignored.
    std::fs::write(empty.join("profile.toml"), "agnet = \"x\"\n").unwrap();
    let o = run(
        &dir,
        &["fetch", "https://resource.example/x", "--profile", "empty"],
        &flags,
    )
    .await;
    assert_fails(&o, 3, "agnet");

    // A bad header and a bad method are usage errors.
    let o = run(
        &dir,
        &[
            "fetch",
            "https://resource.example/x",
            "--profile",
            "profile",
            "-H",
            "nocolon",
        ],
        &flags,
    )
    .await;
    assert_fails(&o, 2, "Name: value");
}

#[tokio::test]
async fn a_key_the_provider_did_not_enroll_gets_no_agent_token() {
    let (_served, dir, flags) = setup("fetch-key").await;
    let o = run(&dir, &["keygen", "--out", "other.jwk"], &[]).await;
    assert!(o.status.success());
    let o = run(
        &dir,
        &[
            "fetch",
            "https://resource.example/x",
            "--profile",
            "profile",
            "--key",
            "other.jwk",
        ],
        &flags,
    )
    .await;
    assert_fails(&o, 1, "agent provider");
    assert!(stdout(&o).is_empty(), "nothing was fetched");
}

#[tokio::test]
async fn fail_turns_a_final_error_status_into_a_failing_exit() {
    let (_served, dir, flags) = setup("fetch-fail").await;
    let args = [
        "fetch",
        "https://ps.example/no-such-endpoint",
        "--profile",
        "profile",
    ];
    // Without --fail, like curl: the response is printed and the exit is 0.
    let o = run(&dir, &args, &flags).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let mut with_fail = args.to_vec();
    with_fail.push("--fail");
    let o = run(&dir, &with_fail, &flags).await;
    assert_fails(&o, 1, "the server answered 404");
}

/// A `--ca-file` its group or others can write is refused before anything is sent.
#[cfg(unix)]
#[tokio::test]
async fn fetch_refuses_a_ca_file_others_can_write() {
    use std::os::unix::fs::PermissionsExt;
    let (_served, dir, flags) = setup("fetch-ca-mode").await;
    std::fs::set_permissions(dir.join("ca.pem"), std::fs::Permissions::from_mode(0o660)).unwrap();
    let args = [
        "fetch",
        "https://resource.example/calendar/today",
        "--profile",
        "profile",
    ];
    let o = run(&dir, &args, &flags).await;
    assert_fails(&o, 3, "--ca-file: ");
    assert!(stderr(&o).contains("chmod go-w"), "{}", stderr(&o));
    assert!(stdout(&o).is_empty(), "{}", stdout(&o));
}

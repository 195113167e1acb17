//! `aauth fetch`: one request as an agent, like curl, with every challenge answered by
//! `aauth_agent::AAuthClient`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aauth_agent::{
    AAuthClient, Agent, AgentError, HttpPersonServer, HttpTokenSource, Interaction, PollPolicy,
    TokenSource, Transport, TransportError,
};
use aauth_keys::Signer;
use aauth_keys::time::{Clock, SystemClock, UnixTime};
use aauth_metadata::{CacheConfig, KeyCache};
use aauth_tokens::AgentId;
use bytes::Bytes;

use crate::cli::Fetch;
use crate::error::CliError;
use crate::net::server_id;
use crate::profile::{self, Source};
use crate::terminal::printable;

/// How long each poll of a pending request may be held by the server (`Prefer: wait`).
const LONG_POLL: std::time::Duration = std::time::Duration::from_secs(25);

/// `aauth fetch`.
pub(crate) fn fetch(args: &Fetch, out: &mut dyn Write) -> Result<(), CliError> {
    let profile = profile::load(&args.identity)?;
    let agent_id = AgentId::parse(&profile.agent).map_err(|e| CliError::Usage {
        flag: "--agent",
        reason: e.to_string(),
    })?;
    let key = crate::keys::read_private(&profile.key)?;
    let request = request(args)?;
    let reach = crate::net::Reach::new(&args.net)?;
    let transport: Arc<dyn Transport> = Arc::new(Wire {
        inner: Arc::new(reach.https_client()),
        verbose: args.verbose,
        show_credentials: args.show_credentials,
    });
    let source: Arc<dyn TokenSource> = match &profile.source {
        Source::Provider(p) => Arc::new(HttpTokenSource::new(
            server_id("--provider", p)?,
            Arc::clone(&transport),
        )),
        Source::File(path) => Arc::new(TokenFile(path.clone())),
    };
    let agent = Arc::new(Agent::new(agent_id, Arc::new(key), source));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Operational(format!("starting the runtime: {e}")))?;
    let response = runtime.block_on(async {
        let now = SystemClock.now();
        let token = agent.token(now).await.map_err(CliError::Agent)?;
        let ps = match &profile.person_server {
            Some(ps) => Some(server_id("--person-server", ps)?),
            None => token.person_server.clone(),
        };
        // Long polls (the servers hold each poll up to this) within the HTTPS client's
        // 30-second deadline; the person has up to the policy's deadline to answer.
        let polls = PollPolicy::default().prefer_wait(LONG_POLL);
        let mut builder = AAuthClient::builder(Arc::clone(&agent))
            .on_interaction(tell_person)
            .poll_policy(polls);
        if let Some(ps) = ps {
            let keys = KeyCache::new(
                Arc::new(reach.fetcher()),
                Arc::new(SystemClock),
                CacheConfig::default(),
            );
            let client = HttpPersonServer::new(ps, Arc::clone(&transport))
                .on_interaction(tell_person)
                .poll_policy(polls);
            builder = builder.person_server(Arc::new(client), Arc::new(keys));
        }
        builder
            .build(Arc::clone(&transport))
            .send(request)
            .await
            .map_err(CliError::Agent)
    })?;
    print_response(&response, args.include, out)?;
    if args.fail && !response.status().is_success() {
        return Err(CliError::Status(response.status()));
    }
    Ok(())
}

/// `aauth agent enroll`: an agent token from the provider, printed or written to `file`.
pub(crate) fn enroll(
    identity: &crate::cli::Identity,
    net: &crate::cli::Net,
    file: Option<&Path>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let profile = profile::load(identity)?;
    let agent_id = AgentId::parse(&profile.agent).map_err(|e| CliError::Usage {
        flag: "--agent",
        reason: e.to_string(),
    })?;
    let Source::Provider(provider) = &profile.source else {
        return Err(CliError::Usage {
            flag: "--provider",
            reason: "enrolling asks the agent provider: name it (not an agent-token file)"
                .to_owned(),
        });
    };
    let key = crate::keys::read_private(&profile.key)?;
    let reach = crate::net::Reach::new(net)?;
    let source = HttpTokenSource::new(
        server_id("--provider", provider)?,
        Arc::new(reach.https_client()),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Operational(format!("starting the runtime: {e}")))?;
    let token = runtime
        .block_on(source.agent_token(&agent_id, &key, SystemClock.now()))
        .map_err(CliError::Agent)?;
    match file {
        Some(path) => crate::keys::write_secret(path, token.as_bytes()),
        None => writeln!(out, "{token}").map_err(CliError::file(Path::new("<stdout>"))),
    }
}

/// What the person must do, on standard error (standard output is the body).
fn tell_person(i: &Interaction) {
    let mut err = std::io::stderr();
    let _ = writeln!(
        err,
        "aauth: your approval is needed: open {}?code={} (code {}); waiting…",
        printable(&i.url),
        printable(&i.code),
        printable(&i.code)
    );
}

/// The request the flags describe.
fn request(args: &Fetch) -> Result<http::Request<Bytes>, CliError> {
    let body = match args.data.as_deref() {
        None => Bytes::new(),
        Some("@-") => {
            let mut b = Vec::new();
            std::io::stdin()
                .read_to_end(&mut b)
                .map_err(CliError::file(Path::new("<stdin>")))?;
            Bytes::from(b)
        }
        Some(d) => match d.strip_prefix('@') {
            Some(file) => {
                Bytes::from(std::fs::read(file).map_err(CliError::file(Path::new(file)))?)
            }
            None => Bytes::from(d.to_owned()),
        },
    };
    let method = match (&args.request, args.data.is_some()) {
        (Some(m), _) => {
            http::Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| {
                CliError::Usage {
                    flag: "--request",
                    reason: format!("{m:?} is not an HTTP method"),
                }
            })?
        }
        (None, true) => http::Method::POST,
        (None, false) => http::Method::GET,
    };
    let mut builder = http::Request::builder().method(method).uri(&args.url);
    for h in &args.header {
        let (name, value) = h.split_once(':').ok_or_else(|| CliError::Usage {
            flag: "--header",
            reason: format!("{h:?} is not `Name: value`"),
        })?;
        builder = builder.header(name.trim(), value.trim());
    }
    builder.body(body).map_err(|e| CliError::Usage {
        flag: "URL or --header",
        reason: e.to_string(),
    })
}

fn print_response(
    resp: &http::Response<Bytes>,
    include: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let io = CliError::file(Path::new("<stdout>"));
    let mut head = String::new();
    if include {
        head.push_str(&format!("{:?} {}\n", resp.version(), resp.status()));
        for (name, value) in resp.headers() {
            head.push_str(&format!(
                "{name}: {}\n",
                printable(&String::from_utf8_lossy(value.as_bytes()))
            ));
        }
        head.push('\n');
    }
    out.write_all(head.as_bytes())
        .and_then(|()| out.write_all(resp.body()))
        .and_then(|()| out.flush())
        .map_err(io)
}

/// An agent token kept in a file by something else (read each time one is needed).
#[derive(Debug)]
struct TokenFile(PathBuf);

#[async_trait::async_trait]
impl TokenSource for TokenFile {
    async fn agent_token(
        &self,
        _agent: &AgentId,
        _signer: &dyn Signer,
        _now: UnixTime,
    ) -> Result<String, AgentError> {
        std::fs::read_to_string(&self.0)
            .map(|t| t.trim().to_owned())
            .map_err(|e| AgentError::Transport {
                reason: format!("{}: {e}", self.0.display()),
            })
    }
}

/// The transport, printing each exchange on standard error with `--verbose`.
struct Wire {
    inner: Arc<dyn Transport>,
    verbose: bool,
    show_credentials: bool,
}

/// A header as `-v` shows it. The fields that carry credentials show no usable one: a
/// JWT keeps its header and claims (what `aauth token decode` reads) without its
/// signature, and a session token (`Authorization: AAuth`, `AAuth-Access`) is hidden.
fn shown_value(name: &http::HeaderName, value: &http::HeaderValue, full: bool) -> String {
    let text = String::from_utf8_lossy(value.as_bytes());
    if full {
        return text.into_owned();
    }
    match name.as_str() {
        "authorization" | "aauth-access" | "dpop" => match text.split_once(' ') {
            Some((scheme, _)) => format!("{scheme} <redacted>"),
            None => "<redacted>".to_owned(),
        },
        "signature-key" | "aauth-requirement" => unsigned_jwts(&text),
        _ => text.into_owned(),
    }
}

/// `text` with the signature of every JWT in it replaced by `<signature redacted>`.
fn unsigned_jwts(text: &str) -> String {
    let b64 = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("eyJ") {
        out.push_str(&rest[..start]);
        let token = &rest[start..];
        let end = token
            .find(|c: char| !(b64(c) || c == '.'))
            .unwrap_or(token.len()); // default: the token runs to the end of the field
        let jwt = &token[..end];
        match jwt.rsplit_once('.') {
            Some((signed, _)) if jwt.matches('.').count() == 2 => {
                out.push_str(signed);
                out.push_str(".<signature redacted>");
            }
            _ => out.push_str(jwt),
        }
        rest = &token[end..];
    }
    out.push_str(rest);
    out
}

#[async_trait::async_trait]
impl Transport for Wire {
    async fn send(
        &self,
        req: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, TransportError> {
        if !self.verbose {
            return self.inner.send(req).await;
        }
        let mut shown = format!("> {} {}\n", req.method(), req.uri());
        for (name, value) in req.headers() {
            let value = printable(&shown_value(name, value, self.show_credentials));
            shown.push_str(&format!("> {name}: {value}\n"));
        }
        if !req.body().is_empty() {
            shown.push_str(&format!("> ({} bytes of body)\n", req.body().len()));
        }
        let result = self.inner.send(req).await;
        match &result {
            Ok(resp) => {
                shown.push_str(&format!("< {}\n", resp.status()));
                for (name, value) in resp.headers() {
                    let value = printable(&shown_value(name, value, self.show_credentials));
                    shown.push_str(&format!("< {name}: {value}\n"));
                }
                shown.push_str(&format!("< ({} bytes of body)\n", resp.body().len()));
            }
            Err(e) => shown.push_str(&format!("! {}\n", printable(&e.to_string()))),
        }
        let _ = writeln!(std::io::stderr(), "{shown}");
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbose_output_shows_no_usable_credential() {
        let jwt = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl";
        let shown = |name: &'static str, value: &str| {
            shown_value(
                &http::HeaderName::from_static(name),
                &http::HeaderValue::from_str(value).unwrap(),
                false,
            )
        };
        let key = shown("signature-key", &format!("sig=jwt;jwt=\"{jwt}\""));
        assert_eq!(
            key,
            "sig=jwt;jwt=\"eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhIn0.<signature redacted>\""
        );
        assert!(!key.contains("c2lnbmF0dXJl"));
        assert_eq!(
            shown("authorization", "AAuth c2Vzc2lvbi0x"),
            "AAuth <redacted>"
        );
        assert_eq!(shown("aauth-access", "c2Vzc2lvbi0x"), "<redacted>");
        let req = shown(
            "aauth-requirement",
            &format!("requirement=auth-token; resource-token=\"{jwt}\""),
        );
        assert!(req.ends_with(".<signature redacted>\""), "{req}");
        assert_eq!(
            shown("content-type", "application/json"),
            "application/json"
        );
        // `--show-credentials`: as on the wire.
        let full = http::HeaderValue::from_static("AAuth c2Vzc2lvbi0x");
        assert_eq!(
            shown_value(&http::header::AUTHORIZATION, &full, true),
            "AAuth c2Vzc2lvbi0x"
        );
    }
}

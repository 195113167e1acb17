//! `aauth token decode` and `aauth token verify`.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use aauth_keys::time::{Clock, SystemClock};
use aauth_metadata::{CacheConfig, KeyCache};
use aauth_tokens::{
    AgentClaims, AuthClaims, IssuerKeyResolver, PersonClaims, ResourceClaims, ServerId,
    TokenClaims, TokenError, TokenType, Unverified, Validation,
};
use serde_json::{Map, Value};

use crate::cli::{Decode, Verify};
use crate::error::CliError;
use crate::net::server_id;
use crate::terminal::{printable, printable_json, printable_lines};
use crate::time::{date, relative};

/// The claims that are NumericDates.
const TIMES: [&str; 4] = ["iat", "nbf", "exp", "auth_time"];

/// A token read without verification: its type, header and claims.
struct Read_ {
    kind: Option<TokenType>,
    header: Map<String, Value>,
    claims: Map<String, Value>,
}

/// The token argument, or standard input for `-` (surrounding whitespace dropped).
fn token_text(arg: &str) -> Result<String, CliError> {
    if arg == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(CliError::file(Path::new("<stdin>")))?;
        Ok(s.trim().to_owned())
    } else {
        Ok(arg.trim().to_owned())
    }
}

/// Splits and decodes a compact JWS (no signature check): each failure says which part.
fn read(token: &str) -> Result<Read_, CliError> {
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, signature] = parts[..] else {
        return Err(CliError::NotAToken(format!(
            "a compact JWS has three dot-separated parts, this has {}",
            parts.len()
        )));
    };
    if signature.is_empty() {
        return Err(CliError::NotAToken(
            "the signature part is empty".to_owned(),
        ));
    }
    let part = |name: &str, b64: &str| -> Result<Map<String, Value>, CliError> {
        let bytes = aauth_keys::base64url::decode(b64)
            .map_err(|e| CliError::NotAToken(format!("the {name} is not base64url: {e}")))?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) => Err(CliError::NotAToken(format!(
                "the {name} is not a JSON object"
            ))),
            Err(e) => Err(CliError::NotAToken(format!("the {name} is not JSON: {e}"))),
        }
    };
    let header = part("header", header)?;
    let claims = part("claims", payload)?;
    let kind = header
        .get("typ")
        .and_then(Value::as_str)
        .and_then(token_type);
    Ok(Read_ {
        kind,
        header,
        claims,
    })
}

/// The AAuth token type a `typ` names.
fn token_type(typ: &str) -> Option<TokenType> {
    [
        TokenType::Agent,
        TokenType::Person,
        TokenType::Resource,
        TokenType::Auth,
    ]
    .into_iter()
    .find(|t| t.typ() == typ)
}

fn type_name(kind: Option<TokenType>) -> &'static str {
    match kind {
        Some(TokenType::Agent) => "agent token",
        Some(TokenType::Person) => "person token",
        Some(TokenType::Resource) => "resource token",
        Some(TokenType::Auth) => "auth token",
        _ => "not an AAuth token type",
    }
}

/// The time checks `decode` makes: `(claim, verdict, ok)`.
fn time_checks(claims: &Map<String, Value>, now: u64) -> Vec<(&'static str, String, bool)> {
    let exp = match claims.get("exp").and_then(Value::as_u64) {
        Some(exp) if exp <= now => (format!("expired {}", relative(exp, now)), false),
        Some(exp) => (format!("expires {}", relative(exp, now)), true),
        None => ("missing".to_owned(), false),
    };
    let iat = match claims.get("iat").and_then(Value::as_u64) {
        Some(iat) if iat > now.saturating_add(60) => (
            format!(
                "issued in the future ({}): a clock is wrong",
                relative(iat, now)
            ),
            false,
        ),
        Some(iat) => (format!("issued {}", relative(iat, now)), true),
        None => ("missing".to_owned(), false),
    };
    vec![("exp", exp.0, exp.1), ("iat", iat.0, iat.1)]
}

/// `aauth token decode`.
pub(crate) fn decode(args: &Decode, out: &mut dyn Write) -> Result<(), CliError> {
    let token = token_text(&args.token)?;
    let t = read(&token)?;
    let now = SystemClock.now().as_secs();
    let checks = time_checks(&t.claims, now);
    let io = CliError::file(Path::new("<stdout>"));
    if args.json {
        let checks: Map<String, Value> = checks
            .iter()
            .map(|(k, v, ok)| ((*k).to_owned(), serde_json::json!({"ok": ok, "says": v})))
            .collect();
        let doc = serde_json::json!({
            "type": t.kind.map(TokenType::typ),
            "header": t.header,
            "claims": t.claims,
            "checks": checks,
            "signature_checked": false,
        });
        return writeln!(out, "{}", printable_json(&format!("{doc:#}"))).map_err(io);
    }
    // The token is anyone's: its `typ` and every member of its header and claims reach
    // the terminal escaped.
    let mut text = format!(
        "{} ({})\n\nheader\n{}\n\nclaims\n{}\n\n",
        type_name(t.kind),
        printable(
            t.header
                .get("typ")
                .and_then(Value::as_str)
                .unwrap_or("no typ")
        ),
        printable_lines(&format!("{:#}", Value::Object(t.header.clone()))),
        printable_lines(&format!("{:#}", Value::Object(t.claims.clone()))),
    );
    for name in TIMES {
        if let Some(secs) = t.claims.get(name).and_then(Value::as_u64) {
            text.push_str(&format!(
                "{name:<9} {}  ({})\n",
                date(secs),
                relative(secs, now)
            ));
        }
    }
    text.push('\n');
    for (name, says, ok) in &checks {
        text.push_str(&format!(
            "{} {name}: {says}\n",
            if *ok { "ok  " } else { "FAIL" }
        ));
    }
    text.push_str("\nThe signature was not checked: `aauth token verify` checks it.\n");
    write!(out, "{text}").map_err(io)
}

/// `aauth token verify`: prints each check; the first failure ends it.
pub(crate) fn verify(args: &Verify, out: &mut dyn Write) -> Result<(), CliError> {
    let token = token_text(&args.token)?;
    let issuer = server_id("--issuer", &args.issuer)?;
    let audience = args
        .audience
        .as_deref()
        .map(|a| server_id("--audience", a))
        .transpose()?;
    let fetch = crate::net::Reach::new(&args.net)?.fetcher();
    let cache = KeyCache::new(
        Arc::new(fetch),
        Arc::new(SystemClock),
        CacheConfig::default(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Operational(format!("starting the runtime: {e}")))?;
    let mut report = Report { out };
    let (kind, claims) = match read(&token) {
        Ok(Read_ {
            kind: Some(kind),
            claims,
            ..
        }) => (kind, claims),
        Ok(_) => {
            return report.fail("token", "invalid_jwt", "its typ names no AAuth token type");
        }
        Err(e) => return report.fail("token", "invalid_jwt", &e.to_string()),
    };
    let ctx = Context {
        issuer: &issuer,
        audience: audience.as_ref(),
        claims: &claims,
        resolver: &cache,
    };
    runtime.block_on(async {
        match kind {
            TokenType::Agent => check::<AgentClaims>(&token, &ctx, &mut report).await,
            TokenType::Person => check::<PersonClaims>(&token, &ctx, &mut report).await,
            TokenType::Resource => check::<ResourceClaims>(&token, &ctx, &mut report).await,
            _ => check::<AuthClaims>(&token, &ctx, &mut report).await,
        }
    })
}

/// What a verification runs with.
struct Context<'a> {
    issuer: &'a ServerId,
    audience: Option<&'a ServerId>,
    claims: &'a Map<String, Value>,
    resolver: &'a dyn IssuerKeyResolver,
}

/// The checks, printed as they pass; the first failure is the result.
struct Report<'o> {
    out: &'o mut dyn Write,
}

impl Report<'_> {
    // What a check says may quote the token or its issuer (a refused `alg`, a `kid`, a
    // fetch's failure): escaped for the terminal.
    fn ok(&mut self, check: &str, says: &str) -> Result<(), CliError> {
        let says = printable(says);
        writeln!(self.out, "ok   {check}: {says}").map_err(CliError::file(Path::new("<stdout>")))
    }

    fn fail(&mut self, check: &'static str, code: &str, says: &str) -> Result<(), CliError> {
        let says = printable(says);
        writeln!(self.out, "FAIL {check}: {says}\n     error code: {code}")
            .map_err(CliError::file(Path::new("<stdout>")))?;
        Err(CliError::Refused {
            check,
            code: code.to_owned(),
        })
    }
}

impl Report<'_> {
    /// The token failure `e` at `check`: refused with the draft's error code (what a
    /// resource's `Signature-Error` says); a failure that is no verdict on the token (its
    /// issuer's keys unreachable: a resource answers `503`) is an operational error.
    fn refuse(&mut self, check: &'static str, e: TokenError, says: &str) -> Result<(), CliError> {
        match aauth_signing::VerifyError::Token(e).code() {
            Some(code) => self.fail(check, code.as_str(), says),
            None => Err(CliError::Operational(format!(
                "the {check} could not be fetched: {says}"
            ))),
        }
    }
}

async fn check<C: TokenClaims>(
    token: &str,
    ctx: &Context<'_>,
    report: &mut Report<'_>,
) -> Result<(), CliError> {
    let now = SystemClock.now();
    // Without --audience the token's own `aud` stands in (and the report says so).
    let own_aud = ctx
        .claims
        .get("aud")
        .and_then(Value::as_str)
        .and_then(|a| ServerId::parse(a).ok());
    let audience = ctx.audience.or(own_aud.as_ref());
    let mut v = Validation::new(now);
    if let Some(a) = audience {
        v = v.audience(a);
    }
    let unverified = match Unverified::<C>::decode(token, &v) {
        Ok(u) => u,
        Err(e) => {
            let said = e.to_string();
            return report.refuse("token", e, &said);
        }
    };
    report.ok(
        "token",
        &format!(
            "{} ({}), structure, claims and times",
            type_name(Some(C::TYPE)),
            C::TYPE.typ()
        ),
    )?;
    let req = unverified.key_request();
    if req.iss != ctx.issuer {
        let said = format!("iss is {}, not {}", req.iss, ctx.issuer);
        return report.fail("issuer", "issuer_mismatch", &said);
    }
    report.ok("issuer", req.iss.as_str())?;
    let key = match ctx.resolver.resolve(&req).await {
        Ok(k) => k,
        Err(e) => {
            let said = e.to_string();
            return report.refuse("key", TokenError::KeyResolution(e), &said);
        }
    };
    report.ok(
        "key",
        &format!("kid {:?} from {}'s {}", req.kid, req.iss, req.dwk),
    )?;
    let key = match unverified.check_signature(&key) {
        Ok(()) => key,
        // A cached key that fails: one refresh, as a resource does (-09 §7.2).
        Err(TokenError::BadSignature) => match ctx.resolver.refresh(&req).await {
            Ok(Some(fresh)) if fresh != key && unverified.check_signature(&fresh).is_ok() => fresh,
            _ => {
                return report.refuse(
                    "signature",
                    TokenError::BadSignature,
                    "does not verify under the issuer's key",
                );
            }
        },
        Err(e) => {
            let said = e.to_string();
            return report.refuse("signature", e, &said);
        }
    };
    report.ok(
        "signature",
        &format!("{} under the issuer's key", key.algorithm().as_str()),
    )?;
    match unverified.finish(&key, &v) {
        Ok(_) => {}
        Err(e) => {
            let said = e.to_string();
            return report.refuse("claims", e, &said);
        }
    }
    match (ctx.audience, audience) {
        (Some(a), _) => report.ok("audience", a.as_str())?,
        (None, Some(_)) => report.ok("audience", "not checked: pass --audience to check it")?,
        (None, None) => {}
    }
    writeln!(report.out, "\nverified").map_err(CliError::file(Path::new("<stdout>")))
}

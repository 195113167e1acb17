//! A real browser on the consent page: headless Chromium driven over W3C WebDriver
//! (`chromedriver`), reaching the demo world's servers under their own names.
//!
//! Chromium is told where the world's names live (`--host-resolver-rules`, every other
//! name unresolvable) and to accept exactly the world's server keys
//! (`--ignore-certificate-errors-spki-list`, the SHA-256 of each server's
//! SubjectPublicKeyInfo); nothing else about TLS is relaxed.
//!
//! The WebDriver client here is the handful of commands the test needs, over HTTP/1.1 to
//! `chromedriver` on loopback.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use aauth_agent::{AAuthClient, Agent, HttpPersonServer, HttpTokenSource, Interaction, PollPolicy};
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

use crate::parties::{Options, PASSWORD, parties};
use crate::world::World;

fn e<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// Where `name` is on `PATH`, if it is.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}

/// The browser and its driver: `AAUTH_CHROMIUM` and `AAUTH_CHROMEDRIVER` if set, else
/// `chromium` and `chromedriver` on `PATH`.
///
/// # Errors
///
/// Which of the two is missing.
pub fn find_browser() -> Result<(PathBuf, PathBuf), String> {
    let browser = std::env::var_os("AAUTH_CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| on_path("chromium"))
        .ok_or("no chromium on PATH (Debian: apt-get install chromium; or set AAUTH_CHROMIUM)")?;
    let driver = std::env::var_os("AAUTH_CHROMEDRIVER")
        .map(PathBuf::from)
        .or_else(|| on_path("chromedriver"))
        .ok_or(
            "no chromedriver on PATH (Debian: apt-get install chromium-driver; or set AAUTH_CHROMEDRIVER)",
        )?;
    Ok((browser, driver))
}

/// The Chromium flags that put a browser in `world`: its names resolve to its sockets
/// (and no other name resolves), its servers' keys are accepted.
#[must_use]
pub fn chromium_flags(world: &World) -> Vec<String> {
    let mut rules: Vec<String> = world
        .names()
        .iter()
        .map(|(host, addr)| format!("MAP {host} {addr}"))
        .collect();
    rules.push("MAP * ~NOTFOUND".to_owned());
    vec![
        format!("--host-resolver-rules={}", rules.join(", ")),
        format!(
            "--ignore-certificate-errors-spki-list={}",
            world.spki_hashes().join(",")
        ),
    ]
}

/// A `chromedriver` process and one browser session in it; both end on drop.
#[derive(Debug)]
pub struct WebDriver {
    child: Child,
    port: u16,
    session: String,
    profile: PathBuf,
}

impl Drop for WebDriver {
    fn drop(&mut self) {
        // Killing the driver does not end the browser it started: a browser still
        // running with this profile (a session not quit) is ended too.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("pkill")
            .arg("-f")
            .arg(self.profile.as_os_str())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl WebDriver {
    /// Starts `driver` on a free loopback port and opens a headless `browser` session
    /// with `flags`.
    ///
    /// # Errors
    ///
    /// What did not start.
    pub async fn start(browser: &Path, driver: &Path, flags: &[String]) -> Result<Self, String> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(e)?
            .port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|err| format!("{}: {err}", driver.display()))?;
        // The driver's port is ours alone while it runs: a fresh profile directory.
        let profile =
            std::env::temp_dir().join(format!("aauth-chromium-{}-{port}", std::process::id()));
        let mut wd = Self {
            child,
            port,
            session: String::new(),
            profile,
        };
        // The driver answers /status once it listens.
        let mut ready = false;
        for _ in 0..100 {
            if wd.call("GET", "/status", None).await.is_ok() {
                ready = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !ready {
            return Err("chromedriver did not answer within 10 s".to_owned());
        }
        let mut args = vec![
            "--headless=new".to_owned(),
            // Root in a container has no user namespace for the sandbox.
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--window-size=1000,900".to_owned(),
            format!("--user-data-dir={}", wd.profile.display()),
        ];
        args.extend_from_slice(flags);
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": { "binary": browser.display().to_string(), "args": args },
                }
            }
        });
        let v = wd.call("POST", "/session", Some(caps)).await?;
        wd.session = v
            .get("sessionId")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("no session: {v}"))?
            .to_owned();
        Ok(wd)
    }

    /// One WebDriver command; the `value` of its answer.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .map_err(e)?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
                .await
                .map_err(e)?;
        let conn = tokio::spawn(conn);
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let req = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", format!("127.0.0.1:{}", self.port))
            .header("content-type", "application/json")
            .body(Full::new(body))
            .map_err(e)?;
        let resp = sender.send_request(req).await.map_err(e)?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await.map_err(e)?.to_bytes();
        conn.abort();
        let v: Value = serde_json::from_slice(&bytes).map_err(e)?;
        let value = v.get("value").cloned().unwrap_or(Value::Null);
        if status.is_success() {
            Ok(value)
        } else {
            Err(format!("WebDriver {method} {path}: {status}: {value}"))
        }
    }

    fn at(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Ends the session (the browser quits), then the driver.
    pub async fn quit(self) {
        let _ended = self.call("DELETE", &self.at(""), None).await;
    }

    /// Opens `url`.
    ///
    /// # Errors
    ///
    /// The driver's answer.
    pub async fn goto(&self, url: &str) -> Result<(), String> {
        self.call("POST", &self.at("/url"), Some(json!({ "url": url })))
            .await
            .map(drop)
    }

    /// The first element matching CSS `selector`, waiting up to 20 s for it.
    ///
    /// # Errors
    ///
    /// None matched in time.
    pub async fn find(&self, selector: &str) -> Result<String, String> {
        let mut last = String::new();
        for _ in 0..200 {
            match self
                .call(
                    "POST",
                    &self.at("/element"),
                    Some(json!({ "using": "css selector", "value": selector })),
                )
                .await
            {
                Ok(v) => {
                    return v
                        .get(ELEMENT)
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .ok_or_else(|| format!("no element reference: {v}"));
                }
                Err(err) => last = err,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("no {selector} on the page: {last}"))
    }

    /// The text of the first element matching `selector` once it contains `needle`,
    /// waiting up to 20 s (across a navigation: a stale element is looked up again).
    ///
    /// # Errors
    ///
    /// The text last seen, if it never contained `needle`.
    pub async fn wait_for_text(&self, selector: &str, needle: &str) -> Result<String, String> {
        let mut last = String::new();
        for _ in 0..200 {
            if let Ok(el) = self.find(selector).await {
                match self.text(&el).await {
                    Ok(t) if t.contains(needle) => return Ok(t),
                    Ok(t) => last = t,
                    Err(err) => last = err,
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!("{selector} never said {needle:?}; last: {last}"))
    }

    /// Types `text` into element `el`.
    ///
    /// # Errors
    ///
    /// The driver's answer.
    pub async fn type_into(&self, el: &str, text: &str) -> Result<(), String> {
        self.call(
            "POST",
            &self.at(&format!("/element/{el}/value")),
            Some(json!({ "text": text })),
        )
        .await
        .map(drop)
    }

    /// Clicks element `el`.
    ///
    /// # Errors
    ///
    /// The driver's answer.
    pub async fn click(&self, el: &str) -> Result<(), String> {
        self.call(
            "POST",
            &self.at(&format!("/element/{el}/click")),
            Some(json!({})),
        )
        .await
        .map(drop)
    }

    /// The rendered text of element `el`.
    ///
    /// # Errors
    ///
    /// The driver's answer.
    pub async fn text(&self, el: &str) -> Result<String, String> {
        self.call("GET", &self.at(&format!("/element/{el}/text")), None)
            .await?
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "no text".to_owned())
    }

    /// The address the browser shows.
    ///
    /// # Errors
    ///
    /// The driver's answer.
    pub async fn url(&self) -> Result<String, String> {
        self.call("GET", &self.at("/url"), None)
            .await?
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "no URL".to_owned())
    }

    /// The names of the cookies the browser holds for the page it shows (`HttpOnly` ones
    /// included).
    ///
    /// # Errors
    ///
    /// The driver's answer.
    pub async fn cookie_names(&self) -> Result<Vec<String>, String> {
        let v = self.call("GET", &self.at("/cookie"), None).await?;
        Ok(v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.get("name").and_then(Value::as_str))
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Adds a secure, `HttpOnly` cookie for the page's host, as a server's `Set-Cookie`
    /// with `SameSite=Lax` would have.
    ///
    /// # Errors
    ///
    /// The driver's answer.
    pub async fn add_cookie(&self, name: &str, value: &str) -> Result<(), String> {
        let cookie = json!({
            "name": name, "value": value, "path": "/", "secure": true,
            "httpOnly": true, "sameSite": "Lax",
        });
        self.call(
            "POST",
            &self.at("/cookie"),
            Some(json!({ "cookie": cookie })),
        )
        .await
        .map(drop)
    }

    /// Forgets every cookie of the page's host.
    ///
    /// # Errors
    ///
    /// The driver's answer.
    pub async fn delete_cookies(&self) -> Result<(), String> {
        self.call("DELETE", &self.at("/cookie"), None)
            .await
            .map(drop)
    }

    /// A PNG of the viewport.
    ///
    /// Resizes the window to `width` × `height` CSS pixels (a desktop, a phone).
    ///
    /// # Errors
    ///
    /// The driver's answer.
    pub async fn window_size(&self, width: u32, height: u32) -> Result<(), String> {
        self.call(
            "POST",
            &self.at("/window/rect"),
            Some(json!({ "width": width, "height": height })),
        )
        .await
        .map(drop)
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page, as WebDriver
    /// does (outside the page's `Content-Security-Policy`), and returns its value, a
    /// promise's once it settles.
    ///
    /// # Errors
    ///
    /// The driver's answer, or the script's exception.
    pub async fn execute(&self, script: &str, args: Value) -> Result<Value, String> {
        self.call(
            "POST",
            &self.at("/execute/sync"),
            Some(json!({ "script": script, "args": args })),
        )
        .await
    }

    /// # Errors
    ///
    /// The driver's answer.
    pub async fn screenshot(&self) -> Result<Vec<u8>, String> {
        let b64 = self.call("GET", &self.at("/screenshot"), None).await?;
        base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().ok_or("no screenshot")?)
            .map_err(e)
    }
}

/// The agent calls resource.example's calendar, which needs the person (the assistant
/// is not yet bound at `p`'s Person Server): the call, running, and the interaction the
/// agent hands its person.
///
/// # Errors
///
/// The agent never asked its person.
pub(crate) async fn waiting_call(
    p: &crate::parties::Parties,
) -> Result<
    (
        tokio::task::JoinHandle<Result<http::Response<Bytes>, String>>,
        Interaction,
    ),
    String,
> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Interaction>();
    let transport = p.world.agent_transport();
    let agent_key: Arc<dyn aauth_keys::Signer> = p.agent_key.clone();
    let agent = Arc::new(Agent::new(
        p.agent_id.clone(),
        agent_key,
        Arc::new(HttpTokenSource::new(
            p.provider.id().clone(),
            transport.clone(),
        )),
    ));
    let ps_client = HttpPersonServer::new(p.ps.id().clone(), transport.clone())
        .clock(Arc::clone(&p.clock))
        .poll_policy(
            PollPolicy::default()
                .prefer_wait(Duration::from_secs(20))
                .deadline(Duration::from_secs(90)),
        )
        .on_interaction(move |i| {
            let _sent = tx.send(i.clone());
        });
    let client = AAuthClient::builder(agent)
        .clock(Arc::clone(&p.clock))
        .person_server(Arc::new(ps_client), p.agent_keys())
        .build(transport);
    let call = tokio::spawn(async move {
        let req = http::Request::get("https://resource.example/calendar/today")
            .body(Bytes::new())
            .map_err(e)?;
        client.send(req).await.map_err(e)
    });
    let interaction = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .map_err(|_| "the agent never asked its person")?
        .ok_or("the agent never asked its person")?;

    Ok((call, interaction))
}

/// What the browser saw and what the agent got.
#[derive(Debug)]
pub struct ConsentInBrowser {
    /// The text of the consent page's part the resource asserts.
    pub resource_section: String,
    /// The text of the part the agent asserts about itself.
    pub agent_section: String,
    /// The text of the page after approving.
    pub done_page: String,
    /// The screenshot of the consent page, where it was saved.
    pub screenshot: PathBuf,
    /// The resource's answer to the agent's call once the person approved.
    pub status: http::StatusCode,
    /// Its body.
    pub body: Value,
}

/// Demo 4 with a real browser as the person: the agent's call is deferred for consent,
/// Chromium opens the interaction link, signs in as alice, reads the request, approves;
/// the agent's poll yields the person token and the call goes through with an auth
/// token. Saves a screenshot of the consent page in `shots`.
///
/// # Errors
///
/// The first step that failed.
pub async fn consent_in_browser(
    browser: &Path,
    driver: &Path,
    shots: &Path,
) -> Result<ConsentInBrowser, String> {
    let p = parties(Options::consenting()).await?;
    let (call, interaction) = waiting_call(&p).await?;
    let wd = WebDriver::start(browser, driver, &chromium_flags(&p.world)).await?;
    let link = format!("{}?code={}", interaction.url, interaction.code);
    let seen = approve_in_browser(&wd, &link, ("alice", PASSWORD), shots, "consent-page").await;
    wd.quit().await;
    let Approved {
        resource_section,
        agent_section,
        done_page,
        screenshot,
    } = seen?;

    let resp = tokio::time::timeout(Duration::from_secs(60), call)
        .await
        .map_err(|_| "the agent's call did not finish after the approval")?
        .map_err(e)??;
    let body = serde_json::from_slice(resp.body()).unwrap_or(Value::Null);
    Ok(ConsentInBrowser {
        resource_section,
        agent_section,
        done_page,
        screenshot,
        status: resp.status(),
        body,
    })
}

/// What the person saw on the way: the consent page's resource and agent sections, the
/// page after approving, and the consent page's screenshot.
#[derive(Debug, Clone)]
pub struct Approved {
    /// The text of the section on what the resource asks.
    pub resource_section: String,
    /// The text of the section on what the agent says.
    pub agent_section: String,
    /// The text of the page after approving.
    pub done_page: String,
    /// Where the consent page's screenshot is.
    pub screenshot: PathBuf,
}

/// The person at the browser: opens the link (`…/interact?code=…`), signs in as `account`
/// with `password`, reads, approves. What they saw; the consent page's screenshot is saved
/// in `shots` as `{shot}.png`.
///
/// # Errors
///
/// The first step that failed, or a consent page that is not `https://ps.example`'s.
pub async fn approve_in_browser(
    wd: &WebDriver,
    link: &str,
    (account, password): (&str, &str),
    shots: &Path,
    shot: &str,
) -> Result<Approved, String> {
    wd.goto(link).await?;
    let user = wd.find("input[name=username]").await?;
    wd.type_into(&user, account).await?;
    let pass = wd.find("input[name=password]").await?;
    wd.type_into(&pass, password).await?;
    let sign_in = wd.find("button[type=submit]").await?;
    wd.click(&sign_in).await?;

    let grant = wd.find("button[value=grant]").await?;
    let resource_section = wd.text(&wd.find("section.resource").await?).await?;
    let agent_section = wd.text(&wd.find("section.agent").await?).await?;
    std::fs::create_dir_all(shots).map_err(e)?;
    let screenshot = shots.join(format!("{shot}.png"));
    std::fs::write(&screenshot, wd.screenshot().await?).map_err(e)?;
    let consent_url = wd.url().await?;
    if !consent_url.starts_with("https://ps.example/") {
        return Err(format!(
            "the consent page is not the Person Server's: {consent_url}"
        ));
    }
    wd.click(&grant).await?;
    let done_page = wd.wait_for_text("body", "Approved").await?;
    Ok(Approved {
        resource_section,
        agent_section,
        done_page,
        screenshot,
    })
}

/// A person's request waiting at a Person Server whose sign-in page offers an OpenID
/// Provider served in the world, and a headless browser to answer it with.
pub struct ProviderSignIn {
    p: crate::parties::Parties,
    call: tokio::task::JoinHandle<Result<http::Response<Bytes>, String>>,
    link: String,
    /// The browser.
    pub wd: WebDriver,
}

impl std::fmt::Debug for ProviderSignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderSignIn")
            .field("link", &self.link)
            .finish_non_exhaustive()
    }
}

/// Where the browser landed after the provider sent it back.
#[derive(Debug, Clone)]
pub struct Landed {
    /// The address it shows.
    pub url: String,
    /// The page's text.
    pub text: String,
    /// Whether it holds a Person Server session cookie.
    pub session: bool,
}

impl ProviderSignIn {
    /// The demo parties served in `world` (the provider served there already), the Person
    /// Server offering `provider`; the agent's call waiting for the person; a browser.
    ///
    /// # Errors
    ///
    /// The first step that failed.
    pub async fn start(
        browser: &Path,
        driver: &Path,
        world: World,
        provider: aauth_person_server::SignInProvider,
    ) -> Result<Self, String> {
        let p = crate::parties::parties_in(world, Options::consenting(), Some(provider)).await?;
        let (call, interaction) = waiting_call(&p).await?;
        let wd = WebDriver::start(browser, driver, &chromium_flags(&p.world)).await?;
        let link = format!("{}?code={}", interaction.url, interaction.code);
        Ok(Self { p, call, link, wd })
    }

    /// Opens the agent's link with no cookies and follows the page's "Sign in with …"
    /// through the provider and back: where the browser lands (the consent page, or a
    /// page that says what failed).
    ///
    /// # Errors
    ///
    /// A page offering no provider, or a browser that never came back.
    pub async fn sign_in(&self) -> Result<Landed, String> {
        self.wd.goto(&self.link).await?;
        self.wd.delete_cookies().await?;
        self.wd.goto(&self.link).await?;
        let choice = self.wd.find("a.sign-in-provider").await?;
        self.wd.click(&choice).await?;
        self.landed().await
    }

    /// Waits until the browser is back at the Person Server, on the consent page or on
    /// the sign-in callback's own page: what it shows.
    ///
    /// # Errors
    ///
    /// It did not come back within 20 s.
    pub async fn landed(&self) -> Result<Landed, String> {
        let mut last = String::new();
        for _ in 0..200 {
            let url = self.wd.url().await?;
            let back = url.starts_with("https://ps.example/interact?code=")
                || url.starts_with("https://ps.example/interact/oidc/callback");
            if back
                && let Ok(body) = self.wd.find("body").await
                && let Ok(text) = self.wd.text(&body).await
                && (text.contains("Approve")
                    || text.contains("not signed in")
                    || text.contains("No account")
                    || text.contains("disabled"))
            {
                let session = self
                    .wd
                    .cookie_names()
                    .await?
                    .iter()
                    .any(|n| n == "__Host-aauth-session");
                return Ok(Landed { url, text, session });
            }
            last = url;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!(
            "the browser never came back from the provider: {last}"
        ))
    }

    /// What an attacker who got hold of this browser's sign-in would have: the Person
    /// Server's answer to starting a sign-in (from outside the browser), its sealed
    /// cookie planted in the browser. The authorization URL it was sent to.
    ///
    /// # Errors
    ///
    /// The Person Server did not start a sign-in.
    pub async fn planted_start(&self, provider: &str) -> Result<String, String> {
        self.wd.goto(&self.link).await?;
        self.wd.delete_cookies().await?;
        let code = self.link.split("code=").nth(1).unwrap_or_default();
        let req = http::Request::get(format!(
            "https://ps.example/interact/oidc?provider={provider}&code={code}"
        ))
        .body(Vec::new())
        .map_err(e)?;
        let resp = self.p.world.send(req).await?;
        let header = |name| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .ok_or_else(|| format!("no {name} in {}", resp.status()))
        };
        let cookie = header("set-cookie")?;
        let (name, rest) = cookie.split_once('=').ok_or("a cookie")?;
        let value = rest.split(';').next().unwrap_or_default();
        self.wd.add_cookie(name, value).await?;
        header("location")
    }

    /// The browser on the consent page approves; the agent's call then completes: its
    /// status and body.
    ///
    /// # Errors
    ///
    /// The first step that failed.
    pub async fn approve(self) -> Result<(http::StatusCode, Value), String> {
        let grant = self.wd.find("button[value=grant]").await?;
        self.wd.click(&grant).await?;
        self.wd.wait_for_text("body", "Approved").await?;
        self.wd.quit().await;
        let resp = tokio::time::timeout(Duration::from_secs(60), self.call)
            .await
            .map_err(|_| "the agent's call did not finish after the approval")?
            .map_err(e)??;
        let body = serde_json::from_slice(resp.body()).unwrap_or(Value::Null);
        Ok((resp.status(), body))
    }
}

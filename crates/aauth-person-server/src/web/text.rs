//! The message catalogue: every text the person's pages show lives here, once, under a
//! stable key. English ships; a deployment translates by giving [`Messages::from_entries`]
//! a text for every key (the `aauth` command reads them from a TOML file).
//!
//! A text may carry placeholders, `{name}`, which the page fills: with plain text (escaped
//! like everything else) or with markup the page builds (a link, a name in bold). A
//! translation must use exactly the placeholders of the English text, so no page ever shows
//! a `{name}` it did not fill or drops what it must say.

use std::collections::BTreeSet;

use maud::{Markup, PreEscaped, Render};

macro_rules! catalogue {
    ($($variant:ident $key:literal $english:literal)*) => {
        /// One text of the person's pages. Each variant's documentation is its English text.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[non_exhaustive]
        pub enum Text {
            $(
                #[doc = $english]
                $variant,
            )*
        }

        impl Text {
            /// Every text, in catalogue order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),*];

            /// The text's stable key, as a translation names it (`"consent.approve"`).
            #[must_use]
            pub const fn key(self) -> &'static str {
                match self {
                    $(Self::$variant => $key,)*
                }
            }

            /// The English text.
            #[must_use]
            pub const fn english(self) -> &'static str {
                match self {
                    $(Self::$variant => $english,)*
                }
            }
        }
    };
}

catalogue! {
    // The frame of every page.
    PersonServer "page.person_server" "Person Server"
    SkipToContent "page.skip" "Skip to the content"
    // Signing in and out.
    SignInTitle "sign_in.title" "Sign in to approve an agent's request"
    SignInWith "sign_in.with" "Sign in with {provider}"
    Account "sign_in.account" "Account"
    Password "sign_in.password" "Password"
    SignInButton "sign_in.button" "Sign in"
    OrWithPassword "sign_in.or_password" "Or with your account's password"
    WrongPassword "sign_in.wrong" "Wrong account or password."
    TooLong "sign_in.too_long" "That account or password is too long."
    PasswordsOff "sign_in.passwords_off" "Accounts here sign in with their provider, not with a password."
    BusyHashing "sign_in.busy" "Too many sign-ins at once. Try again in a moment."
    AccountDisabled "sign_in.disabled" "This account is disabled. Ask the people who run this service."
    SignedInAs "session.signed_in_as" "Signed in as {account}."
    NotYou "session.not_you" "Not you? Sign out"
    SignedOutTitle "session.signed_out_title" "Signed out"
    SignedOut "session.signed_out" "You are signed out."
    SignInAgain "session.sign_in_again" "Sign in to this request again"
    NotSignedIn "session.not_signed_in" "You are not signed in."
    SignInFirst "session.sign_in_first" "Sign in first."
    OpenTheLink "session.open_link" "Open the link your agent gave you to see what it asks."
    // Signing in with an OpenID Provider.
    NoSuchProvider "oidc.no_provider" "There is no such way to sign in here."
    SignInExpired "oidc.expired" "This sign-in expired or was started in another browser. Open the agent's link again."
    SignInFailedWith "oidc.failed" "Signing in with {provider} failed: {reason} ({code}). You are not signed in."
    NotForThisBrowser "oidc.not_this_browser" "the answer is not for this browser's sign-in"
    ProviderRefused "oidc.refused" "the provider did not sign you in"
    ProviderUnreachable "oidc.unreachable" "the provider cannot be reached"
    ProviderNoExchange "oidc.no_exchange" "the provider did not exchange the code"
    IdentityUnverified "oidc.unverified" "the provider's statement of who you are did not verify"
    NoLinkedAccount "oidc.no_account" "No account here is linked to you at {provider}. Ask the people who run this service."
    SignedInTitle "oidc.signed_in_title" "Signed in"
    SignedInWith "oidc.signed_in_with" "Signed in with {provider}. {link}."
    ContinueToRequest "oidc.continue" "Continue to the request"
    // Codes, forms and limits.
    NoSuchCode "code.none" "This code matches no open request. It may have expired or been used."
    TooManyCodes "code.too_many" "Too many wrong codes. Sign in again later."
    WaitWrongCodes "code.wait" "Too many wrong codes. Try again in {seconds} seconds."
    WaitFailedSignIns "sign_in.wait" "Too many failed sign-ins. Try again in {seconds} seconds."
    FormExpired "form.expired" "The form expired. Open the link again."
    CrossSite "form.cross_site" "This form was sent from another site. Nothing was changed."
    NotHere "page.not_here" "Not here."
    ServerTrouble "page.trouble" "This server could not answer just now ({status}). Nothing was changed by this page; try again in a moment."
    RequestChanged "consent.changed_conflict" "This request changed while you were answering it. Open the link again."
    AlreadyAnswered "consent.gone" "This request has already been answered or has expired."
    // The consent page.
    ConsentTitle "consent.title" "An agent asks for your approval"
    YourPersonServer "consent.your_ps" "Your Person Server"
    TheResource "consent.resource" "The resource"
    Asks "consent.asks" "asks {what}"
    AskPersonToken "consent.ask.person_token" "to know who you are at this resource (a person token: no access is granted)"
    AskAuthToken "consent.ask.auth_token" "for access with scope: {scope}"
    AskAuthTokenBudget "consent.ask.auth_token_budget" "for access with scope: {scope}, spending up to {budget}"
    NoScope "consent.ask.no_scope" "(none)"
    AskMission "consent.ask.mission" "for your approval of a mission, for the resources: {resources}"
    NoneNamed "consent.ask.none_named" "(none named)"
    AskCompletion "consent.ask.completion" "for your acceptance that mission {mission} is complete"
    AskPermission "consent.ask.permission" "for your permission for the action: {action}"
    AskAnswer "consent.ask.answer" "for your answer to the agent's question"
    Changed "consent.changed" "The agent changed this request since it first asked."
    Lasts "consent.lasts" "What you approve lasts up to {minutes} minutes; after that the agent must ask again."
    MissionHeading "consent.mission.heading" "Within the agent's mission"
    MissionBudget "consent.mission.budget" "Budget: {spent} spent of {total}, {left} left."
    MissionConstraints "consent.mission.constraints" "What the mission allows:"
    MissionUnknown "consent.mission.unknown" "The agent names a mission this server does not hold for you."
    MissionEnded "consent.mission.ended" "This mission has ended; nothing more is granted under it."
    MissionUntil "consent.mission.until" "until {time}"
    MissionResources "consent.mission.resources" "only the resources: {list}"
    MissionTools "consent.mission.tools" "only the tools: {list}"
    MissionGrants "consent.mission.grants" "{used} of {max} tokens used"
    AgentHeading "consent.agent.heading" "The agent (as it describes itself)"
    AgentClaim "consent.agent.claim" "What follows is the agent's own claim; your Person Server has not checked it."
    From "consent.agent.from" "from {provider}"
    RunsOn "consent.agent.runs_on" "runs on {platform}"
    AgentSays "consent.agent.says" "The agent says:"
    NotLinked "consent.agent.not_linked" "This agent is not yet linked to your account."
    ApprovingLinks "consent.agent.approving_links" "Approving links it."
    Approve "consent.approve" "Approve"
    ApproveOnce "consent.approve_once" "Approve once"
    ApproveForMission "consent.approve_mission" "Approve for this mission"
    MissionWideHint "consent.approve_mission_hint" "Approving for this mission lets the agent get this access again under this mission without asking you, until the mission ends."
    MissionStanding "consent.mission.standing" "approved for the whole mission: {scope} at {resource}"
    Deny "consent.deny" "Deny"
    YouAsked "chat.you_asked" "You asked:"
    AgentAnswered "chat.agent_answered" "The agent answered:"
    WaitingForAgent "chat.waiting" "(waiting for the agent)"
    AskTheAgent "chat.ask_label" "Ask the agent"
    Ask "chat.ask" "Ask"
    QuestionsLeft "chat.left" "({left} of {max} questions left)"
    AccessServerAsks "chat.access_server_asks" "The resource's Access Server asks you:"
    YourAnswer "chat.your_answer" "Your answer"
    Answer "chat.answer" "Answer"
    QuestionSentTitle "chat.sent_title" "Question sent"
    QuestionSent "chat.sent" "The agent will answer. {link} to read its answer."
    ReloadRequest "chat.reload" "Reload the request"
    CannotAsk "chat.cannot_ask" "You cannot ask the agent a question now."
    WriteAnswer "chat.write_answer" "Write an answer first."
    AnsweredForAccessServer "chat.answered_as" "Answered. Your Person Server passes it on to the resource's Access Server."
    NothingToAnswer "chat.nothing" "There is nothing to answer here."
    AnsweredReturn "chat.answered" "Answered. You can return to your agent."
    ChangedWhileReading "consent.changed_reading" "The agent changed its request while you were reading it. Open the link again to see what it asks now."
    LinkedElsewhere "consent.linked_elsewhere" "This agent has been linked to another person since it asked. Nothing was approved."
    NoLongerLinked "consent.no_longer_linked" "This agent is no longer linked to your account. Nothing was approved."
    QuestionNotApproved "consent.question_not_approved" "A question is answered, not approved. Nothing was approved."
    ApprovedReturn "consent.approved" "Approved. You can return to your agent."
    DeniedTold "consent.denied" "Denied. The agent has been told."
    // What the resource says of itself.
    ResourceLogo "resource.logo" "The resource's logo"
    CallsItself "resource.calls_itself" "It calls itself {name}."
    AccessMode "resource.access_mode" "Access mode {mode}: {meaning}."
    ModePersonToken "resource.mode.person_token" "it serves requests on who you are alone: knowing you is access there"
    ModeAuthToken "resource.mode.auth_token" "it grants access only with an authorization from your Person Server"
    ModeSessionToken "resource.mode.session_token" "it manages access itself, with its own sign-in and consent"
    ModeAgentToken "resource.mode.agent_token" "it serves requests on the agent's identity"
    NoScopeDescription "resource.no_scope_description" "(the resource describes no such scope)"
    TermsOfService "resource.tos" "Terms of service"
    PrivacyPolicy "resource.policy" "Privacy policy"
    // The person's account.
    AccountTitle "account.title" "Your account"
    YourAccount "account.link" "Your account"
    SignOut "account.sign_out" "Sign out"
    AgentsHeading "account.agents.heading" "Your agents"
    NoAgents "account.agents.none" "No agent is linked to your account."
    ColAgent "account.col.agent" "Agent"
    ColProvider "account.col.provider" "Provider"
    ColFirstSeen "account.col.first_seen" "First seen"
    ColLastSeen "account.col.last_seen" "Last seen"
    ColTokens "account.col.tokens" "Tokens issued"
    ColKind "account.col.kind" "Kind"
    ColResource "account.col.resource" "Resource"
    ColValidUntil "account.col.valid_until" "Valid until"
    ColTime "account.col.time" "Time"
    ColDecision "account.col.decision" "What"
    ColDetail "account.col.detail" "Detail"
    Never "account.never" "never"
    UnlinkRevoke "account.agents.revoke" "Unlink and revoke"
    MissionsHeading "account.missions.heading" "Your missions"
    NoMissions "account.missions.none" "No mission."
    MissionActive "account.missions.active" "Active"
    MissionEndedAs "account.missions.ended_as" "Ended: {reason}"
    MissionLogHeading "account.missions.log" "Its log"
    Terminate "account.missions.terminate" "Terminate"
    TokensHeading "account.tokens.heading" "Tokens issued in your name"
    NoTokens "account.tokens.none" "No token issued in your name is still valid."
    TokensMore "account.tokens.more" "Only the {shown} that end soonest are listed. Unlinking an agent revokes all of its tokens at once."
    PersonTokenKind "account.tokens.person" "person token"
    AuthTokenKind "account.tokens.auth" "auth token"
    Revoke "account.tokens.revoke" "Revoke"
    AuditHeading "account.audit.heading" "What happened"
    FilterAgent "account.audit.agent" "Agent"
    FilterResource "account.audit.resource" "Resource"
    FilterDecision "account.audit.decision" "What"
    FilterAny "account.audit.any" "anything"
    FilterSince "account.audit.since" "From (day)"
    FilterUntil "account.audit.until" "To (day)"
    FilterButton "account.audit.filter" "Show"
    ActionApproved "account.action.approved" "approved"
    ActionDenied "account.action.denied" "denied"
    ActionIssued "account.action.issued" "issued"
    ActionRevoked "account.action.revoked" "revoked"
    ActionAccount "account.action.account" "account changed"
    ActionRefused "account.action.refused" "refused"
    ActionMission "account.action.mission" "mission changed"
    BadFilter "account.audit.bad_filter" "That filter is not one: {field}."
    NoEvents "account.audit.none" "Nothing recorded matches."
    OlderEvents "account.audit.older" "Older events"
    DownloadCsv "account.audit.csv" "Download as CSV"
    DownloadJson "account.audit.json" "Download as JSON"
    ConfirmTitle "account.confirm.title" "Are you sure?"
    ConfirmRevokeToken "account.confirm.token" "Revoke this {kind} for {resource}? The agent can no longer use it, nor any token obtained with it."
    ConfirmRevokeAgent "account.confirm.agent" "Unlink {agent} and revoke every token it holds in your name? It will need your approval again."
    ConfirmTerminate "account.confirm.mission" "Terminate this mission? No more tokens are issued under it, and it cannot be resumed."
    ConfirmYes "account.confirm.yes" "Yes, do it"
    Cancel "account.confirm.cancel" "Cancel"
    DoneTitle "account.done.title" "Done"
    DoneRevokedToken "account.done.token" "The token is revoked, and so is every token obtained with it."
    DoneRevokedAgent "account.done.agent" "The agent is unlinked. Tokens revoked: {count}."
    DoneTerminated "account.done.mission" "The mission is terminated."
    BackToAccount "account.back" "Back to your account"
    NotFound "account.not_found" "There is nothing of yours here."
    // The resource's own step before consent.
    BackFromResource "resource_flow.back" "Back from the resource"
    Continue "resource_flow.continue" "Continue"
    ResourceFirstTitle "resource_flow.title" "The resource asks first"
    ResourceFirst "resource_flow.first" "The resource {resource} needs you to grant it access on its own page first; your Person Server asks you after that."
    ContinueToResource "resource_flow.continue_to" "Continue to the resource"
    SignInThenFollow "resource_flow.sign_in" "Sign in, then follow the agent's link again."
    OverOrNotYours "resource_flow.over" "This request is over, or not yours."
    ResourceStepFailed "resource_flow.failed" "The resource's step did not complete. Your agent is told."
}

/// What is wrong with a catalogue given to [`Messages::from_entries`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessagesError {
    /// The language tag is not a BCP 47 tag's shape (letters, digits and `-`, 1–35
    /// characters, starting with a letter).
    #[error(
        "the language tag {lang:?} is not one (letters, digits and '-', starting with a letter)"
    )]
    Lang {
        /// The tag given.
        lang: String,
    },
    /// A key the catalogue does not have.
    #[error("{key:?} is not a key of the message catalogue")]
    Unknown {
        /// The key.
        key: String,
    },
    /// A key given twice.
    #[error("{key:?} is given twice")]
    Duplicate {
        /// The key.
        key: String,
    },
    /// A key with no text.
    #[error("{key:?} has no text (the English is {english:?})")]
    Missing {
        /// The key.
        key: &'static str,
        /// What the English says.
        english: &'static str,
    },
    /// A text whose placeholders differ from the English text's.
    #[error("{key:?} must use the placeholders {expected:?}, and uses {found:?}")]
    Placeholders {
        /// The key.
        key: &'static str,
        /// The English text's placeholders.
        expected: Vec<String>,
        /// The translation's.
        found: Vec<String>,
    },
}

/// The texts of the person's pages in one language, with its `lang` tag.
///
/// ```
/// use aauth_person_server::{Messages, Text};
///
/// let en = Messages::english();
/// assert_eq!(en.lang(), "en");
/// assert_eq!(en.text(Text::Approve), "Approve");
///
/// // A translation gives every key a text, with the English text's placeholders.
/// let de = Messages::from_entries(
///     "de",
///     Text::ALL.iter().map(|t| match t {
///         Text::Approve => (t.key(), "Erlauben"),
///         t => (t.key(), t.english()),
///     }),
/// )
/// .unwrap();
/// assert_eq!(de.text(Text::Approve), "Erlauben");
///
/// // A placeholder lost is refused, with the key it concerns.
/// let broken = Messages::from_entries(
///     "de",
///     Text::ALL.iter().map(|t| match t {
///         Text::SignedInAs => (t.key(), "Angemeldet."),
///         t => (t.key(), t.english()),
///     }),
/// );
/// assert!(broken.unwrap_err().to_string().contains("session.signed_in_as"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Messages {
    lang: String,
    texts: Vec<Box<str>>,
}

impl Default for Messages {
    fn default() -> Self {
        Self::english()
    }
}

impl Messages {
    /// The shipped catalogue: English (`en`).
    #[must_use]
    pub fn english() -> Self {
        Self {
            lang: "en".to_owned(),
            texts: Text::ALL.iter().map(|t| Box::from(t.english())).collect(),
        }
    }

    /// A catalogue in `lang` from `(key, text)` pairs: every key of [`Text::ALL`] once,
    /// each text with exactly the placeholders of its English text.
    ///
    /// # Errors
    ///
    /// [`MessagesError`], naming the first key that is unknown, repeated, missing or has
    /// other placeholders, or the language tag.
    pub fn from_entries<K, V>(
        lang: &str,
        entries: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, MessagesError>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let tag_ok = (1..=35).contains(&lang.len())
            && lang.starts_with(|c: char| c.is_ascii_alphabetic())
            && lang.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !tag_ok {
            return Err(MessagesError::Lang {
                lang: lang.to_owned(),
            });
        }
        let mut texts: Vec<Option<Box<str>>> = vec![None; Text::ALL.len()];
        for (key, text) in entries {
            let key = key.as_ref();
            let Some(i) = Text::ALL.iter().position(|t| t.key() == key) else {
                return Err(MessagesError::Unknown {
                    key: key.to_owned(),
                });
            };
            if texts[i].is_some() {
                return Err(MessagesError::Duplicate {
                    key: key.to_owned(),
                });
            }
            let t = Text::ALL[i];
            let (expected, found) = (placeholders(t.english()), placeholders(text.as_ref()));
            if expected != found {
                return Err(MessagesError::Placeholders {
                    key: t.key(),
                    expected: expected.into_iter().collect(),
                    found: found.into_iter().collect(),
                });
            }
            texts[i] = Some(Box::from(text.as_ref()));
        }
        let texts = texts
            .into_iter()
            .zip(Text::ALL)
            .map(|(text, t)| {
                text.ok_or(MessagesError::Missing {
                    key: t.key(),
                    english: t.english(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            lang: lang.to_owned(),
            texts,
        })
    }

    /// The language tag pages carry in `<html lang>`.
    #[must_use]
    pub fn lang(&self) -> &str {
        &self.lang
    }

    /// The text of `t`, its placeholders unfilled.
    #[must_use]
    pub fn text(&self, t: Text) -> &str {
        self.texts.get(t as usize).map_or(t.english(), |s| s)
    }

    /// `t` with its placeholders filled with plain text (for a log or an audit line, or to
    /// be escaped by the page like any text).
    #[must_use]
    pub fn fill(&self, t: Text, args: &[(&str, &str)]) -> String {
        let mut out = String::new();
        fill_with(self.text(t), |piece| match piece {
            Piece::Literal(s) => out.push_str(s),
            Piece::Placeholder(name) => match args.iter().find(|(n, _)| *n == name) {
                Some((_, v)) => out.push_str(v),
                None => {
                    out.push('{');
                    out.push_str(name);
                    out.push('}');
                }
            },
        });
        out
    }

    /// `t` as markup: its own words escaped, each placeholder replaced by the markup
    /// given for it (already escaped where it holds text).
    pub(crate) fn markup(&self, t: Text, args: &[(&str, Markup)]) -> Markup {
        let mut out = String::new();
        fill_with(self.text(t), |piece| match piece {
            Piece::Literal(s) => s.render_to(&mut out),
            Piece::Placeholder(name) => match args.iter().find(|(n, _)| *n == name) {
                Some((_, m)) => out.push_str(&m.0),
                None => format!("{{{name}}}").render_to(&mut out),
            },
        });
        PreEscaped(out)
    }
}

/// The shipped English catalogue, made once (for what is written in English whatever
/// the pages speak: the audit trail).
pub(crate) fn english() -> &'static Messages {
    static ENGLISH: std::sync::LazyLock<Messages> = std::sync::LazyLock::new(Messages::english);
    &ENGLISH
}

enum Piece<'a> {
    Literal(&'a str),
    Placeholder(&'a str),
}

/// Walks `text`, calling `f` with its literal runs and its placeholders in order. A
/// placeholder is `{` + lowercase letters, digits or `_` + `}`; any other brace is text.
fn fill_with<'a>(text: &'a str, mut f: impl FnMut(Piece<'a>)) {
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let name_len = after
            .bytes()
            .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
            .count();
        if name_len > 0 && after.as_bytes().get(name_len) == Some(&b'}') {
            f(Piece::Literal(&rest[..open]));
            f(Piece::Placeholder(&after[..name_len]));
            rest = &after[name_len + 1..];
        } else {
            f(Piece::Literal(&rest[..=open]));
            rest = after;
        }
    }
    f(Piece::Literal(rest));
}

/// The placeholders of `text`.
fn placeholders(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    fill_with(text, |p| {
        if let Piece::Placeholder(name) = p {
            out.insert(name.to_owned());
        }
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_texts_fill() {
        let keys: BTreeSet<_> = Text::ALL.iter().map(|t| t.key()).collect();
        assert_eq!(keys.len(), Text::ALL.len(), "a key is used twice");
        // Keys nest as tables in a translation file: none is another's table.
        for k in &keys {
            assert!(
                !keys.iter().any(|other| other.starts_with(&format!("{k}."))),
                "{k} is also a table"
            );
        }
        let en = Messages::english();
        assert_eq!(
            en.fill(Text::WaitWrongCodes, &[("seconds", "30")]),
            "Too many wrong codes. Try again in 30 seconds."
        );
        let m = en.markup(
            Text::SignedInAs,
            &[("account", maud::html! { strong { "<al>" } })],
        );
        assert_eq!(m.0, "Signed in as <strong>&lt;al&gt;</strong>.");
        // A brace that is no placeholder is text, escaped.
        let mut out = String::new();
        fill_with("a {b c} {} {ok}{", |p| match p {
            Piece::Literal(s) => out.push_str(s),
            Piece::Placeholder(s) => out.push_str(&format!("[{s}]")),
        });
        assert_eq!(out, "a {b c} {} [ok]{");
    }

    #[test]
    fn translations_are_checked_whole() {
        let all = || Text::ALL.iter().map(|t| (t.key(), t.english()));
        assert!(Messages::from_entries("fr-CA", all()).is_ok());
        assert!(matches!(
            Messages::from_entries("<en>", all()),
            Err(MessagesError::Lang { .. })
        ));
        assert!(matches!(
            Messages::from_entries("fr", all().skip(1)),
            Err(MessagesError::Missing {
                key: "page.person_server",
                ..
            })
        ));
        assert!(matches!(
            Messages::from_entries("fr", all().chain([("nope", "x")])),
            Err(MessagesError::Unknown { .. })
        ));
        assert!(matches!(
            Messages::from_entries("fr", all().chain([("consent.deny", "Refuser")])),
            Err(MessagesError::Duplicate { .. })
        ));
        let extra = all().map(|(k, v)| {
            if k == "consent.deny" {
                (k, "Refuser {x}")
            } else {
                (k, v)
            }
        });
        assert!(matches!(
            Messages::from_entries("fr", extra),
            Err(MessagesError::Placeholders {
                key: "consent.deny",
                ..
            })
        ));
    }
}

//! The one polling loop behind every deferred answer the agent follows: a resource's, a
//! Person Server's (draft -11, "Deferred Responses": "Pending Response", "Polling with
//! GET", "Deferred Response State Machine").
//!
//! Once a `202` has named a pending URL, each answer to a poll means one thing, whoever
//! sent it:
//!
//! | Status | What the loop does |
//! |---|---|
//! | `2xx` | done: the answer is returned |
//! | `202` | still pending: the client acts on it (prompts the person, answers a clarification, obtains an auth token); polls again after `Retry-After` (seconds or an HTTP date; default 5 s; at least `min_interval`, 1 s), at once when it posted an answer |
//! | `429` | slow down: every later wait grows by 5 s, then `Retry-After` |
//! | `503` | temporarily unavailable: back off per `Retry-After` (at least `min_interval`) and poll again |
//! | no answer | the server cannot be reached: poll again after 1, 2, 4 … s (up to `max_interval`) |
//! | `401` | the client may answer it (fresh credentials, an auth token) and poll at once; otherwise terminal |
//! | `403`, `408`, `410` | terminal: `denied`, `expired`, `invalid_code` (the body's `error` when it has one) |
//! | anything else | terminal (`server_error` unless the body names the error) |
//!
//! A server's `Retry-After` is respected in full (draft -11 "Polling with GET": the agent
//! MUST respect it), and so is the slowing down its `429`s asked for;
//! `PollPolicy::max_interval` caps only the agent's own choices (the default interval
//! and the pauses after outages). A shorter `Retry-After` than `PollPolicy::min_interval`
//! (a server's `0`) is waited as that minimum, unless the agent just posted an answer: a
//! server cannot have the agent poll, and act on what each poll says, as fast as it
//! answers. A request that would outlast its `deadline` is cancelled (`DELETE`, best
//! effort) and ends in [`AgentError::PollTimeout`]; so is one whose poll is still
//! unanswered when the deadline comes (a server that sends its headers and then stalls, or
//! dribbles its body, holds the agent no longer than that, whatever the transport). A
//! withdrawal is given at most [`CANCEL_TIMEOUT`].

use std::time::Duration;

use aauth_keys::time::{Clock, SystemClock, UnixTime};
use async_trait::async_trait;
use bytes::Bytes;
use http::StatusCode;

use crate::AgentError;
use crate::agent::problem_error;

/// The longest the agent waits for the answer to a withdrawal (`DELETE`): it is best
/// effort, and a server that does not answer does not hold the agent.
pub(crate) const CANCEL_TIMEOUT: Duration = Duration::from_secs(30);

/// What a client does between polls of one pending URL.
#[async_trait]
pub(crate) trait PendingRequest: Send {
    /// Acts on a `202` (prompt the person, answer a question, obtain a token); `true`
    /// when it posted something and the next poll should come at once.
    async fn pending(&mut self, resp: &http::Response<Bytes>) -> Result<bool, AgentError>;

    /// Answers a `401` to a poll; `true` when answered and the poll should be repeated at
    /// once. By default a `401` is terminal.
    async fn unauthorized(&mut self, resp: &http::Response<Bytes>) -> Result<bool, AgentError> {
        let _ = resp;
        Ok(false)
    }

    /// One `GET` of the pending URL.
    async fn poll(&mut self) -> Result<http::Response<Bytes>, AgentError>;

    /// Withdraws the request (`DELETE`), best effort.
    async fn cancel(&mut self);

    /// Now, by the client's clock (what a `Retry-After` date is counted from).
    fn now(&self) -> UnixTime {
        SystemClock.now()
    }
}

/// Follows `first` (a `202`) to its end under `policy`. When the agent gives up for its
/// own reasons (a step it cannot take, a server it cannot reach), it withdraws the request
/// (`DELETE`, best effort), as it does past the deadline: the server stops holding it.
///
/// # Errors
///
/// [`AgentError::Deferred`] for a terminal refusal, [`AgentError::PollTimeout`] past the
/// deadline, and whatever the client's steps fail with.
pub(crate) async fn until_done(
    request: &mut impl PendingRequest,
    policy: &PollPolicy,
    first: http::Response<Bytes>,
) -> Result<http::Response<Bytes>, AgentError> {
    let outcome = follow(request, policy, first).await;
    match &outcome {
        // Done, ended by the server, or already withdrawn at the deadline.
        Ok(_) | Err(AgentError::Deferred { .. } | AgentError::PollTimeout { .. }) => {}
        Err(_) => withdraw(request).await,
    }
    outcome
}

/// Withdraws the request (`DELETE`), waiting at most [`CANCEL_TIMEOUT`] for the answer.
async fn withdraw(request: &mut impl PendingRequest) {
    let _answered = tokio::time::timeout(CANCEL_TIMEOUT, request.cancel()).await;
}

/// [`until_done`]'s loop.
async fn follow(
    request: &mut impl PendingRequest,
    policy: &PollPolicy,
    first: http::Response<Bytes>,
) -> Result<http::Response<Bytes>, AgentError> {
    let started = tokio::time::Instant::now();
    let mut resp = first;
    let mut slow_down: u64 = 0;
    loop {
        let status = resp.status();
        // The server's `Retry-After`, or the agent's own interval (capped); never less
        // than the minimum.
        let asked = |now| {
            retry_after(&resp, now)
                .unwrap_or_else(|| policy.default_interval.min(policy.max_interval))
                .max(policy.min_interval)
        };
        let wait = match status {
            StatusCode::ACCEPTED => {
                if request.pending(&resp).await? {
                    0
                } else {
                    asked(request.now())
                }
            }
            StatusCode::TOO_MANY_REQUESTS => {
                slow_down = slow_down.saturating_add(5);
                asked(request.now())
            }
            StatusCode::SERVICE_UNAVAILABLE => asked(request.now()),
            StatusCode::UNAUTHORIZED if request.unauthorized(&resp).await? => 0,
            s if s.is_success() => return Ok(resp),
            s => return Err(terminal(s, &resp)),
        };
        // Saturating: a `Retry-After` near `u64::MAX` ends at the deadline below.
        let wait = wait.saturating_add(slow_down);
        if started.elapsed().as_secs().saturating_add(wait) > policy.deadline {
            withdraw(request).await;
            return Err(AgentError::PollTimeout {
                secs: policy.deadline,
            });
        }
        tokio::time::sleep(Duration::from_secs(wait)).await;
        resp = poll_through_outages(request, policy, started).await?;
    }
}

/// One poll. A pending URL that cannot be reached (its server restarting, a network
/// blip) is polled again after a pause that doubles from 1 s up to the policy's
/// `max_interval`, within its deadline: the request is still pending at the server, and
/// a server that shut down gracefully answered its long polls before it went. A poll
/// still unanswered at the deadline is abandoned, and the request withdrawn.
async fn poll_through_outages(
    request: &mut impl PendingRequest,
    policy: &PollPolicy,
    started: tokio::time::Instant,
) -> Result<http::Response<Bytes>, AgentError> {
    let mut pause: u64 = 1;
    loop {
        let left = Duration::from_secs(policy.deadline).saturating_sub(started.elapsed());
        let Ok(answer) = tokio::time::timeout(left, request.poll()).await else {
            withdraw(request).await;
            return Err(AgentError::PollTimeout {
                secs: policy.deadline,
            });
        };
        match answer {
            Err(AgentError::Transport { reason })
                if started.elapsed().as_secs().saturating_add(pause) <= policy.deadline =>
            {
                let _ = reason; // the next poll's outcome is what the caller sees
                tokio::time::sleep(Duration::from_secs(pause)).await;
                pause = pause.saturating_mul(2).min(policy.max_interval.max(1));
            }
            other => return other,
        }
    }
}

/// The terminal error for `status`: the body's `error`, or the draft's polling error
/// code for the status.
fn terminal(status: StatusCode, resp: &http::Response<Bytes>) -> AgentError {
    let named = problem_error(resp.body());
    let error = if named.is_empty() {
        match status {
            StatusCode::FORBIDDEN => "denied",
            StatusCode::REQUEST_TIMEOUT => "expired",
            StatusCode::GONE => "invalid_code",
            _ => "server_error",
        }
        .to_owned()
    } else {
        named
    };
    AgentError::Deferred { status, error }
}

/// `Retry-After` in seconds: delta-seconds, or an HTTP date (RFC 9110 §10.2.3) as the
/// seconds from `now` until it (0 when it has passed).
pub(crate) fn retry_after(resp: &http::Response<Bytes>, now: UnixTime) -> Option<u64> {
    let v = resp
        .headers()
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?;
    aauth_metadata::freshness::retry_after(v, now)
}

/// The `Location` of a `202`, resolved against the request and required to be on the
/// same origin (draft -11, "Pending Response": the pending URL is on the responding
/// server's origin).
pub(crate) fn pending_url(
    resp: &http::Response<Bytes>,
    request: &http::Uri,
) -> Result<http::Uri, AgentError> {
    let bad = |reason: &str| AgentError::BadDeferred {
        reason: reason.to_owned(),
    };
    let location = resp
        .headers()
        .get(http::header::LOCATION)
        .ok_or_else(|| bad("202 without Location"))?
        .to_str()
        .map_err(|_| bad("Location is not visible ASCII"))?;
    let uri: http::Uri = location.parse().map_err(|_| bad("Location is not a URI"))?;
    let resolved = if uri.scheme().is_some() {
        uri
    } else if location.starts_with('/') && !location.starts_with("//") {
        let mut p = request.clone().into_parts();
        p.path_and_query = uri.path_and_query().cloned();
        http::Uri::from_parts(p).map_err(|_| bad("cannot resolve Location"))?
    } else {
        return Err(bad("Location must be absolute or an absolute path"));
    };
    if resolved.scheme() != request.scheme() || resolved.authority() != request.authority() {
        return Err(bad("Location is on another origin"));
    }
    Ok(resolved)
}

/// How deferred (`202`) responses are polled. The defaults: 5 s between polls when
/// `Retry-After` is absent (the draft's), at least 1 s between polls whatever the server
/// asks (except right after the agent posted an answer), at most 60 s between polls the
/// agent chooses itself (a server's `Retry-After` is respected in full), 600 s before
/// cancelling, no `Prefer: wait`.
///
/// ```
/// use std::time::Duration;
/// use aauth_agent::PollPolicy;
/// let p = PollPolicy::default()
///     .deadline(Duration::from_secs(120))
///     .prefer_wait(Duration::from_secs(25));
/// assert_eq!(p.deadline, 120);
/// ```
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct PollPolicy {
    /// The interval when `Retry-After` is absent, in seconds (the draft's 5 s).
    pub default_interval: u64,
    /// The shortest pause between two polls, in seconds, whatever `Retry-After` says
    /// (default 1 s), except right after the agent posted an answer (the next poll then
    /// comes at once).
    pub min_interval: u64,
    /// The longest pause the agent chooses itself (the default interval, the backoff
    /// after outages), in seconds; a server's `Retry-After` is respected beyond it.
    pub max_interval: u64,
    /// How long to keep polling before cancelling (`DELETE`) and giving up, in seconds.
    pub deadline: u64,
    /// `Prefer: wait=N` on each poll, for servers that long-poll.
    pub prefer_wait: Option<u64>,
}

impl PollPolicy {
    /// The interval when `Retry-After` is absent (whole seconds).
    #[must_use]
    pub fn default_interval(mut self, interval: Duration) -> Self {
        self.default_interval = interval.as_secs();
        self
    }

    /// The shortest pause between two polls (whole seconds), whatever `Retry-After`
    /// says, except right after the agent posted an answer.
    #[must_use]
    pub fn min_interval(mut self, interval: Duration) -> Self {
        self.min_interval = interval.as_secs();
        self
    }

    /// The longest pause the agent chooses itself (whole seconds).
    #[must_use]
    pub fn max_interval(mut self, interval: Duration) -> Self {
        self.max_interval = interval.as_secs();
        self
    }

    /// How long to poll before cancelling (whole seconds).
    #[must_use]
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline.as_secs();
        self
    }

    /// Sends `Prefer: wait=N` on each poll (whole seconds). Keep it a few seconds under
    /// the transport's limit per exchange (30 s for `HttpsClient` and, by default,
    /// `ReqwestTransport`): a poll the server holds to that limit is cut there, counted
    /// as a failure, and polled again after a pause. 25 s leaves room for the network.
    #[must_use]
    pub fn prefer_wait(mut self, wait: Duration) -> Self {
        self.prefer_wait = Some(wait.as_secs());
        self
    }
}

impl Default for PollPolicy {
    fn default() -> Self {
        Self {
            default_interval: 5,
            min_interval: 1,
            max_interval: 60,
            deadline: 600,
            prefer_wait: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::time::Duration;

    use super::{PendingRequest, PollPolicy, until_done};
    use crate::AgentError;
    use async_trait::async_trait;
    use bytes::Bytes;
    use http::StatusCode;

    #[test]
    fn a_pending_url_is_on_the_answering_origin() {
        // The same cases as the Person Server's `access_reply::pending_url` (decision 0010).
        let request: http::Uri = "https://as.example/token".parse().expect("a URI");
        let ok = |l: &str| {
            let resp = http::Response::builder()
                .status(202)
                .header("location", l)
                .body(Bytes::new())
                .expect("a response");
            super::pending_url(&resp, &request).map(|u| u.to_string())
        };
        assert_eq!(
            ok("/pending/1").ok().as_deref(),
            Some("https://as.example/pending/1")
        );
        assert_eq!(
            ok("https://as.example/pending/1").ok().as_deref(),
            Some("https://as.example/pending/1")
        );
        assert!(ok("https://as.example.evil/pending/1").is_err());
        assert!(ok("https://as.example@evil.example/p").is_err());
        assert!(ok("//evil.example/p").is_err());
        assert!(ok("https://as.example:8443/p").is_err());
        assert!(ok("pending/1").is_err());
        let none = http::Response::builder()
            .status(202)
            .body(Bytes::new())
            .expect("a response");
        assert!(super::pending_url(&none, &request).is_err());
    }

    /// Answers polls from a script and records what the loop asked of it.
    struct Scripted {
        answers: VecDeque<http::Response<Bytes>>,
        polls: usize,
        cancelled: bool,
        /// How many polls, from the first, find the server unreachable.
        unreachable: usize,
        /// Whether the server leaves every poll and withdrawal unanswered (headers sent,
        /// then nothing).
        stalling: bool,
    }

    fn answer(status: u16, retry_after: Option<&str>, body: &str) -> http::Response<Bytes> {
        let mut b = http::Response::builder().status(status);
        if let Some(r) = retry_after {
            b = b.header("retry-after", r);
        }
        b.body(Bytes::from(body.to_owned())).expect("a response")
    }

    #[async_trait]
    impl PendingRequest for Scripted {
        async fn pending(&mut self, _: &http::Response<Bytes>) -> Result<bool, AgentError> {
            Ok(false)
        }

        async fn poll(&mut self) -> Result<http::Response<Bytes>, AgentError> {
            self.polls += 1;
            if self.stalling {
                std::future::pending::<()>().await;
            }
            if self.polls <= self.unreachable {
                return Err(AgentError::Transport {
                    reason: "connection refused".to_owned(),
                });
            }
            Ok(self
                .answers
                .pop_front()
                .unwrap_or_else(|| answer(202, Some("1"), "")))
        }

        async fn cancel(&mut self) {
            self.cancelled = true;
            if self.stalling {
                std::future::pending::<()>().await;
            }
        }
    }

    fn scripted(answers: Vec<http::Response<Bytes>>) -> Scripted {
        Scripted {
            answers: answers.into(),
            polls: 0,
            cancelled: false,
            unreachable: 0,
            stalling: false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_poll_left_unanswered_ends_at_the_deadline_and_is_withdrawn() {
        let mut s = scripted(Vec::new());
        s.stalling = true;
        let policy = PollPolicy::default().deadline(Duration::from_secs(20));
        let start = tokio::time::Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(3600),
            until_done(&mut s, &policy, answer(202, Some("1"), "")),
        )
        .await
        .expect("the loop gives up at its deadline");
        assert!(
            matches!(r, Err(AgentError::PollTimeout { secs: 20 })),
            "{r:?}"
        );
        assert_eq!(s.polls, 1);
        assert!(s.cancelled, "the request was withdrawn");
        // The deadline, then the withdrawal's own bound (its server does not answer it
        // either).
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(20) + super::CANCEL_TIMEOUT
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_pending_url_that_cannot_be_reached_is_polled_again_with_growing_pauses() {
        let mut s = scripted(vec![answer(200, None, "{}")]);
        s.unreachable = 3;
        let start = tokio::time::Instant::now();
        let done = until_done(&mut s, &PollPolicy::default(), answer(202, Some("1"), "")).await;
        assert_eq!(done.map(|r| r.status()).ok(), Some(StatusCode::OK));
        assert_eq!(s.polls, 4);
        // 1 (the 202's Retry-After), then pauses of 1, 2 and 4 s between the outages.
        assert_eq!(start.elapsed().as_secs(), 8);

        // Past the deadline the outage is the answer.
        let mut s = scripted(vec![]);
        s.unreachable = usize::MAX;
        let policy = PollPolicy::default().deadline(Duration::from_secs(20));
        let done = until_done(&mut s, &policy, answer(202, Some("1"), "")).await;
        assert!(
            matches!(done, Err(AgentError::Transport { .. })),
            "{done:?}"
        );
        assert!(start.elapsed().as_secs() <= 8 + 20);
    }

    #[tokio::test(start_paused = true)]
    async fn unavailable_and_slow_down_are_waited_out_then_the_answer_returns() {
        let mut s = scripted(vec![
            answer(503, Some("2"), ""),
            answer(429, Some("1"), ""),
            answer(202, Some("1"), ""),
            answer(200, None, "{}"),
        ]);
        let start = tokio::time::Instant::now();
        let done = until_done(&mut s, &PollPolicy::default(), answer(202, Some("1"), "")).await;
        assert_eq!(done.map(|r| r.status()).ok(), Some(StatusCode::OK));
        assert_eq!(s.polls, 4);
        // 1 (first 202) + 2 (503) + 1+5 (429 slows every later wait by 5 s) + 1+5 (202).
        assert_eq!(start.elapsed().as_secs(), 15);
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_of_zero_is_waited_as_the_minimum_interval() {
        let mut s = scripted(vec![
            answer(202, Some("0"), ""),
            answer(503, Some("0"), ""),
            answer(202, None, ""),
            answer(200, None, "{}"),
        ]);
        let policy = PollPolicy::default().default_interval(Duration::from_secs(0));
        let start = tokio::time::Instant::now();
        let done = until_done(&mut s, &policy, answer(202, Some("0"), "")).await;
        assert_eq!(done.map(|r| r.status()).ok(), Some(StatusCode::OK));
        assert_eq!(s.polls, 4);
        // Each of the four waits (two 0s, a 503's 0, a 0 s default) is the minimum, 1 s.
        assert_eq!(start.elapsed().as_secs(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn terminal_answers_carry_the_drafts_polling_codes() {
        for (status, body, code) in [
            (403, "", "denied"),
            (408, "", "expired"),
            (410, "", "invalid_code"),
            (500, "", "server_error"),
            (403, r#"{"error":"abandoned"}"#, "abandoned"),
        ] {
            let mut s = scripted(vec![answer(status, None, body)]);
            match until_done(&mut s, &PollPolicy::default(), answer(202, Some("0"), "")).await {
                Err(AgentError::Deferred { status: got, error }) => {
                    assert_eq!((got.as_u16(), error.as_str()), (status, code));
                }
                other => panic!("{status}: {other:?}"),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_deadline_the_request_is_cancelled() {
        let mut s = scripted(Vec::new());
        let policy = PollPolicy::default().deadline(Duration::from_secs(10));
        let r = until_done(&mut s, &policy, answer(202, Some("3"), "")).await;
        assert!(
            matches!(r, Err(AgentError::PollTimeout { secs: 10 })),
            "{r:?}"
        );
        assert!(s.cancelled);
    }
}

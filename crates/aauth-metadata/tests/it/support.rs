//! Shared fixtures: a programmable fetcher, keys and documents.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use aauth_metadata::{Fetch, FetchError, Fetched, HttpsUrl};
use async_trait::async_trait;

/// How the fake server answers one URL.
#[derive(Debug, Clone)]
pub enum Behaviour {
    Answer(Fetched),
    Fail(FetchError),
    /// Never answers.
    Hang,
    /// Answers after a (Tokio) delay.
    Slow(Duration, Fetched),
    /// The fetcher panics (a bug in a `Fetch` implementation).
    Panic,
}

/// A fetcher answering from a table, counting calls per URL.
#[derive(Debug, Default)]
pub struct FakeFetch {
    table: Mutex<BTreeMap<String, Vec<Behaviour>>>,
    calls: Mutex<Vec<String>>,
}

impl FakeFetch {
    pub fn set(&self, url: &str, b: Behaviour) {
        self.table.lock().unwrap().insert(url.to_owned(), vec![b]);
    }

    /// Answers with each behaviour in turn; the last one repeats.
    pub fn set_sequence(&self, url: &str, seq: Vec<Behaviour>) {
        self.table.lock().unwrap().insert(url.to_owned(), seq);
    }

    pub fn total(&self) -> usize {
        self.calls.lock().unwrap().len()
    }

    pub fn calls(&self, url: &str) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|u| *u == url)
            .count()
    }
}

#[async_trait]
impl Fetch for FakeFetch {
    async fn get(&self, url: &HttpsUrl) -> Result<Fetched, FetchError> {
        self.calls.lock().unwrap().push(url.as_str().to_owned());
        let b = self
            .table
            .lock()
            .unwrap()
            .get_mut(url.as_str())
            .and_then(|seq| {
                if seq.len() > 1 {
                    Some(seq.remove(0))
                } else {
                    seq.first().cloned()
                }
            });
        match b {
            None => Ok(Fetched::status(404)),
            Some(Behaviour::Answer(f)) => Ok(f),
            Some(Behaviour::Fail(e)) => Err(e),
            Some(Behaviour::Hang) => std::future::pending().await,
            Some(Behaviour::Slow(d, f)) => {
                tokio::time::sleep(d).await;
                Ok(f)
            }
            Some(Behaviour::Panic) => panic!("the fetcher panicked"),
        }
    }
}

pub use aauth_test_support::key;
pub use aauth_test_support::keys::{jwk, jwks};

pub fn agent_metadata(issuer: &str, jwks_uri: &str) -> String {
    format!(r#"{{"issuer":"{issuer}","jwks_uri":"{jwks_uri}"}}"#)
}

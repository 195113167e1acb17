//! What the consent page shows of a resource (PS-12): its metadata document and its logo,
//! fetched by this server through its egress guard and kept a while, so a page view costs
//! no fetch and the person's browser never contacts the resource. One fetch per resource
//! at a time: pages opened together wait for it and show what it found.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use aauth_metadata::{Fetch, HttpsUrl, ResourceMetadata};
use aauth_tokens::ServerId;
use base64::Engine as _;

use super::view::Logo;

/// How long a description is kept (seconds).
const KEEP: u64 = 600;
/// How long a resource that could not be described is left alone (seconds).
const KEEP_FAILED: u64 = 60;
/// The most resources kept.
const MAX_KEPT: usize = 256;
/// The largest logo inlined.
const MAX_LOGO: usize = 64 * 1024;

/// A resource as the consent page shows it.
#[derive(Debug)]
pub(crate) struct Shown {
    pub(crate) doc: ResourceMetadata,
    pub(crate) logo: Option<Logo>,
}

/// What is kept of one resource: when it is dropped, and what was found (`None`: it
/// could not be described).
type Kept = (u64, Option<Arc<Shown>>);

/// The descriptions kept, by resource.
#[derive(Debug, Default)]
pub(crate) struct Described {
    kept: Mutex<BTreeMap<String, Kept>>,
    /// The resources being fetched, each behind a gate the askers queue at; an entry
    /// lives while someone holds or waits for its gate (at most one per resource asked
    /// about at once).
    fetching: Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Takes a resource's gate out of `fetching` when its last holder is done (or dropped).
struct Turn<'a> {
    described: &'a Described,
    resource: &'a str,
    gate: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut fetching = self
            .described
            .fetching
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // The map's reference and this one: nobody else holds or waits for it. Clones
        // are made under the same lock, so none can appear meanwhile.
        if Arc::strong_count(&self.gate) == 2 {
            fetching.remove(self.resource);
        }
    }
}

impl Described {
    /// `resource` as the page shows it: kept, or fetched now (its metadata, then its
    /// logos), once however many pages ask together. `None` when its metadata cannot be
    /// read; that too is kept, for a minute.
    pub(crate) async fn get(
        &self,
        fetch: &dyn Fetch,
        resource: &ServerId,
        now: u64,
    ) -> Option<Arc<Shown>> {
        if let Some(kept) = self.kept_now(resource, now) {
            return kept;
        }
        let turn = Turn {
            described: self,
            resource: resource.as_str(),
            gate: Arc::clone(
                self.fetching
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .entry(resource.as_str().to_owned())
                    .or_default(),
            ),
        };
        let _held = turn.gate.lock().await;
        // Whoever held the gate before may have kept it.
        if let Some(kept) = self.kept_now(resource, now) {
            return kept;
        }
        let shown = match aauth_metadata::discover::<ResourceMetadata>(fetch, resource).await {
            Ok(doc) => {
                let logo = match doc.common.logo_uri.as_ref() {
                    Some(light) => match inline(fetch, light).await {
                        Some(light) => Some(Logo {
                            light,
                            dark: match doc.common.logo_dark_uri.as_ref() {
                                Some(dark) => inline(fetch, dark).await,
                                None => None,
                            },
                        }),
                        None => None,
                    },
                    None => None,
                };
                Some(Arc::new(Shown { doc, logo }))
            }
            Err(_) => None,
        };
        let until = now.saturating_add(if shown.is_some() { KEEP } else { KEEP_FAILED });
        let mut kept = self.lock();
        if kept.len() >= MAX_KEPT && !kept.contains_key(resource.as_str()) {
            kept.retain(|_, (u, _)| now < *u);
            if kept.len() >= MAX_KEPT {
                let soonest = kept
                    .iter()
                    .min_by_key(|(_, (u, _))| *u)
                    .map(|(k, _)| k.clone());
                if let Some(k) = soonest {
                    kept.remove(&k);
                }
            }
        }
        kept.insert(resource.as_str().to_owned(), (until, shown.clone()));
        shown
    }

    /// What is kept of `resource`, if it is still fresh (`Some(None)`: kept as failed).
    fn kept_now(&self, resource: &ServerId, now: u64) -> Option<Option<Arc<Shown>>> {
        match self.lock().get(resource.as_str()) {
            Some((until, shown)) if now < *until => Some(shown.clone()),
            _ => None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Kept>> {
        self.kept.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The image at `url` as a `data:` URI: only PNG, JPEG, GIF and WebP, recognised by their
/// first bytes (never by what the server says, and never SVG, which is a document), at
/// most 64 KiB.
async fn inline(fetch: &dyn Fetch, url: &HttpsUrl) -> Option<String> {
    let got = fetch.get(url).await.ok()?;
    if got.status != 200 || got.body.len() > MAX_LOGO {
        return None;
    }
    let kind = image_type(&got.body)?;
    let mut uri = format!("data:{kind};base64,");
    base64::engine::general_purpose::STANDARD.encode_string(&got.body, &mut uri);
    Some(uri)
}

/// The media type of an image by its signature.
fn image_type(b: &[u8]) -> Option<&'static str> {
    if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if b.starts_with(b"\xff\xd8\xff") {
        Some("image/jpeg")
    } else if b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if b.len() >= 12 && b.starts_with(b"RIFF") && &b[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use aauth_metadata::{Fetch, FetchError, Fetched, HttpsUrl};
    use aauth_tokens::ServerId;

    use super::{Described, image_type};

    /// Answers slowly (so that askers overlap) and counts.
    struct Slow(AtomicUsize, bool);

    #[async_trait::async_trait]
    impl Fetch for Slow {
        async fn get(&self, url: &HttpsUrl) -> Result<Fetched, FetchError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(30)).await;
            if self.1 {
                let body = format!(
                    r#"{{"issuer":"{}","jwks_uri":"https://r.example/jwks.json","name":"R"}}"#,
                    url.origin()
                );
                Ok(Fetched::ok(body))
            } else {
                Err(FetchError::Status {
                    status: 404,
                    retry_after: None,
                })
            }
        }
    }

    #[tokio::test]
    async fn pages_opened_together_share_one_fetch() {
        for found in [true, false] {
            let described = Arc::new(Described::default());
            let fetch = Arc::new(Slow(AtomicUsize::new(0), found));
            let resource = ServerId::parse("https://r.example").unwrap();
            let asks = (0..8).map(|_| {
                let (d, f, r) = (described.clone(), fetch.clone(), resource.clone());
                tokio::spawn(async move {
                    d.get(&*f, &r, 1_000)
                        .await
                        .map(|s| s.doc.common.name.clone())
                })
            });
            for ask in asks.collect::<Vec<_>>() {
                let name = ask.await.unwrap();
                assert_eq!(name.is_some(), found);
            }
            assert_eq!(fetch.0.load(Ordering::SeqCst), 1, "found: {found}");
            assert!(
                described.fetching.lock().unwrap().is_empty(),
                "no gate left"
            );
            // Kept: no fetch until it is stale.
            described.get(&*fetch, &resource, 1_001).await;
            assert_eq!(fetch.0.load(Ordering::SeqCst), 1);
            described.get(&*fetch, &resource, 1_000 + 601).await;
            assert_eq!(fetch.0.load(Ordering::SeqCst), 2);
        }
    }

    #[test]
    fn images_are_known_by_their_first_bytes() {
        assert_eq!(image_type(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
        assert_eq!(image_type(b"\xff\xd8\xff\xe0"), Some("image/jpeg"));
        assert_eq!(image_type(b"GIF89a.."), Some("image/gif"));
        assert_eq!(image_type(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(
            image_type(b"<svg xmlns='http://www.w3.org/2000/svg'/>"),
            None
        );
        assert_eq!(image_type(b"RIFF"), None);
        assert_eq!(image_type(b""), None);
    }
}

//! The verified-token cache: the warm path of a resource. A token verified once (issuer
//! key, signature, claims, `cnf.jwk`) is not verified again for each request it signs; each
//! request still has its own signature checked, and revocation is still consulted by the
//! verifier after resolution.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use aauth_headers::Scheme;
use aauth_signing::{KeyResolver, ResolveContext, ResolvedKey, VerifyError};
use async_trait::async_trait;

/// Bounds of the [`VerifiedTokenCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenCacheConfig {
    /// Most tokens kept (default 10,000).
    pub max_entries: usize,
    /// Longest a verification is reused, whatever the token's `exp` (default 300 s), so a
    /// key the issuer withdraws stops vouching for cached tokens within that time.
    pub max_age: u64,
}

impl Default for TokenCacheConfig {
    fn default() -> Self {
        Self {
            max_entries: 10_000,
            max_age: 300,
        }
    }
}

struct Entry {
    resolved: ResolvedKey,
    /// Reusable while `now < until` (the token's `exp`, capped by `max_age`).
    until: u64,
    last_used: u64,
}

/// Caches what `inner` resolved for `jwt` members, keyed by the token itself, until
/// the token's `exp` (no tolerance) or `max_age`, whichever comes first. Failures are never
/// cached. Other schemes pass through.
pub struct VerifiedTokenCache {
    inner: Arc<dyn KeyResolver>,
    config: TokenCacheConfig,
    /// Keyed by the compact token: an exact match, and cheaper than hashing it (a
    /// software SHA-256 over a 500-byte token cost more than the lookup it keyed).
    entries: Mutex<BTreeMap<Box<str>, Entry>>,
    tick: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for VerifiedTokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedTokenCache")
            .field("config", &self.config)
            .field("hits", &self.hits.load(Ordering::Relaxed))
            .field("misses", &self.misses.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl VerifiedTokenCache {
    /// A cache in front of `inner`.
    #[must_use]
    pub fn new(inner: Arc<dyn KeyResolver>, config: TokenCacheConfig) -> Self {
        Self {
            inner,
            config: TokenCacheConfig {
                max_entries: config.max_entries.max(1),
                max_age: config.max_age,
            },
            entries: Mutex::new(BTreeMap::new()),
            tick: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Lookups answered from the cache, and lookups that verified the token.
    #[must_use]
    pub fn counts(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Box<str>, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl KeyResolver for VerifiedTokenCache {
    async fn resolve(
        &self,
        scheme: &Scheme,
        ctx: &ResolveContext<'_>,
    ) -> Result<ResolvedKey, VerifyError> {
        let Scheme::Jwt { jwt, .. } = scheme else {
            return self.inner.resolve(scheme, ctx).await;
        };
        let now = ctx.now.as_secs();
        {
            let mut entries = self.lock();
            if let Some(e) = entries.get_mut(jwt.as_str()) {
                if now < e.until {
                    e.last_used = self.tick.fetch_add(1, Ordering::Relaxed);
                    self.hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(e.resolved.clone());
                }
                entries.remove(jwt.as_str());
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let resolved = self.inner.resolve(scheme, ctx).await?;
        if let Some(token) = resolved.token() {
            let until = token.exp().min(now.saturating_add(self.config.max_age));
            if now < until {
                let mut entries = self.lock();
                if entries.len() >= self.config.max_entries {
                    entries.retain(|_, e| e.until > now);
                    if entries.len() >= self.config.max_entries
                        && let Some(oldest) = entries
                            .iter()
                            .min_by_key(|(_, e)| e.last_used)
                            .map(|(k, _)| k.clone())
                    {
                        entries.remove(&oldest);
                    }
                }
                entries.insert(
                    jwt.as_str().into(),
                    Entry {
                        resolved: resolved.clone(),
                        until,
                        last_used: self.tick.fetch_add(1, Ordering::Relaxed),
                    },
                );
            }
        }
        Ok(resolved)
    }
}

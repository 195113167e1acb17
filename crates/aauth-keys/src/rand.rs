//! The random source keys and identifiers are drawn from, injected so tests control it.

/// The random source failed; callers must not fall back to anything weaker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct RandomError {
    /// What failed.
    pub reason: String,
}

/// A cryptographically secure random source.
///
/// Implementations must fill the whole buffer with unpredictable bytes or return an
/// error; they must never return predictable bytes on failure.
pub trait RandomSource {
    /// Fills `dest` with random bytes.
    ///
    /// # Errors
    ///
    /// [`RandomError`] when no random bytes are available.
    fn fill(&mut self, dest: &mut [u8]) -> Result<(), RandomError>;
}

/// The operating system's CSPRNG (through `aws-lc-rs`).
#[derive(Debug, Clone, Copy, Default)]
pub struct OsRandom;

impl RandomSource for OsRandom {
    fn fill(&mut self, dest: &mut [u8]) -> Result<(), RandomError> {
        aws_lc_rs::rand::fill(dest).map_err(|_| RandomError {
            reason: "operating system random source failed".to_owned(),
        })
    }
}

impl<R: RandomSource + ?Sized> RandomSource for &mut R {
    fn fill(&mut self, dest: &mut [u8]) -> Result<(), RandomError> {
        (**self).fill(dest)
    }
}

/// A random source a long-lived, shared value (a server, a client) holds: cheap to
/// clone, safe to share between threads, the operating system's CSPRNG by default.
/// Servers take one so that tests can make their identifiers and codes reproducible.
///
/// ```
/// use aauth_keys::rand::{RandomError, RandomSource, SharedRandom, random_id};
///
/// /// Not random at all: for a test that wants known identifiers.
/// struct Counting(u8);
/// impl RandomSource for Counting {
///     fn fill(&mut self, dest: &mut [u8]) -> Result<(), RandomError> {
///         dest.fill(self.0);
///         self.0 = self.0.wrapping_add(1);
///         Ok(())
///     }
/// }
///
/// let random = SharedRandom::new(Counting(0));
/// assert_eq!(random_id(&mut random.clone(), 3)?, "AAAA");
/// assert_eq!(random_id(&mut random.clone(), 3)?, "AQEB");
/// assert_eq!(random_id(&mut SharedRandom::default(), 16)?.len(), 22);
/// # Ok::<(), RandomError>(())
/// ```
#[derive(Clone)]
pub struct SharedRandom(std::sync::Arc<std::sync::Mutex<dyn RandomSource + Send>>);

impl SharedRandom {
    /// Shares `source`.
    pub fn new(source: impl RandomSource + Send + 'static) -> Self {
        Self(std::sync::Arc::new(std::sync::Mutex::new(source)))
    }
}

impl Default for SharedRandom {
    /// The operating system's CSPRNG.
    fn default() -> Self {
        Self::new(OsRandom)
    }
}

impl std::fmt::Debug for SharedRandom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedRandom").finish_non_exhaustive()
    }
}

impl RandomSource for SharedRandom {
    fn fill(&mut self, dest: &mut [u8]) -> Result<(), RandomError> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .fill(dest)
    }
}

/// Draws `n` random bytes and returns them as unpadded base64url, for identifiers such as
/// `jti` values and pending-request ids.
///
/// # Errors
///
/// [`RandomError`] when the source fails.
///
/// ```
/// use aauth_keys::rand::{OsRandom, random_id};
/// let id = random_id(&mut OsRandom, 16)?;
/// assert_eq!(id.len(), 22);
/// # Ok::<(), aauth_keys::rand::RandomError>(())
/// ```
pub fn random_id(rng: &mut dyn RandomSource, n: usize) -> Result<String, RandomError> {
    let mut buf = vec![0u8; n];
    rng.fill(&mut buf)?;
    Ok(crate::base64url::encode(&buf))
}

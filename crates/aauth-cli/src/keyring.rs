//! A service's signing key, the keys it signed with before and the one it will sign with
//! next, for `aauth admin keys`: a rotation writes a new private key in place of the old
//! one and adds the old public key to the retiring-keys file, published beside the new
//! one until the overlap ends.
//!
//! With several instances, a rotation is two steps, so that no instance signs with a key
//! another does not publish: `prepare` writes the next private key beside the signing
//! key (`<signing_key_file>.next`) and its public key to the file's `next` list, which
//! every instance publishes from its next start; once all have restarted, `rotate` makes
//! that key the signing key (the old one retiring), and a second rolling restart has
//! them sign with it. Without `prepare`, `rotate` makes a fresh key.
//!
//! The retiring-keys file is `retiring_keys_file`, by default the signing key's path with
//! `.retiring.json` appended: `{"retiring": [{"until": 1767225600, "jwk": {…}}],
//! "next": [{"jwk": {…}}]}` (public keys only). `aauth serve` reads it at start; the
//! served JWKS drops each retiring key at its `until` without a restart.

use std::io::Write;
use std::path::{Path, PathBuf};

use aauth_keys::rand::OsRandom;
use aauth_keys::{Jwk, PrivateKey};
use aauth_metadata::RetiringKey;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::error::CliError;

/// The most retiring keys a file may hold (each rotation adds one; expired ones go).
const MAX_RETIRING: usize = 16;

/// The shortest `--overlap` taken without `--force`: the JWKS cache time of verifiers.
pub(crate) const MIN_OVERLAP: u64 = 3600;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetiringFile {
    retiring: Vec<Entry>,
    /// The prepared next signing key's public key (at most one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    next: Vec<Next>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Next {
    jwk: serde_json::Value,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    until: u64,
    jwk: serde_json::Value,
}

/// Where `c`'s retiring keys are kept.
pub(crate) fn retiring_path(c: &Config) -> PathBuf {
    c.retiring_keys_file.clone().unwrap_or_else(|| {
        let mut p = c.signing_key_file.clone().into_os_string();
        p.push(".retiring.json");
        PathBuf::from(p)
    })
}

/// The keys `c`'s service publishes beside its signing key: the retiring ones, each
/// until its time, and the prepared next one, until it signs (none when the file does
/// not exist).
pub(crate) fn retiring(c: &Config) -> Result<Vec<RetiringKey>, CliError> {
    let (retiring, next) = listed(c)?;
    Ok(retiring
        .into_iter()
        .chain(next.into_iter().map(|jwk| RetiringKey::new(jwk, u64::MAX)))
        .collect())
}

/// `c`'s retiring keys and its prepared next key's public key, each checked public.
pub(crate) fn listed(c: &Config) -> Result<(Vec<RetiringKey>, Vec<Jwk>), CliError> {
    let path = retiring_path(c);
    let file = read(&path)?;
    let public = |value: &serde_json::Value| -> Result<Jwk, CliError> {
        let jwk = Jwk::from_value(value).map_err(|source| CliError::Key {
            what: path.display().to_string(),
            source,
        })?;
        if jwk.is_private() {
            return Err(CliError::Usage {
                flag: "retiring_keys_file",
                reason: format!(
                    "{}: a published key holds private material; it must hold public keys only",
                    path.display()
                ),
            });
        }
        Ok(jwk)
    };
    let retiring = file
        .retiring
        .iter()
        .map(|e| Ok(RetiringKey::new(public(&e.jwk)?, e.until)))
        .collect::<Result<_, CliError>>()?;
    let next = file
        .next
        .iter()
        .map(|n| public(&n.jwk))
        .collect::<Result<_, _>>()?;
    Ok((retiring, next))
}

/// Where `c`'s prepared next signing key is kept: beside the signing key.
fn next_path(c: &Config) -> PathBuf {
    let mut p = c.signing_key_file.clone().into_os_string();
    p.push(".next");
    PathBuf::from(p)
}

/// Prepares `c`'s next signing key (the algorithm of the current one, its `kid` its
/// thumbprint): its public key published by every instance from its next start, its
/// private key kept for `rotate`. The public key is written first, so a crash between
/// the two writes leaves a published key nobody signs with, never the reverse.
pub(crate) fn prepare(c: &Config) -> Result<String, CliError> {
    let (current, _) = crate::keys::read_signing_key(&c.signing_key_file)?;
    let path = retiring_path(c);
    let mut file = read(&path)?;
    let next_file = next_path(c);
    if next_file.exists() {
        return Err(CliError::Usage {
            flag: "prepare",
            reason: format!(
                "{} holds a prepared key already: rotate to it first",
                next_file.display()
            ),
        });
    }
    let next = PrivateKey::generate(current.algorithm(), &mut OsRandom).map_err(|source| {
        CliError::Key {
            what: "generating a key".to_owned(),
            source,
        }
    })?;
    let kid = next.public_key().thumbprint().as_str().to_owned();
    let public = next.public_key().to_jwk().with_kid(kid.clone());
    let jwk: serde_json::Value = serde_json::from_str(&public.to_json())
        .map_err(|e| CliError::Operational(format!("the public key as JSON: {e}")))?;
    file.next = vec![Next { jwk }];
    write_file(&path, &file)?;
    let mut private = next.to_private_jwk();
    private.kid = Some(kid.clone());
    let private = zeroize::Zeroizing::new(private.to_json());
    replace(&next_file, private.as_bytes(), true)?;
    Ok(kid)
}

fn write_file(path: &Path, file: &RetiringFile) -> Result<(), CliError> {
    let json = serde_json::to_vec_pretty(file)
        .map_err(|e| CliError::Operational(format!("the retiring keys as JSON: {e}")))?;
    replace(path, &json, false)
}

fn read(path: &Path) -> Result<RetiringFile, CliError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| CliError::Usage {
            flag: "retiring_keys_file",
            reason: format!("{}: {e}", path.display()),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RetiringFile::default()),
        Err(e) => Err(CliError::file(path)(e)),
    }
}

/// What a rotation did.
pub(crate) struct Rotation {
    pub(crate) old_kid: String,
    pub(crate) new_kid: String,
    pub(crate) until: u64,
    /// Whether the new key was the prepared one (published already).
    pub(crate) prepared: bool,
}

/// Rotates `c`'s signing key at `now`: the prepared next key, else a new key of the same
/// algorithm (its `kid` its thumbprint), replaces the old one, whose public key is
/// published until `now + overlap`. The retiring-keys file is written first, so a crash
/// between the writes leaves the old key signing and published, never a key that signs
/// unpublished.
pub(crate) fn rotate(c: &Config, overlap: u64, now: u64) -> Result<Rotation, CliError> {
    let (old, old_kid) = crate::keys::read_signing_key(&c.signing_key_file)?;
    let path = retiring_path(c);
    let mut file = read(&path)?;
    let next_file = next_path(c);
    let prepared = next_file.exists();
    let new = if prepared {
        let (next, kid) = crate::keys::read_signing_key(&next_file)?;
        let published = listed(c)?
            .1
            .iter()
            .any(|j| j.kid.as_deref() == Some(kid.as_str()));
        if !published {
            return Err(CliError::Usage {
                flag: "rotate",
                reason: format!(
                    "{} is not published ({} does not list it): remove it and prepare again",
                    next_file.display(),
                    path.display()
                ),
            });
        }
        next
    } else {
        PrivateKey::generate(old.algorithm(), &mut OsRandom).map_err(|source| CliError::Key {
            what: "generating a key".to_owned(),
            source,
        })?
    };
    let new_kid = new.public_key().thumbprint().as_str().to_owned();
    file.next.clear();
    file.retiring.retain(|e| e.until > now);
    if file.retiring.len() >= MAX_RETIRING {
        return Err(CliError::Usage {
            flag: "retiring_keys_file",
            reason: format!(
                "{} holds {MAX_RETIRING} keys still published; wait for one to end, or shorten --overlap",
                path.display()
            ),
        });
    }
    let until = now.saturating_add(overlap);
    let public = old.public_key().to_jwk().with_kid(old_kid.clone());
    let jwk: serde_json::Value = serde_json::from_str(&public.to_json())
        .map_err(|e| CliError::Operational(format!("the public key as JSON: {e}")))?;
    file.retiring.push(Entry { until, jwk });
    write_file(&path, &file)?;
    let mut private = new.to_private_jwk();
    private.kid = Some(new_kid.clone());
    let private = zeroize::Zeroizing::new(private.to_json());
    replace(&c.signing_key_file, private.as_bytes(), true)?;
    if prepared {
        std::fs::remove_file(&next_file).map_err(CliError::file(&next_file))?;
    }
    Ok(Rotation {
        old_kid,
        new_kid,
        until,
        prepared,
    })
}

/// Replaces `path` with `contents` atomically (a temporary file beside it, synced, then
/// renamed over it, the directory synced), mode 0600 when `private`. The temporary file
/// is always made new: one left by an interrupted run (perhaps readable by others, or a
/// link to elsewhere) is removed first, never written through.
fn replace(path: &Path, contents: &[u8], private: bool) -> Result<(), CliError> {
    let mut tmp = path.to_owned().into_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(CliError::file(&tmp)(e)),
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts.open(&tmp).map_err(CliError::file(&tmp))?;
    f.write_all(contents).map_err(CliError::file(&tmp))?;
    f.sync_all().map_err(CliError::file(&tmp))?;
    std::fs::rename(&tmp, path).map_err(CliError::file(path))?;
    // The rename itself survives a crash once the directory is synced.
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(CliError::file(dir))?;
    }
    Ok(())
}

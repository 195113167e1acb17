//! A service's signing key and the keys it signed with before, for `aauth admin keys`:
//! a rotation writes a new private key in place of the old one and adds the old public
//! key to the retiring-keys file, published beside the new one until the overlap ends.
//!
//! The retiring-keys file is `retiring_keys_file`, by default the signing key's path with
//! `.retiring.json` appended: `{"retiring": [{"until": 1767225600, "jwk": {…}}]}`
//! (public keys only). `aauth serve` reads it at start; the served JWKS drops each key at
//! its `until` without a restart.

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

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetiringFile {
    retiring: Vec<Entry>,
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

/// `c`'s retiring keys (none when the file does not exist).
pub(crate) fn retiring(c: &Config) -> Result<Vec<RetiringKey>, CliError> {
    let path = retiring_path(c);
    read(&path)?
        .retiring
        .into_iter()
        .map(|e| {
            let jwk = Jwk::from_value(&e.jwk).map_err(|source| CliError::Key {
                what: path.display().to_string(),
                source,
            })?;
            if jwk.is_private() {
                return Err(CliError::Usage {
                    flag: "retiring_keys_file",
                    reason: format!(
                        "{}: a retiring key holds private material; it must hold public keys only",
                        path.display()
                    ),
                });
            }
            Ok(RetiringKey::new(jwk, e.until))
        })
        .collect()
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
}

/// Rotates `c`'s signing key at `now`: a new key of the same algorithm (its `kid` its
/// thumbprint) replaces the old one, whose public key is published until `now + overlap`.
/// The retiring-keys file is written first, so a crash between the two writes leaves the
/// old key signing and published, never a key that signs unpublished.
pub(crate) fn rotate(c: &Config, overlap: u64, now: u64) -> Result<Rotation, CliError> {
    let (old, old_kid) = crate::keys::read_signing_key(&c.signing_key_file)?;
    let new =
        PrivateKey::generate(old.algorithm(), &mut OsRandom).map_err(|source| CliError::Key {
            what: "generating a key".to_owned(),
            source,
        })?;
    let new_kid = new.public_key().thumbprint().as_str().to_owned();
    let path = retiring_path(c);
    let mut file = read(&path)?;
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
    let json = serde_json::to_vec_pretty(&file)
        .map_err(|e| CliError::Operational(format!("the retiring keys as JSON: {e}")))?;
    replace(&path, &json, false)?;
    let mut private = new.to_private_jwk();
    private.kid = Some(new_kid.clone());
    let private = zeroize::Zeroizing::new(private.to_json());
    replace(&c.signing_key_file, private.as_bytes(), true)?;
    Ok(Rotation {
        old_kid,
        new_kid,
        until,
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

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
//!
//! A change (`prepare`, `rotate`) holds an exclusive lock on `<signing_key_file>.lock`
//! from its first read to its last write, refused at once while another holds it, and
//! writes nothing if the signing key changed meanwhile (a writer that takes no lock).
//! Every file it writes takes the owner of the one it replaces (the `.next` file, the
//! signing key's): `sudo aauth admin … keys rotate` leaves keys the service's user reads.

use std::fs::{File, OpenOptions, TryLockError};
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

/// The shortest `--overlap` taken without `--force`: the longest lifetime of a token a
/// service signs (an hour: person and auth tokens, agent tokens as the provider mints
/// them) and the hour verifiers may cache a JWKS. The time a rolling restart takes comes
/// on top: instances sign with the old key until they restart, and `until` counts from
/// the rotation.
const MIN_OVERLAP: u64 = 2 * 3600;

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
    checked(&path, &read_file(&path)?)
}

/// `file`'s (read from `path`) retiring keys and next key, each checked public.
fn checked(path: &Path, file: &RetiringFile) -> Result<(Vec<RetiringKey>, Vec<Jwk>), CliError> {
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

/// The files a change of keys reads and writes, all beside the signing key but the
/// retiring-keys file.
struct Files {
    key: PathBuf,
    /// The prepared next signing key: `<signing_key_file>.next`.
    next: PathBuf,
    retiring: PathBuf,
    /// Held while the keys change: `<signing_key_file>.lock`.
    lock: PathBuf,
}

impl Files {
    fn of(c: &Config) -> Self {
        let beside = |suffix: &str| {
            let mut p = c.signing_key_file.clone().into_os_string();
            p.push(suffix);
            PathBuf::from(p)
        };
        Self {
            key: c.signing_key_file.clone(),
            next: beside(".next"),
            retiring: retiring_path(c),
            lock: beside(".lock"),
        }
    }

    /// Takes the lock, or says who holds it: a second change fails at once rather than
    /// wait behind the first (released when the file is dropped, or the process ends).
    /// The lock file is left in place (removing it would let two runs lock two files); it
    /// is opened to read when it exists, so any user running the command can lock it.
    fn lock(&self) -> Result<File, CliError> {
        let path = &self.lock;
        let f = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut opts = OpenOptions::new();
                opts.write(true).create(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    opts.mode(0o644);
                }
                let f = opts.open(path).map_err(CliError::file(path))?;
                // Readable by all whatever the umask (a root umask of 077 would leave it
                // 0600, and the service's own user could never lock it again).
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    f.set_permissions(std::fs::Permissions::from_mode(0o644))
                        .map_err(CliError::file(path))?;
                }
                f
            }
            Err(e) => return Err(CliError::file(path)(e)),
        };
        match f.try_lock() {
            Ok(()) => Ok(f),
            Err(TryLockError::WouldBlock) => Err(CliError::File {
                path: path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::WouldBlock,
                    "locked by another `aauth admin … keys prepare` or `keys rotate` changing \
                     these keys; nothing was written: run this again once it has finished",
                ),
            }),
            Err(TryLockError::Error(e)) => Err(CliError::file(path)(e)),
        }
    }

    /// The signing key and its `kid`, and its thumbprint: what `unchanged` compares.
    fn signing_key(&self) -> Result<(PrivateKey, String, String), CliError> {
        let (key, kid) = crate::keys::read_signing_key(&self.key)?;
        let thumbprint = key.public_key().thumbprint().as_str().to_owned();
        Ok((key, kid, thumbprint))
    }

    /// Refuses to go on when the signing key is no longer the one read as `thumbprint`:
    /// something that takes no lock replaced it meanwhile.
    fn unchanged(&self, thumbprint: &str) -> Result<(), CliError> {
        let (_, _, now) = self.signing_key()?;
        if now == thumbprint {
            return Ok(());
        }
        Err(CliError::File {
            path: self.key.clone(),
            source: std::io::Error::other(format!(
                "replaced while this command ran (its key was {thumbprint}, it is {now} now), \
                 by something that does not take {}; nothing was written: check the keys \
                 with `keys list` and run this again",
                self.lock.display()
            )),
        })
    }
}

/// What a change writes, read and decided under the lock: the retiring-keys file, then a
/// private key, each taking the owner of the file it replaces (the `.next` file, the
/// signing key's). Nothing is written unless both could be staged and the signing key is
/// still the one read.
struct Change {
    /// The signing key's thumbprint when read.
    read: String,
    retiring: RetiringFile,
    /// The private key to write (a JWK), and where: the signing key file or `.next`.
    private: zeroize::Zeroizing<String>,
    to: PathBuf,
    /// Whether the prepared key is removed once written (it signs now).
    drop_next: bool,
}

impl Change {
    fn apply(self, files: &Files) -> Result<(), CliError> {
        let json = serde_json::to_vec_pretty(&self.retiring)
            .map_err(|e| CliError::Operational(format!("the retiring keys as JSON: {e}")))?;
        // A new retiring-keys file is owned as the signing key is; an existing one keeps
        // its owner.
        let owner = if files.retiring.exists() {
            &files.retiring
        } else {
            &files.key
        };
        let retiring = Staged::new(&files.retiring, &json, false, owner)?;
        let key = Staged::new(&self.to, self.private.as_bytes(), true, &files.key)?;
        files.unchanged(&self.read)?;
        retiring.commit()?;
        key.commit()?;
        if self.drop_next {
            std::fs::remove_file(&files.next).map_err(CliError::file(&files.next))?;
        }
        Ok(())
    }
}

/// A private key as the JSON written to its file, its `kid` set.
fn private_json(key: &PrivateKey, kid: &str) -> zeroize::Zeroizing<String> {
    let mut private = key.to_private_jwk();
    private.kid = Some(kid.to_owned());
    zeroize::Zeroizing::new(private.to_json())
}

/// `key`'s public JWK with `kid`, as a JSON value for the retiring-keys file.
fn public_value(key: &PrivateKey, kid: &str) -> Result<serde_json::Value, CliError> {
    let public = key.public_key().to_jwk().with_kid(kid.to_owned());
    serde_json::from_str(&public.to_json())
        .map_err(|e| CliError::Operational(format!("the public key as JSON: {e}")))
}

fn generate(like: &PrivateKey) -> Result<PrivateKey, CliError> {
    PrivateKey::generate(like.algorithm(), &mut OsRandom).map_err(|source| CliError::Key {
        what: "generating a key".to_owned(),
        source,
    })
}

/// Prepares `c`'s next signing key (the algorithm of the current one, its `kid` its
/// thumbprint): its public key published by every instance from its next start, its
/// private key kept for `rotate`. The public key is written first, so a crash between
/// the two writes leaves a published key nobody signs with, never the reverse.
pub(crate) fn prepare(c: &Config) -> Result<String, CliError> {
    let files = Files::of(c);
    let _lock = files.lock()?;
    let (change, kid) = plan_prepare(&files)?;
    change.apply(&files)?;
    Ok(kid)
}

fn plan_prepare(files: &Files) -> Result<(Change, String), CliError> {
    let (current, _, read) = files.signing_key()?;
    let mut retiring = read_file(&files.retiring)?;
    if files.next.exists() {
        return Err(CliError::Usage {
            flag: "prepare",
            reason: format!(
                "{} holds a prepared key already: rotate to it first",
                files.next.display()
            ),
        });
    }
    let next = generate(&current)?;
    let kid = next.public_key().thumbprint().as_str().to_owned();
    retiring.next = vec![Next {
        jwk: public_value(&next, &kid)?,
    }];
    let change = Change {
        read,
        retiring,
        private: private_json(&next, &kid),
        to: files.next.clone(),
        drop_next: false,
    };
    Ok((change, kid))
}

fn read_file(path: &Path) -> Result<RetiringFile, CliError> {
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

/// Refuses an `--overlap` under `MIN_OVERLAP` unless `force`d, saying why.
fn check_overlap(overlap: u64, force: bool) -> Result<(), CliError> {
    if overlap >= MIN_OVERLAP || force {
        return Ok(());
    }
    Err(CliError::Usage {
        flag: "--overlap",
        reason: format!(
            "{overlap} s is under the {} h floor: tokens the old key signed live up to an \
             hour, verifiers may cache the JWKS another hour, and every instance goes on \
             signing with the old key until it restarts, while the overlap counts from now; \
             a shorter one lets verifiers refuse valid tokens. Give the token lifetime plus \
             your restart time plus an hour, or --force to take it anyway",
            MIN_OVERLAP / 3600
        ),
    })
}

/// Rotates `c`'s signing key at `now`: the prepared next key, else a new key of the same
/// algorithm (its `kid` its thumbprint), replaces the old one, whose public key is
/// published until `now + overlap` (at least `MIN_OVERLAP` unless `force`). The
/// retiring-keys file is written first, so a crash between the writes leaves the old key
/// signing and published, never a key that signs unpublished.
pub(crate) fn rotate(
    c: &Config,
    overlap: u64,
    force: bool,
    now: u64,
) -> Result<Rotation, CliError> {
    check_overlap(overlap, force)?;
    let files = Files::of(c);
    let _lock = files.lock()?;
    let (change, rotation) = plan_rotate(&files, overlap, now)?;
    change.apply(&files)?;
    Ok(rotation)
}

fn plan_rotate(files: &Files, overlap: u64, now: u64) -> Result<(Change, Rotation), CliError> {
    let (old, old_kid, read) = files.signing_key()?;
    let mut retiring = read_file(&files.retiring)?;
    let prepared = files.next.exists();
    let new = if prepared {
        let (next, kid) = crate::keys::read_signing_key(&files.next)?;
        let published = checked(&files.retiring, &retiring)?
            .1
            .iter()
            .any(|j| j.kid.as_deref() == Some(kid.as_str()));
        if !published {
            return Err(CliError::Usage {
                flag: "rotate",
                reason: format!(
                    "{} is not published ({} does not list it): remove it and prepare again",
                    files.next.display(),
                    files.retiring.display()
                ),
            });
        }
        next
    } else {
        generate(&old)?
    };
    let new_kid = new.public_key().thumbprint().as_str().to_owned();
    retiring.next.clear();
    retiring.retiring.retain(|e| e.until > now);
    if retiring.retiring.len() >= MAX_RETIRING {
        return Err(CliError::Usage {
            flag: "retiring_keys_file",
            reason: format!(
                "{} holds {MAX_RETIRING} keys still published; wait for one to end, or shorten --overlap",
                files.retiring.display()
            ),
        });
    }
    let until = now.saturating_add(overlap);
    retiring.retiring.push(Entry {
        until,
        jwk: public_value(&old, &old_kid)?,
    });
    let change = Change {
        read,
        retiring,
        private: private_json(&new, &new_kid),
        to: files.key.clone(),
        drop_next: prepared,
    };
    let rotation = Rotation {
        old_kid,
        new_kid,
        until,
        prepared,
    };
    Ok((change, rotation))
}

/// A file written beside the one it replaces (`<path>.tmp`: mode 0600 when private, else
/// 0644; the owner of `owner_of`, when that exists; synced), renamed over it by `commit`;
/// dropped uncommitted, it is removed. The temporary file is always made new: one left by
/// an interrupted run (perhaps readable by others, or a link to elsewhere) is removed
/// first, never written through.
struct Staged {
    tmp: PathBuf,
    path: PathBuf,
    committed: bool,
}

impl Staged {
    fn new(path: &Path, contents: &[u8], private: bool, owner_of: &Path) -> Result<Self, CliError> {
        let mut tmp = path.to_owned().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        match std::fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(CliError::file(&tmp)(e)),
        }
        let mut opts = OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(if private { 0o600 } else { 0o644 });
        }
        #[cfg(not(unix))]
        let _ = private;
        let mut f = opts.open(&tmp).map_err(CliError::file(&tmp))?;
        // From here on the temporary file goes when this is dropped, whatever fails.
        let staged = Self {
            tmp,
            path: path.to_owned(),
            committed: false,
        };
        #[cfg(unix)]
        keep_owner(&f, &staged.tmp, path, owner_of)?;
        #[cfg(not(unix))]
        let _ = owner_of;
        f.write_all(contents).map_err(CliError::file(&staged.tmp))?;
        f.sync_all().map_err(CliError::file(&staged.tmp))?;
        Ok(staged)
    }

    /// Renames the file over its destination, then syncs the directory: the rename itself
    /// survives a crash once the directory is synced.
    fn commit(mut self) -> Result<(), CliError> {
        std::fs::rename(&self.tmp, &self.path).map_err(CliError::file(&self.path))?;
        self.committed = true;
        #[cfg(unix)]
        {
            let dir = match self.path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(CliError::file(dir))?;
        }
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            // Best effort: a temporary file left is removed by the next run before it
            // writes its own.
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Gives `f` (open at `tmp`, to replace `path`) the owner and group of `owner_of`, when
/// that exists and they differ from `f`'s: `sudo aauth admin … keys rotate` must leave
/// the service's user the key it reads at its next start. Refused, when this user may
/// not give them, before anything is replaced.
#[cfg(unix)]
fn keep_owner(f: &File, tmp: &Path, path: &Path, owner_of: &Path) -> Result<(), CliError> {
    use std::os::unix::fs::MetadataExt;
    let want = match std::fs::metadata(owner_of) {
        Ok(m) => (m.uid(), m.gid()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(CliError::file(owner_of)(e)),
    };
    let have = f.metadata().map_err(CliError::file(tmp))?;
    if (have.uid(), have.gid()) == want {
        return Ok(());
    }
    std::os::unix::fs::fchown(f, Some(want.0), Some(want.1)).map_err(|e| CliError::File {
        path: path.to_owned(),
        source: std::io::Error::new(
            e.kind(),
            format!(
                "must be owned as {} is (uid {}, gid {}), which this user (uid {}, gid {}) \
                 may not give it ({e}); nothing was replaced: run the command as that user, \
                 or as root",
                owner_of.display(),
                want.0,
                want.1,
                have.uid(),
                have.gid()
            ),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("aauth-keyring-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn files(dir: &Path) -> Files {
        Files {
            key: dir.join("k.jwk"),
            next: dir.join("k.jwk.next"),
            retiring: dir.join("k.jwk.retiring.json"),
            lock: dir.join("k.jwk.lock"),
        }
    }

    fn write_key(path: &Path, seed: u8) -> String {
        let key = PrivateKey::ed25519_from_seed(&[seed; 32]);
        let json = private_json(&key, &format!("k-{seed}"));
        let mut opts = OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        opts.open(path).unwrap().write_all(json.as_bytes()).unwrap();
        json.to_string()
    }

    /// A rotation decided on one signing key writes nothing once something that takes no
    /// lock (an older `aauth`, `keygen --force`) has replaced that key: the other key is
    /// neither overwritten nor left unpublished.
    #[test]
    fn a_key_replaced_since_it_was_read_is_not_overwritten() {
        let dir = scratch("replaced");
        let files = files(&dir);
        write_key(&files.key, 1);
        let _lock = files.lock().unwrap();
        let (change, _) = plan_rotate(&files, MIN_OVERLAP, 1000).unwrap();
        let other = write_key(&files.key, 2);
        let err = change.apply(&files).unwrap_err().to_string();
        assert!(err.contains("k.jwk: replaced while"), "{err}");
        assert!(err.contains("k.jwk.lock"), "{err}");
        assert_eq!(std::fs::read_to_string(&files.key).unwrap(), other);
        assert!(!files.retiring.exists());
        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(left.is_empty(), "temporary files left: {left:?}");

        // Read afresh, the change goes through.
        let (change, rotation) = plan_rotate(&files, MIN_OVERLAP, 1000).unwrap();
        change.apply(&files).unwrap();
        assert_eq!(rotation.old_kid, "k-2");
    }

    /// The lock is exclusive: a second holder is refused at once, naming the lock file.
    #[test]
    fn a_held_lock_refuses_a_second_change() {
        let dir = scratch("locked");
        let files = files(&dir);
        write_key(&files.key, 1);
        let held = files.lock().unwrap();
        let err = files.lock().unwrap_err().to_string();
        assert!(err.contains("k.jwk.lock: locked by another"), "{err}");
        drop(held);
        files.lock().unwrap();
    }

    #[test]
    fn an_overlap_under_the_floor_needs_force() {
        let err = check_overlap(MIN_OVERLAP - 1, false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--force") && err.contains("restart"), "{err}");
        check_overlap(MIN_OVERLAP - 1, true).unwrap();
        check_overlap(MIN_OVERLAP, false).unwrap();
    }
}

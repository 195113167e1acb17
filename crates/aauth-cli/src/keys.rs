//! `aauth keygen` and `aauth jwk`: keys as JWK files.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use aauth_keys::rand::OsRandom;
use aauth_keys::{Algorithm, Jwk, JwkSet, PrivateKey, PublicKey};

use crate::cli::{Alg, Keygen};
use crate::error::CliError;

/// `aauth keygen`: writes the private JWK (0600), prints (and optionally writes) the
/// public JWKS.
pub(crate) fn keygen(args: &Keygen, out: &mut dyn Write) -> Result<(), CliError> {
    let alg = match args.alg {
        Alg::Ed25519 => Algorithm::Ed25519,
        Alg::Es256 => Algorithm::Es256,
    };
    let key = PrivateKey::generate(alg, &mut OsRandom).map_err(|source| CliError::Key {
        what: "generating a key".to_owned(),
        source,
    })?;
    let kid = args
        .kid
        .clone()
        .unwrap_or_else(|| key.public_key().thumbprint().as_str().to_owned());
    if kid.is_empty() {
        return Err(CliError::Usage {
            flag: "--kid",
            reason: "must not be empty".to_owned(),
        });
    }
    let mut private = key.to_private_jwk();
    private.kid = Some(kid.clone());
    // Compact, straight from the key (no intermediate copy), and wiped when dropped.
    let private_json = zeroize::Zeroizing::new(private.to_json());
    create_file(&args.out, args.force, true, private_json.as_bytes())?;

    let public = key.public_key().to_jwk().with_kid(kid);
    let jwks = pretty(&JwkSet::from_jwks(&[public]).to_json());
    if let Some(path) = &args.public {
        create_file(path, args.force, false, jwks.as_bytes())?;
    }
    writeln!(out, "{jwks}").map_err(CliError::file(Path::new("<stdout>")))?;
    Ok(())
}

/// `aauth jwk thumbprint`.
pub(crate) fn thumbprint(file: &Path, out: &mut dyn Write) -> Result<(), CliError> {
    let key = read_public(file)?;
    writeln!(out, "{}", key.thumbprint().as_str()).map_err(CliError::file(Path::new("<stdout>")))
}

/// `aauth jwk public`: the public JWK and a JWKS holding it.
pub(crate) fn public(file: &Path, out: &mut dyn Write) -> Result<(), CliError> {
    let (key, kid) = read_any(file)?;
    let mut jwk = key.to_jwk();
    jwk.kid = kid;
    let set = JwkSet::from_jwks(std::slice::from_ref(&jwk));
    writeln!(
        out,
        "{}\n{}",
        pretty(&jwk.to_json()),
        pretty(&set.to_json())
    )
    .map_err(CliError::file(Path::new("<stdout>")))
}

/// The public key of a JWK file holding a public or private key.
pub(crate) fn read_public(file: &Path) -> Result<PublicKey, CliError> {
    read_any(file).map(|(k, _)| k)
}

/// The private key in `file`, which must not be readable by others.
pub(crate) fn read_private(file: &Path) -> Result<PrivateKey, CliError> {
    read_signing_key(file).map(|(key, _)| key)
}

/// A server's signing key from `file` (not readable by others) and its `kid`: the
/// file's own, else the key's thumbprint.
pub(crate) fn read_signing_key(file: &Path) -> Result<(PrivateKey, String), CliError> {
    let (text, opened) = read_key_text(file)?;
    if let Some(f) = &opened {
        check_mode(file, f)?;
    }
    let jwk = one_jwk(file, &text)?;
    let key = PrivateKey::from_jwk(&jwk).map_err(|source| CliError::Key {
        what: file.display().to_string(),
        source,
    })?;
    let kid = jwk
        .kid
        .filter(|k| !k.is_empty())
        .unwrap_or_else(|| key.public_key().thumbprint().as_str().to_owned());
    Ok((key, kid))
}

/// The service's own signing key (`signing_key_file` of `c`) and its `kid`, as
/// [`read_signing_key`]; a file that does not exist is said to be that key's, with the
/// command that makes one.
pub(crate) fn service_key(c: &crate::config::Config) -> Result<(PrivateKey, String), CliError> {
    read_signing_key(&c.signing_key_file).map_err(|e| match e {
        CliError::File { path, source } if source.kind() == std::io::ErrorKind::NotFound => {
            CliError::Operational(format!(
                "signing_key_file: {}: no such file; make the service's key with \
                 `aauth keygen --out {} --kid KID`",
                path.display(),
                path.display()
            ))
        }
        other => other,
    })
}

fn read_any(file: &Path) -> Result<(PublicKey, Option<String>), CliError> {
    let (text, opened) = read_key_text(file)?;
    let jwk = one_jwk(file, &text)?;
    let key = if jwk.is_private() {
        if let Some(f) = &opened {
            check_mode(file, f)?;
        }
        PrivateKey::from_jwk(&jwk).map(|k| k.public_key().clone())
    } else {
        PublicKey::from_jwk(&jwk)
    }
    .map_err(|source| CliError::Key {
        what: file.display().to_string(),
        source,
    })?;
    Ok((key, jwk.kid))
}

/// The JWK in `text`: a JWK, or a JWKS holding exactly one key.
fn one_jwk(file: &Path, text: &str) -> Result<Jwk, CliError> {
    let key_error = |source| CliError::Key {
        what: file.display().to_string(),
        source,
    };
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| CliError::Key {
        what: file.display().to_string(),
        source: aauth_keys::KeyError::MalformedJwk {
            reason: e.to_string(),
        },
    })?;
    match value.get("keys").and_then(serde_json::Value::as_array) {
        Some(keys) if keys.len() == 1 => Jwk::from_value(&keys[0]).map_err(key_error),
        Some(keys) => Err(CliError::Usage {
            flag: "FILE",
            reason: format!(
                "{} is a JWKS with {} keys; give a file with one key",
                file.display(),
                keys.len()
            ),
        }),
        None => Jwk::from_value(&value).map_err(key_error),
    }
}

/// The text of a key file (`-`: standard input), and the file it was read from, whose
/// mode [`check_mode`] checks when the key is private: the file read, not whatever the
/// path names a moment later.
fn read_key_text(
    file: &Path,
) -> Result<(zeroize::Zeroizing<String>, Option<std::fs::File>), CliError> {
    let mut text = zeroize::Zeroizing::new(String::new());
    if file == Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(CliError::file(file))?;
        return Ok((text, None));
    }
    let mut f = std::fs::File::open(file).map_err(CliError::file(file))?;
    f.read_to_string(&mut text).map_err(CliError::file(file))?;
    Ok((text, Some(f)))
}

/// The bytes of a secret file (a password, a shared secret, a TLS private key), refused
/// when its group or others can read it, as a private key file is.
pub(crate) fn read_secret(file: &Path) -> Result<zeroize::Zeroizing<Vec<u8>>, CliError> {
    let f = std::fs::File::open(file).map_err(CliError::file(file))?;
    check_mode(file, &f)?;
    let mut bytes = zeroize::Zeroizing::new(Vec::new());
    f.take(MAX_SECRET_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(CliError::file(file))?;
    if bytes.len() as u64 > MAX_SECRET_FILE {
        return Err(CliError::File {
            path: file.to_owned(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("larger than the {MAX_SECRET_FILE} bytes a secret file may hold"),
            ),
        });
    }
    Ok(bytes)
}

/// The largest secret file read (1 MiB: a PEM key chain fits many times over).
const MAX_SECRET_FILE: u64 = 1024 * 1024;

/// As [`read_secret`], as text.
pub(crate) fn read_secret_text(file: &Path) -> Result<zeroize::Zeroizing<String>, CliError> {
    let bytes = read_secret(file)?;
    match std::str::from_utf8(&bytes) {
        Ok(text) => Ok(zeroize::Zeroizing::new(text.to_owned())),
        Err(e) => Err(CliError::File {
            path: file.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        }),
    }
}

/// The permission bits of `file`, open as `f` (read from the open file: no race with a
/// rename).
#[cfg(unix)]
fn mode_of(file: &Path, f: &std::fs::File) -> Result<u32, CliError> {
    use std::os::unix::fs::PermissionsExt;
    Ok(f.metadata()
        .map_err(CliError::file(file))?
        .permissions()
        .mode()
        & 0o777)
}

/// Refuses a key or secret file, open as `f`, that its group or others can read (Unix).
fn check_mode(file: &Path, f: &std::fs::File) -> Result<(), CliError> {
    #[cfg(unix)]
    {
        let mode = mode_of(file, f)?;
        if mode & 0o077 != 0 {
            return Err(CliError::KeyFileMode {
                path: file.to_owned(),
                mode,
            });
        }
    }
    Ok(())
}

/// Refuses a file, open as `f`, that the configuration's `key` names and the service
/// trusts (keys it publishes or accepts, CA certificates), when its group or others can
/// write it (Unix): whoever could would choose what the service trusts.
pub(crate) fn check_not_writable(
    key: &'static str,
    file: &Path,
    f: &std::fs::File,
) -> Result<(), CliError> {
    #[cfg(unix)]
    {
        let mode = mode_of(file, f)?;
        if mode & 0o022 != 0 {
            return Err(CliError::WritableFile {
                key,
                path: file.to_owned(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = (key, f);
    Ok(())
}

/// Writes `contents` to `path` with mode 0600, replacing it (a token for a profile).
pub(crate) fn write_secret(path: &Path, contents: &[u8]) -> Result<(), CliError> {
    create_file(path, true, true, contents)
}

/// Creates `path` with `contents` (mode 0600 when `private`); an existing file is an
/// error unless `force`.
fn create_file(path: &Path, force: bool, private: bool, contents: &[u8]) -> Result<(), CliError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    if force {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(CliError::file(path)(e)),
        }
    }
    let mut f = opts.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            CliError::Exists {
                path: PathBuf::from(path),
            }
        } else {
            CliError::file(path)(e)
        }
    })?;
    f.write_all(contents)
        .and_then(|()| f.write_all(b"\n"))
        .and_then(|()| f.sync_all())
        .map_err(CliError::file(path))
}

/// `json` re-indented for people (it came from our own serializer, so it parses).
fn pretty(json: &str) -> String {
    serde_json::from_str::<serde_json::Value>(json)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| json.to_owned())
}

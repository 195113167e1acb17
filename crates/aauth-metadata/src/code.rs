//! Interaction codes (draft -11 §Interaction Code Format), for every server that issues
//! them (the Person Server and the Access Server): Crockford base32, eight symbols (40
//! bits) from the server's random source, shown as `XXXX-XXXX`, compared after
//! normalization (case folded, hyphens stripped, `I`/`L` read as `1`, `O` as `0`).
//!
//! ```
//! use aauth_metadata::code;
//! let c = code::new_code(&mut aauth_keys::rand::OsRandom)?;
//! let shown = code::display(&c);
//! assert_eq!(code::normalize(&shown.to_lowercase()).as_deref(), Some(c.as_str()));
//! # Ok::<(), aauth_keys::rand::RandomError>(())
//! ```

use aauth_keys::rand::{RandomError, RandomSource};

const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A new code, normalized (eight symbols, no hyphen): store this form, look up by it.
///
/// # Errors
///
/// When `random` has no random bytes.
pub fn new_code(random: &mut dyn RandomSource) -> Result<String, RandomError> {
    let mut b = [0u8; 5];
    random.fill(&mut b)?;
    let mut v: u64 = 0;
    for x in b {
        v = (v << 8) | u64::from(x);
    }
    Ok((0..8)
        .rev()
        .map(|i| char::from(ALPHABET[((v >> (i * 5)) & 31) as usize]))
        .collect())
}

/// The code as shown to a person: `XXXX-XXXX`.
pub fn display(code: &str) -> String {
    match (code.get(..4), code.get(4..)) {
        (Some(a), Some(b)) => format!("{a}-{b}"),
        _ => code.to_owned(),
    }
}

/// The normalized form of what a person typed, or `None` if it cannot be a code (then
/// nothing is looked up).
///
/// ```text
/// "abcd-1234" → "ABCD1234"; "o1lI" → "0111"; "ABCU1234" → None (U is not in the alphabet)
/// ```
pub fn normalize(input: &str) -> Option<String> {
    let mut out = String::with_capacity(8);
    for c in input.chars() {
        let c = match c.to_ascii_uppercase() {
            '-' | ' ' => continue,
            'I' | 'L' => '1',
            'O' => '0',
            c => c,
        };
        if !c.is_ascii() || !ALPHABET.contains(&(c as u8)) {
            return None;
        }
        out.push(c);
        if out.len() > 8 {
            return None;
        }
    }
    (out.len() == 8).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_eight_crockford_symbols_and_normalize() {
        let c = new_code(&mut aauth_keys::rand::OsRandom).expect("the OS random source works");
        assert_eq!(c.len(), 8);
        assert_eq!(normalize(&display(&c)).as_deref(), Some(c.as_str()));
        assert_eq!(normalize("abcd-1234").as_deref(), Some("ABCD1234"));
        assert_eq!(normalize("oiLl-0000").as_deref(), Some("01110000"));
        assert_eq!(normalize("ABCU1234"), None, "U is not Crockford");
        assert_eq!(normalize("ABCD123"), None);
        assert_eq!(normalize("ABCD12345"), None);
        assert_eq!(normalize("ÄBCD1234"), None);
        assert_ne!(
            new_code(&mut aauth_keys::rand::OsRandom).ok(),
            new_code(&mut aauth_keys::rand::OsRandom).ok()
        );
    }
}

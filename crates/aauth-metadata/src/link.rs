//! The `aauth-resource` link relation (draft -11 §Resource Metadata; checklist AG-03 and
//! RS-04): a `Link` header field (RFC 8288) or an HTML `<link>` with
//! `rel="aauth-resource"` naming a resource's metadata document. A target is taken only
//! in the form `{server identifier}/.well-known/aauth-resource.json`, so a link can name
//! a resource and nothing else (never an arbitrary URL to fetch).
//!
//! ```
//! use aauth_metadata::link;
//! let id = link::from_link_header(
//!     r#"<https://api.example/.well-known/aauth-resource.json>; rel="aauth-resource""#,
//! );
//! assert_eq!(id.map(|i| i.as_str().to_owned()).as_deref(), Some("https://api.example"));
//! // Any other target names nothing.
//! assert!(link::from_link_header(r#"<https://api.example/x.json>; rel="aauth-resource""#).is_none());
//! ```

use aauth_tokens::ServerId;

use crate::{HttpsUrl, MetadataDocument, ResourceMetadata};

/// The link relation type.
pub const REL: &str = "aauth-resource";

/// The longest field value or page examined, in bytes (larger ones name nothing).
pub const MAX_INPUT: usize = 64 * 1024;

/// The resource a `Link` field value names with `rel="aauth-resource"` (the first such
/// link whose target has the metadata document's form), or `None`.
#[must_use]
pub fn from_link_header(value: &str) -> Option<ServerId> {
    if value.len() > MAX_INPUT {
        return None;
    }
    split_links(value).find_map(|link| {
        let (target, params) = link.trim().strip_prefix('<')?.split_once('>')?;
        let rel = params
            .split(';')
            .filter_map(|p| p.split_once('='))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("rel"))
            .map(|(_, v)| v.trim().trim_matches('"'))?;
        names_rel(rel).then(|| resource_of(target)).flatten()
    })
}

/// The resource an HTML page names with `<link rel="aauth-resource" href="…">` (the
/// first such element whose `href` has the metadata document's form), or `None`. Only
/// quoted attribute values are read.
#[must_use]
pub fn from_html(page: &str) -> Option<ServerId> {
    if page.len() > MAX_INPUT {
        return None;
    }
    let lower = page.to_ascii_lowercase();
    let mut from = 0;
    while let Some(start) = lower[from..].find("<link") {
        let start = from + start;
        let end = start + lower[start..].find('>')?;
        let (tag, tag_lower) = (&page[start..end], &lower[start..end]);
        if let (Some(rel), Some(href)) = (
            attribute(tag_lower, tag, "rel"),
            attribute(tag_lower, tag, "href"),
        ) && names_rel(rel)
            && let Some(id) = resource_of(href)
        {
            return Some(id);
        }
        from = end;
    }
    None
}

/// Fetch-ready: the metadata document URL of `resource` (what a link must name).
///
/// # Errors
///
/// Never for a valid identifier; [`crate::UrlError`] otherwise.
pub fn target_of(resource: &ServerId) -> Result<HttpsUrl, crate::UrlError> {
    HttpsUrl::well_known(resource, ResourceMetadata::DWK)
}

/// The `Link` field value a resource sends to name its metadata document (checklist
/// RS-04).
#[must_use]
pub fn header_value(resource: &ServerId) -> String {
    format!(
        "<{}/.well-known/{}>; rel=\"{REL}\"",
        resource.as_str(),
        ResourceMetadata::DWK
    )
}

/// Whether a space-separated `rel` value includes `aauth-resource` (case-insensitively,
/// RFC 8288 §3.3).
fn names_rel(rel: &str) -> bool {
    rel.split_ascii_whitespace()
        .any(|r| r.eq_ignore_ascii_case(REL))
}

/// The server whose metadata document `target` is, when it is exactly
/// `{server identifier}/.well-known/aauth-resource.json`.
fn resource_of(target: &str) -> Option<ServerId> {
    let url = HttpsUrl::parse(target).ok()?;
    if url.path_and_query() != format!("/.well-known/{}", ResourceMetadata::DWK) {
        return None;
    }
    ServerId::parse(url.origin()).ok()
}

/// The links of a `Link` field value, split at the commas between them (not those inside
/// `<…>` or quotes).
fn split_links(value: &str) -> impl Iterator<Item = &str> {
    let mut parts = Vec::new();
    let (mut start, mut in_target, mut in_quote) = (0, false, false);
    for (i, c) in value.char_indices() {
        match c {
            '<' if !in_quote => in_target = true,
            '>' if !in_quote => in_target = false,
            '"' if !in_target => in_quote = !in_quote,
            ',' if !in_target && !in_quote => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts.into_iter()
}

/// The quoted value of attribute `name` in a tag (`lower` is `tag` lowercased, for
/// finding the name; the value is read from `tag`).
fn attribute<'a>(lower: &str, tag: &'a str, name: &str) -> Option<&'a str> {
    let mut from = 0;
    while let Some(at) = lower[from..].find(name) {
        let at = from + at;
        from = at + name.len();
        // A whole attribute name: preceded by whitespace, followed by `=`.
        if !lower[..at].ends_with(|c: char| c.is_ascii_whitespace()) {
            continue;
        }
        let rest = lower[from..].trim_start();
        let Some(rest) = rest.strip_prefix('=') else {
            continue;
        };
        let rest = rest.trim_start();
        let quote = rest.chars().next().filter(|q| *q == '"' || *q == '\'')?;
        let value_start = lower.len() - rest.len() + 1;
        let len = tag[value_start..].find(quote)?;
        return Some(&tag[value_start..value_start + len]);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_in_headers_and_pages_name_only_resources() {
        let id = |s: &str| ServerId::parse(s).ok();
        assert_eq!(
            from_link_header(
                r#"<https://a.example/doc>; rel="help", <https://api.example/.well-known/aauth-resource.json>; rel="describedby aauth-resource""#
            ),
            id("https://api.example")
        );
        assert_eq!(
            from_link_header(
                r#"<https://api.example/.well-known/aauth-resource.json>; rel=AAUTH-RESOURCE"#
            ),
            id("https://api.example")
        );
        for refused in [
            r#"<https://api.example/.well-known/aauth-resource.json>; rel="describedby""#,
            r#"<http://api.example/.well-known/aauth-resource.json>; rel="aauth-resource""#,
            r#"<https://api.example/.well-known/aauth-resource.json?x=1>; rel="aauth-resource""#,
            r#"<https://api.example/v1/.well-known/aauth-resource.json>; rel="aauth-resource""#,
            // Not a server identifier's form (identifiers are lowercase, no default port).
            r#"<https://API.example:443/.well-known/aauth-resource.json>; rel="aauth-resource""#,
            r#"https://api.example/.well-known/aauth-resource.json; rel="aauth-resource""#,
            "",
        ] {
            assert_eq!(from_link_header(refused), None, "{refused}");
        }
        let page = r#"<html><head><LINK href="https://api.example/.well-known/aauth-resource.json" rel='aauth-resource'></head></html>"#;
        assert_eq!(from_html(page), id("https://api.example"));
        let decoy = r#"<link data-rel="aauth-resource" href="https://evil.example/.well-known/aauth-resource.json"><link rel="aauth-resource" href="https://api.example/.well-known/aauth-resource.json">"#;
        assert_eq!(from_html(decoy), id("https://api.example"));
        assert_eq!(from_html("<link rel=aauth-resource href=x>"), None);
        let me = ServerId::parse("https://api.example").unwrap();
        assert_eq!(from_link_header(&header_value(&me)), Some(me));
    }
}

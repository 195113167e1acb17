#![no_main]
// Metadata documents (all four, with and without the issuer check), URLs, the caching
// headers the key cache reads, and the `aauth-resource` link readers.
use aauth_keys::time::UnixTime;
use aauth_metadata::{
    AccessServerMetadata, AgentProviderMetadata, HttpsUrl, KeyDiscovery, MetadataDocument,
    PersonServerMetadata, ResourceMetadata,
};
use aauth_tokens::ServerId;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(iss) = ServerId::parse("https://ps.example") else {
        return;
    };
    if let Ok(mut doc) = PersonServerMetadata::parse_for(data, &iss) {
        // What parsed serializes and parses back to the same document (the optional
        // members left out are reported once, and not written).
        doc.common.ignored.clear();
        let again = PersonServerMetadata::parse_for(doc.to_json().as_bytes(), &iss);
        assert_eq!(again.ok().as_ref(), Some(&doc));
    }
    if let Ok(mut doc) = ResourceMetadata::parse(data) {
        doc.common.ignored.clear();
        assert_eq!(
            ResourceMetadata::parse(doc.to_json().as_bytes())
                .ok()
                .as_ref(),
            Some(&doc)
        );
    }
    let _ = AgentProviderMetadata::parse(data);
    let _ = AccessServerMetadata::parse(data);
    let _ = KeyDiscovery::parse_for("custom.json", data, &iss);
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(u) = HttpsUrl::parse(s) {
            assert_eq!(u.as_str(), s);
            let _ = (u.host(), u.port(), u.origin(), u.path_and_query());
        }
        let _ = HttpsUrl::endpoint(s);
        for found in [
            aauth_metadata::link::from_link_header(s),
            aauth_metadata::link::from_html(s),
        ]
        .into_iter()
        .flatten()
        {
            // A link names a server, and only its metadata document.
            let target = aauth_metadata::link::target_of(&found).ok();
            assert_eq!(
                target.as_ref().map(HttpsUrl::path_and_query),
                Some("/.well-known/aauth-resource.json")
            );
        }
        let (cc, exp) = s.split_once('\n').unwrap_or((s, s));
        let _ = aauth_metadata::freshness::freshness(Some(cc), Some(exp), UnixTime(1_800_000_000));
    }
});

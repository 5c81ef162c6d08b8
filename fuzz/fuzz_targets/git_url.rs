//! Git URL parsing and redaction: never a panic, and a password never survives redaction.
#![no_main]

use ferroflux::source::git::{GitUrl, redact_url};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(url) = std::str::from_utf8(data) else { return };
    let _ = GitUrl::parse(url);
    let _ = GitUrl::parse_remote_base(url);
    let redacted = redact_url(url);
    // A URL with a password marker: the marker must be gone after redaction.
    let marked = format!("https://user:S3CRETMARK{url}@host/repo");
    if !url.contains(['/', '@', '?', '#']) {
        assert!(!redact_url(&marked).contains("S3CRETMARK"), "{marked}");
    }
    let _ = redacted;
});

//! `known_hosts` matching: the first line of the input is `host port`, the rest is the file.
//! Never a panic, and bounded time whatever the patterns (libFuzzer's -timeout catches a
//! blow-up); a wildcard match agrees with a simple reference matcher on short inputs.
#![no_main]

use ferroflux::source::git::auth::{check_host_key, wildcard_match};
use libfuzzer_sys::fuzz_target;

/// The obvious recursive matcher, only ever run on short inputs.
fn reference(p: &[u8], t: &[u8]) -> bool {
    match (p.first(), t.first()) {
        (None, None) => true,
        (Some(b'*'), _) => reference(&p[1..], t) || (!t.is_empty() && reference(p, &t[1..])),
        (Some(b'?'), Some(_)) => reference(&p[1..], &t[1..]),
        (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => reference(&p[1..], &t[1..]),
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (first, known_hosts) = text.split_once('\n').unwrap_or((text, ""));
    let (host, port) = first.split_once(' ').unwrap_or((first, "22"));
    let port = port.trim().parse::<u16>().unwrap_or(22);
    let _ = check_host_key(known_hosts, host, port, b"key");
    if let Some((pattern, name)) = first.split_once(' ') {
        if pattern.len() <= 12 && name.len() <= 16 {
            assert_eq!(wildcard_match(pattern, name), reference(pattern.as_bytes(), name.as_bytes()), "{pattern:?} {name:?}");
        }
    }
});

//! Unpacking an artifact: the input is a tar stream (gzipped here, so the fuzzer works on tar
//! structure rather than on deflate). Nothing may be written outside the target folder, and
//! every limit holds.
#![no_main]

use std::io::Write;

use ferroflux::source::artifact::{TreeLimits, unpack};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    if gz.write_all(data).is_err() {
        return;
    }
    let Ok(archive) = gz.finish() else { return };
    let Ok(dir) = tempfile::tempdir() else { return };
    let target = dir.path().join("out");
    let limits = TreeLimits { max_entries: 64, max_total_bytes: 1 << 20, max_file_bytes: 1 << 18, max_depth: 8 };
    let _ = unpack(archive.as_slice(), &target, limits);
    // Only the target folder may exist beside it.
    let siblings: Vec<_> = std::fs::read_dir(dir.path()).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    assert!(siblings.iter().all(|name| name == "out"), "unpack wrote beside its folder: {siblings:?}");
});

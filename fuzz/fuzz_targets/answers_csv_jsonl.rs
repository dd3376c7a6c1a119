//! Scored answers file → rows (`gradelab::service::answers::read_rows`): text decoding,
//! CSV (RFC 4180 quoting, delimiter sniffing) and JSONL, for any bytes.
//!
//! The first byte picks how the format is chosen (by file name, explicitly, or sniffed),
//! so every path is reached from the same corpus.
#![no_main]

use gradelab::service::answers::{read_rows, FileFormat};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let (filename, format) = match selector % 5 {
        0 => (None, None),
        1 => (Some("answers.csv"), None),
        2 => (Some("answers.jsonl"), None),
        3 => (None, Some(FileFormat::Csv)),
        _ => (None, Some(FileFormat::Jsonl)),
    };
    let _ = read_rows(bytes, filename, format);
});

//! DOCX → text (`gradelab::ingest::docx`): any bytes, no panic, no hang.
//!
//! The limits are smaller than the server's so a "bomb" the reader accepts still runs in
//! milliseconds; the code paths are the same.
#![no_main]

use gradelab::ingest::docx::{extract, DocxLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = DocxLimits {
        max_entries: 1_000,
        max_part_bytes: 8 * 1024 * 1024,
        max_ratio: 200,
    };
    if let Ok(text) = extract(data, limits) {
        // What the server does next with the text.
        let _ = gradelab::ingest::check_text(&text, &Default::default());
    }
});

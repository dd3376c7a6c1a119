//! PDF → text (`gradelab::ingest::pdf`): any bytes, no panic escapes, no hang.
//!
//! `pdf::extract` wraps lopdf and pdf-extract in `catch_unwind` by design (pdf-extract
//! `unwrap`s on malformed files), so a panic it catches is handled, not a bug. libFuzzer's
//! panic hook aborts on every panic, caught or not; this target swaps it for one that only
//! remembers the message, and aborts (printing it) when a panic escapes `extract`. A stack
//! overflow, a timeout or running out of memory is a crash too.
#![no_main]

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Once;

use libfuzzer_sys::fuzz_target;

static QUIET_PANICS: Once = Once::new();

thread_local! {
    static LAST_PANIC: RefCell<String> = const { RefCell::new(String::new()) };
}

fuzz_target!(|data: &[u8]| {
    QUIET_PANICS.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            LAST_PANIC.with(|p| *p.borrow_mut() = info.to_string());
        }))
    });
    match catch_unwind(AssertUnwindSafe(|| gradelab::ingest::pdf::extract(data))) {
        Ok(Ok(text)) => {
            let _ = gradelab::ingest::check_text(&text, &Default::default());
        }
        Ok(Err(_)) => {}
        Err(_) => {
            LAST_PANIC.with(|p| eprintln!("panic escaped pdf::extract: {}", p.borrow()));
            std::process::abort();
        }
    }
});

//! Formatting numbers and times for display.

/// `2026-05-30T12:34:56Z` → `2026-05-30`.
pub fn date(rfc3339: &str) -> String {
    rfc3339.chars().take(10).collect()
}

/// `2026-05-30T12:34:56Z` → `2026-05-30 12:34` (UTC).
pub fn date_time(rfc3339: &str) -> String {
    rfc3339
        .chars()
        .take(16)
        .collect::<String>()
        .replacen('T', " ", 1)
}

/// `12:34:56` of an RFC 3339 time.
pub fn time(rfc3339: &str) -> String {
    rfc3339.chars().skip(11).take(8).collect()
}

/// `value` with at most `places` decimals, trailing zeros dropped: `2.5`, `0.0042`, `5`.
///
/// Integer arithmetic only: formatting floats with `{:.2}` would pull the float
/// formatting machinery into the wasm.
pub fn decimal(value: f64, places: u32) -> String {
    let scale = 10i64.pow(places);
    let scaled = (value * scale as f64).round() as i64;
    let sign = if scaled < 0 { "-" } else { "" };
    let (whole, fraction) = (
        scaled.unsigned_abs() / scale as u64,
        scaled.unsigned_abs() % scale as u64,
    );
    if fraction == 0 {
        return format!("{sign}{whole}");
    }
    let digits = format!("{fraction:0width$}", width = places as usize);
    format!("{sign}{whole}.{}", digits.trim_end_matches('0'))
}

/// Marks without needless decimals: `5`, `2.5`, `0.25`.
pub fn marks(value: f64) -> String {
    decimal(value, 2)
}

/// A fraction from 0 to 1 as a whole percentage: `0.456` → `46`.
pub fn percent(fraction: f64) -> i64 {
    (fraction.clamp(0.0, 1.0) * 100.0).round() as i64
}

/// US dollars: `$0.0042` for small sums, `$12.50` otherwise.
pub fn usd(value: f64) -> String {
    if value > 0.0 && value < 0.01 {
        format!("${}", decimal(value, 4))
    } else {
        let cents = (value * 100.0).round() as i64;
        format!("${}.{:02}", cents / 100, cents.unsigned_abs() % 100)
    }
}

/// Parses a number typed by the user (`2`, `0.5`, ` 1.25 `); `None` if it is not one.
pub fn parse_number(text: &str) -> Option<f64> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    // The browser's parser: Rust's would add its float parsing code to the wasm.
    #[cfg(target_arch = "wasm32")]
    let value = js_sys::Number::from(wasm_bindgen::JsValue::from_str(text)).value_of();
    #[cfg(not(target_arch = "wasm32"))]
    let value = text.parse::<f64>().unwrap_or(f64::NAN);
    value.is_finite().then_some(value)
}

/// `1234567` → `1,234,567`.
pub fn count(value: i64) -> String {
    let digits = value.unsigned_abs().to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    if value < 0 {
        out.insert(0, '-');
    }
    out
}

/// `n thing` / `n things`.
pub fn plural(count: i64, one: &str, many: &str) -> String {
    format!("{count} {}", if count == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(date("2026-05-30T12:34:56.123Z"), "2026-05-30");
        assert_eq!(date_time("2026-05-30T12:34:56Z"), "2026-05-30 12:34");
        assert_eq!(time("2026-05-30T12:34:56Z"), "12:34:56");
        assert_eq!(marks(5.0), "5");
        assert_eq!(marks(2.5), "2.5");
        assert_eq!(marks(0.25), "0.25");
        assert_eq!(usd(0.0), "$0.00");
        assert_eq!(usd(0.0042), "$0.0042");
        assert_eq!(usd(12.5), "$12.50");
        assert_eq!(usd(1234.567), "$1234.57");
        assert_eq!(decimal(-2.5, 2), "-2.5");
        assert_eq!(decimal(0.123_456, 3), "0.123");
        assert_eq!(percent(0.456), 46);
        assert_eq!(percent(1.7), 100);
        assert_eq!(parse_number(" 1.25 "), Some(1.25));
        assert_eq!(parse_number("lots"), None);
        assert_eq!(parse_number(""), None);
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(-1000), "-1,000");
        assert_eq!(count(12), "12");
        assert_eq!(plural(1, "item", "items"), "1 item");
        assert_eq!(plural(3, "item", "items"), "3 items");
    }
}

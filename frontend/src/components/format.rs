//! Formatting numbers and times for display.

/// `2026-05-30T12:34:56Z` → `2026-05-30`.
pub fn date(rfc3339: &str) -> String {
    rfc3339.chars().take(10).collect()
}

/// `2026-05-30T12:34:56Z` → `2026-05-30 12:34` (UTC).
pub fn date_time(rfc3339: &str) -> String {
    rfc3339.chars().take(16).collect::<String>().replacen('T', " ", 1)
}

/// `12:34:56` of an RFC 3339 time.
pub fn time(rfc3339: &str) -> String {
    rfc3339.chars().skip(11).take(8).collect()
}

/// Marks without needless decimals: `5`, `2.5`, `0.25`.
pub fn marks(value: f64) -> String {
    let rounded = (value * 100.0).round() / 100.0;
    if rounded.fract() == 0.0 {
        format!("{rounded:.0}")
    } else {
        let text = format!("{rounded:.2}");
        text.trim_end_matches('0').to_owned()
    }
}

/// US dollars: `$0.0042` for small sums, `$12.50` otherwise.
pub fn usd(value: f64) -> String {
    if value > 0.0 && value < 0.01 {
        format!("${value:.4}")
    } else {
        format!("${value:.2}")
    }
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
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(count(-1000), "-1,000");
        assert_eq!(count(12), "12");
        assert_eq!(plural(1, "item", "items"), "1 item");
        assert_eq!(plural(3, "item", "items"), "3 items");
    }
}

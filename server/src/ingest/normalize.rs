//! Text normalisation applied to every guide before it is hashed, stored or parsed.
//!
//! Two copies of the same guide should hash the same even when one was saved with CRLF
//! line endings, decomposed accents, non-breaking spaces or trailing blanks. The rules:
//! Unicode NFC; `\r\n` and `\r` become `\n`; form feeds (PDF page breaks) become blank
//! lines; typographic ligatures (ﬁ, ﬂ, …) are spelled out; soft hyphens, zero-width
//! characters and other control characters are removed; every run of horizontal
//! whitespace (tabs, NBSP, thin spaces, …) becomes one space; lines are trimmed at the end;
//! leading indentation is kept up to 8 spaces (it separates bullets from headings); more
//! than one blank line in a row becomes one; the whole text is trimmed.

use unicode_normalization::UnicodeNormalization;

/// Normalises `text` (see the module docs).
pub fn normalize(text: &str) -> String {
    let mut cleaned = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                if chars.peek() != Some(&'\n') {
                    cleaned.push('\n');
                }
            }
            '\u{000C}' => cleaned.push_str("\n\n"),
            '\u{FB00}' => cleaned.push_str("ff"),
            '\u{FB01}' => cleaned.push_str("fi"),
            '\u{FB02}' => cleaned.push_str("fl"),
            '\u{FB03}' => cleaned.push_str("ffi"),
            '\u{FB04}' => cleaned.push_str("ffl"),
            '\u{FB05}' | '\u{FB06}' => cleaned.push_str("st"),
            '\u{2028}' | '\u{2029}' | '\u{0085}' => cleaned.push('\n'),
            '\n' | '\t' => cleaned.push(c),
            // Soft hyphen, zero-width space/joiners, word joiner, BOM.
            '\u{00AD}' | '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' => {}
            c if c.is_whitespace() => cleaned.push(' '),
            c if c.is_control() => {}
            c => cleaned.push(c),
        }
    }
    let composed: String = cleaned.nfc().collect();

    let mut out = String::with_capacity(composed.len());
    let mut blank_run = 0usize;
    for line in composed.split('\n') {
        let indent = line
            .chars()
            .take_while(|c| *c == ' ' || *c == '\t')
            .map(|c| if c == '\t' { 4 } else { 1 })
            .sum::<usize>()
            .min(8);
        let mut body = String::with_capacity(line.len());
        for word in line.split([' ', '\t']).filter(|w| !w.is_empty()) {
            if !body.is_empty() {
                body.push(' ');
            }
            body.push_str(word);
        }
        if body.is_empty() {
            blank_run += 1;
            continue;
        }
        if !out.is_empty() {
            out.push('\n');
            if blank_run > 0 {
                out.push('\n');
            }
            out.extend(std::iter::repeat_n(' ', indent));
        }
        blank_run = 0;
        out.push_str(&body);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equivalent_texts_normalise_to_the_same_string() {
        let a = "Question 1\r\n\r\n\r\nCaf\u{0065}\u{0301}\u{00A0}au  lait\t [2 marks]  \r\n";
        let b = "Question 1\n\nCafé au lait [2 marks]";
        assert_eq!(normalize(a), normalize(b));
        assert_eq!(normalize(b), b);
    }

    #[test]
    fn ligatures_controls_and_page_breaks() {
        assert_eq!(
            normalize("de\u{FB01}ne\u{0007}\u{000C}next"),
            "define\n\nnext"
        );
        assert_eq!(normalize("x\n  \u{2022} bullet"), "x\n  \u{2022} bullet");
        assert_eq!(normalize("\u{FEFF}\n\n text \n"), "text");
    }
}

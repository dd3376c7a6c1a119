//! Plain text and Markdown: decoding bytes of an unknown encoding.
//!
//! Order of evidence: a byte-order mark (UTF-8, UTF-16 LE/BE) wins; then BOM-less UTF-16
//! recognised by its pattern of zero bytes; then valid UTF-8; otherwise `chardetng` guesses
//! the legacy encoding (in practice windows-1252, the superset of Latin-1 that every
//! browser uses for it) and `encoding_rs` decodes. Data that is not text — zero bytes,
//! many control characters, many undecodable sequences — is refused rather than turned
//! into mojibake.

use encoding_rs::{Encoding, UTF_16BE, UTF_16LE, UTF_8};

use super::IngestError;

/// Decoded text and the name of the encoding it was read as.
#[derive(Debug)]
pub struct Decoded {
    /// The text.
    pub text: String,
    /// `UTF-8`, `UTF-16LE`, `windows-1252`, …
    pub encoding: &'static str,
}

/// Decodes a text file.
pub fn decode(bytes: &[u8]) -> Result<Decoded, IngestError> {
    let (encoding, body) = if let Some((encoding, bom)) = Encoding::for_bom(bytes) {
        (encoding, &bytes[bom..])
    } else if let Some(encoding) = bomless_utf16(bytes) {
        (encoding, bytes)
    } else if std::str::from_utf8(bytes).is_ok() {
        (UTF_8, bytes)
    } else {
        if bytes.contains(&0) {
            return Err(not_text("it contains zero bytes"));
        }
        let mut detector = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
        detector.feed(bytes, true);
        (detector.guess(None, chardetng::Utf8Detection::Deny), bytes)
    };
    let (text, had_errors) = encoding.decode_without_bom_handling(body);
    let text = text.into_owned();
    check_is_text(&text, had_errors)?;
    Ok(Decoded {
        text,
        encoding: encoding.name(),
    })
}

/// UTF-16 without a BOM: in the first 4 KiB, nearly every other byte is zero.
fn bomless_utf16(bytes: &[u8]) -> Option<&'static Encoding> {
    let sample = &bytes[..bytes.len().min(4096) & !1];
    if sample.len() < 8 {
        return None;
    }
    let pairs = sample.len() / 2;
    let zero_even = sample.iter().step_by(2).filter(|b| **b == 0).count();
    let zero_odd = sample
        .iter()
        .skip(1)
        .step_by(2)
        .filter(|b| **b == 0)
        .count();
    if zero_odd * 10 >= pairs * 9 && zero_even * 10 < pairs {
        Some(UTF_16LE)
    } else if zero_even * 10 >= pairs * 9 && zero_odd * 10 < pairs {
        Some(UTF_16BE)
    } else {
        None
    }
}

fn not_text(why: &str) -> IngestError {
    IngestError::NotText(why.to_owned())
}

/// Refuses decoded "text" that is really binary data.
fn check_is_text(text: &str, had_errors: bool) -> Result<(), IngestError> {
    let mut total = 0usize;
    let mut control = 0usize;
    let mut replacement = 0usize;
    for c in text.chars() {
        total += 1;
        match c {
            '\n' | '\r' | '\t' | '\u{000C}' => {}
            '\0' => return Err(not_text("it contains zero bytes")),
            '\u{FFFD}' => replacement += 1,
            c if c.is_control() => control += 1,
            _ => {}
        }
    }
    if total == 0 {
        return Ok(());
    }
    // Allow the odd stray byte in a long document, not binary noise.
    if control * 100 > total {
        return Err(not_text("it is full of control characters"));
    }
    if had_errors && replacement * 100 > total {
        return Err(not_text(
            "it has many bytes that are not valid in any text encoding",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_are_detected() {
        let utf8 = decode("Río Rhône".as_bytes()).map(|d| (d.text, d.encoding));
        assert_eq!(utf8.ok(), Some(("Río Rhône".to_owned(), "UTF-8")));

        let latin1: Vec<u8> = "Geography: the Río Paraná and the Rhône at Genève"
            .chars()
            .map(|c| c as u8)
            .collect();
        let decoded = decode(&latin1).map(|d| d.text);
        assert_eq!(
            decoded.ok().as_deref(),
            Some("Geography: the Río Paraná and the Rhône at Genève")
        );

        let mut utf16 = vec![0xFF, 0xFE];
        for unit in "Question 1 → 2 marks".encode_utf16() {
            utf16.extend(unit.to_le_bytes());
        }
        let decoded = decode(&utf16).map(|d| (d.text, d.encoding));
        assert_eq!(
            decoded.ok(),
            Some(("Question 1 → 2 marks".to_owned(), "UTF-16LE"))
        );
        // The same without its BOM.
        let decoded = decode(&utf16[2..]).map(|d| d.text);
        assert_eq!(decoded.ok().as_deref(), Some("Question 1 → 2 marks"));
    }

    #[test]
    fn binary_is_not_text() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\x01\0";
        assert!(matches!(decode(png), Err(IngestError::NotText(_))));
        let noise: Vec<u8> = (0u32..4096).map(|i| (i * 7919 % 251) as u8 + 1).collect();
        assert!(matches!(decode(&noise), Err(IngestError::NotText(_))));
    }
}

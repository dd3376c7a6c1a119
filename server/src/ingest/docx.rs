//! DOCX text: `word/document.xml` read with `zip` and `quick-xml`, defensively.
//!
//! A DOCX is a ZIP archive, so a hostile one can be a zip bomb; its parts are XML, so a
//! hostile one can carry a DTD with nested entities (billion laughs). The reader:
//! - refuses archives with more than [`DocxLimits::max_entries`] entries;
//! - reads only `word/document.xml` and `word/numbering.xml`, each through a `take()`
//!   capped at [`DocxLimits::max_part_bytes`] (the declared size in the archive is not
//!   trusted) and refuses a part whose compression ratio is beyond
//!   [`DocxLimits::max_ratio`];
//! - refuses any `<!DOCTYPE …>`: Word never writes one, and without it no entity can be
//!   declared; the XML parser never expands entities (only the five predefined ones and
//!   character references are resolved here).
//!
//! Text comes out as Word shows it: one line per paragraph, tabs and breaks kept, table
//! cells separated by tabs and rows by lines, and automatic list numbers ("1.", "(a)")
//! and bullets rebuilt from `numbering.xml`, because marking guides often number their
//! questions with Word's numbering rather than typed digits. Deleted revisions, field
//! codes, headers, footers and comments are left out.

use std::collections::HashMap;
use std::io::{Cursor, Read, Seek};

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;

use super::IngestError;

/// Caps that keep a hostile archive from exhausting memory or CPU.
#[derive(Debug, Clone, Copy)]
pub struct DocxLimits {
    /// Most entries an archive may have (a real DOCX has a few dozen).
    pub max_entries: usize,
    /// Largest decompressed size of one part that is read.
    pub max_part_bytes: u64,
    /// Largest decompressed/compressed ratio of a part bigger than 1 MiB.
    pub max_ratio: u64,
}

impl Default for DocxLimits {
    fn default() -> Self {
        Self {
            max_entries: 1_000,
            max_part_bytes: 64 * 1024 * 1024,
            max_ratio: 200,
        }
    }
}

/// Extracts the text of a DOCX file.
pub fn extract(bytes: &[u8], limits: DocxLimits) -> Result<String, IngestError> {
    extract_from(Cursor::new(bytes), limits)
}

/// Extracts the text of a DOCX file read from `reader` (a file on disk: only the parts
/// named above are read, never the whole archive).
pub fn extract_from<R: Read + Seek>(reader: R, limits: DocxLimits) -> Result<String, IngestError> {
    let mut archive = zip::ZipArchive::new(reader)
        .map_err(|err| IngestError::Corrupt(format!("the DOCX archive is damaged ({err})")))?;
    if archive.len() > limits.max_entries {
        return Err(IngestError::ZipBomb(format!(
            "it has {} entries (a Word document has a few dozen; the limit is {})",
            archive.len(),
            limits.max_entries
        )));
    }
    let document = read_part(&mut archive, "word/document.xml", limits)?.ok_or_else(|| {
        IngestError::NotDocx("it is a ZIP archive without word/document.xml".into())
    })?;
    let numbering = match read_part(&mut archive, "word/numbering.xml", limits)? {
        Some(xml) => Numbering::parse(&xml)?,
        None => Numbering::default(),
    };
    document_text(&document, numbering)
}

fn read_part<R: Read + Seek>(
    archive: &mut zip::ZipArchive<R>,
    name: &str,
    limits: DocxLimits,
) -> Result<Option<String>, IngestError> {
    let file = match archive.by_name(name) {
        Ok(file) => file,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(zip::result::ZipError::UnsupportedArchive(what)) => {
            return Err(IngestError::Corrupt(format!(
                "the DOCX uses an unsupported ZIP feature ({what}); save it again from Word"
            )))
        }
        Err(err) => {
            return Err(IngestError::Corrupt(format!(
                "the DOCX archive is damaged ({err})"
            )))
        }
    };
    // Never decompress more than the size cap, nor more than the ratio allows for this
    // entry's compressed size (with 1 MiB of slack for tiny, well-compressed parts).
    let compressed = file.compressed_size().max(1);
    let ratio_cap = compressed.saturating_mul(limits.max_ratio).max(1024 * 1024);
    let cap = limits.max_part_bytes.min(ratio_cap);
    let mut data = Vec::new();
    file.take(cap + 1)
        .read_to_end(&mut data)
        .map_err(|err| IngestError::Corrupt(format!("{name} cannot be decompressed ({err})")))?;
    if data.len() as u64 > cap {
        return Err(IngestError::ZipBomb(if cap == limits.max_part_bytes {
            format!(
                "{name} decompresses to more than {} MiB",
                limits.max_part_bytes / (1024 * 1024)
            )
        } else {
            format!(
                "{name} expands more than {}-fold when decompressed",
                limits.max_ratio
            )
        }));
    }
    let text = match data.strip_prefix(b"\xEF\xBB\xBF") {
        Some(rest) => String::from_utf8(rest.to_vec()),
        None => String::from_utf8(data),
    };
    text.map(Some)
        .map_err(|_| IngestError::Corrupt(format!("{name} is not UTF-8 XML")))
}

fn xml_error(part: &str, err: impl std::fmt::Display) -> IngestError {
    IngestError::Corrupt(format!("{part} is not well-formed XML ({err})"))
}

/// Resolves `&name;` / `&#N;` without ever expanding a declared entity.
fn entity(name: &str) -> Option<char> {
    match name {
        "amp" => Some('&'),
        "lt" => Some('<'),
        "gt" => Some('>'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        _ => {
            let num = name.strip_prefix('#')?;
            let code = match num.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => num.parse().ok()?,
            };
            char::from_u32(code).filter(|c| *c != '\0')
        }
    }
}

fn attr(element: &BytesStart<'_>, local: &str) -> Option<String> {
    element
        .attributes()
        .with_checks(false)
        .flatten()
        .find(|a| a.key.local_name().as_ref() == local)
        .map(|a| a.value.into_owned())
}

fn local(element: &BytesStart<'_>) -> String {
    element.name().local_name().as_ref().to_owned()
}

/// One level of a list definition.
#[derive(Debug, Clone, Default)]
struct Level {
    format: String,
    text: String,
    start: u32,
}

/// List definitions from `numbering.xml`.
#[derive(Debug, Default)]
struct Numbering {
    /// abstractNumId → levels by ilvl.
    abstract_levels: HashMap<String, HashMap<u32, Level>>,
    /// numId → (abstractNumId, start overrides by ilvl).
    nums: HashMap<String, (String, HashMap<u32, u32>)>,
    /// Running counters: (numId, ilvl) → current value.
    counters: HashMap<(String, u32), u32>,
}

impl Numbering {
    fn parse(xml: &str) -> Result<Self, IngestError> {
        let part = "word/numbering.xml";
        let mut reader = Reader::from_str(xml);
        let mut numbering = Self::default();
        let mut current_abstract: Option<String> = None;
        let mut current_num: Option<String> = None;
        let mut current_level: Option<(u32, Level)> = None;
        let mut override_level: Option<u32> = None;
        loop {
            let event = reader.read_event().map_err(|err| xml_error(part, err))?;
            match event {
                Event::DocType(_) => return Err(IngestError::XmlDtd),
                Event::Start(e) | Event::Empty(e) => match local(&e).as_str() {
                    "abstractNum" => current_abstract = attr(&e, "abstractNumId"),
                    "lvl" => {
                        let ilvl = attr(&e, "ilvl").and_then(|v| v.parse().ok()).unwrap_or(0);
                        current_level = Some((
                            ilvl,
                            Level {
                                start: 1,
                                ..Level::default()
                            },
                        ));
                    }
                    "start" => {
                        if let (Some((_, level)), Some(v)) =
                            (current_level.as_mut(), attr(&e, "val"))
                        {
                            level.start = v.parse().unwrap_or(1);
                        }
                    }
                    "numFmt" => {
                        if let (Some((_, level)), Some(v)) =
                            (current_level.as_mut(), attr(&e, "val"))
                        {
                            level.format = v;
                        }
                    }
                    "lvlText" => {
                        if let (Some((_, level)), Some(v)) =
                            (current_level.as_mut(), attr(&e, "val"))
                        {
                            level.text = v;
                        }
                    }
                    "num" => current_num = attr(&e, "numId"),
                    "abstractNumId" => {
                        if let (Some(num), Some(v)) = (current_num.clone(), attr(&e, "val")) {
                            numbering.nums.entry(num).or_default().0 = v;
                        }
                    }
                    "lvlOverride" => {
                        override_level = attr(&e, "ilvl").and_then(|v| v.parse().ok());
                    }
                    "startOverride" => {
                        if let (Some(num), Some(ilvl), Some(v)) =
                            (current_num.clone(), override_level, attr(&e, "val"))
                        {
                            numbering
                                .nums
                                .entry(num)
                                .or_default()
                                .1
                                .insert(ilvl, v.parse().unwrap_or(1));
                        }
                    }
                    _ => {}
                },
                Event::End(e) => match e.name().local_name().as_ref() {
                    "lvl" => {
                        if let (Some(id), Some((ilvl, level))) =
                            (current_abstract.clone(), current_level.take())
                        {
                            numbering
                                .abstract_levels
                                .entry(id)
                                .or_default()
                                .insert(ilvl, level);
                        }
                    }
                    "abstractNum" => current_abstract = None,
                    "num" => current_num = None,
                    _ => {}
                },
                Event::Eof => break,
                _ => {}
            }
        }
        Ok(numbering)
    }

    /// The label Word would show for the next paragraph of list `num_id` at `ilvl`.
    fn next_label(&mut self, num_id: &str, ilvl: u32) -> Option<String> {
        let (abstract_id, overrides) = self.nums.get(num_id)?.clone();
        let levels = self.abstract_levels.get(&abstract_id)?;
        let level = levels.get(&ilvl)?;
        if level.format == "bullet" {
            return Some("\u{2022}".into());
        }
        if level.format == "none" {
            return None;
        }
        let start = overrides.get(&ilvl).copied().unwrap_or(level.start);
        let key = (num_id.to_owned(), ilvl);
        let value = match self.counters.get(&key) {
            // A hostile file may start a list at u32::MAX.
            Some(v) => v.saturating_add(1),
            None => start,
        };
        self.counters.insert(key, value);
        // A new item at this level restarts the deeper levels.
        self.counters
            .retain(|(id, lvl), _| id != num_id || *lvl <= ilvl);
        let mut label = level.text.clone();
        for depth in 0..=ilvl.min(8) {
            let placeholder = format!("%{}", depth + 1);
            if !label.contains(&placeholder) {
                continue;
            }
            let lvl = levels.get(&depth)?;
            let n = if depth == ilvl {
                value
            } else {
                self.counters
                    .get(&(num_id.to_owned(), depth))
                    .copied()
                    .unwrap_or(lvl.start)
            };
            label = label.replace(&placeholder, &format_number(n, &lvl.format));
        }
        Some(label)
    }
}

/// Largest number written as letters ("zz…z", 30 letters) or Roman numerals; beyond it,
/// digits: a hostile `w:start` of 4 294 967 295 would otherwise make a 165-million-letter
/// label for every paragraph of the list.
const MAX_LETTERS: u32 = 26 * 30;
const MAX_ROMAN: u32 = 3_999;

fn format_number(n: u32, format: &str) -> String {
    match format {
        "lowerLetter" if n <= MAX_LETTERS => letters(n, b'a'),
        "upperLetter" if n <= MAX_LETTERS => letters(n, b'A'),
        "lowerRoman" if n <= MAX_ROMAN => roman(n).to_lowercase(),
        "upperRoman" if n <= MAX_ROMAN => roman(n),
        "decimalZero" => format!("{n:02}"),
        _ => n.to_string(),
    }
}

fn letters(n: u32, base: u8) -> String {
    // Word repeats the letter after z: a … z, aa … zz.
    let n = n.max(1) - 1;
    let letter = char::from(base + (n % 26) as u8);
    std::iter::repeat_n(letter, (n / 26 + 1) as usize).collect()
}

fn roman(mut n: u32) -> String {
    const TABLE: [(u32, &str); 13] = [
        (1000, "M"),
        (900, "CM"),
        (500, "D"),
        (400, "CD"),
        (100, "C"),
        (90, "XC"),
        (50, "L"),
        (40, "XL"),
        (10, "X"),
        (9, "IX"),
        (5, "V"),
        (4, "IV"),
        (1, "I"),
    ];
    let mut out = String::new();
    for (value, digits) in TABLE {
        while n >= value {
            out.push_str(digits);
            n -= value;
        }
    }
    out
}

fn document_text(xml: &str, mut numbering: Numbering) -> Result<String, IngestError> {
    let part = "word/document.xml";
    let mut reader = Reader::from_str(xml);
    let mut out = String::with_capacity(xml.len() / 4);
    let mut paragraph = String::new();
    // Where text is being collected: inside <w:t> (and not inside deleted/field text).
    let mut in_text = false;
    // Depth inside elements whose text is not part of the document body.
    let mut skip_depth = 0usize;
    let mut num: (Option<String>, u32) = (None, 0);
    let mut in_cell = false;
    let mut first_cell_in_row = true;
    loop {
        let event = reader.read_event().map_err(|err| xml_error(part, err))?;
        match event {
            Event::DocType(_) => return Err(IngestError::XmlDtd),
            Event::Start(e) => {
                let name = local(&e);
                match name.as_str() {
                    "delText" | "instrText" | "comment" | "footnoteReference" => skip_depth += 1,
                    _ if skip_depth > 0 => {}
                    "t" => in_text = true,
                    "p" => {
                        paragraph.clear();
                        num = (None, 0);
                    }
                    "tc" => {
                        in_cell = true;
                        if !first_cell_in_row {
                            out.push('\t');
                        }
                        first_cell_in_row = false;
                    }
                    "tr" => first_cell_in_row = true,
                    _ => {}
                }
            }
            Event::Empty(e) => {
                if skip_depth > 0 {
                    continue;
                }
                match local(&e).as_str() {
                    "tab" => paragraph.push('\t'),
                    "br" | "cr" => paragraph.push('\n'),
                    "ilvl" => num.1 = attr(&e, "val").and_then(|v| v.parse().ok()).unwrap_or(0),
                    "numId" => num.0 = attr(&e, "val").filter(|v| v != "0"),
                    _ => {}
                }
            }
            Event::End(e) => {
                let name = e.name().local_name().as_ref().to_owned();
                match name.as_str() {
                    "delText" | "instrText" | "comment" | "footnoteReference" => {
                        skip_depth = skip_depth.saturating_sub(1);
                    }
                    _ if skip_depth > 0 => {}
                    "t" => in_text = false,
                    "p" => {
                        if let Some(id) = num.0.take() {
                            if let Some(label) = numbering.next_label(&id, num.1) {
                                let indent = "  ".repeat(num.1.min(4) as usize);
                                paragraph.insert_str(0, &format!("{indent}{label} "));
                            }
                        }
                        out.push_str(&paragraph);
                        paragraph.clear();
                        // In a table, paragraphs of one cell are joined by spaces; the row
                        // ends the line.
                        out.push(if in_cell { ' ' } else { '\n' });
                    }
                    "tc" => in_cell = false,
                    "tr" => out.push('\n'),
                    "tbl" => out.push('\n'),
                    _ => {}
                }
            }
            Event::Text(t) if in_text && skip_depth == 0 => {
                paragraph.push_str(&t.xml10_content());
            }
            Event::GeneralRef(r) if in_text && skip_depth == 0 => {
                // An undeclared entity can only come from a DTD, which was refused; a
                // stray one is dropped rather than expanded.
                if let Some(c) = entity(&r.xml10_content()) {
                    paragraph.push(c);
                }
            }
            Event::CData(c) if in_text && skip_depth == 0 => {
                paragraph.push_str(&c.xml10_content());
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docx(document: &str, numbering: Option<&str>) -> Vec<u8> {
        use std::io::Write as _;
        let mut buf = Cursor::new(Vec::new());
        let mut zip = zip::ZipWriter::new(&mut buf);
        let options = zip::write::SimpleFileOptions::default();
        zip.start_file("word/document.xml", options).ok();
        zip.write_all(document.as_bytes()).ok();
        if let Some(numbering) = numbering {
            zip.start_file("word/numbering.xml", options).ok();
            zip.write_all(numbering.as_bytes()).ok();
        }
        zip.finish().ok();
        buf.into_inner()
    }

    const NS: &str = r#"xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main""#;

    #[test]
    fn paragraphs_tables_and_numbering() {
        let numbering = format!(
            r#"<w:numbering {NS}><w:abstractNum w:abstractNumId="0"><w:lvl w:ilvl="0"><w:start w:val="3"/><w:numFmt w:val="decimal"/><w:lvlText w:val="%1."/></w:lvl><w:lvl w:ilvl="1"><w:start w:val="1"/><w:numFmt w:val="lowerLetter"/><w:lvlText w:val="(%2)"/></w:lvl></w:abstractNum><w:num w:numId="7"><w:abstractNumId w:val="0"/></w:num></w:numbering>"#
        );
        let list = |ilvl: u32, text: &str| {
            format!(
                r#"<w:p><w:pPr><w:numPr><w:ilvl w:val="{ilvl}"/><w:numId w:val="7"/></w:numPr></w:pPr><w:r><w:t>{text}</w:t></w:r></w:p>"#
            )
        };
        let document = format!(
            r#"<w:document {NS}><w:body><w:p><w:r><w:t xml:space="preserve">Fish &amp; chips </w:t></w:r><w:r><w:tab/><w:t>[2&#160;marks]</w:t><w:delText>gone</w:delText></w:r></w:p>{}{}{}<w:tbl><w:tr><w:tc><w:p><w:r><w:t>A</w:t></w:r></w:p></w:tc><w:tc><w:p><w:r><w:t>B</w:t></w:r></w:p></w:tc></w:tr></w:tbl></w:body></w:document>"#,
            list(0, "Explain."),
            list(1, "Part one."),
            list(0, "Describe.")
        );
        let text = extract(&docx(&document, Some(&numbering)), DocxLimits::default());
        let text = text.unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(
            text,
            "Fish & chips \t[2\u{a0}marks]\n3. Explain.\n  (a) Part one.\n4. Describe.\nA \tB \n\n"
        );
    }

    #[test]
    fn huge_list_start_gives_digits_not_a_giant_label() {
        // start = u32::MAX overflowed the counter (a panic with overflow checks, as the
        // fuzz targets build) and asked for 165 million letters per paragraph.
        let numbering = format!(
            r#"<w:numbering {NS}><w:abstractNum w:abstractNumId="0"><w:lvl w:ilvl="0"><w:start w:val="4294967295"/><w:numFmt w:val="lowerLetter"/><w:lvlText w:val="%1)"/></w:lvl></w:abstractNum><w:num w:numId="1"><w:abstractNumId w:val="0"/></w:num></w:numbering>"#
        );
        let item = r#"<w:p><w:pPr><w:numPr><w:ilvl w:val="0"/><w:numId w:val="1"/></w:numPr></w:pPr><w:r><w:t>Q</w:t></w:r></w:p>"#;
        let document = format!(r#"<w:document {NS}><w:body>{item}{item}</w:body></w:document>"#);
        let text = extract(&docx(&document, Some(&numbering)), DocxLimits::default());
        let text = text.unwrap_or_else(|err| panic!("{err}"));
        assert_eq!(text, "4294967295) Q\n4294967295) Q\n");
        assert_eq!(format_number(780, "lowerLetter"), "z".repeat(30));
        assert_eq!(format_number(781, "upperLetter"), "781");
        assert_eq!(format_number(3_999, "upperRoman"), "MMMCMXCIX");
        assert_eq!(format_number(4_000, "lowerRoman"), "4000");
    }

    #[test]
    fn doctype_is_refused() {
        let document = format!(
            r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><w:document {NS}><w:body><w:p><w:r><w:t>&lol2;</w:t></w:r></w:p></w:body></w:document>"#
        );
        let err = extract(&docx(&document, None), DocxLimits::default());
        assert!(matches!(err, Err(IngestError::XmlDtd)), "{err:?}");
    }

    #[test]
    fn oversized_part_is_a_zip_bomb() {
        let document = format!(
            "<w:document {NS}><w:body><w:p><w:r><w:t>{}</w:t></w:r></w:p></w:body></w:document>",
            "a".repeat(4 * 1024 * 1024)
        );
        let limits = DocxLimits {
            max_part_bytes: 1024 * 1024,
            ..DocxLimits::default()
        };
        let err = extract(&docx(&document, None), limits);
        assert!(matches!(err, Err(IngestError::ZipBomb(_))), "{err:?}");
        // Within the size cap, the ratio check still catches it.
        let err = extract(&docx(&document, None), DocxLimits::default());
        assert!(matches!(err, Err(IngestError::ZipBomb(_))), "{err:?}");
    }

    #[test]
    fn letters_and_roman_numerals() {
        assert_eq!(letters(1, b'a'), "a");
        assert_eq!(letters(27, b'a'), "aa");
        assert_eq!(roman(14), "XIV");
    }
}

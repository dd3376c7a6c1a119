//! PDF text, read with `pdf-extract` on top of `lopdf`.
//!
//! Three crates were compared on this project's fixtures (two LibreOffice-made guides and
//! a 100-page guide; release build, best of 3, same run, while other builds shared the 2
//! cores): word F1 and share of lines identical to `pdftotext`'s output, and time.
//!
//! | crate | word F1 | same lines (chem / physics / 100 p.) | 100 pages | encrypted PDF |
//! |---|---|---|---|---|
//! | `pdf-extract` 0.12.1 | 1.000 | 1.00 / 1.00 / 0.75 | 324 ms | clear error |
//! | `lopdf` 0.47 `extract_text` | 1.000 | 0.54 / 0.89 / 0.78 | 101 ms | detectable |
//! | `pdf_oxide` 0.3.78 | 1.000 | 0.88 / 0.92 / 0.67 | 245 ms | empty text, no error |
//! | `pdftotext` (poppler) | — | reference | 140–250 ms | — |
//!
//! All three get the words right; they differ in line structure, which the guide parser
//! depends on. `lopdf` puts labels and bullets on lines of their own ("1(a)" / "Define …",
//! "•" / "change …"), `pdf_oxide` merges and splits some lines, and says nothing about an
//! encrypted file; it is also a very large dependency (about 15 minutes to compile here,
//! image codecs included). `pdf-extract` reproduces `pdftotext`'s lines on the fixtures,
//! handles font encodings and ToUnicode maps, and is fast enough (about 1.7× `pdftotext`
//! on 100 pages; `server/benches/ingest.rs` measures it on every run). Its weakness —
//! `unwrap`s and unbounded recursion on malformed files — is contained below.
//!
//! Before extraction the document is loaded once with lopdf to tell an encrypted PDF and
//! a PDF without pages apart from a damaged one. Two kinds of file are refused before any
//! recursive code sees them, because a stack overflow aborts the process and no
//! `catch_unwind` can stop it: objects nested deeper than [`MAX_NESTING`] (lopdf's parser
//! recurses), and page trees, `/Parent` chains or form XObjects that loop (pdf-extract
//! follows them recursively). Panics are caught; the caller adds a timeout. A PDF whose
//! pages carry no text is reported as scanned.

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::IngestError;

/// Deepest nesting of arrays and dictionaries accepted in a PDF.
pub const MAX_NESTING: usize = 64;

/// Extracts the text of a PDF.
pub fn extract(bytes: &[u8]) -> Result<String, IngestError> {
    check_nesting(bytes)?;
    let doc = match catch_unwind(AssertUnwindSafe(|| lopdf::Document::load_mem(bytes))) {
        Ok(Ok(doc)) => doc,
        // lopdf opens PDFs encrypted with an empty user password by itself; any other
        // encrypted PDF fails to load.
        Ok(Err(_)) if find(bytes, b"/Encrypt").is_some() => return Err(IngestError::PdfEncrypted),
        Ok(Err(err)) => {
            return Err(IngestError::Corrupt(format!(
                "the PDF is damaged or truncated ({err})"
            )))
        }
        Err(_) => return Err(IngestError::ReaderFailed("PDF")),
    };
    if doc.is_encrypted() {
        return Err(IngestError::PdfEncrypted);
    }
    let pages = check_structure(&doc)?;
    if pages == 0 {
        return Err(IngestError::Corrupt("the PDF has no pages".into()));
    }
    let mut text = String::new();
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut output = pdf_extract::PlainTextOutput::new(&mut text);
        pdf_extract::output_doc(&doc, &mut output)
    }));
    match result {
        Ok(Ok(())) => {}
        Ok(Err(err)) => {
            return Err(IngestError::Corrupt(format!(
                "the PDF's pages cannot be read ({err})"
            )))
        }
        Err(_) => return Err(IngestError::ReaderFailed("PDF")),
    }
    if !text.chars().any(char::is_alphanumeric) {
        return Err(IngestError::PdfNoText);
    }
    Ok(text)
}

/// Most pages, page-tree nodes or form XObjects walked in one PDF.
const MAX_NODES: usize = 20_000;
/// Deepest page tree or chain of nested form XObjects accepted.
const MAX_DEPTH: usize = 32;

fn structure_error(what: &str) -> IngestError {
    IngestError::Corrupt(format!("the PDF's structure is invalid: {what}"))
}

/// Walks the page tree and the form XObjects the way the text extractor will, but
/// iteratively and with cycle detection, and refuses structures that would make the
/// extractor recurse without end (a page tree or `/Parent` chain that loops, a form that
/// draws itself). Returns the number of pages.
fn check_structure(doc: &lopdf::Document) -> Result<usize, IngestError> {
    use std::collections::{HashMap, HashSet};

    use lopdf::{Object, ObjectId};

    let deref = |object: &Object| -> Option<ObjectId> { object.as_reference().ok() };
    let root = doc
        .trailer
        .get(b"Root")
        .ok()
        .and_then(deref)
        .ok_or_else(|| structure_error("no document catalog"))?;
    let pages_root = doc
        .get_dictionary(root)
        .ok()
        .and_then(|catalog| catalog.get(b"Pages").ok())
        .and_then(deref)
        .ok_or_else(|| structure_error("no page tree"))?;

    // The page tree, depth-first with the path kept for cycle detection.
    let mut pages = Vec::new();
    let mut stack: Vec<(ObjectId, usize)> = vec![(pages_root, 0)];
    let mut seen = HashSet::new();
    while let Some((id, depth)) = stack.pop() {
        if !seen.insert(id) {
            return Err(structure_error("the page tree loops back on itself"));
        }
        if depth > MAX_DEPTH || seen.len() > MAX_NODES {
            return Err(structure_error("the page tree is too deep or too large"));
        }
        let Ok(node) = doc.get_dictionary(id) else {
            continue;
        };
        match node.get(b"Kids").and_then(Object::as_array) {
            Ok(kids) => stack.extend(kids.iter().filter_map(deref).map(|kid| (kid, depth + 1))),
            Err(_) => pages.push(id),
        }
    }
    // Every page's /Parent chain must end (inherited attributes are looked up along it).
    for page in &pages {
        let mut current = *page;
        let mut chain = HashSet::new();
        while let Some(parent) = doc
            .get_dictionary(current)
            .ok()
            .and_then(|d| d.get(b"Parent").ok())
            .and_then(deref)
        {
            if !chain.insert(parent) || chain.len() > MAX_DEPTH {
                return Err(structure_error("a page's parent chain loops"));
            }
            current = parent;
        }
    }

    // Form XObjects: which forms each form draws (`Do`), resolved against its own
    // resources or, when it has none, against every XObject dictionary that lists it.
    let mut forms: HashMap<ObjectId, &lopdf::Stream> = HashMap::new();
    for (id, object) in &doc.objects {
        if let Object::Stream(stream) = object {
            if stream.dict.get(b"Subtype").and_then(Object::as_name).ok()
                == Some(b"Form".as_slice())
            {
                forms.insert(*id, stream);
            }
        }
        if forms.len() > MAX_NODES {
            return Err(structure_error("too many form objects"));
        }
    }
    if forms.is_empty() {
        return Ok(pages.len());
    }
    let xobject_dict = |resources: &Object| -> Option<HashMap<Vec<u8>, ObjectId>> {
        let (_, resources) = doc.dereference(resources).ok()?;
        let (_, xobjects) = doc
            .dereference(resources.as_dict().ok()?.get(b"XObject").ok()?)
            .ok()?;
        Some(
            xobjects
                .as_dict()
                .ok()?
                .iter()
                .filter_map(|(name, target)| Some((name.clone(), deref(target)?)))
                .collect(),
        )
    };
    // All XObject dictionaries in the file, for forms that inherit their caller's.
    let mut all_dicts: Vec<HashMap<Vec<u8>, ObjectId>> = Vec::new();
    for object in doc.objects.values() {
        let dict = match object {
            Object::Dictionary(d) => d,
            Object::Stream(s) => &s.dict,
            _ => continue,
        };
        if let Ok(resources) = dict.get(b"Resources") {
            if let Some(map) = xobject_dict(resources) {
                all_dicts.push(map);
            }
        }
    }
    let mut edges: HashMap<ObjectId, Vec<ObjectId>> = HashMap::new();
    for (id, stream) in &forms {
        let Ok(data) = stream
            .decompressed_content()
            .or_else(|_| Ok::<_, lopdf::Error>(stream.content.clone()))
        else {
            continue;
        };
        let Ok(content) = lopdf::content::Content::decode(&data) else {
            continue;
        };
        let names: Vec<&[u8]> = content
            .operations
            .iter()
            .filter(|op| op.operator == "Do")
            .filter_map(|op| op.operands.first().and_then(|o| o.as_name().ok()))
            .collect();
        if names.is_empty() {
            continue;
        }
        let own = stream.dict.get(b"Resources").ok().and_then(xobject_dict);
        let scopes: Vec<&HashMap<Vec<u8>, ObjectId>> = match &own {
            Some(map) => vec![map],
            None => all_dicts
                .iter()
                .filter(|m| m.values().any(|v| v == id))
                .collect(),
        };
        let targets = edges.entry(*id).or_default();
        for name in names {
            for scope in &scopes {
                if let Some(target) = scope.get(name) {
                    if forms.contains_key(target) {
                        targets.push(*target);
                    }
                }
            }
        }
    }
    // Cycle and depth check (iterative DFS with colours).
    let mut state: HashMap<ObjectId, u8> = HashMap::new();
    for start in edges.keys() {
        if state.contains_key(start) {
            continue;
        }
        let mut stack: Vec<(ObjectId, usize)> = vec![(*start, 0)];
        let mut path: Vec<ObjectId> = Vec::new();
        while let Some((node, next)) = stack.pop() {
            if next == 0 {
                if path.len() > MAX_DEPTH {
                    return Err(structure_error("forms are nested too deeply"));
                }
                state.insert(node, 1);
                path.push(node);
            }
            let children = edges.get(&node).map(Vec::as_slice).unwrap_or_default();
            if let Some(child) = children.get(next) {
                stack.push((node, next + 1));
                match state.get(child) {
                    Some(1) => return Err(structure_error("a form draws itself")),
                    Some(_) => {}
                    None => stack.push((*child, 0)),
                }
            } else {
                state.insert(node, 2);
                path.pop();
            }
        }
    }
    Ok(pages.len())
}

/// Refuses PDFs whose arrays/dictionaries nest deeper than [`MAX_NESTING`]. Counts `[`
/// and `<<` outside strings and comments; compressed object streams are not looked into
/// (lopdf parses those iteratively enough).
fn check_nesting(bytes: &[u8]) -> Result<(), IngestError> {
    let mut depth = 0usize;
    let mut max = 0usize;
    let mut i = 0;
    let mut in_string = 0usize;
    while i < bytes.len() {
        let b = bytes[i];
        if in_string > 0 {
            match b {
                b'\\' => i += 1,
                b'(' => in_string += 1,
                b')' => in_string -= 1,
                _ => {}
            }
            i += 1;
            continue;
        }
        match b {
            b'%' => {
                while i < bytes.len() && bytes[i] != b'\n' && bytes[i] != b'\r' {
                    i += 1;
                }
            }
            b'(' => in_string = 1,
            b'[' => depth += 1,
            b']' => depth = depth.saturating_sub(1),
            b'<' if bytes.get(i + 1) == Some(&b'<') => {
                depth += 1;
                i += 1;
            }
            b'>' if bytes.get(i + 1) == Some(&b'>') => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            b's' if bytes[i..].starts_with(b"stream") && !bytes[..i].ends_with(b"end") => {
                // Skip stream data: it is binary and not PDF syntax.
                match find(&bytes[i..], b"endstream") {
                    Some(end) => i += end + b"endstream".len() - 1,
                    None => break,
                }
            }
            _ => {}
        }
        max = max.max(depth);
        if max > MAX_NESTING {
            return Err(IngestError::Corrupt(format!(
                "the PDF nests objects more than {MAX_NESTING} levels deep"
            )));
        }
        i += 1;
    }
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_nesting_is_refused_before_parsing() {
        let mut pdf = b"%PDF-1.4\n1 0 obj\n".to_vec();
        pdf.extend(std::iter::repeat_n(b'[', 100_000));
        assert!(matches!(extract(&pdf), Err(IngestError::Corrupt(_))));
        let shallow = b"%PDF-1.4\n1 0 obj << /A [[1] (a[b) ] >> endobj stream\n[[[[[[\nendstream";
        assert!(check_nesting(shallow).is_ok());
    }

    #[test]
    fn garbage_after_the_header_is_damaged() {
        let err = extract(b"%PDF-1.7\nthis is not a pdf at all");
        assert!(matches!(err, Err(IngestError::Corrupt(_))), "{err:?}");
    }
}

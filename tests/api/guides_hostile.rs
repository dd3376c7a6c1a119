//! The hostile and broken file corpus: every file gets a clear BAD_USER_INPUT error that
//! says what is wrong, the server neither panics nor hangs, and nothing is stored.
//!
//! The corpus is generated here at run time (two PDFs that need LibreOffice to make —
//! encrypted, scanned — are committed under tests/fixtures/hostile/).

use std::io::Write as _;
use std::time::{Duration, Instant};

use crate::guides::{counts, fixture, spawn_with_db, stored_files, upload, Counts};
use gradelab_tests::workspace_root;

/// Upload limit of the server under test.
const LIMIT: usize = 2 * 1024 * 1024;

struct Case {
    name: String,
    bytes: Vec<u8>,
    /// A phrase the error message must contain (lower case).
    expect: &'static str,
}

fn case(name: &str, bytes: impl Into<Vec<u8>>, expect: &'static str) -> Case {
    Case {
        name: name.to_owned(),
        bytes: bytes.into(),
        expect,
    }
}

/// Builds a PDF from object bodies (object 1 must be the catalog), with a correct xref.
fn pdf(objects: &[&[u8]]) -> Vec<u8> {
    let mut out = b"%PDF-1.4\n%\xE2\xE3\xCF\xD3\n".to_vec();
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend(format!("{} 0 obj\n", i + 1).as_bytes());
        out.extend(*body);
        out.extend(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
    for offset in offsets {
        out.extend(format!("{offset:010} 00000 n \n").as_bytes());
    }
    out.extend(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    out
}

fn stream(dict: &str, data: &[u8]) -> Vec<u8> {
    let mut out = format!("<< {dict} /Length {} >>\nstream\n", data.len()).into_bytes();
    out.extend(data);
    out.extend(b"\nendstream");
    out
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let _ = encoder.write_all(data);
    encoder.finish().unwrap_or_default()
}

/// A one-page PDF whose page content is `content`.
fn one_page(content: &[u8], extra_resources: &str) -> Vec<u8> {
    let page = format!(
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R /Resources << /Font << /F1 3 0 R >> {extra_resources} >> >>"
    );
    let contents = stream("", content);
    pdf(&[
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [5 0 R] /Count 1 >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        &contents,
        page.as_bytes(),
    ])
}

/// A ZIP archive of `(name, bytes)` entries.
fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut buf);
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .large_file(true);
        for (name, bytes) in entries {
            let _ = zip.start_file(*name, options);
            let _ = zip.write_all(bytes);
        }
        let _ = zip.finish();
    }
    buf.into_inner()
}

const W: &str = r#"xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main""#;

fn document_xml(body: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><w:document {W}><w:body>{body}</w:body></w:document>"#
    )
}

fn docx(document: &str) -> Vec<u8> {
    zip(&[
        ("[Content_Types].xml", b"<Types/>".as_slice()),
        ("word/document.xml", document.as_bytes()),
    ])
}

fn paragraph(text: &str) -> String {
    format!("<w:p><w:r><w:t>{text}</w:t></w:r></w:p>")
}

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn corpus() -> Vec<Case> {
    let good_pdf = std::fs::read(fixture("chemistry_rates_unit3.pdf")).unwrap_or_default();
    let good_docx = std::fs::read(fixture("biology_mock_2026.docx")).unwrap_or_default();
    let hostile = workspace_root().join("tests/fixtures/hostile");
    let committed = |name: &str| std::fs::read(hostile.join(name)).unwrap_or_default();
    let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x10\0\0\0\x10\x08\x02\0\0\0\x90\x91h6".to_vec();
    let ole = {
        let mut b = vec![0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
        b.extend(noise(4000, 3));
        b
    };
    let guide_text =
        "Question 1\nExplain osmosis. [2 marks]\nModel answer: Water moves across a membrane.\n";
    let billion_laughs = {
        let mut dtd = String::from(r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">"#);
        dtd.push_str(r#"<!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">"#);
        for i in 2..=9 {
            let prev = format!("&lol{};", i - 1).repeat(10);
            dtd.push_str(&format!(r#"<!ENTITY lol{i} "{prev}">"#));
        }
        dtd.push_str(&format!(
            "]><w:document {W}><w:body>{}</w:body></w:document>",
            paragraph("&lol9;")
        ));
        dtd
    };
    let xxe = format!(
        r#"<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><w:document {W}><w:body>{}</w:body></w:document>"#,
        paragraph("&xxe;")
    );
    let encrypted_zip = {
        // A valid DOCX with the "encrypted" flag set on every entry.
        let mut bytes = docx(&document_xml(&paragraph(guide_text)));
        let mut i = 0;
        while i + 8 < bytes.len() {
            if bytes[i..i + 4] == *b"PK\x03\x04" {
                bytes[i + 6] |= 1;
            } else if bytes[i..i + 4] == *b"PK\x01\x02" {
                bytes[i + 8] |= 1;
            }
            i += 1;
        }
        bytes
    };
    let page_cycle = pdf(&[
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >>",
        b"<< /Type /Pages /Parent 2 0 R /Kids [2 0 R] /Count 1 >>",
    ]);
    let flate_bomb = {
        let zeros = vec![b' '; 40 * 1024 * 1024];
        let packed = deflate(&zeros);
        let contents = stream("/Filter /FlateDecode", &packed);
        let page = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R /Resources << /Font << /F1 3 0 R >> >> >>";
        pdf(&[
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [5 0 R] /Count 1 >>",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
            &contents,
            page,
        ])
    };
    let huge_line: Vec<u8> = "marks ".repeat(200_000).into_bytes();
    let long_paragraph = docx(&document_xml(&paragraph(&"word ".repeat(8_000))));

    vec![
        // Empty and near-empty.
        case("empty.txt", Vec::new(), "empty"),
        case("empty.pdf", Vec::new(), "empty"),
        case("empty.docx", Vec::new(), "empty"),
        case("empty.md", Vec::new(), "empty"),
        case("whitespace.txt", " \n\t\r\n   \n", "no text"),
        case(
            "zero-width.txt",
            "\u{200B}\u{FEFF}\u{200D}".repeat(50),
            "no text",
        ),
        case("bom-only.txt", b"\xEF\xBB\xBF".to_vec(), "no text"),
        case("utf16-bom-only.txt", b"\xFF\xFE".to_vec(), "no text"),
        case("markup-only.md", "---\n***\n#\n> \n- \n", "no text"),
        case("emoji-only.txt", "😀🎉📚 ✅✅✅".repeat(10), "no text"),
        case("one-byte.txt", b".".to_vec(), "no text"),
        // Binary data where text was promised.
        case("random.txt", noise(50_000, 1), "not text"),
        case("random.md", noise(5_000, 2), "not text"),
        case(
            "nul-bytes.txt",
            format!("{guide_text}\0\0\0\0more"),
            "not text",
        ),
        case(
            "control-chars.txt",
            "\x01\x02\x03\x04\x05\x06\x07\x08\x0e\x0f".repeat(100),
            "not text",
        ),
        case("image.txt", png.clone(), "not text"),
        case(
            "program.txt",
            b"\x7FELF\x02\x01\x01\0\0\0\0\0".to_vec(),
            "not text",
        ),
        case("archive.md", b"\x1F\x8B\x08\0\0\0\0\0".to_vec(), "not text"),
        case(
            "rtf-as-text.txt",
            b"{\\rtf1\\ansi Question 1}".to_vec(),
            "not text",
        ),
        case("pdf-named-md-but-png.md", png.clone(), "not text"),
        // Wrong or unsupported extensions.
        case("image.pdf", png.clone(), "not a pdf"),
        case("text.pdf", guide_text, "not a pdf"),
        case("image.docx", png.clone(), "not a word document"),
        case("text.docx", guide_text, "not a word document"),
        case("guide.exe", guide_text, "not supported"),
        case("guide.png", png, "not supported"),
        case("guide.odt", guide_text, "not supported"),
        case("guide.rtf", guide_text, "not supported"),
        case("guide.doc", ole.clone(), "old word"),
        case("ole-named.docx", ole, "old word"),
        // Broken PDFs.
        case(
            "truncated.pdf",
            good_pdf[..good_pdf.len() / 2].to_vec(),
            "cannot be read",
        ),
        case(
            "truncated-tiny.pdf",
            good_pdf[..200.min(good_pdf.len())].to_vec(),
            "cannot be read",
        ),
        case("header-only.pdf", b"%PDF-1.7\n".to_vec(), "cannot be read"),
        case(
            "garbage-after-header.pdf",
            [b"%PDF-1.4\n".to_vec(), noise(20_000, 4)].concat(),
            "cannot be read",
        ),
        case(
            "encrypted.pdf",
            committed("encrypted.pdf"),
            "password-protected",
        ),
        case("scanned.pdf", committed("scanned_no_text.pdf"), "ocr"),
        case("blank-page.pdf", one_page(b"", ""), "ocr"),
        case(
            "graphics-only.pdf",
            one_page(b"0 0 m 100 100 l S 10 10 50 50 re f", ""),
            "ocr",
        ),
        case(
            "no-pages.pdf",
            pdf(&[
                b"<< /Type /Catalog /Pages 2 0 R >>",
                b"<< /Type /Pages /Kids [] /Count 0 >>",
            ]),
            "cannot be read",
        ),
        case("page-tree-cycle.pdf", page_cycle, "cannot be read"),
        case(
            "deep-nesting.pdf",
            [b"%PDF-1.4\n1 0 obj\n".to_vec(), vec![b'['; 200_000]].concat(),
            "cannot be read",
        ),
        case(
            "deep-dict-nesting.pdf",
            [b"%PDF-1.4\n1 0 obj\n".to_vec(), b"<< /A ".repeat(50_000)].concat(),
            "cannot be read",
        ),
        case("flate-bomb.pdf", flate_bomb, "ocr"),
        // Broken and hostile DOCX.
        case(
            "zip-bomb.docx",
            docx(&document_xml(&" ".repeat(80 * 1024 * 1024))),
            "zip bomb",
        ),
        case(
            "many-entries.docx",
            {
                let names: Vec<String> =
                    (0..3000).map(|i| format!("word/media/x{i}.bin")).collect();
                let mut entries: Vec<(&str, &[u8])> = names
                    .iter()
                    .map(|n| (n.as_str(), b"x".as_slice()))
                    .collect();
                let doc = document_xml(&paragraph(guide_text));
                entries.push(("word/document.xml", doc.as_bytes()));
                zip(&entries)
            },
            "zip bomb",
        ),
        case("billion-laughs.docx", docx(&billion_laughs), "dtd"),
        case("external-entity.docx", docx(&xxe), "dtd"),
        case(
            "no-document-xml.docx",
            zip(&[("word/styles.xml", b"<w:styles/>".as_slice())]),
            "not a word document",
        ),
        case(
            "spreadsheet.docx",
            zip(&[("xl/workbook.xml", b"<workbook/>".as_slice())]),
            "not a word document",
        ),
        case(
            "truncated.docx",
            good_docx[..good_docx.len() / 2].to_vec(),
            "cannot be read",
        ),
        case("encrypted-entries.docx", encrypted_zip, "cannot be read"),
        case(
            "not-utf8-xml.docx",
            zip(&[(
                "word/document.xml",
                b"<w:document>\xFF\xFE\xFD</w:document>".as_slice(),
            )]),
            "cannot be read",
        ),
        case(
            "malformed-xml.docx",
            docx(&format!(
                "<w:document {W}><w:body><w:p><w:r><w:t>Question</w:r></w:p>"
            )),
            "cannot be read",
        ),
        case("empty-body.docx", docx(&document_xml("")), "no text"),
        case(
            "deep-xml.docx",
            docx(&document_xml(&"<w:sdt>".repeat(100_000))),
            "",
        ),
        case("huge-paragraph.docx", long_paragraph, "line of"),
        // Text that is not a guide.
        case("huge-single-line.txt", huge_line.clone(), "line of"),
        case("huge-single-line.md", huge_line, "line of"),
        case(
            "too-large.txt",
            "Question 1 Explain. [1 mark]\n"
                .repeat(LIMIT / 29 + 1)
                .into_bytes()[..LIMIT + 1]
                .to_vec(),
            "upload limit",
        ),
        case(
            "too-large.pdf",
            [good_pdf.clone(), vec![b'%'; LIMIT + 1 - good_pdf.len()]].concat(),
            "upload limit",
        ),
    ]
}

#[tokio::test]
async fn hostile_and_broken_files_get_clear_errors_and_leave_nothing_behind() {
    let (app, db_url) = spawn_with_db(|settings| {
        settings.guides.max_upload_bytes = LIMIT as u64;
        settings.guides.read_timeout_secs = 20;
    })
    .await;
    let teacher = app.sign_up("Mallory").await;
    let corpus = corpus();
    let mut failures = Vec::new();
    for case in &corpus {
        let started = Instant::now();
        let response = tokio::time::timeout(
            Duration::from_secs(60),
            upload(
                &app,
                &teacher.token,
                &case.name,
                case.bytes.clone(),
                "PARSER",
            ),
        )
        .await;
        let elapsed = started.elapsed().as_secs_f64();
        let Ok(response) = response else {
            failures.push(format!("{}: no answer within 60 s", case.name));
            continue;
        };
        let code = response.error_code().unwrap_or("none").to_owned();
        let message = response.error_message().unwrap_or_default().to_owned();
        println!(
            "{:28} {:>9} B {:5.2}s {code:15} {message}",
            case.name,
            case.bytes.len(),
            elapsed
        );
        if code != "BAD_USER_INPUT" {
            failures.push(format!(
                "{}: code {code}, message {message:?}, data {}",
                case.name, response.data
            ));
        } else if !message.to_lowercase().contains(case.expect) {
            failures.push(format!(
                "{}: message {message:?} lacks {:?}",
                case.name, case.expect
            ));
        }
    }
    println!(
        "hostile corpus: {} files, {} failures",
        corpus.len(),
        failures.len()
    );
    assert!(corpus.len() >= 50, "the corpus has {} files", corpus.len());
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(
        counts(&db_url).await,
        Counts {
            guides: 0,
            items: 0,
            uploads: 0
        }
    );
    assert_eq!(stored_files(&app), 0, "files left in the blob store");
    // The server is still healthy after all that.
    let me = app
        .graphql(
            Some(&teacher.token),
            "{ me { displayName } }",
            serde_json::json!({}),
        )
        .await
        .ok();
    assert_eq!(me["me"]["displayName"], "Mallory");
}

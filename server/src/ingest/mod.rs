//! From an uploaded file to normalised guide text, and from text to guide items.
//!
//! [`extract`] recognises the format from the bytes (the file name's extension only
//! decides between TXT and Markdown, and must not contradict the content), reads the text
//! ([`pdf`], [`docx`], [`text`]), [`normalize`]s it and checks that what is left looks like
//! a guide. Every failure is an [`IngestError`] whose message tells the teacher what to do.
//! [`extract_guarded`] runs the same work on the blocking pool with a timeout and catches
//! panics, so a hostile file can neither take the server down nor hold a worker forever.
//!
//! [`parser`] turns well-formatted guide text into items without a model; [`llm`] asks a
//! language model for the same items with structured output.

pub mod docx;
pub mod items;
pub mod llm;
pub mod normalize;
pub mod parser;
pub mod pdf;
pub mod text;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use tokio::sync::Semaphore;

pub use items::{Criterion, ExtractedItem};
pub use normalize::normalize;

/// A guide file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// PDF with a text layer.
    Pdf,
    /// Word (Office Open XML).
    Docx,
    /// Plain text.
    Text,
    /// Markdown (read as text).
    Markdown,
}

impl Format {
    /// The MIME type stored with the guide.
    pub fn mime(self) -> &'static str {
        match self {
            Self::Pdf => "application/pdf",
            Self::Docx => "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
            Self::Text => "text/plain",
            Self::Markdown => "text/markdown",
        }
    }
}

/// Why a file could not be turned into guide text. Every message is meant for the teacher.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// 0 bytes.
    #[error("The file is empty (0 bytes).")]
    Empty,
    /// Over the upload limit.
    #[error("The file is {size} bytes; the limit is {limit} bytes.")]
    TooLarge {
        /// Size of the file.
        size: u64,
        /// The configured limit.
        limit: u64,
    },
    /// A format GradeLab does not read.
    #[error("{0} files are not supported: upload a PDF, DOCX, TXT or Markdown file (save other documents as DOCX or PDF first).")]
    Unsupported(String),
    /// Word 97–2003.
    #[error("This is an old Word .doc file or a password-protected Word document: save it as .docx without a password, or as PDF, and upload that.")]
    LegacyDoc,
    /// The extension promises a format the content is not.
    #[error("The file is named .{ext} but is not a {expected}: it looks like {found}.")]
    WrongExtension {
        /// The file's extension.
        ext: String,
        /// What that extension means.
        expected: &'static str,
        /// What the content looks like.
        found: &'static str,
    },
    /// A ZIP archive that is not a Word document.
    #[error("This is not a Word document: {0}.")]
    NotDocx(String),
    /// Binary data.
    #[error("The file is not text: {0}. Upload a PDF, DOCX, TXT or Markdown file.")]
    NotText(String),
    /// Damaged.
    #[error("The file cannot be read: {0}.")]
    Corrupt(String),
    /// A decompression bomb.
    #[error("The DOCX was refused as a zip bomb: {0}.")]
    ZipBomb(String),
    /// XML with a DTD (entity expansion attacks).
    #[error("The DOCX was refused: its XML declares a DTD, which Word never writes and which allows entity-expansion (billion laughs) attacks.")]
    XmlDtd,
    /// Encrypted PDF.
    #[error("The PDF is password-protected: remove the protection (for example, print it to a new PDF) and upload it again.")]
    PdfEncrypted,
    /// A PDF of images.
    #[error("The PDF has no text layer (it looks scanned): scanned PDFs need OCR, which GradeLab does not do. Upload the original document or a PDF exported from a word processor.")]
    PdfNoText,
    /// Nothing readable.
    #[error("The file contains no text.")]
    NoText,
    /// One enormous line.
    #[error("The text has a line of {len} characters (the limit is {limit}); this does not look like a marking guide.")]
    LineTooLong {
        /// Longest line, in characters.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Too much text.
    #[error("The text is {len} characters long; the limit is {limit}.")]
    TextTooLong {
        /// Length in characters.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// Extraction did not finish in time.
    #[error("Reading the file took longer than {0} seconds, so it was abandoned: the file may be damaged.")]
    Timeout(u64),
    /// A reader panicked.
    #[error("The {0} reader failed on this file: it is probably damaged.")]
    ReaderFailed(&'static str),
    /// Too many files are being read at once.
    #[error("The server is busy reading other files; try again in a minute.")]
    Busy,
}

/// Limits applied while reading a file.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest accepted file.
    pub max_file_bytes: u64,
    /// Longest accepted text after normalisation, in characters.
    pub max_text_chars: usize,
    /// Longest accepted line, in characters.
    pub max_line_chars: usize,
    /// DOCX archive caps.
    pub docx: docx::DocxLimits,
    /// Longest time spent reading one file.
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_file_bytes: 12 * 1024 * 1024,
            max_text_chars: 2_000_000,
            max_line_chars: 20_000,
            docx: docx::DocxLimits::default(),
            timeout: Duration::from_secs(30),
        }
    }
}

/// Text read from a file.
#[derive(Debug, Clone)]
pub struct Extracted {
    /// Normalised text.
    pub text: String,
    /// The format it was read as.
    pub format: Format,
    /// For text files, the encoding it was decoded from.
    pub encoding: Option<&'static str>,
}

/// What the first bytes say a file is.
fn sniff(bytes: &[u8]) -> Option<&'static str> {
    let head = &bytes[..bytes.len().min(1024)];
    if head.windows(5).any(|w| w == b"%PDF-") {
        Some("a PDF")
    } else if bytes.starts_with(b"PK\x03\x04") || bytes.starts_with(b"PK\x05\x06") {
        Some("a ZIP archive")
    } else if bytes.starts_with(&[0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1]) {
        Some("an old Office document")
    } else if bytes.starts_with(b"\x89PNG") {
        Some("a PNG image")
    } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("a JPEG image")
    } else if bytes.starts_with(b"GIF8") {
        Some("a GIF image")
    } else if bytes.starts_with(b"\x7FELF") || bytes.starts_with(b"MZ") {
        Some("a program")
    } else if bytes.starts_with(b"{\\rtf") {
        Some("an RTF document")
    } else if bytes.starts_with(&[0x1F, 0x8B]) {
        Some("a gzip archive")
    } else {
        None
    }
}

/// The lower-case extension of a file name, if any.
fn extension(filename: &str) -> String {
    let name = filename.rsplit(['/', '\\']).next().unwrap_or(filename);
    match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => ext.to_ascii_lowercase(),
        _ => String::new(),
    }
}

/// Decides the format from the content and the file name.
pub fn detect(bytes: &[u8], filename: &str) -> Result<Format, IngestError> {
    let ext = extension(filename);
    let sniffed = sniff(bytes);
    match ext.as_str() {
        "pdf" | "docx" | "txt" | "text" | "md" | "markdown" | "" => {}
        "doc" => return Err(IngestError::LegacyDoc),
        _ => return Err(IngestError::Unsupported(format!(".{ext}"))),
    }
    match sniffed {
        Some("a PDF") => return Ok(Format::Pdf),
        Some("a ZIP archive") => return Ok(Format::Docx),
        Some("an old Office document") => return Err(IngestError::LegacyDoc),
        _ => {}
    }
    let found = sniffed.unwrap_or_else(|| {
        if text::decode(bytes).is_ok() {
            "plain text"
        } else {
            "some other kind of file"
        }
    });
    match ext.as_str() {
        "pdf" => Err(IngestError::WrongExtension {
            ext,
            expected: "PDF",
            found,
        }),
        "docx" => Err(IngestError::WrongExtension {
            ext,
            expected: "Word document",
            found,
        }),
        _ if sniffed.is_some() => Err(IngestError::NotText(format!("it looks like {found}"))),
        "md" | "markdown" => Ok(Format::Markdown),
        _ => Ok(Format::Text),
    }
}

/// Reads, normalises and checks the text of a file (blocking; see [`extract_guarded`]).
pub fn extract(bytes: &[u8], filename: &str, limits: &Limits) -> Result<Extracted, IngestError> {
    if bytes.is_empty() {
        return Err(IngestError::Empty);
    }
    if bytes.len() as u64 > limits.max_file_bytes {
        return Err(IngestError::TooLarge {
            size: bytes.len() as u64,
            limit: limits.max_file_bytes,
        });
    }
    let format = detect(bytes, filename)?;
    let (raw, encoding) = match format {
        Format::Pdf => (pdf::extract(bytes)?, None),
        Format::Docx => (docx::extract(bytes, limits.docx)?, None),
        Format::Text | Format::Markdown => {
            let decoded = text::decode(bytes)?;
            (decoded.text, Some(decoded.encoding))
        }
    };
    let text = check_text(&raw, limits)?;
    Ok(Extracted {
        text,
        format,
        encoding,
    })
}

/// [`extract`] for a file on disk (an upload already streamed to the blob store): a DOCX is
/// read part by part from the file, so a large one with images never sits in memory
/// whole; PDFs and text files are read whole, as their readers need (blocking).
pub fn extract_file(
    path: &std::path::Path,
    filename: &str,
    limits: &Limits,
) -> Result<Extracted, IngestError> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(path)
        .map_err(|err| IngestError::Corrupt(format!("the stored upload cannot be read ({err})")))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    if size == 0 {
        return Err(IngestError::Empty);
    }
    if size > limits.max_file_bytes {
        return Err(IngestError::TooLarge {
            size,
            limit: limits.max_file_bytes,
        });
    }
    let mut head = Vec::with_capacity(1024);
    (&mut file)
        .take(1024)
        .read_to_end(&mut head)
        .map_err(|err| IngestError::Corrupt(format!("the stored upload cannot be read ({err})")))?;
    if head.len() as u64 == size || !matches!(detect(&head, filename), Ok(Format::Docx)) {
        let bytes = std::fs::read(path).map_err(|err| {
            IngestError::Corrupt(format!("the stored upload cannot be read ({err})"))
        })?;
        return extract(&bytes, filename, limits);
    }
    let raw = docx::extract_from(std::io::BufReader::new(file), limits.docx)?;
    let text = check_text(&raw, limits)?;
    Ok(Extracted {
        text,
        format: Format::Docx,
        encoding: None,
    })
}

/// Normalises pasted or extracted text and applies the text limits.
pub fn check_text(raw: &str, limits: &Limits) -> Result<String, IngestError> {
    // Refuse absurd input before normalising it (normalisation allocates a copy).
    let raw_chars = raw.len();
    if raw_chars > limits.max_text_chars.saturating_mul(4) {
        return Err(IngestError::TextTooLong {
            len: raw.chars().count(),
            limit: limits.max_text_chars,
        });
    }
    let text = normalize(raw);
    if !text.chars().any(char::is_alphanumeric) {
        return Err(IngestError::NoText);
    }
    let len = text.chars().count();
    if len > limits.max_text_chars {
        return Err(IngestError::TextTooLong {
            len,
            limit: limits.max_text_chars,
        });
    }
    let longest = text.lines().map(|l| l.chars().count()).max().unwrap_or(0);
    if longest > limits.max_line_chars {
        return Err(IngestError::LineTooLong {
            len: longest,
            limit: limits.max_line_chars,
        });
    }
    Ok(text)
}

/// At most this many files are read at once; a reader stuck on a hostile file keeps its
/// permit, so stuck readers cannot pile up without bound.
static READERS: LazyLock<Arc<Semaphore>> = LazyLock::new(|| Arc::new(Semaphore::new(4)));

/// [`extract`] on the blocking pool, with a timeout, a cap on concurrent readers and panics
/// turned into [`IngestError::ReaderFailed`].
pub async fn extract_guarded(
    bytes: Arc<Vec<u8>>,
    filename: String,
    limits: Limits,
) -> Result<Extracted, IngestError> {
    let timeout = limits.timeout;
    let (sniff, sniff_name) = (bytes.clone(), filename.clone());
    guarded(
        timeout,
        move || extract(&bytes, &filename, &limits),
        move || {
            IngestError::ReaderFailed(match detect(&sniff, &sniff_name) {
                Ok(Format::Pdf) => "PDF",
                Ok(Format::Docx) => "DOCX",
                _ => "text",
            })
        },
    )
    .await
}

/// [`extract_file`] with the guards of [`extract_guarded`].
pub async fn extract_file_guarded(
    path: std::path::PathBuf,
    filename: String,
    limits: Limits,
) -> Result<Extracted, IngestError> {
    let timeout = limits.timeout;
    guarded(
        timeout,
        move || extract_file(&path, &filename, &limits),
        || IngestError::ReaderFailed("file"),
    )
    .await
}

/// Runs `read` on the blocking pool once a reader permit is free, gives up after `timeout`
/// (waiting or reading), and turns a panic into `on_panic()`.
async fn guarded(
    timeout: Duration,
    read: impl FnOnce() -> Result<Extracted, IngestError> + Send + 'static,
    on_panic: impl FnOnce() -> IngestError + Send + 'static,
) -> Result<Extracted, IngestError> {
    let permit = tokio::time::timeout(timeout, READERS.clone().acquire_owned())
        .await
        .map_err(|_| IngestError::Busy)?
        .map_err(|_| IngestError::Busy)?;
    let task = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        catch_unwind(AssertUnwindSafe(read)).unwrap_or_else(|_| Err(on_panic()))
    });
    match tokio::time::timeout(timeout, task).await {
        Ok(Ok(result)) => result,
        Ok(Err(_join)) => Err(IngestError::ReaderFailed("file")),
        Err(_) => Err(IngestError::Timeout(timeout.as_secs())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_comes_from_content_and_extension_must_agree() {
        assert_eq!(detect(b"%PDF-1.7 ...", "guide.pdf").ok(), Some(Format::Pdf));
        assert_eq!(detect(b"%PDF-1.7 ...", "guide").ok(), Some(Format::Pdf));
        assert_eq!(detect(b"# Guide", "guide.MD").ok(), Some(Format::Markdown));
        assert_eq!(detect(b"Question 1", "guide.txt").ok(), Some(Format::Text));
        assert!(matches!(
            detect(b"\x89PNG\r\n", "guide.pdf"),
            Err(IngestError::WrongExtension { .. })
        ));
        assert!(matches!(
            detect(b"Question 1", "guide.docx"),
            Err(IngestError::WrongExtension { .. })
        ));
        assert!(matches!(
            detect(b"Question 1", "guide.exe"),
            Err(IngestError::Unsupported(_))
        ));
        assert!(matches!(
            detect(b"\x89PNG\r\n", "guide.txt"),
            Err(IngestError::NotText(_))
        ));
    }

    #[test]
    fn text_limits() {
        let limits = Limits {
            max_line_chars: 10,
            ..Limits::default()
        };
        assert!(matches!(
            check_text("short\nwaaaaaaaaaaaaaay too long", &limits),
            Err(IngestError::LineTooLong { .. })
        ));
        assert!(matches!(
            check_text(" \n\t\u{200B}", &limits),
            Err(IngestError::NoText)
        ));
    }
}

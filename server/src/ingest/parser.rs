//! The deterministic guide parser: items from well-formatted guide text, without a model.
//!
//! It reads the layouts teachers and exam boards commonly use:
//! - item headings: `Question 3`, `Q3.`, `3.` / `3)`, `1(a)`, `1a)`, and parts `(b)` under
//!   the current question (a question whose text is followed by parts becomes their stem);
//!   Markdown headings and bold markers are ignored;
//! - marks: `[5 marks]`, `(4 marks)`, `[5]`, `(Total: 4 marks)`, `… 5 marks`;
//! - sections: `Model answer:` / `Answer:` / `Solution:` / `Indicative content:` …, and
//!   `Mark scheme:` / `Marking points:` / `Criteria:` / `Award marks for:` / `Marks:` …;
//! - criteria: bullets or numbers, with marks as `(1 mark)`, `[1]`, `(1)`, `— 2 marks`,
//!   a leading `1 mark –`, or exam-board codes `M1`, `A1`, `B2` (the digit is the marks).
//!
//! It is used when no model is configured and as the fallback when the model fails; it
//! also finds the item boundaries used to cut long guides into chunks for the model
//! ([`chunks`]) without splitting an item.

use std::sync::LazyLock;

use regex::Regex;

use super::items::{tidy, Criterion, ExtractedItem};

fn re(pattern: &str) -> Regex {
    // The patterns are literals in this file, checked by the unit tests.
    #[expect(clippy::unwrap_used, reason = "constant patterns, covered by tests")]
    Regex::new(pattern).unwrap()
}

/// `Question 3`, `Q3.`, `Qu. 3 (a)`, `Question 1(a):` … with the rest of the line.
static QUESTION: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(?:[Qq]uestion|QUESTION|Qu\.?|Q)\s*(\d{1,3})\s*(?:\(?([a-h]|i{1,3}|iv|v|vi{1,3})\))?\s*(?:[.:)\-–—]\s*)?(.*)$",
    )
});
/// `1(a) …`, `1 (a) …`, `1a) …`, `1a. …`
static NUMBER_PART: LazyLock<Regex> =
    LazyLock::new(|| re(r"^(\d{1,3})\s*(?:\(([a-h]|i{1,3}|iv|v|vi{1,3})\)|([a-h])[.)])\s*(.*)$"));
/// `(b) …`, `b) …`
static PART: LazyLock<Regex> =
    LazyLock::new(|| re(r"^(?:\(([a-h]|i{1,3}|iv|v|vi{1,3})\)|([a-h])\))\s+(.*)$"));
/// `3. …`, `3) …`
static NUMBERED: LazyLock<Regex> = LazyLock::new(|| re(r"^(\d{1,3})[.)]\s+(.*)$"));
/// `3 A reaction produced …` (exam-paper style: the number, a space, a sentence).
static BARE: LazyLock<Regex> = LazyLock::new(|| re(r"^(\d{1,2})\s+(\p{Lu}\S*\s+\S+.*)$"));
/// A marks annotation: `[5 marks]`, `(4 marks)`, `[5]`, `(2)`, `(Total: 4 marks)`,
/// `[Total 6]`, `(5 pts)`.
static MARKS_BRACKETED: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)[\[(]\s*(?:total(?:\s+for\s+question\s+\S+)?\s*[:=]?\s*)?(\d{1,3}(?:\.\d+)?)\s*(marks?|pts?|points?)?\s*[\])]",
    )
});
/// `… 5 marks` at the end of a line.
static MARKS_TRAILING: LazyLock<Regex> = LazyLock::new(|| {
    re(r"(?i)(?:^|[\s,;:=\-–—])(\d{1,3}(?:\.\d+)?)\s*(?:marks?|pts?|points?)\.?\s*$")
});
/// A line that only states the item's total: `Total: 4 marks`, `(Total 4)`,
/// `Total for question 2 = 4 marks`.
static TOTAL_LINE: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)^[*_(\[]*\s*total(?:\s+for\s+(?:question|q)\s*\S+)?\s*[:=]?\s*(\d{1,3}(?:\.\d+)?)\s*(?:marks?|pts?|points?)?\s*[)\]*_.]*$",
    )
});
/// The end of the marking guide proper.
static END: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)^[*_\s]*(?:end\s+of\s+(?:the\s+)?(?:mark(?:ing)?\s+scheme|marking\s+guide|paper|test|exam(?:ination)?|questions?)|total\s+for\s+(?:the\s+)?(?:paper|test|exam))",
    )
});
/// Criterion marks at the end: `(1 mark)`, `[1]`, `(2)`, `— 2 marks`, `: 2 marks`, `= 1`.
static CRITERION_TRAILING: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)(?:\s*[\[(]\s*(\d{1,3}(?:\.\d+)?)\s*(?:marks?|pts?|points?)?\s*[\])]|(?:^|\s*[\-–—:=,]\s*|\s+)(\d{1,3}(?:\.\d+)?)\s*(?:marks?|pts?|points?))\s*\.?$",
    )
});
/// Criterion marks at the start: `1 mark – …`, `2 marks: …`, `[1] …`, `(1) …`.
static CRITERION_LEADING: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)^(?:(\d{1,3}(?:\.\d+)?)\s*(?:marks?|pts?|points?)\s*(?:for\s+)?[\-–—:=,]?\s*|[\[(](\d{1,3})\s*(?:marks?)?[\])]\s+)(.+)$",
    )
});
/// Exam-board mark codes: `M1 …`, `A1 …`, `B2 …`, `C1 …`, `E1 …` (the digit is the marks).
static MARK_CODE: LazyLock<Regex> =
    LazyLock::new(|| re(r"^([MABCE])(\d)(?:\s*[\-–—:,.]\s*|\s+)(.+)$"));
/// A bullet or list marker at the start of a criterion.
static BULLET: LazyLock<Regex> = LazyLock::new(|| {
    re(r"^(?:[-*•·▪◦●○–—+]|\d{1,2}[.)]|\(\d{1,2}\)|\(?[a-h]\)|[ivx]{1,4}\))\s+(.*)$")
});
/// A horizontal rule.
static RULE: LazyLock<Regex> = LazyLock::new(|| re(r"^(?:[-*_=]\s*){3,}$"));
/// Page furniture: `Page 2 of 5`, `- 3 -`, a bare page number.
static PAGE: LazyLock<Regex> =
    LazyLock::new(|| re(r"(?i)^(?:page\s+\d+(?:\s+of\s+\d+)?|[-–—]?\s*\d{1,3}\s*[-–—]?)$"));

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    /// Before the first item.
    Preamble,
    Question,
    Answer,
    Criteria,
    /// After a rule or an end marker: ignored until the next item heading.
    Ignored,
}

/// A section heading at the start of a line: which section, and the rest of the line.
fn section_heading(line: &str) -> Option<(Section, &str)> {
    const ANSWER: &[&str] = &[
        "model answers",
        "model answer",
        "expected answer",
        "suggested answer",
        "sample answer",
        "exemplar answer",
        "example answer",
        "worked solution",
        "indicative content",
        "answers",
        "answer",
        "solution",
    ];
    const CRITERIA: &[&str] = &[
        "mark scheme",
        "marking scheme",
        "marking points",
        "marking guidance",
        "marking criteria",
        "marking notes",
        "mark allocation",
        "assessment criteria",
        "success criteria",
        "award marks for",
        "award",
        "rubric",
        "criteria",
        "marking",
        "marks",
        "guidance",
        "scoring",
        "points",
    ];
    let trimmed = line.trim_start_matches(['*', '_', '#', ' ']);
    let lower = trimmed.to_lowercase();
    for (section, words) in [(Section::Answer, ANSWER), (Section::Criteria, CRITERIA)] {
        for word in words {
            if let Some(rest) = lower.strip_prefix(word) {
                let rest_trimmed = rest.trim_start_matches(['*', '_', ' ']);
                let offset = trimmed.len() - rest_trimmed.len();
                if rest_trimmed.is_empty() {
                    return Some((section, ""));
                }
                if let Some(after) = rest_trimmed.strip_prefix([':', '-', '–', '—']) {
                    let after_start = offset + (rest_trimmed.len() - after.len());
                    let after = trimmed[after_start..].trim_start_matches(['*', '_', ' ']);
                    return Some((section, after.trim()));
                }
            }
        }
    }
    None
}

/// An item heading: (question number, part, rest of the line).
#[derive(Debug, Clone, PartialEq)]
struct Heading {
    number: Option<String>,
    part: Option<String>,
    rest: String,
    /// A number without punctuation (`3 Explain …`): weaker evidence of a heading.
    bare: bool,
}

fn heading(line: &str) -> Option<Heading> {
    if let Some(c) = QUESTION.captures(line) {
        return Some(Heading {
            number: c.get(1).map(|m| m.as_str().to_owned()),
            part: c.get(2).map(|m| m.as_str().to_lowercase()),
            rest: c.get(3).map_or("", |m| m.as_str()).trim().to_owned(),
            bare: false,
        });
    }
    if let Some(c) = NUMBER_PART.captures(line) {
        return Some(Heading {
            number: c.get(1).map(|m| m.as_str().to_owned()),
            part: c.get(2).or(c.get(3)).map(|m| m.as_str().to_lowercase()),
            rest: c.get(4).map_or("", |m| m.as_str()).trim().to_owned(),
            bare: false,
        });
    }
    if let Some(c) = PART.captures(line) {
        return Some(Heading {
            number: None,
            part: c.get(1).or(c.get(2)).map(|m| m.as_str().to_lowercase()),
            rest: c.get(3).map_or("", |m| m.as_str()).trim().to_owned(),
            bare: false,
        });
    }
    if let Some(c) = NUMBERED.captures(line) {
        return Some(Heading {
            number: c.get(1).map(|m| m.as_str().to_owned()),
            part: None,
            rest: c.get(2).map_or("", |m| m.as_str()).trim().to_owned(),
            bare: false,
        });
    }
    if let Some(c) = BARE.captures(line) {
        return Some(Heading {
            number: c.get(1).map(|m| m.as_str().to_owned()),
            part: None,
            rest: c.get(2).map_or("", |m| m.as_str()).trim().to_owned(),
            bare: true,
        });
    }
    None
}

fn is_numbered_only(line: &str) -> bool {
    !QUESTION.is_match(line)
        && !NUMBER_PART.is_match(line)
        && (NUMBERED.is_match(line) || BARE.is_match(line))
}

fn parse_marks(text: &str) -> Option<f64> {
    text.parse::<f64>().ok().filter(|m| m.is_finite())
}

/// Finds the last marks annotation in a question's text; returns the marks and the text
/// without it.
fn take_marks(text: &str) -> (Option<f64>, String) {
    if let Some(m) = MARKS_BRACKETED.captures_iter(text).last() {
        let whole = m.get(0).map_or(0..0, |g| g.range());
        let marks = m.get(1).and_then(|g| parse_marks(g.as_str()));
        // A bare "(2)" only counts at the very end ("… the structure (2)"), not in "f(2)".
        let bare = m.get(2).is_none()
            && !m
                .get(0)
                .is_some_and(|g| g.as_str().to_lowercase().contains("total"));
        if !bare || text[whole.end..].trim().is_empty() {
            let mut rest = String::with_capacity(text.len());
            rest.push_str(text[..whole.start].trim_end());
            let tail = text[whole.end..].trim();
            if !tail.is_empty() {
                rest.push(' ');
                rest.push_str(tail);
            }
            return (marks, rest.trim().to_owned());
        }
    }
    if let Some(m) = MARKS_TRAILING.captures(text) {
        let marks = m.get(1).and_then(|g| parse_marks(g.as_str()));
        let start = m.get(0).map_or(text.len(), |g| g.start());
        return (marks, text[..start].trim().to_owned());
    }
    (None, text.trim().to_owned())
}

/// A criterion line: its description and marks, if stated.
fn criterion(line: &str) -> (String, Option<f64>) {
    let line = line.trim();
    if let Some(c) = MARK_CODE.captures(line) {
        let marks = c.get(2).and_then(|g| parse_marks(g.as_str()));
        return (c.get(3).map_or("", |g| g.as_str()).trim().to_owned(), marks);
    }
    if let Some(c) = CRITERION_LEADING.captures(line) {
        let marks = c.get(1).or(c.get(2)).and_then(|g| parse_marks(g.as_str()));
        return (c.get(3).map_or("", |g| g.as_str()).trim().to_owned(), marks);
    }
    if let Some(c) = CRITERION_TRAILING.captures(line) {
        let marks = c.get(1).or(c.get(2)).and_then(|g| parse_marks(g.as_str()));
        let start = c.get(0).map_or(line.len(), |g| g.start());
        let description = line[..start]
            .trim()
            .trim_end_matches([':', ',', '-', '–', '—'])
            .trim();
        if !description.is_empty() {
            return (description.to_owned(), marks);
        }
    }
    (line.to_owned(), None)
}

fn starts_criterion(line: &str) -> bool {
    BULLET.is_match(line) || MARK_CODE.is_match(line) || CRITERION_LEADING.is_match(line)
}

fn strip_bullet(line: &str) -> &str {
    match BULLET.captures(line).and_then(|c| c.get(1)) {
        Some(m) => &line[m.start()..],
        None => line,
    }
}

/// Appends a line to a paragraph: wrapped lines join with a space, a line after a sentence
/// end or a blank line starts a new line.
fn push_line(buf: &mut String, line: &str, after_blank: bool) {
    if buf.is_empty() {
        buf.push_str(line);
        return;
    }
    if after_blank {
        buf.push_str("\n\n");
    } else if buf.ends_with(['.', '?', '!', ':', ';']) {
        buf.push('\n');
    } else {
        buf.push(' ');
    }
    buf.push_str(line);
}

#[derive(Debug, Default)]
struct Draft {
    number: String,
    part: Option<String>,
    question: String,
    answer: String,
    /// Raw criteria text and whether the line that started it stated marks.
    criteria: Vec<String>,
    max_marks: Option<f64>,
    /// Stem of the parent question, for parts.
    stem: Option<String>,
}

impl Draft {
    fn label(&self) -> String {
        match &self.part {
            Some(part) => format!("{}({part})", self.number),
            None => self.number.clone(),
        }
    }

    fn is_bare(&self) -> bool {
        self.answer.is_empty() && self.criteria.is_empty()
    }

    fn finish(self) -> ExtractedItem {
        let (marks_in_text, question) = take_marks(&self.question);
        let question = match &self.stem {
            Some(stem) if !stem.is_empty() => format!("{stem}\n{question}"),
            _ => question,
        };
        let mut criteria: Vec<(String, Option<f64>)> =
            self.criteria.iter().map(|c| criterion(c)).collect();
        criteria.retain(|(d, _)| !d.is_empty());
        let max_marks = self.max_marks.or(marks_in_text);
        let stated: f64 = criteria.iter().filter_map(|(_, m)| *m).sum();
        let unstated = criteria.iter().filter(|(_, m)| m.is_none()).count();
        // Criteria without marks share what the stated ones leave, one mark each at most.
        let share = match max_marks {
            Some(max) if unstated > 0 => ((max - stated) / unstated as f64).clamp(0.0, 1.0),
            _ => 1.0,
        };
        let criteria: Vec<Criterion> = criteria
            .into_iter()
            .map(|(description, marks)| Criterion {
                description,
                marks: marks.unwrap_or(share),
            })
            .collect();
        let max_marks = max_marks.unwrap_or_else(|| criteria.iter().map(|c| c.marks).sum());
        ExtractedItem {
            label: self.label(),
            question,
            model_answer: self.answer.trim().to_owned(),
            max_marks,
            criteria,
        }
    }
}

/// Cleans a line for classification: Markdown heading markers, bold markers and quote
/// markers go; indentation is measured separately.
fn clean(line: &str) -> String {
    let line = line.trim();
    let line = line.trim_start_matches('#').trim_start_matches('>').trim();
    line.replace("**", "").replace("__", "").trim().to_owned()
}

/// Parses guide text into items (empty when it finds no item headings).
pub fn parse(text: &str) -> Vec<ExtractedItem> {
    parse_with_boundaries(text).0
}

/// Parses and also returns the line index where each top-level question starts.
fn parse_with_boundaries(text: &str) -> (Vec<ExtractedItem>, Vec<usize>) {
    let mut items = Vec::new();
    let mut starts = Vec::new();
    let mut draft: Option<Draft> = None;
    let mut section = Section::Preamble;
    let mut last_number: Option<u32> = None;
    let mut last_part: Option<String> = None;
    let mut stem: Option<String> = None;
    let mut blank = false;

    let flush = |draft: &mut Option<Draft>, items: &mut Vec<ExtractedItem>| {
        if let Some(d) = draft.take() {
            items.push(d.finish());
        }
    };

    for (index, raw) in text.lines().enumerate() {
        let line = clean(raw);
        if line.is_empty() {
            blank = true;
            continue;
        }
        if PAGE.is_match(&line) {
            continue;
        }
        if END.is_match(&line) {
            // "End of mark scheme" ends the guide; before any item it is preamble.
            if draft.is_some() || !items.is_empty() {
                flush(&mut draft, &mut items);
                break;
            }
            continue;
        }
        if RULE.is_match(&line) {
            if section != Section::Preamble {
                flush(&mut draft, &mut items);
                section = Section::Ignored;
            }
            continue;
        }

        if let Some(h) = heading(&line) {
            let (marks, _) = take_marks(&h.rest);
            let has_marks_word = MARKS_BRACKETED
                .captures(&h.rest)
                .is_some_and(|c| c.get(2).is_some())
                || MARKS_TRAILING.is_match(&h.rest)
                || h.rest.to_lowercase().contains("total");
            let number: Option<u32> = h.number.as_deref().and_then(|n| n.parse().ok());
            let follows = number.is_some() && number == last_number.map(|n| n + 1);
            let accept = match (&h.number, &h.part) {
                // "3 Explain …" must continue the numbering, and inside a question's text
                // it must carry marks.
                (Some(_), None) if h.bare => {
                    number == Some(last_number.map_or(1, |n| n + 1))
                        && (section != Section::Question || has_marks_word)
                }
                // "3. …" inside a mark scheme is usually a numbered criterion.
                (Some(_), None) if is_numbered_only(&line) => match section {
                    Section::Preamble | Section::Ignored => true,
                    Section::Question => follows,
                    Section::Answer | Section::Criteria => follows && has_marks_word,
                },
                // "(b) …" needs a current question and must be its next part; inside an
                // answer or a mark scheme it must also carry marks.
                (None, Some(part)) => {
                    let next = match last_part.as_deref() {
                        None => part == "a" || part == "i",
                        Some(prev) => next_label(prev).as_deref() == Some(part.as_str()),
                    };
                    last_number.is_some()
                        && next
                        && match section {
                            Section::Answer | Section::Criteria => marks.is_some(),
                            _ => true,
                        }
                }
                _ => true,
            };
            if accept {
                let same_question = h.number.is_none() || number == last_number;
                if h.part.is_some() && same_question {
                    // A question whose text is followed directly by parts is their stem.
                    if let Some(d) = draft.as_ref() {
                        if d.part.is_none() && d.is_bare() {
                            stem = Some(take_marks(&d.question).1);
                            draft = None;
                        }
                    }
                } else {
                    stem = None;
                }
                flush(&mut draft, &mut items);
                if !same_question || h.part.is_none() {
                    starts.push(index);
                }
                let number_text = match &h.number {
                    Some(n) => n.clone(),
                    None => last_number.map(|n| n.to_string()).unwrap_or_default(),
                };
                if h.number.is_some() {
                    last_number = number;
                }
                last_part = h.part.clone();
                let mut d = Draft {
                    number: number_text,
                    part: h.part.clone(),
                    stem: if h.part.is_some() { stem.clone() } else { None },
                    ..Draft::default()
                };
                section = Section::Question;
                blank = false;
                // "Question 2 Model answer: …" is rare; the rest of the line is the question.
                if !h.rest.is_empty() {
                    if let Some((s, after)) = section_heading(&h.rest) {
                        section = s;
                        if s == Section::Answer {
                            d.answer.push_str(after);
                        }
                    } else {
                        d.question.push_str(&h.rest);
                    }
                }
                draft = Some(d);
                continue;
            }
        }

        let Some(d) = draft.as_mut() else {
            continue;
        };
        if section == Section::Ignored {
            continue;
        }
        if let Some(c) = TOTAL_LINE.captures(&line) {
            if let Some(marks) = c.get(1).and_then(|g| parse_marks(g.as_str())) {
                d.max_marks.get_or_insert(marks);
            }
            blank = false;
            continue;
        }
        if let Some((s, rest)) = section_heading(&line) {
            // "Marks: 5" states the total rather than starting a list.
            if s == Section::Criteria {
                if let Some(marks) = rest
                    .trim_end_matches(|c: char| !c.is_ascii_digit())
                    .parse::<f64>()
                    .ok()
                    .filter(|_| rest.split_whitespace().count() <= 2)
                {
                    d.max_marks.get_or_insert(marks);
                    section = Section::Criteria;
                    blank = false;
                    continue;
                }
            }
            section = s;
            blank = false;
            match s {
                Section::Answer => push_line(&mut d.answer, rest, false),
                Section::Criteria if !rest.is_empty() => {
                    d.criteria.push(strip_bullet(rest).to_owned())
                }
                _ => {}
            }
            continue;
        }
        match section {
            Section::Question => push_line(&mut d.question, &line, blank),
            Section::Answer => push_line(&mut d.answer, &line, blank),
            Section::Criteria => {
                let previous_complete = d.criteria.last().is_none_or(|c| criterion(c).1.is_some());
                if starts_criterion(&line) || previous_complete || blank {
                    d.criteria.push(strip_bullet(&line).to_owned());
                } else if let Some(last) = d.criteria.last_mut() {
                    last.push(' ');
                    last.push_str(&line);
                }
            }
            Section::Preamble | Section::Ignored => {}
        }
        blank = false;
    }
    flush(&mut draft, &mut items);
    (tidy(items), starts)
}

/// The part label after `prev`: a → b, ii → iii.
fn next_label(prev: &str) -> Option<String> {
    const ROMAN: [&str; 8] = ["i", "ii", "iii", "iv", "v", "vi", "vii", "viii"];
    if let Some(pos) = ROMAN.iter().position(|r| *r == prev) {
        // "i" is also a letter: after "h" comes "i", after roman "i" comes "ii".
        return ROMAN.get(pos + 1).map(|s| (*s).to_owned());
    }
    let c = prev.chars().next()?;
    if prev.len() == 1 && c.is_ascii_lowercase() {
        return Some(char::from(c as u8 + 1).to_string());
    }
    None
}

/// Cuts guide text into chunks of at most about `max_chars` characters for the model,
/// only at question boundaries found by the parser (a question with its parts is never
/// split; one longer than `max_chars` becomes a chunk of its own). Text without
/// recognisable questions is cut at blank lines.
pub fn chunks(text: &str, max_chars: usize) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let (_, mut starts) = parse_with_boundaries(text);
    starts.retain(|s| *s > 0);
    starts.dedup();
    let mut segments: Vec<String> = Vec::new();
    if starts.is_empty() {
        // No structure found: paragraphs.
        let mut current = String::new();
        for paragraph in text.split("\n\n") {
            if !current.is_empty() && current.len() + paragraph.len() + 2 > max_chars {
                segments.push(std::mem::take(&mut current));
            }
            if !current.is_empty() {
                current.push_str("\n\n");
            }
            current.push_str(paragraph);
        }
        if !current.is_empty() {
            segments.push(current);
        }
        return segments;
    }
    let mut bounds = vec![0];
    bounds.extend(starts);
    bounds.push(lines.len());
    let pieces: Vec<String> = bounds
        .windows(2)
        .map(|w| lines[w[0]..w[1]].join("\n"))
        .collect();
    let mut current = String::new();
    for piece in pieces {
        if !current.is_empty() && current.len() + piece.len() + 1 > max_chars {
            segments.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(&piece);
    }
    if !current.trim().is_empty() {
        segments.push(current);
    }
    segments
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_headings_parts_and_stems() {
        let text = "Biology mock\n\nQuestion 1\nThe diagram shows a cell.\n(a) Name X. [1 mark]\nModel answer: The nucleus.\nMark scheme:\n• nucleus (1 mark)\n(b) Explain Y. [2 marks]\nModel answer: Because.\nMark scheme:\n• reason one (1 mark)\n• reason two (1 mark)\nQuestion 2\nDescribe Z. [3 marks]\nAnswer: Z is z.\nEnd of mark scheme\nQuestion 9 is not real";
        let items = parse(text);
        let labels: Vec<_> = items.iter().map(|i| i.label.as_str()).collect();
        assert_eq!(labels, ["1(a)", "1(b)", "2"]);
        assert_eq!(items[0].question, "The diagram shows a cell.\nName X.");
        assert_eq!(items[0].max_marks, 1.0);
        assert_eq!(items[1].criteria.len(), 2);
        assert_eq!(items[1].criteria[1].description, "reason two");
        assert_eq!(items[2].question, "Describe Z.");
        assert_eq!(items[2].model_answer, "Z is z.");
        assert_eq!(items[2].max_marks, 3.0);
    }

    #[test]
    fn mark_codes_totals_and_numbered_criteria() {
        let text = "Q1. Solve 3x + 7 = 22. (2 marks)\nSolution: x = 5\nMarks:\n  M1 subtracts 7\n  A1 x = 5\n\nQ2\nState a law.\n(Total: 2 marks)\nAward marks for:\n1 mark – first point\n1 mark – second point\nQuestion 3 (4 marks)\nWhat is a protocol?\nMarking criteria:\n1) a set of rules (1)\n2) for transmitting\ndata (3)";
        let items = parse(text);
        assert_eq!(items.len(), 3, "{items:#?}");
        assert_eq!(items[0].criteria[0].description, "subtracts 7");
        assert_eq!(items[0].criteria[1].marks, 1.0);
        assert_eq!(items[1].max_marks, 2.0);
        assert_eq!(items[1].criteria[1].description, "second point");
        assert_eq!(items[2].criteria[1].description, "for transmitting data");
        assert_eq!(items[2].criteria[1].marks, 3.0);
    }

    #[test]
    fn numbered_questions_and_markdown() {
        let text = "# Guide\n\n### Question 1 (4 marks)\n\nDescribe.\n\n**Model answer:** It is.\n\n**Mark scheme:**\n\n- a point — 2 marks\n- another — 2 marks\n\n---\n\n*Total: 20 marks*";
        let items = parse(text);
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].max_marks, 4.0);
        assert_eq!(items[0].criteria[0].description, "a point");
        assert_eq!(items[0].criteria[0].marks, 2.0);
        let numbered = parse("1. Explain. (10 marks)\nIndicative content: x\nAssessment criteria:\n• AO1: y (4 marks)\n2. Explore. (12 marks)\nIndicative content: z");
        let labels: Vec<_> = numbered.iter().map(|i| i.label.as_str()).collect();
        assert_eq!(labels, ["1", "2"]);
        assert_eq!(numbered[0].criteria[0].description, "AO1: y");
    }

    #[test]
    fn chunks_never_split_a_question() {
        let text = (1..=6)
            .map(|n| format!("Question {n}\n(a) Part a of {n}. [1 mark]\nAnswer: a\n(b) Part b. [1 mark]\nAnswer: b"))
            .collect::<Vec<_>>()
            .join("\n");
        let chunks = chunks(&text, 120);
        assert!(chunks.len() >= 3);
        for chunk in &chunks {
            assert!(chunk.starts_with("Question "), "{chunk}");
            assert_eq!(chunk.matches("(a)").count(), chunk.matches("(b)").count());
        }
        assert_eq!(chunks.join("\n"), text);
    }

    #[test]
    fn bare_numbers_continue_the_numbering() {
        let text = "Rates test\n30 minutes, 14 marks.\n1(a) Define rate. [2 marks]\nAnswer: change per time.\nMarking points:\n• change [1]\n• per time [1]\n2 A reaction made 48 cm3 of gas in 60 s. Find the rate. [2\nmarks]\nAnswer: 0.8 cm3/s.\n3 Suggest why powder reacts faster. [1 mark]\nAnswer: larger surface area.";
        let items = parse(text);
        let labels: Vec<_> = items.iter().map(|i| i.label.as_str()).collect();
        assert_eq!(labels, ["1(a)", "2", "3"]);
        assert_eq!(items[1].max_marks, 2.0);
        assert_eq!(
            items[1].question,
            "A reaction made 48 cm3 of gas in 60 s. Find the rate."
        );
    }

    #[test]
    fn unstructured_text_has_no_items() {
        assert!(parse("Just some notes about the lesson.\nNothing numbered here.").is_empty());
    }
}

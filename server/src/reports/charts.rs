//! Inline SVG charts for reports: the learning curve, the confusion heat-map and the
//! predicted-vs-teacher scatter. They are built from numbers only; the few labels are
//! escaped all the same, so the output is safe to embed as markup.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::data::EpochPoint;
use crate::metrics::ConfusionMatrix;

const W: f64 = 560.0;
const H: f64 = 260.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 40.0;

/// Escapes text for an SVG text node or attribute.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn open(class: &str, label: &str, w: f64, h: f64) -> String {
    format!(
        r#"<svg class="{}" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{}">"#,
        esc(class),
        esc(label)
    )
}

/// The learning curve: validation QWK (solid) and normalised MAE (dashed) per epoch, one
/// marker per epoch; kept epochs are filled.
pub fn learning_curve(epochs: &[EpochPoint]) -> String {
    let mut svg = open(
        "chart learning-curve",
        "Learning curve: validation QWK and MAE per epoch",
        W,
        H,
    );
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let last = epochs.iter().map(|e| e.epoch).max().unwrap_or(0).max(1) as f64;
    let lo = epochs
        .iter()
        .filter_map(|e| e.qwk_value)
        .fold(0.0_f64, f64::min)
        .max(-1.0);
    let x = |epoch: u32| LEFT + plot_w * epoch as f64 / last;
    let y = |v: f64| TOP + plot_h * (1.0 - (v.clamp(lo, 1.0) - lo) / (1.0 - lo));
    axes(&mut svg, plot_w, plot_h);
    // y ticks
    for i in 0..=4 {
        let v = lo + (1.0 - lo) * i as f64 / 4.0;
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#e5e7eb"/><text x="{}" y="{:.1}" font-size="10" text-anchor="end">{}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            y(v) + 3.0,
            esc(&format!("{v:.2}")),
            y = y(v),
        );
    }
    for e in epochs {
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{}" font-size="10" text-anchor="middle">{}</text>"#,
            x(e.epoch),
            H - BOTTOM + 14.0,
            e.epoch
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{:.1}" y="{}" font-size="11" text-anchor="middle">epoch</text>"#,
        LEFT + plot_w / 2.0,
        H - 6.0
    );
    let line = |values: Vec<(u32, f64)>, stroke: &str, dash: &str| {
        let points: Vec<String> = values
            .iter()
            .map(|(e, v)| format!("{:.1},{:.1}", x(*e), y(*v)))
            .collect();
        format!(
            r#"<polyline fill="none" stroke="{stroke}" stroke-width="2" {dash} points="{}"/>"#,
            points.join(" ")
        )
    };
    let qwk: Vec<(u32, f64)> = epochs
        .iter()
        .filter_map(|e| e.qwk_value.map(|v| (e.epoch, v)))
        .collect();
    let mae: Vec<(u32, f64)> = epochs
        .iter()
        .filter_map(|e| e.mae_value.map(|v| (e.epoch, v)))
        .collect();
    svg.push_str(&line(mae, "#d97706", r#"stroke-dasharray="5 4""#));
    svg.push_str(&line(qwk, "#2563eb", ""));
    for e in epochs {
        if let Some(v) = e.mae_value {
            let _ = write!(
                svg,
                r##"<rect class="mae-point" x="{:.1}" y="{:.1}" width="6" height="6" fill="#d97706"/>"##,
                x(e.epoch) - 3.0,
                y(v) - 3.0
            );
        }
        // One QWK marker per epoch (an undefined QWK sits on the axis, hollow).
        let (cy, defined) = match e.qwk_value {
            Some(v) => (y(v), true),
            None => (y(lo), false),
        };
        let fill = if e.kept && defined {
            "#2563eb"
        } else {
            "#ffffff"
        };
        let _ = write!(
            svg,
            r##"<circle class="point" data-epoch="{}" cx="{:.1}" cy="{cy:.1}" r="5" fill="{fill}" stroke="#2563eb" stroke-width="2"><title>epoch {}: QWK {}, MAE {}{}</title></circle>"##,
            e.epoch,
            x(e.epoch),
            e.epoch,
            esc(&e.qwk),
            esc(&e.mae),
            if e.kept { ", kept" } else { ", rejected" }
        );
    }
    let _ = write!(
        svg,
        r##"<g font-size="11"><line x1="{a}" x2="{b}" y1="{t}" y2="{t}" stroke="#2563eb" stroke-width="2"/><text x="{c}" y="{ty}">QWK</text><line x1="{d}" x2="{e}" y1="{t}" y2="{t}" stroke="#d97706" stroke-width="2" stroke-dasharray="5 4"/><text x="{f}" y="{ty}">MAE (normalised)</text></g>"##,
        a = LEFT + 8.0,
        b = LEFT + 28.0,
        c = LEFT + 32.0,
        d = LEFT + 70.0,
        e = LEFT + 90.0,
        f = LEFT + 94.0,
        t = TOP + 6.0,
        ty = TOP + 10.0,
    );
    svg.push_str("</svg>");
    svg
}

fn axes(svg: &mut String, plot_w: f64, plot_h: f64) {
    let _ = write!(
        svg,
        r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{b}" stroke="#6b7280"/><line x1="{LEFT}" y1="{b}" x2="{r}" y2="{b}" stroke="#6b7280"/>"##,
        b = TOP + plot_h,
        r = LEFT + plot_w
    );
}

fn bin_label(v: f64) -> String {
    match (v * 100.0).round() as i64 {
        0 => "0".into(),
        25 => "¼".into(),
        50 => "½".into(),
        75 => "¾".into(),
        100 => "1".into(),
        _ => format!("{v:.2}"),
    }
}

/// The confusion heat-map: teacher bins down, grader bins across, darker = more answers.
pub fn confusion(matrix: &ConfusionMatrix) -> String {
    let n = matrix.labels.len().max(1);
    let cell = 44.0;
    let left = 70.0;
    let top = 40.0;
    let w = left + cell * n as f64 + 16.0;
    let h = top + cell * n as f64 + 16.0;
    let mut svg = open(
        "chart confusion",
        "Confusion heat-map of teacher and grader marks",
        w,
        h,
    );
    let max = matrix
        .counts
        .iter()
        .flatten()
        .copied()
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let _ = write!(
        svg,
        r#"<text x="{:.1}" y="12" font-size="11" text-anchor="middle">grader (share of maximum)</text><text x="12" y="{:.1}" font-size="11" text-anchor="middle" transform="rotate(-90 12 {:.1})">teacher</text>"#,
        left + cell * n as f64 / 2.0,
        top + cell * n as f64 / 2.0,
        top + cell * n as f64 / 2.0
    );
    for (i, label) in matrix.labels.iter().enumerate() {
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">{}</text><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"#,
            left + cell * (i as f64 + 0.5),
            top - 8.0,
            esc(&bin_label(*label)),
            left - 8.0,
            top + cell * (i as f64 + 0.5) + 4.0,
            esc(&bin_label(*label)),
        );
    }
    for (t, row) in matrix.counts.iter().enumerate() {
        for (p, &count) in row.iter().enumerate() {
            let share = count as f64 / max;
            // White to blue.
            let r = (255.0 - share * (255.0 - 37.0)).round();
            let g = (255.0 - share * (255.0 - 99.0)).round();
            let b = (255.0 - share * (255.0 - 235.0)).round();
            let text = if share > 0.5 { "#ffffff" } else { "#111827" };
            let border = if t == p { "#111827" } else { "#d1d5db" };
            let _ = write!(
                svg,
                r#"<rect class="cell" x="{:.1}" y="{:.1}" width="{cell}" height="{cell}" fill="rgb({r},{g},{b})" stroke="{border}"/><text x="{:.1}" y="{:.1}" font-size="12" text-anchor="middle" fill="{text}">{count}</text>"#,
                left + cell * p as f64,
                top + cell * t as f64,
                left + cell * (p as f64 + 0.5),
                top + cell * (t as f64 + 0.5) + 4.0,
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// Predicted against teacher marks (shares of the maximum); a marker's area grows with
/// the number of answers at that spot; the diagonal is perfect agreement.
pub fn scatter(points: &[(f64, f64)]) -> String {
    let size = 300.0;
    let (left, top, pad) = (48.0, 16.0, 40.0);
    let plot = size - left - 16.0;
    let w = size;
    let h = top + plot + pad;
    let mut svg = open("chart scatter", "Grader marks against teacher marks", w, h);
    // Markers at 0 and 1 stay inside the frame.
    let inset = 12.0;
    let x = |v: f64| left + inset + (plot - 2.0 * inset) * v.clamp(0.0, 1.0);
    let y = |v: f64| top + inset + (plot - 2.0 * inset) * (1.0 - v.clamp(0.0, 1.0));
    let _ = write!(
        svg,
        r##"<rect x="{left}" y="{top}" width="{plot}" height="{plot}" fill="#f9fafb" stroke="#6b7280"/><line x1="{:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#9ca3af" stroke-dasharray="4 4"/>"##,
        x(0.0),
        y(0.0),
        x(1.0),
        y(1.0)
    );
    for v in [0.0, 0.5, 1.0] {
        let _ = write!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" font-size="10" text-anchor="middle">{}</text><text x="{:.1}" y="{:.1}" font-size="10" text-anchor="end">{}</text>"#,
            x(v),
            top + plot + 14.0,
            esc(&bin_label(v)),
            left - 6.0,
            y(v) + 3.0,
            esc(&bin_label(v)),
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="middle">teacher</text><text x="12" y="{:.1}" font-size="11" text-anchor="middle" transform="rotate(-90 12 {:.1})">grader</text>"#,
        left + plot / 2.0,
        top + plot + 32.0,
        top + plot / 2.0,
        top + plot / 2.0,
    );
    let mut counts: BTreeMap<(i64, i64), usize> = BTreeMap::new();
    for (t, p) in points {
        *counts
            .entry(((t * 1000.0).round() as i64, (p * 1000.0).round() as i64))
            .or_default() += 1;
    }
    let max = counts.values().copied().max().unwrap_or(1) as f64;
    for ((t, p), count) in counts {
        let (t, p) = (t as f64 / 1000.0, p as f64 / 1000.0);
        let r = 3.0 + 9.0 * (count as f64 / max).sqrt();
        let _ = write!(
            svg,
            r##"<circle class="dot" cx="{:.1}" cy="{:.1}" r="{r:.1}" fill="#2563eb" fill-opacity="0.45" stroke="#1d4ed8"><title>{count} answers</title></circle>"##,
            x(t),
            y(p),
        );
    }
    svg.push_str("</svg>");
    svg
}

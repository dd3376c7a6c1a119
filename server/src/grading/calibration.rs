//! Score calibration: a monotone map from a grader's raw normalised score to the teacher's, fitted on train predictions.
//!
//! A small language model tends to collapse onto a few values (all half marks, or all full
//! marks: `../shared/notes/FIDELITY.md`); a calibration map fitted on (raw prediction, teacher
//! score) pairs from the train split moves those values to where the teacher's marks are.
//! Four fits are offered: a *shift* (one parameter: it corrects a grader that is
//! systematically harsh or lenient and keeps its ranking, so it is safe on a few dozen
//! answers), a *shift per item* (the same, plus each question's own mean gap, shrunk
//! towards the guide's by how few answers it rests on: a model can be harsh on one question
//! and fair on the next, and a shift that cannot tell them apart moves both), least-squares
//! *linear* (two
//! parameters) and *isotonic* (pool-adjacent-violators: monotone, piecewise linear between
//! knots, which needs more points than a dozen not to chase noise). All work on normalised
//! scores (`marks / max_marks`) so items with different maxima share one map, and all are
//! plain serde data stored in a grader version's config.
//!
//! Marks are rounded to the item's mark step after calibration, so a fit that ignores the
//! rounding can change nothing: a grader that gives ¾ to full answers, corrected by the mean
//! gap of +0.10, still rounds to ¾ on a quarter-mark grid. When the sample's points carry
//! their mark step ([`Calibration::fit_on_grid`]), the shift is the offset that minimises the
//! mean absolute error of the *rounded* marks on the sample (the middle of the best range,
//! since that error is flat between rounding boundaries), which is what the teacher sees.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Which calibration a training job fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CalibrationMethod {
    /// No calibration: the raw score is the score.
    None,
    /// The raw score plus the mean gap to the teacher's, clipped to 0..1.
    #[default]
    Shift,
    /// A shift per item, shrunk towards the guide-wide shift.
    ItemShift,
    /// Least-squares line, clipped to 0..1.
    Linear,
    /// Monotone step-and-slope map (pool-adjacent-violators).
    Isotonic,
}

impl CalibrationMethod {
    /// The name used in configs and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Shift => "shift",
            Self::ItemShift => "item_shift",
            Self::Linear => "linear",
            Self::Isotonic => "isotonic",
        }
    }
}

/// One calibration point: a grader's raw normalised score, the teacher's, the item's mark
/// step as a share of its maximum (0: marks are not rounded) and the item.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GridPoint {
    /// `guide_items.id` of the answer's item.
    pub item: i32,
    /// The grader's normalised score.
    pub raw: f64,
    /// The teacher's normalised score.
    pub teacher: f64,
    /// `mark_step / max_marks`, or 0.
    pub step: f64,
}

impl GridPoint {
    /// `score` rounded to this point's grid, clipped to 0..1 (the highest multiple of the
    /// step at or below 1 when the maximum is not a multiple of it).
    fn rounded(&self, score: f64) -> f64 {
        let score = score.clamp(0.0, 1.0);
        if self.step <= 0.0 {
            return score;
        }
        let top = ((1.0 / self.step) + 1e-9).floor() * self.step;
        ((score / self.step).round() * self.step).clamp(0.0, top)
    }
}

/// A fitted calibration map on normalised scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Calibration {
    /// The raw score unchanged.
    #[default]
    Identity,
    /// `raw + offset`, clipped to 0..1.
    Shift {
        /// Added to the raw score: the mean gap `teacher − raw`, or with rounding the offset
        /// that minimises the error after rounding.
        offset: f64,
        /// Pairs it was fitted on.
        n: usize,
    },
    /// `raw + items[item]`, or `raw + offset` for an item without its own, clipped to 0..1.
    ItemShift {
        /// The guide-wide shift, fitted as [`Calibration::Shift`].
        offset: f64,
        /// Each item's shift (`guide_items.id` → offset): the guide-wide one plus the item's
        /// own mean gap beyond the guide's, shrunk by `n_item / (n_item + ITEM_PRIOR)`.
        #[serde(deserialize_with = "crate::grading::llm::item_keyed::deserialize")]
        items: BTreeMap<i32, f64>,
        /// Pairs it was fitted on.
        n: usize,
    },
    /// `intercept + slope × raw`, clipped to 0..1.
    Linear {
        /// Slope.
        slope: f64,
        /// Intercept.
        intercept: f64,
        /// Pairs it was fitted on.
        n: usize,
    },
    /// Piecewise-linear through the knots `(x[i], y[i])` (x ascending, y non-decreasing),
    /// constant beyond the first and last knot.
    Isotonic {
        /// Raw scores of the knots.
        x: Vec<f64>,
        /// Calibrated scores of the knots.
        y: Vec<f64>,
        /// Pairs it was fitted on.
        n: usize,
    },
}

impl Calibration {
    /// Fits `method` on `(raw, teacher)` pairs of normalised scores, with no rounding
    /// afterwards. Returns `Identity` when there is too little data for the method (fewer
    /// than 2 pairs, or constant raw scores for a line).
    pub fn fit(method: CalibrationMethod, pairs: &[(f64, f64)]) -> Self {
        let points: Vec<GridPoint> = pairs
            .iter()
            .map(|&(raw, teacher)| GridPoint {
                item: 0,
                raw,
                teacher,
                step: 0.0,
            })
            .collect();
        Self::fit_on_grid(method, &points)
    }

    /// Fits `method` on points whose calibrated score is rounded to a mark step afterwards
    /// (see the module docs: the shift minimises the error after rounding).
    pub fn fit_on_grid(method: CalibrationMethod, points: &[GridPoint]) -> Self {
        let points: Vec<GridPoint> = points
            .iter()
            .copied()
            .filter(|p| p.raw.is_finite() && p.teacher.is_finite() && p.step.is_finite())
            .collect();
        let pairs: Vec<(f64, f64)> = points.iter().map(|p| (p.raw, p.teacher)).collect();
        match method {
            CalibrationMethod::None => Self::Identity,
            CalibrationMethod::Shift => fit_shift(&points).unwrap_or_default(),
            CalibrationMethod::ItemShift => fit_item_shift(&points).unwrap_or_default(),
            CalibrationMethod::Linear => fit_linear(&pairs).unwrap_or_default(),
            CalibrationMethod::Isotonic => fit_isotonic(&pairs).unwrap_or_default(),
        }
    }

    /// The calibrated normalised score of an answer to `item` (`guide_items.id`), in 0..1.
    pub fn apply_to(&self, item: i32, raw: f64) -> f64 {
        match self {
            Self::ItemShift { offset, items, .. } => {
                let raw = if raw.is_finite() { raw } else { 0.0 };
                (raw + items.get(&item).unwrap_or(offset)).clamp(0.0, 1.0)
            }
            _ => self.apply(raw),
        }
    }

    /// The calibrated normalised score, in 0..1, as for an item the map has no offset of
    /// its own for.
    pub fn apply(&self, raw: f64) -> f64 {
        let raw = if raw.is_finite() { raw } else { 0.0 };
        let out = match self {
            Self::Identity => raw,
            Self::Shift { offset, .. } | Self::ItemShift { offset, .. } => raw + offset,
            Self::Linear {
                slope, intercept, ..
            } => intercept + slope * raw,
            Self::Isotonic { x, y, .. } => interpolate(x, y, raw),
        };
        out.clamp(0.0, 1.0)
    }

    /// The method this map was fitted with.
    pub fn method(&self) -> CalibrationMethod {
        match self {
            Self::Identity => CalibrationMethod::None,
            Self::Shift { .. } => CalibrationMethod::Shift,
            Self::ItemShift { .. } => CalibrationMethod::ItemShift,
            Self::Linear { .. } => CalibrationMethod::Linear,
            Self::Isotonic { .. } => CalibrationMethod::Isotonic,
        }
    }

    /// A one-line description for events and diffs.
    pub fn describe(&self) -> String {
        match self {
            Self::Identity => "no calibration".to_owned(),
            Self::Shift { offset, n } => format!("shift {offset:+.3} (fitted on {n})"),
            Self::ItemShift { offset, items, n } => {
                let low = items.values().copied().fold(f64::INFINITY, f64::min);
                let high = items.values().copied().fold(f64::NEG_INFINITY, f64::max);
                if items.is_empty() {
                    format!("shift {offset:+.3} per item (fitted on {n})")
                } else {
                    format!(
                        "shift {offset:+.3}, per item {low:+.3} to {high:+.3} ({} items, fitted on {n})",
                        items.len()
                    )
                }
            }
            Self::Linear {
                slope,
                intercept,
                n,
            } => format!("linear {intercept:+.3} {slope:+.3}·raw (fitted on {n})"),
            Self::Isotonic { x, n, .. } => {
                format!("isotonic with {} knots (fitted on {n})", x.len())
            }
        }
    }
}

/// Offsets tried by the shift fit: every hundredth from −1 to +1.
const SHIFT_GRID: i32 = 100;

fn fit_shift(points: &[GridPoint]) -> Option<Calibration> {
    let n = points.len();
    if n < 2 {
        return None;
    }
    let mean = points.iter().map(|p| p.teacher - p.raw).sum::<f64>() / n as f64;
    if points.iter().all(|p| p.step <= 0.0) {
        return Some(Calibration::Shift { offset: mean, n });
    }
    let error = |offset: f64| -> f64 {
        points
            .iter()
            .map(|p| (p.rounded(p.raw + offset) - p.teacher).abs())
            .sum::<f64>()
    };
    let offsets: Vec<f64> = (-SHIFT_GRID..=SHIFT_GRID)
        .map(|i| f64::from(i) / f64::from(SHIFT_GRID))
        .collect();
    let errors: Vec<f64> = offsets.iter().map(|&o| error(o)).collect();
    let best = errors.iter().copied().fold(f64::INFINITY, f64::min);
    // The best offsets form one or more ranges; take the middle of the range nearest to no
    // shift, so the map sits as far from a rounding boundary as the sample allows.
    let tied: Vec<usize> = (0..offsets.len())
        .filter(|&i| errors[i] <= best + 1e-9)
        .collect();
    let ranges = tied.chunk_by(|a, b| b - a == 1);
    let middle = |range: &[usize]| offsets[range[range.len() / 2]];
    let offset = ranges
        .map(|range| {
            let lo = offsets[range[0]];
            let hi = offsets[range[range.len() - 1]];
            let distance = if lo <= 0.0 && hi >= 0.0 {
                0.0
            } else {
                lo.abs().min(hi.abs())
            };
            (distance, middle(range))
        })
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map_or(mean, |(_, offset)| offset);
    Some(Calibration::Shift { offset, n })
}

/// Answers an item's own mean gap is weighed against: with `ITEM_PRIOR` answers it counts
/// half, with few it barely moves the guide-wide shift.
pub const ITEM_PRIOR: f64 = 4.0;

fn fit_item_shift(points: &[GridPoint]) -> Option<Calibration> {
    let Some(Calibration::Shift { offset, n }) = fit_shift(points) else {
        return None;
    };
    let gap = |p: &GridPoint| p.teacher - p.raw;
    let mean_gap = points.iter().map(gap).sum::<f64>() / n as f64;
    let mut by_item: BTreeMap<i32, (f64, f64)> = BTreeMap::new();
    for p in points {
        let entry = by_item.entry(p.item).or_default();
        entry.0 += gap(p);
        entry.1 += 1.0;
    }
    let items = by_item
        .into_iter()
        .map(|(item, (sum, count))| {
            let own = sum / count - mean_gap;
            (item, offset + own * count / (count + ITEM_PRIOR))
        })
        .collect();
    Some(Calibration::ItemShift { offset, items, n })
}

fn fit_linear(pairs: &[(f64, f64)]) -> Option<Calibration> {
    let n = pairs.len();
    if n < 2 {
        return None;
    }
    let count = n as f64;
    let mx = pairs.iter().map(|p| p.0).sum::<f64>() / count;
    let my = pairs.iter().map(|p| p.1).sum::<f64>() / count;
    let sxx: f64 = pairs.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = pairs.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx < 1e-12 {
        // Constant raw scores: the best line is the mean teacher score.
        return Some(Calibration::Linear {
            slope: 0.0,
            intercept: my,
            n,
        });
    }
    let slope = sxy / sxx;
    Some(Calibration::Linear {
        slope,
        intercept: my - slope * mx,
        n,
    })
}

/// Pool-adjacent-violators on pairs sorted by raw score; ties in the raw score are pooled
/// first, so every distinct raw value maps to one calibrated value.
fn fit_isotonic(pairs: &[(f64, f64)]) -> Option<Calibration> {
    let n = pairs.len();
    if n < 2 {
        return None;
    }
    let mut sorted = pairs.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    // Blocks: (sum x, sum y, weight).
    let mut blocks: Vec<(f64, f64, f64)> = Vec::new();
    for (x, y) in sorted {
        match blocks.last_mut() {
            Some(last) if (last.0 / last.2 - x).abs() < 1e-12 => {
                last.0 += x;
                last.1 += y;
                last.2 += 1.0;
            }
            _ => blocks.push((x, y, 1.0)),
        }
        while blocks.len() >= 2 {
            let len = blocks.len();
            let (a, b) = (blocks[len - 2], blocks[len - 1]);
            if a.1 / a.2 <= b.1 / b.2 {
                break;
            }
            blocks.truncate(len - 2);
            blocks.push((a.0 + b.0, a.1 + b.1, a.2 + b.2));
        }
    }
    let x = blocks.iter().map(|b| b.0 / b.2).collect();
    let y = blocks.iter().map(|b| b.1 / b.2).collect();
    Some(Calibration::Isotonic { x, y, n })
}

fn interpolate(x: &[f64], y: &[f64], raw: f64) -> f64 {
    let (Some(&first), Some(&last)) = (x.first(), x.last()) else {
        return raw;
    };
    if x.len() != y.len() {
        return raw;
    }
    if raw <= first {
        return y[0];
    }
    if raw >= last {
        return y[y.len() - 1];
    }
    let upper = x.partition_point(|&k| k < raw);
    let lower = upper.saturating_sub(1);
    let (x0, x1, y0, y1) = (x[lower], x[upper], y[lower], y[upper]);
    if (x1 - x0).abs() < 1e-12 {
        return y1;
    }
    y0 + (y1 - y0) * (raw - x0) / (x1 - x0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isotonic_maps_collapsed_scores_to_the_teachers_means() {
        // A grader that gives half marks to everything below full: the teacher's marks for
        // its "0.5" answers average 0.25, for its "1.0" answers 0.9.
        let pairs = [(0.5, 0.0), (0.5, 0.5), (0.5, 0.25), (1.0, 1.0), (1.0, 0.8)];
        let cal = Calibration::fit(CalibrationMethod::Isotonic, &pairs);
        assert!((cal.apply(0.5) - 0.25).abs() < 1e-9, "{cal:?}");
        assert!((cal.apply(1.0) - 0.9).abs() < 1e-9);
        assert!(
            (cal.apply(0.75) - 0.575).abs() < 1e-9,
            "interpolated between knots"
        );
        assert!(
            (cal.apply(0.0) - 0.25).abs() < 1e-9,
            "constant below the first knot"
        );
    }

    #[test]
    fn isotonic_pools_violators_into_a_monotone_map() {
        let pairs = [(0.0, 0.6), (0.25, 0.2), (0.5, 0.4), (1.0, 1.0)];
        let cal = Calibration::fit(CalibrationMethod::Isotonic, &pairs);
        let Calibration::Isotonic { y, .. } = &cal else {
            panic!("isotonic expected, got {cal:?}");
        };
        assert!(y.windows(2).all(|w| w[0] <= w[1]), "{y:?}");
        assert!(
            (cal.apply(0.0) - 0.4).abs() < 1e-9,
            "first three pooled: {cal:?}"
        );
    }

    #[test]
    fn shift_moves_a_harsh_grader_up_and_keeps_its_order() {
        // Full answers marked ¾ and ½, a wrong one marked 0: the teacher is 0.25 more
        // generous on average.
        let pairs = [(0.75, 1.0), (0.5, 1.0), (0.75, 1.0), (0.0, 0.0)];
        let cal = Calibration::fit(CalibrationMethod::Shift, &pairs);
        assert_eq!(cal.method(), CalibrationMethod::Shift);
        assert!((cal.apply(0.75) - 1.0).abs() < 1e-9, "{cal:?}");
        assert!((cal.apply(0.5) - 0.75).abs() < 1e-9);
        assert_eq!(cal.apply(1.0), 1.0, "clipped at full marks");
        assert!(cal.apply(0.2) < cal.apply(0.3), "order kept");
        assert_eq!(cal.describe(), "shift +0.250 (fitted on 4)");
    }

    #[test]
    fn a_shift_on_a_mark_grid_moves_past_the_rounding_boundary() {
        // Four full answers marked ¾, one ¾ answer marked ¾, a blank marked 0, on a quarter
        // grid. The mean gap (+0.167) would still round ¾ + 0.167 down to ¾; the fit on the
        // grid picks the middle of the offsets that round those answers up without lifting
        // the blank to ½.
        let point = |raw, teacher| GridPoint {
            item: 0,
            raw,
            teacher,
            step: 0.25,
        };
        let mut points = vec![point(0.75, 1.0); 4];
        points.extend([point(0.75, 0.75), point(0.0, 0.0)]);
        let cal = Calibration::fit_on_grid(CalibrationMethod::Shift, &points);
        let Calibration::Shift { offset, n } = cal else {
            panic!("shift expected, got {cal:?}");
        };
        assert_eq!(n, 6);
        assert!((offset - 0.25).abs() < 1e-9, "{offset}");
        assert_eq!(points[0].rounded(0.75 + offset), 1.0);
        assert_eq!(points[5].rounded(offset), 0.25);
        // Without the grid it is the mean gap.
        let pairs: Vec<(f64, f64)> = points.iter().map(|p| (p.raw, p.teacher)).collect();
        let plain = Calibration::fit(CalibrationMethod::Shift, &pairs);
        assert_eq!(plain.describe(), "shift +0.167 (fitted on 6)");
    }

    #[test]
    fn a_grid_shift_stays_at_zero_when_no_offset_helps() {
        // A grader that agrees with the teacher on a half-mark grid of a 2-mark item.
        let points: Vec<GridPoint> = [0.0, 0.25, 0.5, 0.75, 1.0]
            .into_iter()
            .map(|v| GridPoint {
                item: 0,
                raw: v,
                teacher: v,
                step: 0.25,
            })
            .collect();
        let cal = Calibration::fit_on_grid(CalibrationMethod::Shift, &points);
        assert_eq!(
            cal,
            Calibration::Shift { offset: 0.0, n: 5 },
            "the middle of the zero-error range around no shift"
        );
    }

    #[test]
    fn a_shift_per_item_corrects_each_items_own_bias_in_proportion_to_its_answers() {
        // On item 1 the grader is fair; on item 2 it gives ½ to answers the teacher gave
        // full marks; item 3 has one answer. No rounding.
        let point = |item, raw, teacher| GridPoint {
            item,
            raw,
            teacher,
            step: 0.0,
        };
        let mut points = vec![point(1, 0.75, 0.75); 4];
        points.extend(vec![point(2, 0.5, 1.0); 4]);
        points.push(point(3, 0.5, 0.5));
        let cal = Calibration::fit_on_grid(CalibrationMethod::ItemShift, &points);
        let Calibration::ItemShift { offset, items, n } = &cal else {
            panic!("item shift expected, got {cal:?}");
        };
        assert_eq!(*n, 9);
        let mean_gap = 2.0 / 9.0;
        assert!((offset - mean_gap).abs() < 1e-9, "guide-wide: {offset}");
        // Item 2's own gap (0.5) exceeds the guide's by 0.278; 4 answers count half of it.
        let item2 = mean_gap + (0.5 - mean_gap) * 0.5;
        assert!((items[&2] - item2).abs() < 1e-9, "{items:?}");
        assert!((items[&1] - mean_gap * 0.5).abs() < 1e-9, "{items:?}");
        assert!(
            (items[&3] - mean_gap * 0.8).abs() < 1e-9,
            "one answer moves it a fifth"
        );
        // Applied per item; an item it never saw gets the guide-wide shift.
        assert!((cal.apply_to(2, 0.5) - (0.5 + item2)).abs() < 1e-9);
        assert!(
            cal.apply_to(2, 0.5) > cal.apply_to(1, 0.5),
            "the harsh item moves most"
        );
        assert!((cal.apply_to(9, 0.5) - (0.5 + mean_gap)).abs() < 1e-9);
        assert_eq!(cal.method(), CalibrationMethod::ItemShift);
        assert!(
            cal.describe().contains("3 items, fitted on 9"),
            "{}",
            cal.describe()
        );
        // The item-keyed map survives the round trip through the tagged JSON.
        let json = serde_json::to_value(&cal).unwrap_or_default();
        assert_eq!(json["kind"], "item_shift");
        let back: Calibration = serde_json::from_value(json).unwrap_or_default();
        assert_eq!(back, cal);
    }

    #[test]
    fn linear_fits_a_line_and_clips() {
        let pairs = [(0.0, 0.2), (0.5, 0.45), (1.0, 0.7)];
        let cal = Calibration::fit(CalibrationMethod::Linear, &pairs);
        assert!((cal.apply(0.5) - 0.45).abs() < 1e-9);
        let steep = Calibration::Linear {
            slope: 3.0,
            intercept: -1.0,
            n: 2,
        };
        assert_eq!(steep.apply(1.0), 1.0);
        assert_eq!(steep.apply(0.0), 0.0);
        let constant = Calibration::fit(CalibrationMethod::Linear, &[(0.5, 0.2), (0.5, 0.4)]);
        assert!((constant.apply(0.9) - 0.3).abs() < 1e-9);
    }

    #[test]
    fn too_little_data_means_identity_and_serde_round_trips() {
        assert_eq!(
            Calibration::fit(CalibrationMethod::Isotonic, &[(0.5, 1.0)]),
            Calibration::Identity
        );
        let cal = Calibration::fit(CalibrationMethod::Isotonic, &[(0.2, 0.1), (0.9, 0.8)]);
        let json = serde_json::to_value(&cal).unwrap_or_default();
        assert_eq!(json["kind"], "isotonic");
        let back: Calibration = serde_json::from_value(json).unwrap_or_default();
        assert_eq!(back, cal);
    }
}

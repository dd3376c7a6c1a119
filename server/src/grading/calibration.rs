//! Score calibration: a monotone map from a grader's raw normalised score to the teacher's, fitted on train predictions.
//!
//! A small language model tends to collapse onto a few values (all half marks, or all full
//! marks: `../shared/notes/FIDELITY.md`); a calibration map fitted on (raw prediction, teacher
//! score) pairs from the train split moves those values to where the teacher's marks are.
//! Three fits are offered: a *shift* (one parameter, the mean gap between the teacher's
//! marks and the grader's: it corrects a grader that is systematically harsh or lenient and
//! keeps its ranking, so it is safe on a dozen answers), least-squares *linear* (two
//! parameters) and *isotonic* (pool-adjacent-violators: monotone, piecewise linear between
//! knots, which needs more points than a dozen not to chase noise). All work on normalised
//! scores (`marks / max_marks`) so items with different maxima share one map, and all are
//! plain serde data stored in a grader version's config.

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
            Self::Linear => "linear",
            Self::Isotonic => "isotonic",
        }
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
        /// Mean of `teacher − raw` over the pairs.
        offset: f64,
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
    /// Fits `method` on `(raw, teacher)` pairs of normalised scores. Returns `Identity` when
    /// there is too little data for the method (fewer than 2 pairs, or constant raw scores
    /// for a line).
    pub fn fit(method: CalibrationMethod, pairs: &[(f64, f64)]) -> Self {
        let pairs: Vec<(f64, f64)> = pairs
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect();
        match method {
            CalibrationMethod::None => Self::Identity,
            CalibrationMethod::Shift => fit_shift(&pairs).unwrap_or_default(),
            CalibrationMethod::Linear => fit_linear(&pairs).unwrap_or_default(),
            CalibrationMethod::Isotonic => fit_isotonic(&pairs).unwrap_or_default(),
        }
    }

    /// The calibrated normalised score, in 0..1.
    pub fn apply(&self, raw: f64) -> f64 {
        let raw = if raw.is_finite() { raw } else { 0.0 };
        let out = match self {
            Self::Identity => raw,
            Self::Shift { offset, .. } => raw + offset,
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
            Self::Linear { .. } => CalibrationMethod::Linear,
            Self::Isotonic { .. } => CalibrationMethod::Isotonic,
        }
    }

    /// A one-line description for events and diffs.
    pub fn describe(&self) -> String {
        match self {
            Self::Identity => "no calibration".to_owned(),
            Self::Shift { offset, n } => format!("shift {offset:+.3} (fitted on {n})"),
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

fn fit_shift(pairs: &[(f64, f64)]) -> Option<Calibration> {
    let n = pairs.len();
    if n < 2 {
        return None;
    }
    let offset = pairs.iter().map(|(x, y)| y - x).sum::<f64>() / n as f64;
    Some(Calibration::Shift { offset, n })
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

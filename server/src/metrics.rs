//! Agreement between a teacher's marks and a grader's: the numbers every test run and training epoch reports.
//!
//! Conventions (as in `../shared/notes/FIDELITY.md`, checked against scipy and scikit-learn by the
//! fixture `tests/fixtures/metrics_reference.json`):
//! - a *normalised* score is `marks / max_marks`, in 0–1; MAE, RMSE, Pearson, Spearman and bias
//!   are reported on normalised scores (so items out of 1 and out of 4 mix) and, where it makes
//!   sense, in marks too;
//! - quadratic weighted kappa on normalised scores bins them to 0.25 steps (five categories
//!   0, ¼, ½, ¾, 1); on marks it is reported only when every mark is a whole number;
//! - bias is `mean(predicted − teacher)`: positive means the grader is too generous;
//! - the confusion matrix is over the 0.25 bins, rows = teacher, columns = grader.

use serde::{Deserialize, Serialize};

/// Tolerance for comparing marks that went through floating-point arithmetic.
const EPS: f64 = 1e-9;

/// Number of 0.25-wide bins a normalised score falls into (0, ¼, ½, ¾, 1).
pub const NORMALISED_BINS: usize = 5;

/// One answer's teacher mark and grader mark, in the item's marks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScorePair {
    /// The teacher's mark.
    pub teacher: f64,
    /// The grader's mark.
    pub predicted: f64,
    /// The item's maximum mark (> 0).
    pub max_marks: f64,
}

impl ScorePair {
    /// The teacher's mark divided by the maximum.
    pub fn teacher_normalised(&self) -> f64 {
        normalise(self.teacher, self.max_marks)
    }

    /// The grader's mark divided by the maximum.
    pub fn predicted_normalised(&self) -> f64 {
        normalise(self.predicted, self.max_marks)
    }
}

fn normalise(marks: f64, max_marks: f64) -> f64 {
    if max_marks > 0.0 {
        marks / max_marks
    } else {
        0.0
    }
}

/// Counts of (teacher bin, grader bin) over the 0.25 bins of normalised scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    /// Lower edge of each bin as a normalised score: `[0.0, 0.25, 0.5, 0.75, 1.0]`.
    pub labels: Vec<f64>,
    /// `counts[teacher_bin][predicted_bin]`.
    pub counts: Vec<Vec<u64>>,
}

/// Every agreement figure for a set of answers. Figures that are undefined for the data
/// (a correlation when one side is constant, anything on an empty set) are `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgreementReport {
    /// Number of answers.
    pub n: usize,
    /// Share of answers where the grader gave exactly the teacher's mark.
    pub exact_agreement: Option<f64>,
    /// Share of answers where the grader is within one mark of the teacher.
    pub within_one_mark: Option<f64>,
    /// Mean absolute error of normalised scores (0–1 units).
    pub mae: Option<f64>,
    /// Root mean squared error of normalised scores.
    pub rmse: Option<f64>,
    /// Mean absolute error in marks.
    pub mae_marks: Option<f64>,
    /// Root mean squared error in marks.
    pub rmse_marks: Option<f64>,
    /// Pearson correlation of normalised scores.
    pub pearson: Option<f64>,
    /// Spearman rank correlation of normalised scores (ties get their average rank).
    pub spearman: Option<f64>,
    /// Quadratic weighted kappa on normalised scores binned to 0.25 steps.
    pub qwk: Option<f64>,
    /// Quadratic weighted kappa on marks, when every mark is a whole number.
    pub qwk_marks: Option<f64>,
    /// Mean of (grader − teacher) on normalised scores: > 0 means too generous.
    pub mean_bias: Option<f64>,
    /// Mean of (grader − teacher) in marks.
    pub mean_bias_marks: Option<f64>,
    /// Teacher × grader counts over the 0.25 bins.
    pub confusion: ConfusionMatrix,
}

impl AgreementReport {
    /// Computes every figure for `pairs`.
    pub fn compute(pairs: &[ScorePair]) -> Self {
        let t_marks: Vec<f64> = pairs.iter().map(|p| p.teacher).collect();
        let p_marks: Vec<f64> = pairs.iter().map(|p| p.predicted).collect();
        let t_norm: Vec<f64> = pairs.iter().map(ScorePair::teacher_normalised).collect();
        let p_norm: Vec<f64> = pairs.iter().map(ScorePair::predicted_normalised).collect();
        let t_bins = bin_quarters(&t_norm);
        let p_bins = bin_quarters(&p_norm);
        let whole = |v: &[f64]| v.iter().all(|x| (x - x.round()).abs() < EPS);
        let qwk_marks = if whole(&t_marks) && whole(&p_marks) {
            let as_int = |v: &[f64]| v.iter().map(|x| x.round() as i64).collect::<Vec<_>>();
            quadratic_weighted_kappa(&as_int(&t_marks), &as_int(&p_marks))
        } else {
            None
        };
        Self {
            n: pairs.len(),
            exact_agreement: exact_agreement(&t_marks, &p_marks),
            within_one_mark: within(&t_marks, &p_marks, 1.0),
            mae: mae(&t_norm, &p_norm),
            rmse: rmse(&t_norm, &p_norm),
            mae_marks: mae(&t_marks, &p_marks),
            rmse_marks: rmse(&t_marks, &p_marks),
            pearson: pearson(&t_norm, &p_norm),
            spearman: spearman(&t_norm, &p_norm),
            qwk: quadratic_weighted_kappa_in(&t_bins, &p_bins, 0, NORMALISED_BINS as i64 - 1),
            qwk_marks,
            mean_bias: mean_bias(&t_norm, &p_norm),
            mean_bias_marks: mean_bias(&t_marks, &p_marks),
            confusion: ConfusionMatrix {
                labels: (0..NORMALISED_BINS).map(|b| b as f64 * 0.25).collect(),
                counts: confusion_counts(&t_bins, &p_bins, 0, NORMALISED_BINS as i64 - 1),
            },
        }
    }
}

fn mean(values: impl ExactSizeIterator<Item = f64>) -> Option<f64> {
    let n = values.len();
    (n > 0).then(|| values.sum::<f64>() / n as f64)
}

/// Share of pairs with equal marks (within 1e-9). `None` when empty or the lengths differ.
pub fn exact_agreement(teacher: &[f64], predicted: &[f64]) -> Option<f64> {
    within(teacher, predicted, 0.0)
}

/// Share of pairs with `|predicted − teacher| ≤ tolerance`.
pub fn within(teacher: &[f64], predicted: &[f64], tolerance: f64) -> Option<f64> {
    if teacher.len() != predicted.len() {
        return None;
    }
    mean(
        teacher
            .iter()
            .zip(predicted)
            .map(|(t, p)| f64::from(u8::from((p - t).abs() <= tolerance + EPS))),
    )
}

/// Mean absolute error.
pub fn mae(teacher: &[f64], predicted: &[f64]) -> Option<f64> {
    if teacher.len() != predicted.len() {
        return None;
    }
    mean(teacher.iter().zip(predicted).map(|(t, p)| (p - t).abs()))
}

/// Root mean squared error.
pub fn rmse(teacher: &[f64], predicted: &[f64]) -> Option<f64> {
    if teacher.len() != predicted.len() {
        return None;
    }
    mean(teacher.iter().zip(predicted).map(|(t, p)| (p - t).powi(2))).map(f64::sqrt)
}

/// Mean of `predicted − teacher`.
pub fn mean_bias(teacher: &[f64], predicted: &[f64]) -> Option<f64> {
    if teacher.len() != predicted.len() {
        return None;
    }
    mean(teacher.iter().zip(predicted).map(|(t, p)| p - t))
}

/// Pearson correlation; `None` for fewer than two pairs or a constant side.
pub fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() != y.len() || x.len() < 2 {
        return None;
    }
    let mx = mean(x.iter().copied())?;
    let my = mean(y.iter().copied())?;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (dx, dy) = (a - mx, b - my);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    if sxx <= f64::EPSILON * x.len() as f64 || syy <= f64::EPSILON * y.len() as f64 {
        return None;
    }
    Some((sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0))
}

/// Spearman rank correlation: Pearson on ranks, ties sharing their average rank
/// (as `scipy.stats.spearmanr`).
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() != y.len() {
        return None;
    }
    pearson(&average_ranks(x), &average_ranks(y))
}

/// 1-based ranks, ties given the mean of the ranks they span.
pub fn average_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // Positions start..end hold equal values: ranks start+1 ..= end, averaged.
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        start = end;
    }
    ranks
}

/// The 0.25 bin (0..=4) of each normalised score, clamped to [0, 1] first.
pub fn bin_quarters(normalised: &[f64]) -> Vec<i64> {
    normalised
        .iter()
        .map(|x| (x.clamp(0.0, 1.0) * 4.0).round() as i64)
        .collect()
}

/// Quadratic weighted kappa over the integer categories `min..=max` of both vectors
/// (weights grow with the squared distance between category values).
pub fn quadratic_weighted_kappa(teacher: &[i64], predicted: &[i64]) -> Option<f64> {
    let lo = teacher.iter().chain(predicted).min()?;
    let hi = teacher.iter().chain(predicted).max()?;
    quadratic_weighted_kappa_in(teacher, predicted, *lo, *hi)
}

/// Quadratic weighted kappa over the fixed categories `lo..=hi`; values outside are clamped.
/// `None` when empty, the lengths differ, or the chance disagreement is zero (e.g. one category).
pub fn quadratic_weighted_kappa_in(
    teacher: &[i64],
    predicted: &[i64],
    lo: i64,
    hi: i64,
) -> Option<f64> {
    if teacher.is_empty() || teacher.len() != predicted.len() || hi <= lo {
        return None;
    }
    let k = (hi - lo + 1) as usize;
    let observed = confusion_counts(teacher, predicted, lo, hi);
    let n = teacher.len() as f64;
    let row: Vec<f64> = observed
        .iter()
        .map(|r| r.iter().sum::<u64>() as f64)
        .collect();
    let col: Vec<f64> = (0..k)
        .map(|j| observed.iter().map(|r| r[j]).sum::<u64>() as f64)
        .collect();
    let (mut num, mut den) = (0.0, 0.0);
    for i in 0..k {
        for j in 0..k {
            let w = ((i as f64) - (j as f64)).powi(2);
            num += w * observed[i][j] as f64;
            den += w * row[i] * col[j] / n;
        }
    }
    (den > 0.0).then(|| 1.0 - num / den)
}

/// `counts[t][p]` over the categories `lo..=hi` (values outside are clamped).
pub fn confusion_counts(teacher: &[i64], predicted: &[i64], lo: i64, hi: i64) -> Vec<Vec<u64>> {
    let k = (hi - lo + 1).max(0) as usize;
    let mut counts = vec![vec![0u64; k]; k];
    if k == 0 {
        return counts;
    }
    for (t, p) in teacher.iter().zip(predicted) {
        let ti = (t.clamp(&lo, &hi) - lo) as usize;
        let pi = (p.clamp(&lo, &hi) - lo) as usize;
        counts[ti][pi] += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Fixture {
        cases: Vec<Case>,
    }

    #[derive(Deserialize)]
    struct Case {
        name: String,
        teacher: Vec<f64>,
        predicted: Vec<f64>,
        max_marks: Vec<f64>,
        expected: Expected,
    }

    #[derive(Deserialize)]
    struct Expected {
        exact_agreement: f64,
        within_one_mark: f64,
        mae: f64,
        rmse: f64,
        mae_marks: f64,
        rmse_marks: f64,
        pearson: f64,
        spearman: f64,
        qwk: f64,
        qwk_marks: Option<f64>,
        mean_bias: f64,
        mean_bias_marks: f64,
        confusion: Vec<Vec<u64>>,
    }

    fn close(name: &str, what: &str, got: Option<f64>, want: f64) {
        let got = got.unwrap_or_else(|| panic!("{name}: {what} is undefined, scipy says {want}"));
        assert!(
            (got - want).abs() < 1e-9,
            "{name}: {what} = {got}, scipy/scikit-learn say {want}"
        );
    }

    #[test]
    fn every_metric_matches_scipy_and_scikit_learn() {
        let fixture: Fixture =
            serde_json::from_str(include_str!("../tests/fixtures/metrics_reference.json"))
                .expect("fixture parses");
        assert_eq!(fixture.cases.len(), 3);
        for case in &fixture.cases {
            let pairs: Vec<ScorePair> = (0..case.teacher.len())
                .map(|i| ScorePair {
                    teacher: case.teacher[i],
                    predicted: case.predicted[i],
                    max_marks: case.max_marks[i],
                })
                .collect();
            let r = AgreementReport::compute(&pairs);
            let e = &case.expected;
            let name = case.name.as_str();
            assert_eq!(r.n, pairs.len());
            close(name, "exact", r.exact_agreement, e.exact_agreement);
            close(name, "within one", r.within_one_mark, e.within_one_mark);
            close(name, "mae", r.mae, e.mae);
            close(name, "rmse", r.rmse, e.rmse);
            close(name, "mae marks", r.mae_marks, e.mae_marks);
            close(name, "rmse marks", r.rmse_marks, e.rmse_marks);
            close(name, "pearson", r.pearson, e.pearson);
            close(name, "spearman", r.spearman, e.spearman);
            close(name, "qwk", r.qwk, e.qwk);
            close(name, "bias", r.mean_bias, e.mean_bias);
            close(name, "bias marks", r.mean_bias_marks, e.mean_bias_marks);
            match e.qwk_marks {
                Some(want) => close(name, "qwk marks", r.qwk_marks, want),
                None => assert_eq!(r.qwk_marks, None, "{name}: marks are not whole"),
            }
            assert_eq!(r.confusion.counts, e.confusion, "{name}: confusion matrix");
        }
    }

    #[test]
    fn undefined_figures_are_none_not_nan() {
        let constant = [ScorePair {
            teacher: 1.0,
            predicted: 1.0,
            max_marks: 1.0,
        }; 4];
        let r = AgreementReport::compute(&constant);
        assert_eq!(r.pearson, None);
        assert_eq!(r.spearman, None);
        assert_eq!(r.qwk_marks, None, "one category: kappa is undefined");
        assert_eq!(r.exact_agreement, Some(1.0));
        let empty = AgreementReport::compute(&[]);
        assert_eq!(empty.mae, None);
        assert_eq!(empty.qwk, None);
        assert_eq!(empty.confusion.counts.len(), NORMALISED_BINS);
    }

    #[test]
    fn ties_share_their_average_rank() {
        assert_eq!(
            average_ranks(&[3.0, 1.0, 3.0, 2.0]),
            vec![3.5, 1.0, 3.5, 2.0]
        );
    }
}

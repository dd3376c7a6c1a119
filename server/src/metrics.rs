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

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
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

/// Standard error of `QWK(b) − QWK(a)` on the same answers, from `resamples` paired
/// bootstrap resamples (answers drawn with replacement, both graders scored on each draw).
///
/// All three slices are 0.25 bins of normalised scores (see [`bin_quarters`]). It tells a
/// change in agreement from the noise of a small sample: on 24 answers a QWK difference of
/// 0.03 is well within it. `None` with fewer than two answers, lengths that differ, or fewer
/// than two resamples where both kappas are defined. Seeded, so the same inputs give the
/// same figure.
pub fn paired_qwk_noise(
    teacher: &[i64],
    a: &[i64],
    b: &[i64],
    resamples: usize,
    seed: u64,
) -> Option<f64> {
    let n = teacher.len();
    if n < 2 || a.len() != n || b.len() != n {
        return None;
    }
    let hi = NORMALISED_BINS as i64 - 1;
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut t, mut x, mut y) = (vec![0; n], vec![0; n], vec![0; n]);
    let mut differences = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        for k in 0..n {
            let i = rng.gen_range(0..n);
            (t[k], x[k], y[k]) = (teacher[i], a[i], b[i]);
        }
        if let (Some(qa), Some(qb)) = (
            quadratic_weighted_kappa_in(&t, &x, 0, hi),
            quadratic_weighted_kappa_in(&t, &y, 0, hi),
        ) {
            differences.push(qb - qa);
        }
    }
    if differences.len() < 2 {
        return None;
    }
    let m = differences.len() as f64;
    let mean = differences.iter().sum::<f64>() / m;
    let variance = differences.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (m - 1.0);
    Some(variance.sqrt())
}

/// Standard error of `MAE(b) − MAE(a)` on the same answers: the standard deviation of the
/// per-answer differences `|b − t| − |a − t|` over √n. `None` with fewer than two answers
/// or lengths that differ.
pub fn paired_mae_noise(teacher: &[f64], a: &[f64], b: &[f64]) -> Option<f64> {
    let n = teacher.len();
    if n < 2 || a.len() != n || b.len() != n {
        return None;
    }
    let differences: Vec<f64> = (0..n)
        .map(|i| (b[i] - teacher[i]).abs() - (a[i] - teacher[i]).abs())
        .collect();
    let mean = differences.iter().sum::<f64>() / n as f64;
    let variance = differences.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n as f64 - 1.0);
    Some((variance / n as f64).sqrt())
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

/// Agreement per group (per item, per split, …): `pairs` tagged with their group key.
pub fn per_group<K: Ord + Clone>(
    pairs: &[(K, ScorePair)],
) -> std::collections::BTreeMap<K, AgreementReport> {
    let mut groups: std::collections::BTreeMap<K, Vec<ScorePair>> =
        std::collections::BTreeMap::new();
    for (key, pair) in pairs {
        groups.entry(key.clone()).or_default().push(*pair);
    }
    groups
        .into_iter()
        .map(|(key, pairs)| (key, AgreementReport::compute(&pairs)))
        .collect()
}

/// How much repeated gradings of the same answers disagree with each other.
///
/// Each answer contributes its marks over the repeats; answers graded fewer than twice are
/// left out. `spread` is `(max − min) / max_marks`; `sd` is the population standard
/// deviation of the normalised marks (`numpy.std(ddof=0)`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct VarianceReport {
    /// Most gradings any answer got.
    pub repeats: usize,
    /// Answers graded at least twice.
    pub n: usize,
    /// Share of those answers whose gradings are not all the same mark.
    pub flip_rate: Option<f64>,
    /// Mean normalised spread (max − min over max marks).
    pub mean_spread: Option<f64>,
    /// Largest normalised spread.
    pub max_spread: Option<f64>,
    /// Mean population standard deviation of the normalised marks.
    pub mean_sd: Option<f64>,
}

/// Normalised spread of one answer's repeated marks: `(max − min) / max_marks`.
pub fn spread(marks: &[f64], max_marks: f64) -> f64 {
    let hi = marks.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let lo = marks.iter().copied().fold(f64::INFINITY, f64::min);
    if marks.is_empty() {
        0.0
    } else {
        normalise(hi - lo, max_marks)
    }
}

impl VarianceReport {
    /// The report for `answers`: each answer's marks over the repeats and its maximum mark.
    pub fn compute(answers: &[(Vec<f64>, f64)]) -> Self {
        let repeated: Vec<&(Vec<f64>, f64)> =
            answers.iter().filter(|(m, _)| m.len() >= 2).collect();
        let flips = repeated.iter().map(|(marks, _)| {
            let first = marks[0];
            f64::from(u8::from(marks.iter().any(|m| (m - first).abs() > EPS)))
        });
        let spreads: Vec<f64> = repeated.iter().map(|(m, max)| spread(m, *max)).collect();
        let sds = repeated.iter().map(|(marks, max)| {
            let norm: Vec<f64> = marks.iter().map(|m| normalise(*m, *max)).collect();
            let mu = norm.iter().sum::<f64>() / norm.len() as f64;
            (norm.iter().map(|x| (x - mu).powi(2)).sum::<f64>() / norm.len() as f64).sqrt()
        });
        Self {
            repeats: answers.iter().map(|(m, _)| m.len()).max().unwrap_or(0),
            n: repeated.len(),
            flip_rate: mean(flips),
            mean_spread: mean(spreads.iter().copied()),
            max_spread: spreads.iter().copied().reduce(f64::max),
            mean_sd: mean(sds),
        }
    }
}

/// Lower-cased alphanumeric words of a text.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Jaccard overlap of the two texts' word sets: |A ∩ B| / |A ∪ B| (0 when both are empty).
pub fn word_jaccard(a: &str, b: &str) -> f64 {
    let a: std::collections::HashSet<String> = words(a).into_iter().collect();
    let b: std::collections::HashSet<String> = words(b).into_iter().collect();
    let union = a.union(&b).count();
    if union == 0 {
        0.0
    } else {
        a.intersection(&b).count() as f64 / union as f64
    }
}

/// Shorter word count over longer word count (0 when either text has no words).
pub fn length_ratio(a: &str, b: &str) -> f64 {
    let (x, y) = (words(a).len() as f64, words(b).len() as f64);
    if x == 0.0 || y == 0.0 {
        0.0
    } else {
        x.min(y) / x.max(y)
    }
}

/// The consistency heuristic of an answer against the model answer, 0–1: the mean of
/// [`word_jaccard`] and [`length_ratio`]. `None` when the model answer has no words.
pub fn consistency(answer: &str, model_answer: &str) -> Option<f64> {
    if words(model_answer).is_empty() {
        return None;
    }
    Some((word_jaccard(answer, model_answer) + length_ratio(answer, model_answer)) / 2.0)
}

/// The response-quality heuristic of an answer, each part in 0–1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct ResponseQuality {
    /// `min(words / 20, 1)`: a short answer of 20 words or more is long enough.
    pub length: f64,
    /// `min(sentences, 3) / 3`: sentences are runs of words ended by `.`, `!`, `?`, `;`
    /// or a line break.
    pub structure: f64,
    /// Distinct words over words (type-token ratio).
    pub vocabulary: f64,
    /// Share of sentences with 3 to 40 words (neither fragments nor run-ons).
    pub coherence: f64,
    /// Mean of the four.
    pub overall: f64,
}

/// The response-quality heuristic (length, structure, vocabulary, coherence) of an answer.
pub fn response_quality(answer: &str) -> ResponseQuality {
    let all = words(answer);
    if all.is_empty() {
        return ResponseQuality::default();
    }
    let sentences: Vec<usize> = answer
        .split(['.', '!', '?', ';', '\n'])
        .map(|s| words(s).len())
        .filter(|n| *n > 0)
        .collect();
    let distinct: std::collections::HashSet<&String> = all.iter().collect();
    let length = (all.len() as f64 / 20.0).min(1.0);
    let structure = sentences.len().min(3) as f64 / 3.0;
    let vocabulary = distinct.len() as f64 / all.len() as f64;
    let coherence = sentences.iter().filter(|n| (3..=40).contains(*n)).count() as f64
        / sentences.len().max(1) as f64;
    ResponseQuality {
        length,
        structure,
        vocabulary,
        coherence,
        overall: (length + structure + vocabulary + coherence) / 4.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_noise_of_a_qwk_difference_shrinks_with_the_sample_and_is_zero_for_one_grader() {
        // 24 answers: the teacher's quarter bins, a grader one bin low on most full answers,
        // and a second grader that fixes two of them and breaks one other.
        let teacher = [
            4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 3, 3, 3, 2, 2, 2, 1, 1, 0, 0, 4, 4,
        ];
        let a = [
            3, 3, 3, 3, 4, 4, 4, 3, 3, 4, 4, 3, 3, 2, 3, 2, 1, 2, 1, 0, 0, 1, 3, 4,
        ];
        let mut b = a;
        (b[0], b[1], b[16]) = (4, 4, 3);
        let small = paired_qwk_noise(&teacher, &a, &b, 1000, 7).expect("noise of 24 answers");
        let repeat = |v: &[i64]| v.repeat(10);
        let large = paired_qwk_noise(&repeat(&teacher), &repeat(&a), &repeat(&b), 1000, 7)
            .expect("noise of 240 answers");
        assert!(small > 0.01, "two different graders on 24 answers: {small}");
        // The standard error falls with the square root of the sample (√10 ≈ 3.2).
        assert!(
            (2.5..4.0).contains(&(small / large)),
            "24 answers {small}, 240 answers {large}"
        );
        assert_eq!(
            paired_qwk_noise(&teacher, &a, &b, 1000, 7),
            Some(small),
            "seeded"
        );
        assert_eq!(paired_qwk_noise(&teacher, &a, &a, 200, 7), Some(0.0));
        assert_eq!(paired_qwk_noise(&[4], &[4], &[3], 200, 7), None);
    }

    #[test]
    fn the_noise_of_an_mae_difference_is_zero_for_a_uniform_gain_and_grows_with_spread() {
        let teacher = [1.0, 1.0, 0.5, 0.25];
        let harsh = [0.75, 0.75, 0.25, 0.0];
        // Every answer gains exactly ¼: the gain is certain.
        assert_eq!(paired_mae_noise(&teacher, &harsh, &teacher), Some(0.0));
        // Lifting everyone by ¾ helps two answers and hurts two.
        let lifted = [1.0, 1.0, 1.0, 0.75];
        let spread = paired_mae_noise(&teacher, &harsh, &lifted).expect("noise");
        assert!(
            (spread - 0.144_337_567).abs() < 1e-9,
            "sd 0.289 / √4: {spread}"
        );
        assert_eq!(paired_mae_noise(&teacher, &harsh, &harsh), Some(0.0));
        assert_eq!(paired_mae_noise(&[1.0], &[0.5], &[1.0]), None);
    }

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

    /// Reference values from plain Python (`statistics.pstdev`, `re.split`), computed
    /// independently of this code:
    /// `answers=[([1,1,1],1),([0,1,0.5],1),([2,2],4),([3,1,2],4),([0.5],1)]`.
    #[test]
    fn flip_rate_and_spread_match_python() {
        let answers = vec![
            (vec![1.0, 1.0, 1.0], 1.0),
            (vec![0.0, 1.0, 0.5], 1.0),
            (vec![2.0, 2.0], 4.0),
            (vec![3.0, 1.0, 2.0], 4.0),
            (vec![0.5], 1.0),
        ];
        let v = VarianceReport::compute(&answers);
        assert_eq!((v.repeats, v.n), (3, 4), "the single grading is left out");
        close("variance", "flip rate", v.flip_rate, 0.5);
        close("variance", "mean spread", v.mean_spread, 0.375);
        close("variance", "max spread", v.max_spread, 1.0);
        close("variance", "mean sd", v.mean_sd, 0.15309310892394862);
        assert_eq!(VarianceReport::compute(&[(vec![1.0], 1.0)]).flip_rate, None);
    }

    #[test]
    fn consistency_and_quality_heuristics_match_python() {
        let answer =
            "Binary encoding is efficient. Clocks are perfect, so no self-clocking is needed!";
        let reference = "Binary encoding, as it is the most efficient; clocks are perfect.";
        close(
            "heuristics",
            "jaccard",
            Some(word_jaccard(answer, reference)),
            0.4375,
        );
        close(
            "heuristics",
            "length ratio",
            Some(length_ratio(answer, reference)),
            0.8461538461538461,
        );
        close(
            "heuristics",
            "consistency",
            consistency(answer, reference),
            0.6418269230769231,
        );
        let q = response_quality(answer);
        close("heuristics", "length", Some(q.length), 0.65);
        close(
            "heuristics",
            "structure",
            Some(q.structure),
            0.6666666666666666,
        );
        close(
            "heuristics",
            "vocabulary",
            Some(q.vocabulary),
            0.9230769230769231,
        );
        close("heuristics", "coherence", Some(q.coherence), 1.0);
        close("heuristics", "overall", Some(q.overall), 0.8099358974358974);
        assert_eq!(
            consistency(answer, "  "),
            None,
            "no model answer, no figure"
        );
        assert_eq!(response_quality("").overall, 0.0);
    }

    #[test]
    fn per_group_reports_are_the_reports_of_each_group() {
        let pair = |t: f64, p: f64| ScorePair {
            teacher: t,
            predicted: p,
            max_marks: 2.0,
        };
        let tagged = vec![
            (1, pair(2.0, 2.0)),
            (2, pair(0.0, 1.0)),
            (1, pair(1.0, 0.0)),
        ];
        let groups = per_group(&tagged);
        assert_eq!(groups.len(), 2);
        assert_eq!(
            groups[&1],
            AgreementReport::compute(&[pair(2.0, 2.0), pair(1.0, 0.0)])
        );
        assert_eq!(groups[&2].n, 1);
        close("group 2", "bias", groups[&2].mean_bias, 0.5);
    }
}

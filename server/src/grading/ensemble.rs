//! The `ensemble` grading engine: the LLM and similarity engines' normalised scores blended with weights from their validation agreement.
//!
//! Each engine's weight starts from its quadratic weighted kappa on the validation split
//! (floored at zero, plus a small prior so an engine with no measured agreement still
//! counts a little); a training job then searches the LLM's share from 0 to 1 on the
//! validation split whenever either engine changes, and moves the weights only when the
//! blend agrees better, so an engine that adds only noise can end up with no weight. The
//! blend is taken on calibrated, unrounded normalised scores and rounded once, to the
//! item's mark step.

use serde::{Deserialize, Serialize};

use super::grader::{GradingItem, SimilarityGraderConfig, Verdict};
use super::llm::LlmGraderConfig;

/// Weight every engine gets on top of its agreement, so neither is silenced by one bad
/// measurement on a small validation split.
pub const PRIOR_WEIGHT: f64 = 0.05;

/// How much each engine counts; the weights sum to 1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EnsembleWeights {
    /// Weight of the LLM engine.
    pub llm: f64,
    /// Weight of the similarity engine.
    pub similarity: f64,
}

impl Default for EnsembleWeights {
    fn default() -> Self {
        Self {
            llm: 0.5,
            similarity: 0.5,
        }
    }
}

impl EnsembleWeights {
    /// Weights proportional to each engine's validation QWK (floored at 0) plus
    /// [`PRIOR_WEIGHT`].
    pub fn from_agreement(llm_qwk: Option<f64>, similarity_qwk: Option<f64>) -> Self {
        let w =
            |qwk: Option<f64>| qwk.filter(|q| q.is_finite()).unwrap_or(0.0).max(0.0) + PRIOR_WEIGHT;
        Self::with_llm_share(w(llm_qwk) / (w(llm_qwk) + w(similarity_qwk)))
    }

    /// `llm` for the LLM engine and `1 − llm` for the similarity engine (clamped to 0..1).
    pub fn with_llm_share(llm: f64) -> Self {
        let llm = if llm.is_finite() {
            llm.clamp(0.0, 1.0)
        } else {
            0.5
        };
        Self {
            llm,
            similarity: 1.0 - llm,
        }
    }
}

/// Agreement each engine reached on the validation split when the weights were set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct EngineAgreement {
    /// QWK of the LLM engine.
    pub llm_qwk: Option<f64>,
    /// QWK of the similarity engine.
    pub similarity_qwk: Option<f64>,
}

/// The ensemble's part of a grader version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnsembleConfig {
    /// The LLM engine (with its calibration).
    pub llm: LlmGraderConfig,
    /// The similarity engine.
    pub similarity: SimilarityGraderConfig,
    /// The blend.
    pub weights: EnsembleWeights,
    /// What the weights were derived from.
    pub agreement: EngineAgreement,
}

impl EnsembleConfig {
    /// The blended normalised score.
    pub fn blend(&self, llm_normalised: f64, similarity_normalised: f64) -> f64 {
        (self.weights.llm * llm_normalised + self.weights.similarity * similarity_normalised)
            .clamp(0.0, 1.0)
    }

    /// The ensemble's verdict from the LLM engine's verdict and the similarity engine's
    /// normalised score: the LLM's feedback and criteria, the blended score.
    pub fn combine(
        &self,
        item: &GradingItem,
        llm: &Verdict,
        similarity_normalised: f64,
    ) -> Verdict {
        let llm_normalised = self
            .llm
            .calibration
            .apply_to(item.id, item.normalise(llm.raw_score));
        let blended = self.blend(llm_normalised, similarity_normalised);
        Verdict {
            answer_id: llm.answer_id,
            score: item.to_marks(blended),
            raw_score: blended * item.max_marks,
            criteria: llm.criteria.clone(),
            feedback: llm.feedback.clone(),
            rationale: format!(
                "Ensemble: {:.0}% × LLM ({:.0}% of the marks) + {:.0}% × similarity ({:.0}%). {}",
                self.weights.llm * 100.0,
                llm_normalised * 100.0,
                self.weights.similarity * 100.0,
                similarity_normalised * 100.0,
                llm.rationale
            ),
            confidence: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_follow_agreement_and_sum_to_one() {
        let w = EnsembleWeights::from_agreement(Some(0.45), Some(0.15));
        assert!((w.llm + w.similarity - 1.0).abs() < 1e-12);
        assert!((w.llm - 0.5 / 0.7).abs() < 1e-12, "{w:?}");
        let w = EnsembleWeights::from_agreement(Some(-0.2), None);
        assert!((w.llm - 0.5).abs() < 1e-12, "both at the prior: {w:?}");
        assert_eq!(EnsembleWeights::with_llm_share(1.5).similarity, 0.0);
    }
}

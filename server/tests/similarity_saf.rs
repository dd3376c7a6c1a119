//! The similarity engine trained on SAF's train split and measured on answers and questions it never saw.
//!
//! Needs the MiniLM model (`./gradelab up`, or `GRADELAB_EMBEDDINGS__MODEL_DIR`) and
//! ../shared/datasets/saf (or `GRADELAB_DATASETS`). Embeds ~3,000 answers: about a minute on 2 cores.

#[path = "support/saf.rs"]
mod saf;

use gradelab::grading::similarity::{Regime, SimilarityConfig};

/// Epochs of mini-batch gradient descent: enough for the loss to level off.
const EPOCHS: u32 = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn similarity_engine_beats_train_mean_and_raw_cosine_on_saf() {
    let (embedder, data) = saf::setup().unwrap_or_else(|e| panic!("{e}"));
    let eval = saf::evaluate(&embedder, &data, SimilarityConfig::default(), EPOCHS)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    println!("{}", saf::table(&eval));
    println!(
        "embedded {} texts in {:.1} s; {} epochs in {:.2} s",
        eval.texts_embedded,
        eval.embed_time.as_secs_f64(),
        EPOCHS,
        eval.train_time.as_secs_f64()
    );

    // The engine says which regime it graded in.
    assert!(eval.regimes["test_unseen_answers"]
        .iter()
        .all(|r| *r == Regime::GradedItem));
    assert!(eval.regimes["test_unseen_questions"]
        .iter()
        .all(|r| *r == Regime::NewItem));

    // A real learning curve: the train loss falls from the initialised model (epoch 0:
    // every answer gets the train mean) to the last epoch.
    let (first, last) = (eval.curve[0], eval.curve[eval.curve.len() - 1]);
    assert_eq!((first.epoch, last.epoch), (0, EPOCHS));
    assert!(
        last.graded_item.mse < first.graded_item.mse,
        "{first:?} -> {last:?}"
    );
    assert!(
        last.new_item.mse < first.new_item.mse,
        "{first:?} -> {last:?}"
    );

    let get = |name: &str| saf::row(&eval, name).unwrap_or_else(|| panic!("no row {name}"));
    let engine = get("similarity engine, marks on the 0.25 step");
    let train_mean = get("train mean");
    let full = get("always full marks");
    let cosine = get("MiniLM cosine(student, reference), raw");
    let value = |v: Option<f64>, what: &str| v.unwrap_or_else(|| panic!("{what} undefined"));

    // Unseen answers (items with graded answers): better than the train mean and than raw
    // cosine, and below "always full marks" (64 % of SAF answers have full marks).
    let (e, m, f, c) = (engine[0], train_mean[0], full[0], cosine[0]);
    assert!(
        value(e.mae, "engine MAE") < value(m.mae, "train-mean MAE"),
        "{e:?} vs {m:?}"
    );
    assert!(
        value(e.mae, "engine MAE") < value(f.mae, "full-marks MAE"),
        "{e:?} vs {f:?}"
    );
    assert!(
        value(e.r, "engine r") > value(c.r, "cosine r"),
        "{e:?} vs {c:?}"
    );

    // Issue 6's QWK target on unseen answers (measured 0.62; its r target of 0.65 is met
    // only just, 0.650, so it is printed, not asserted).
    assert!(value(e.qwk, "engine QWK") >= 0.55, "{e:?}");

    // Unseen questions (new items): better than the train mean and "always full marks",
    // and issue 6's target r >= 0.55 (plain cosine reaches 0.53; measured 0.624).
    let (e, m, f, c) = (engine[1], train_mean[1], full[1], cosine[1]);
    assert!(
        value(e.mae, "engine MAE") < value(m.mae, "train-mean MAE"),
        "{e:?} vs {m:?}"
    );
    assert!(
        value(e.mae, "engine MAE") < value(f.mae, "full-marks MAE"),
        "{e:?} vs {f:?}"
    );
    assert!(value(e.r, "engine r") >= 0.55, "{e:?}");
    assert!(
        value(e.r, "engine r") > value(c.r, "cosine r"),
        "{e:?} vs {c:?}"
    );
}

//! SAF benchmark of the similarity engine: embedding throughput, training time, learning curve and
//! r / MAE / QWK on unseen answers and unseen questions beside ../shared/notes/FIDELITY.md.
//!
//! `cargo bench -p gradelab-server --bench similarity_saf` (release build). Optional: `EPOCHS`,
//! `GRADELAB_DATASETS`, `GRADELAB_EMBEDDINGS__MODEL_DIR`.

#[path = "../tests/support/saf.rs"]
mod saf;

use std::time::Instant;

use gradelab::grading::similarity::SimilarityConfig;

fn main() -> Result<(), String> {
    let epochs: u32 = std::env::var("EPOCHS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40);
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let (embedder, data) = saf::setup()?;
    let load = started.elapsed();
    let eval = runtime.block_on(saf::evaluate(
        &embedder,
        &data,
        SimilarityConfig::default(),
        epochs,
    ))?;

    println!("## Similarity engine on SAF\n");
    println!(
        "model load {:.2} s; embedded {} distinct texts in {:.1} s = {:.0} texts/s (batch 32, length-sorted)",
        load.as_secs_f64(),
        eval.texts_embedded,
        eval.embed_time.as_secs_f64(),
        eval.texts_embedded as f64 / eval.embed_time.as_secs_f64()
    );
    println!(
        "training: {} epochs in {:.3} s ({:.1} ms/epoch)\n",
        epochs,
        eval.train_time.as_secs_f64(),
        eval.train_time.as_secs_f64() * 1e3 / f64::from(epochs.max(1))
    );
    println!("{}", saf::table(&eval));
    println!("learning curve (train, normalised scores):\n");
    println!("| epoch | graded-item MSE | graded-item MAE | new-item MSE | new-item MAE |\n|---|---|---|---|---|");
    for s in &eval.curve {
        if s.epoch <= 5 || s.epoch % 10 == 0 {
            println!(
                "| {} | {:.4} | {:.4} | {:.4} | {:.4} |",
                s.epoch, s.graded_item.mse, s.graded_item.mae, s.new_item.mse, s.new_item.mae
            );
        }
    }
    for split in saf::SPLITS {
        let r = &eval.engine_reports[split];
        println!(
            "\n{split}: n = {}, exact {:.3}, within one mark {:.3}, Spearman {:.3}, bias {:+.3}",
            r.n,
            r.exact_agreement.unwrap_or(f64::NAN),
            r.within_one_mark.unwrap_or(f64::NAN),
            r.spearman.unwrap_or(f64::NAN),
            r.mean_bias.unwrap_or(f64::NAN)
        );
        println!(
            "confusion (rows teacher, columns engine; bins 0, ¼, ½, ¾, 1): {:?}",
            r.confusion.counts
        );
    }
    let json = serde_json::to_string(&eval.model).map_err(|e| e.to_string())?;
    println!("\nserialised model: {} bytes of JSON", json.len());
    Ok(())
}

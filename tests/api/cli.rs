//! `gradelab eval`: the built binary trains and tests a similarity grader on a small SAF
//! slice and prints the metrics table, or JSON for scripts, with no server or browser;
//! with `--llm-cache` a rerun is answered from the file (a canned model counts the calls).
//! It embeds a data set and uses its own SQLite file, so its name puts it with the
//! model-bound tests (serial, skipped by the PostgreSQL pass).

use std::path::PathBuf;
use std::process::Command;

use gradelab_tests::fault_proxy::FaultServer;
use gradelab_tests::workspace_root;
use serde_json::Value;

/// Builds the `gradelab` binary (a no-op when it is up to date) and returns its path.
fn gradelab_binary() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(workspace_root())
        .args([
            "build",
            "-q",
            "-p",
            "gradelab-server",
            "--bin",
            "gradelab",
            "--message-format=json",
        ])
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "building gradelab failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "gradelab")
        .filter_map(|m| m["executable"].as_str().map(PathBuf::from))
        .next_back()
        .expect("cargo names the gradelab executable")
}

fn saf_dir() -> PathBuf {
    std::env::var_os("GRADELAB_DATASETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/shared/datasets"))
        .join("saf")
}

fn eval(binary: &PathBuf, extra: &[&str]) -> (String, String) {
    eval_with(binary, &[], extra)
}

/// `gradelab eval` on the slice with these settings in its environment.
fn eval_with(binary: &PathBuf, env: &[(&str, &str)], extra: &[&str]) -> (String, String) {
    let dir = tempfile::tempdir().expect("a working directory without gradelab.toml");
    let output = Command::new(binary)
        .current_dir(dir.path())
        .env_remove("GRADELAB_DATABASE__URL")
        .envs(env.iter().copied())
        .arg("eval")
        .arg(saf_dir())
        .args([
            "--items",
            "4.13,6.2_IPP",
            "--split",
            "test_unseen_answers",
            "--train-limit",
            "24",
            "--epochs",
            "1",
        ])
        .args(extra)
        .output()
        .expect("gradelab runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "gradelab eval failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    (stdout, stderr)
}

#[tokio::test]
async fn gradelab_eval_grades_a_saf_slice_with_the_model_pipeline_and_prints_metrics() {
    let binary = gradelab_binary();

    let (table, _) = eval(&binary, &["--limit", "20"]);
    eprintln!("{table}");
    for needle in [
        "engine similarity",
        "exact agreement",
        "within ±1 mark",
        "QWK (quarters)",
        "Pearson r",
        "Spearman rho",
        "mean bias",
        "consistency (heuristic)",
        "6.2_IPP",
        "confusion",
    ] {
        assert!(table.contains(needle), "{needle:?} missing from:\n{table}");
    }
    let n_line = table
        .lines()
        .find(|l| l.starts_with("answers compared (n)"))
        .expect("an n row");
    assert!(n_line.trim_end().ends_with(" 20"), "{n_line}");

    let out = tempfile::tempdir().expect("a directory for the predictions");
    let file = out.path().join("predictions.jsonl");
    let (json, _) = eval(
        &binary,
        &[
            "--limit",
            "12",
            "--json",
            "--predictions",
            &file.to_string_lossy(),
        ],
    );
    let report: Value = serde_json::from_str(&json).expect("--json prints one JSON object");
    let metrics = &report["metrics"];
    assert_eq!(metrics["n"], 12);
    // `--predictions` writes the graded answers the metrics were computed from.
    let lines = std::fs::read_to_string(&file).expect("the predictions file");
    let rows: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(rows.len(), 12, "{lines}");
    assert!(rows.iter().all(|r| r["engine"] == "similarity"
        && ["4.13", "6.2_IPP"].contains(&r["item"].as_str().unwrap_or(""))
        && r["teacher"].is_number()
        && r["score"].as_f64() <= r["max_marks"].as_f64()
        && r["raw_score"].is_number()
        && r["criteria"].is_array()));
    let exact = rows.iter().filter(|r| r["score"] == r["teacher"]).count() as f64 / 12.0;
    let reported = metrics["exact_agreement"]
        .as_f64()
        .expect("exact agreement");
    assert!((exact - reported).abs() < 1e-9, "{exact} vs {reported}");
    assert_eq!(metrics["engine"], "similarity");
    for key in [
        "qwk",
        "mae",
        "rmse",
        "exact_agreement",
        "within_one_mark",
        "mean_bias",
    ] {
        assert!(metrics[key].is_number(), "{key} in {metrics}");
    }
    assert_eq!(metrics["per_item"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        report["epochs"].as_array().map(Vec::len),
        Some(2),
        "epoch 0 and one change"
    );
    assert!(report["imported"]["validation"].as_u64().unwrap_or(0) > 0);
    assert_eq!(report["tokens"], 0);
}

// Two workers: the canned model answers on one while `eval_with` blocks the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_llm_cache_a_rerun_is_answered_from_the_file_without_the_model() {
    // The first run asks the (canned) model and keeps its replies in the file; the second
    // run of the same evaluation asks it nothing and measures the same figures.
    let binary = gradelab_binary();
    let server = FaultServer::canned(
        r#"{"rationale":"Names the idea.","criteria":[],"score":1,"feedback":"Good."}"#,
    )
    .await;
    let dir = tempfile::tempdir().expect("a directory for the cache file");
    let cache = dir.path().join("replies.db");
    let cache_arg = cache.display().to_string();
    let env = [
        ("GRADELAB_LLM__PROVIDER", "llamacpp"),
        ("GRADELAB_LLM__BASE_URL", server.base_url.as_str()),
        ("GRADELAB_LLM__MODEL", "canned"),
    ];
    let args = [
        "--engine",
        "llm",
        "--limit",
        "6",
        "--json",
        "--llm-cache",
        &cache_arg,
    ];

    let (first, _) = eval_with(&binary, &env, &args);
    let asked = server.requests();
    assert!(asked > 0, "the first run asks the model");
    assert!(cache.exists(), "the replies are kept in {cache_arg}");

    let (second, _) = eval_with(&binary, &env, &args);
    assert_eq!(server.requests(), asked, "the rerun asks the model nothing");
    let first: Value = serde_json::from_str(&first).expect("JSON");
    let second: Value = serde_json::from_str(&second).expect("JSON");
    assert_eq!(first["metrics"]["n"], 6);
    for key in ["qwk", "mae", "pearson", "exact_agreement"] {
        assert_eq!(first["metrics"][key], second["metrics"][key], "{key}");
    }
    let curve = |report: &Value| {
        report["epochs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| (e["kept"].clone(), e["metrics"].clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(curve(&first), curve(&second), "the same learning curve");
}

//! Concurrent large uploads: 20 guide uploads of 10 MiB each at once (GraphQL multipart) to
//! a real `gradelab serve` process on SQLite, and the server's peak resident memory
//! (`VmHWM` in `/proc/<pid>/status`) against the 200 MiB that holding every file in memory
//! would cost.
//!
//! Each file is a DOCX guide (a few questions of text plus a 10 MiB embedded image, as a
//! guide with scanned diagrams is): the multipart parser spools it to a temporary file, the
//! server copies it into the blob store while hashing it, and reads only `word/document.xml`
//! back out of the stored archive.
//!
//! `cargo bench -p gradelab-server --bench uploads`. Settings: `BENCH_UPLOADS` (default 20),
//! `BENCH_UPLOAD_MIB` (default 10).

#[path = "../../tests/scale/cluster.rs"]
mod cluster;
#[path = "support/process.rs"]
mod process;

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use cluster::{docx_guide, ClusterConfig, Replica};
use process::{env_or, status_kib};
use serde_json::{json, Value};

async fn upload(
    client: &reqwest::Client,
    server: &str,
    token: &str,
    name: String,
    bytes: Vec<u8>,
) -> anyhow::Result<Duration> {
    let operations = json!({
        "query": "mutation($f: Upload!) { uploadGuide(file: $f, method: PARSER) { guide { id } } }",
        "variables": { "f": null },
    });
    let form = reqwest::multipart::Form::new()
        .text("operations", operations.to_string())
        .text("map", r#"{"0":["variables.f"]}"#)
        .part("0", reqwest::multipart::Part::bytes(bytes).file_name(name));
    let started = Instant::now();
    let body: Value = client
        .post(format!("{server}/graphql"))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await?
        .json()
        .await?;
    if body.get("errors").is_some() {
        bail!("upload failed: {body}");
    }
    Ok(started.elapsed())
}

fn main() -> anyhow::Result<()> {
    let uploads: usize = env_or("BENCH_UPLOADS", 20);
    let mib: usize = env_or("BENCH_UPLOAD_MIB", 10);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let data = tempfile::tempdir()?;
    let config = ClusterConfig {
        bin: env!("CARGO_BIN_EXE_gradelab").into(),
        database_url: format!("sqlite://{}/gradelab.db?mode=rwc", data.path().display()),
        data_dir: data.path().to_path_buf(),
        llm_url: "http://127.0.0.1:9/v1".to_owned(),
        workers: 1,
        lease_secs: 30,
    };
    // Files of exactly `mib` MiB: the image fills what the text and the archive leave.
    let mut files = Vec::new();
    for n in 0..uploads {
        let overhead = docx_guide(n, 0)?.len();
        let file = docx_guide(n, mib * 1024 * 1024 - overhead)?;
        files.push(file);
    }
    let total: usize = files.iter().map(Vec::len).sum();
    runtime.block_on(async {
        let server = Replica::start(&config, "uploads").await?;
        let client = reqwest::Client::new();
        let token = server.sign_up("Uploads").await?;
        // Warm up (allocator, SQLite, the blob store) with a small file, then measure.
        upload(
            &client,
            &server.base_url,
            &token,
            "warm-up.docx".into(),
            docx_guide(uploads, 64 * 1024)?,
        )
        .await?;
        let rss_before = status_kib(server.pid, "VmRSS:");
        let hwm_before = status_kib(server.pid, "VmHWM:");
        let started = Instant::now();
        let mut tasks = Vec::new();
        for (n, bytes) in files.into_iter().enumerate() {
            let (client, base, token) = (client.clone(), server.base_url.clone(), token.clone());
            tasks.push(tokio::spawn(async move {
                upload(&client, &base, &token, format!("guide-{n}.docx"), bytes).await
            }));
        }
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.push(task.await??);
        }
        let wall = started.elapsed();
        let hwm_after = status_kib(server.pid, "VmHWM:");
        let rss_after = status_kib(server.pid, "VmRSS:");
        // Every file is stored whole in the blob store.
        let stored = count_blobs(&data.path().join("blobs"), (mib * 1024 * 1024) as u64)?;
        anyhow::ensure!(
            stored == uploads,
            "{stored} of {uploads} files are in the blob store"
        );
        latencies.sort();
        let peak_growth = hwm_after.saturating_sub(rss_before);
        let buffered = (total / 1024) as u64;
        println!(
            "\n{uploads} concurrent uploads of {mib} MiB DOCX guides ({:.0} MiB in all) to one gradelab serve on SQLite\n",
            total as f64 / 1048576.0
        );
        println!("| figure | measured | for comparison |");
        println!("|---|---:|---|");
        println!(
            "| wall time, all uploads | {:.2} s | {:.1} MiB/s |",
            wall.as_secs_f64(),
            total as f64 / 1048576.0 / wall.as_secs_f64()
        );
        println!(
            "| upload latency p50 / max | {:.2} s / {:.2} s | |",
            latencies[latencies.len() / 2].as_secs_f64(),
            latencies[latencies.len() - 1].as_secs_f64()
        );
        println!(
            "| server RSS before | {:.1} MiB | |",
            rss_before as f64 / 1024.0
        );
        println!(
            "| server peak RSS (VmHWM) | {:.1} MiB | was {:.1} MiB before the uploads |",
            hwm_after as f64 / 1024.0,
            hwm_before as f64 / 1024.0
        );
        println!(
            "| peak growth during the uploads | {:.1} MiB | {:.1} MiB if every file were buffered whole (goal: well below) |",
            peak_growth as f64 / 1024.0,
            buffered as f64 / 1024.0
        );
        println!(
            "| server RSS after | {:.1} MiB | |",
            rss_after as f64 / 1024.0
        );
        anyhow::Ok(())
    })?;
    Ok(())
}

/// Files of exactly `size` bytes in the blob store (the warm-up file is smaller).
fn count_blobs(dir: &std::path::Path, size: u64) -> anyhow::Result<usize> {
    let mut count = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("{}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            if entry.file_name() != "tmp" {
                count += count_blobs(&entry.path(), size)?;
            }
        } else if meta.len() == size {
            count += 1;
        }
    }
    Ok(count)
}

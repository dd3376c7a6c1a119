//! Subscription fan-out: 1,000 `graphql-transport-ws` subscribers on one running job of a
//! real `gradelab serve` process (SQLite), the latency of each event from its write (the
//! event's `at`) to its arrival at every subscriber (p50/p99/max), and the server's resident
//! memory per open subscription.
//!
//! The job is an LLM-engine training job against a canned OpenAI-compatible endpoint
//! answering after `BENCH_LLM_MS` (default 100 ms), so events come at the pace of a fast
//! model. It waits in the queue behind another job until every subscriber is connected,
//! so all its events are measured live. Subscribers and server share this machine's cores,
//! so the latency includes the time the 1,000 client tasks wait for a core.
//!
//! `cargo bench -p gradelab-server --bench subscriptions`. Settings: `BENCH_SUBSCRIBERS`
//! (default 1000), `BENCH_EPOCHS` (default 2), `BENCH_LLM_MS`.

#[path = "../../tests/scale/cluster.rs"]
mod cluster;
#[path = "support/process.rs"]
mod process;

use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context as _};
use cluster::{CannedLlm, ClusterConfig, Replica};
use futures::{StreamExt as _, TryStreamExt as _};
use process::{env_or, settled_rss_kib, status_kib};
use serde_json::json;

/// The soft limit on open files of this process (inherited by the server it starts).
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Raises the open-files limit to `wanted` with `prlimit` (util-linux) when it is lower.
fn ensure_open_files(wanted: u64) -> anyhow::Result<()> {
    if open_files_limit().is_some_and(|n| n >= wanted) {
        return Ok(());
    }
    let status = std::process::Command::new("prlimit")
        .arg(format!("--pid={}", std::process::id()))
        .arg(format!("--nofile={wanted}:{wanted}"))
        .status()
        .context("running prlimit")?;
    if !status.success() || open_files_limit().is_none_or(|n| n < wanted) {
        bail!("the open-files limit is below {wanted}; raise it with `ulimit -n {wanted}`");
    }
    Ok(())
}

fn parse_time(text: &str) -> Option<SystemTime> {
    let at = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    let nanos = u64::try_from(at.timestamp_nanos_opt()?).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn main() -> anyhow::Result<()> {
    let subscribers: usize = env_or("BENCH_SUBSCRIBERS", 1000);
    let epochs: u32 = env_or("BENCH_EPOCHS", 2);
    let llm_ms: u64 = env_or("BENCH_LLM_MS", 100);
    // A socket per subscriber on each side, plus files and the database.
    ensure_open_files(subscribers as u64 * 2 + 512)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(subscribers, epochs, llm_ms))
}

async fn run(subscribers: usize, epochs: u32, llm_ms: u64) -> anyhow::Result<()> {
    let llm = CannedLlm::start(Duration::from_millis(llm_ms)).await?;
    let data = tempfile::tempdir()?;
    let config = ClusterConfig {
        bin: env!("CARGO_BIN_EXE_gradelab").into(),
        database_url: format!("sqlite://{}/gradelab.db?mode=rwc", data.path().display()),
        data_dir: data.path().to_path_buf(),
        llm_url: llm.base_url.clone(),
        // One worker: the measured job waits behind the first until the subscribers are in.
        workers: 1,
        lease_secs: 30,
    };
    let server = Replica::start(&config, "subscriptions").await?;
    let token = server.sign_up("fanout").await?;
    let guide = server.small_guide(&token).await?;
    let blocker = server.start_training(&token, &guide, 50).await?;
    let job = server.start_training(&token, &guide, epochs).await?;
    // Let the server settle (the blocker is running), then take the baseline.
    let rss_before = settled_rss_kib(server.pid, Duration::from_secs(20)).await;

    let opening = Instant::now();
    let streams: Vec<_> = futures::stream::iter(0..subscribers)
        .map(|_| server.subscribe_job(&token, &job, 0))
        .buffer_unordered(32)
        .try_collect()
        .await?;
    let open_secs = opening.elapsed().as_secs_f64();
    // Each subscription reads the (empty) log once after `subscribe`; let that finish.
    let rss_open = settled_rss_kib(server.pid, Duration::from_secs(20)).await;
    let all_open = SystemTime::now();
    let watchers: Vec<_> = streams
        .into_iter()
        .map(|stream| tokio::spawn(stream.collect(Duration::from_secs(600))))
        .collect();

    // Free the worker: the measured job starts now.
    server
        .graphql(
            Some(&token),
            "mutation($id: ID!) { cancelJob(id: $id) { id } }",
            json!({ "id": blocker }),
        )
        .await?;
    let running = Instant::now();
    let mut latencies_ms = Vec::new();
    let mut logs = BTreeSet::new();
    let mut measured_events = 0;
    for watcher in watchers {
        let events = watcher.await??;
        let seqs: Vec<i64> = events
            .iter()
            .filter_map(|(e, _)| e["seq"].as_i64())
            .collect();
        logs.insert(seqs);
        for (event, received) in events {
            let Some(at) = event["at"].as_str().and_then(parse_time) else {
                continue;
            };
            if at < all_open {
                continue;
            }
            measured_events += 1;
            let latency = received.duration_since(at).unwrap_or_default();
            latencies_ms.push(latency.as_secs_f64() * 1000.0);
        }
    }
    let job_secs = running.elapsed().as_secs_f64();
    let rss_hwm = status_kib(server.pid, "VmHWM:");
    anyhow::ensure!(
        logs.len() == 1,
        "subscribers saw different event sequences: {} variants",
        logs.len()
    );
    let log = logs.into_iter().next().unwrap_or_default();
    anyhow::ensure!(
        log == (1..=log.len() as i64).collect::<Vec<_>>(),
        "the subscribers' log has gaps: {log:?}"
    );
    latencies_ms.sort_by(f64::total_cmp);
    let per_subscriber_kib = rss_open.saturating_sub(rss_before) as f64 / subscribers as f64;

    println!(
        "\n{subscribers} graphql-transport-ws subscribers on one training job ({} events, LLM {llm_ms} ms), one gradelab serve on SQLite, 2 shared cores\n",
        log.len()
    );
    println!("| figure | measured | goal |");
    println!("|---|---:|---|");
    println!("| subscriptions opened | {subscribers} in {open_secs:.2} s | |");
    println!(
        "| events per subscriber | {} (identical at every subscriber, gap-free, final event last) | none lost |",
        log.len()
    );
    println!("| live deliveries measured | {measured_events} | |");
    println!(
        "| fan-out latency p50 | {:.1} ms | |",
        percentile(&latencies_ms, 50.0)
    );
    println!(
        "| fan-out latency p99 | {:.1} ms | < 100 ms |",
        percentile(&latencies_ms, 99.0)
    );
    println!(
        "| fan-out latency max | {:.1} ms | |",
        latencies_ms.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "| server RSS before / with {subscribers} open | {:.1} / {:.1} MiB | |",
        rss_before as f64 / 1024.0,
        rss_open as f64 / 1024.0
    );
    println!("| server memory per subscriber | {per_subscriber_kib:.1} KiB | |");
    println!(
        "| server peak RSS (VmHWM) | {:.1} MiB | |",
        rss_hwm as f64 / 1024.0
    );
    println!("| job run time with the subscribers | {job_secs:.1} s | |");
    drop(server);
    Ok(())
}

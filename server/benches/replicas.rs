//! Scale-out benchmark on PostgreSQL: training jobs per minute with 1, 2 and 3 real
//! `gradelab serve` processes sharing one database, and the latency of a job event from
//! its write on one replica to a subscriber on another (p50/p99).
//!
//! `cargo bench -p gradelab-server --bench replicas` (PostgreSQL from `GRADELAB_TEST_PG_URL`,
//! default the local cluster of `./gradelab pg start`). The LLM is a canned endpoint
//! answering after `BENCH_LLM_MS` (default 50 ms), so the numbers measure orchestration —
//! claiming, checkpoints, event log, NOTIFY — not a model. Set `BENCH_JOBS` (default 24).

#[path = "../../tests/scale/cluster.rs"]
mod cluster;

use std::time::{Duration, Instant, SystemTime};

use cluster::{CannedLlm, ClusterConfig, PgDb, Replica};
use entity::enums::JobStatus;
use entity::jobs;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};

struct Run {
    replicas: usize,
    jobs: usize,
    seconds: f64,
    llm_calls: usize,
    replica_cpu: f64,
    postgres_cpu: f64,
    latencies_ms: Vec<f64>,
}

/// CPU seconds (user + system) a process has used, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may contain spaces) start at ") ".
    let Some(rest) = stat.rsplit_once(") ").map(|(_, rest)| rest) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 here.
    (ticks(11) + ticks(12)) / 100.0
}

/// CPU seconds used by every PostgreSQL process on this machine (0 when it runs elsewhere).
fn postgres_cpu_seconds() -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "postgres")
        })
        .map(cpu_seconds)
        .sum()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

async fn run(replicas: usize, jobs_n: usize, llm_ms: u64) -> anyhow::Result<Run> {
    let db = PgDb::create("gradelab_bench").await?;
    let llm = CannedLlm::start(Duration::from_millis(llm_ms)).await?;
    let data = tempfile::tempdir()?;
    let config = ClusterConfig {
        bin: env!("CARGO_BIN_EXE_gradelab").into(),
        database_url: db.url.clone(),
        data_dir: data.path().to_path_buf(),
        llm_url: llm.base_url.clone(),
        workers: 2,
        lease_secs: 10,
    };
    let mut cluster = vec![Replica::start(&config, "0").await?];
    for i in 1..replicas {
        cluster.push(Replica::start(&config, &i.to_string()).await?);
    }
    let token = cluster[0].sign_up("bench").await?;
    let guide = cluster[0].small_guide(&token).await?;
    let conn = sea_orm::Database::connect(&db.url).await?;
    let cpu_before: f64 = cluster.iter().map(|r| cpu_seconds(r.pid)).sum();
    let pg_before = postgres_cpu_seconds();
    // Subscribers on the last replica; the jobs are queued through the first.
    let watcher = cluster.len() - 1;
    let began = Instant::now();
    let mut watchers = Vec::new();
    for _ in 0..jobs_n {
        let job = cluster[0].start_training(&token, &guide, 2).await?;
        let subscribed_at = SystemTime::now();
        let stream = cluster[watcher].subscribe_job(&token, &job, 0).await?;
        watchers.push((
            subscribed_at,
            tokio::spawn(stream.collect(Duration::from_secs(1800))),
        ));
    }
    loop {
        let done = jobs::Entity::find()
            .filter(jobs::Column::Status.eq(JobStatus::Succeeded))
            .count(&conn)
            .await?;
        if done as usize >= jobs_n {
            break;
        }
        let failed = jobs::Entity::find()
            .filter(jobs::Column::Status.eq(JobStatus::Failed))
            .count(&conn)
            .await?;
        anyhow::ensure!(failed == 0, "a job failed; see the replica logs");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seconds = began.elapsed().as_secs_f64();
    let replica_cpu = cluster.iter().map(|r| cpu_seconds(r.pid)).sum::<f64>() - cpu_before;
    let postgres_cpu = postgres_cpu_seconds() - pg_before;
    let watcher_pid = cluster[watcher].pid;
    let mut latencies_ms = Vec::new();
    for (subscribed_at, handle) in watchers {
        let events = handle.await??;
        // Only jobs that ran on another replica than the subscriber's, and only events
        // written after the subscription opened (not the replayed backlog).
        let ran_elsewhere = events.iter().any(|(e, _)| {
            e["kind"] == "started"
                && e["payload"]["worker"]
                    .as_str()
                    .is_some_and(|w| !w.contains(&format!("-{watcher_pid}-")))
        });
        if replicas > 1 && !ran_elsewhere {
            continue;
        }
        for (event, received) in events {
            let Some(at) = event["at"].as_str().and_then(parse_time) else {
                continue;
            };
            if at < subscribed_at {
                continue;
            }
            if let Ok(latency) = received.duration_since(at) {
                latencies_ms.push(latency.as_secs_f64() * 1000.0);
            }
        }
    }
    latencies_ms.sort_by(f64::total_cmp);
    for replica in &mut cluster {
        replica.terminate(Duration::from_secs(15)).await;
    }
    Ok(Run {
        replicas,
        jobs: jobs_n,
        seconds,
        llm_calls: llm.calls(),
        replica_cpu,
        postgres_cpu,
        latencies_ms,
    })
}

fn parse_time(text: &str) -> Option<SystemTime> {
    let at = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    let nanos = u64::try_from(at.timestamp_nanos_opt()?).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos))
}

fn main() -> anyhow::Result<()> {
    let jobs_n: usize = std::env::var("BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(24);
    let llm_ms: u64 = std::env::var("BENCH_LLM_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "replicas benchmark: {jobs_n} LLM training jobs (3 epochs, ~16 calls each), canned LLM {llm_ms} ms/call, \
         2 workers per replica, PostgreSQL, {cores} CPU cores"
    );
    let mut runs = Vec::new();
    for replicas in [1, 2, 3] {
        let result = runtime.block_on(run(replicas, jobs_n, llm_ms))?;
        eprintln!("  {replicas} replica(s): {:.1} s", result.seconds);
        runs.push(result);
    }
    let base = runs[0].jobs as f64 / runs[0].seconds * 60.0;
    println!();
    println!(
        "| replicas | jobs | wall s | jobs/min | scaling | LLM calls | replica CPU s | PostgreSQL CPU s | cores busy (replicas + PG) | event latency p50 ms | p99 ms | n |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for run in &runs {
        let per_min = run.jobs as f64 / run.seconds * 60.0;
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.2}× | {} | {:.1} | {:.1} | {:.2} | {:.1} | {:.1} | {} |",
            run.replicas,
            run.jobs,
            run.seconds,
            per_min,
            per_min / base,
            run.llm_calls,
            run.replica_cpu,
            run.postgres_cpu,
            (run.replica_cpu + run.postgres_cpu) / run.seconds,
            percentile(&run.latencies_ms, 50.0),
            percentile(&run.latencies_ms, 99.0),
            run.latencies_ms.len(),
        );
    }
    println!();
    println!(
        "Event latency: from the event's write (its `at`, on the replica running the job) to its \
         arrival over the WebSocket on the last replica; with 2+ replicas only jobs that ran on \
         another replica count. \"Cores busy\" is the CPU time of the replicas and of every \
         local PostgreSQL process over wall time (the benchmark's own client is not counted)."
    );
    Ok(())
}

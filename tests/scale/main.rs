//! Scale-out on PostgreSQL: three real `gradelab serve` processes share one database and
//! one data directory; 30 LLM-engine training jobs run against a canned OpenAI-compatible
//! endpoint while one replica is killed with SIGKILL. Every job finishes exactly once and a
//! subscriber on a surviving replica sees every event, in order, of the jobs that ran on
//! the killed one. Runs in the PostgreSQL pass (`GRADELAB_TEST_DB=postgres`).

mod cluster;
mod pg_restart;
mod upload_kill;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use cluster::{CannedLlm, ClusterConfig, PgDb, Replica};
use entity::{grader_versions, job_events, jobs};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};
use serde_json::Value;

const JOBS: usize = 30;

/// The `gradelab` binary of this test's profile: `GRADELAB_SERVER_BIN` if set, else
/// `target/<profile>/gradelab` when it is newer than every server source file (as after
/// `cargo nextest run --workspace`, which builds it), else built now with cargo.
fn server_binary() -> anyhow::Result<std::path::PathBuf> {
    if let Some(bin) = std::env::var_os("GRADELAB_SERVER_BIN") {
        return Ok(bin.into());
    }
    let exe = std::env::current_exe()?;
    let dir = cluster::profile_dir(&exe).context("test binary location")?;
    let bin = dir.join("gradelab");
    let root = gradelab_tests::workspace_root();
    let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
    let newest_source = ["server/src", "entity/src", "migration/src", "Cargo.lock"]
        .iter()
        .filter_map(|p| newest_mtime(&root.join(p)))
        .max();
    if let (Some(built), Some(source)) = (built, newest_source) {
        if built >= source {
            return Ok(bin);
        }
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut build = std::process::Command::new(cargo);
    build.args(["build", "-q", "-p", "gradelab-server", "--bin", "gradelab"]);
    if dir.file_name().is_some_and(|name| name == "release") {
        build.arg("--release");
    }
    let status = build
        .current_dir(&root)
        .status()
        .context("running cargo build")?;
    anyhow::ensure!(status.success(), "cargo build -p gradelab-server failed");
    Ok(bin)
}

/// The latest modification time of a file or of any file below a directory.
fn newest_mtime(path: &std::path::Path) -> Option<std::time::SystemTime> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    std::fs::read_dir(path)
        .ok()?
        .flatten()
        .filter_map(|entry| newest_mtime(&entry.path()))
        .max()
}

fn skip_unless_postgres() -> bool {
    if std::env::var("GRADELAB_TEST_DB").as_deref() == Ok("postgres") {
        return false;
    }
    eprintln!(
        "SKIPPED: the scale-out test needs PostgreSQL; it runs in the PostgreSQL pass \
         (GRADELAB_TEST_DB=postgres GRADELAB_TEST_PG_URL=postgres://…)"
    );
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_finish_every_job_exactly_once_when_one_is_killed() -> anyhow::Result<()> {
    if skip_unless_postgres() {
        return Ok(());
    }
    let began = Instant::now();
    let bin = server_binary()?;
    eprintln!(
        "scale: server binary ready at {:.1}s",
        began.elapsed().as_secs_f64()
    );
    let db = PgDb::create("gradelab_scale").await?;
    let llm = CannedLlm::start(Duration::from_millis(60)).await?;
    let data = tempfile::tempdir()?;
    let config = ClusterConfig {
        bin,
        database_url: db.url.clone(),
        data_dir: data.path().to_path_buf(),
        llm_url: llm.base_url.clone(),
        workers: 2,
        lease_secs: 3,
    };
    // The first replica applies the migrations; the others find them applied.
    let a = Replica::start(&config, "a").await?;
    let (b, c) = tokio::join!(Replica::start(&config, "b"), Replica::start(&config, "c"));
    let (b, mut c) = (b?, c?);
    for replica in [&a, &b, &c] {
        assert_eq!(replica.get("/readyz").await?, (200, "ready".to_owned()));
    }
    eprintln!(
        "scale: three replicas ready at {:.1}s",
        began.elapsed().as_secs_f64()
    );
    let token = a.sign_up("scale").await?;
    let guide = a.small_guide(&token).await?;
    let replicas = [&a, &b, &c];
    let mut job_ids = Vec::new();
    for i in 0..JOBS {
        job_ids.push(replicas[i % 3].start_training(&token, &guide, 2).await?);
    }
    eprintln!(
        "scale: {JOBS} jobs queued at {:.1}s",
        began.elapsed().as_secs_f64()
    );
    // A subscriber on replica B for every job, from its first event.
    let mut watchers = Vec::new();
    for job in &job_ids {
        let stream = b.subscribe_job(&token, job, 0).await?;
        watchers.push(tokio::spawn(stream.collect(Duration::from_secs(150))));
    }

    // Kill C (SIGKILL) while it runs a job that has finished at least one epoch.
    let conn = sea_orm::Database::connect(&db.url).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let victim = loop {
        anyhow::ensure!(Instant::now() < deadline, "replica C never ran a job");
        let running = jobs::Entity::find()
            .filter(jobs::Column::Status.eq(entity::enums::JobStatus::Running))
            .filter(jobs::Column::CurrentEpoch.is_not_null())
            .all(&conn)
            .await?;
        if let Some(job) = running
            .iter()
            .find(|j| j.lease_owner.as_deref().is_some_and(|o| c.owns(o)))
        {
            break job.id;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    c.kill9();
    let killed_at = began.elapsed();

    let mut seen: BTreeMap<i32, Vec<Value>> = BTreeMap::new();
    for (job, watcher) in job_ids.iter().zip(watchers) {
        let id: i32 = job.as_str().unwrap_or_default().parse()?;
        let events = watcher.await??;
        seen.insert(id, events.into_iter().map(|(event, _)| event).collect());
    }
    let finished_at = began.elapsed();

    // Every job succeeded once; its log is gap-free, has one final event, each epoch once,
    // and the job made exactly one grader version.
    let mut taken_over = BTreeSet::new();
    for (&id, live) in &seen {
        let job = jobs::Entity::find_by_id(id)
            .one(&conn)
            .await?
            .context("job row")?;
        assert_eq!(
            job.status,
            entity::enums::JobStatus::Succeeded,
            "job {id}: {:?}",
            job.error
        );
        let log = job_events::Entity::find()
            .filter(job_events::Column::JobId.eq(id))
            .order_by_asc(job_events::Column::Seq)
            .all(&conn)
            .await?;
        let seqs: Vec<i32> = log.iter().map(|e| e.seq).collect();
        assert_eq!(
            seqs,
            (1..=log.len() as i32).collect::<Vec<_>>(),
            "job {id}: gaps in the log"
        );
        let terminal = log
            .iter()
            .filter(|e| matches!(e.kind.as_str(), "succeeded" | "failed" | "cancelled"))
            .count();
        assert_eq!(terminal, 1, "job {id}: one final event");
        assert_eq!(log.last().map(|e| e.kind.as_str()), Some("succeeded"));
        let epochs: Vec<u64> = log
            .iter()
            .filter(|e| e.kind == "epoch")
            .filter_map(|e| e.payload["epoch"].as_u64())
            .collect();
        let unique: BTreeSet<u64> = epochs.iter().copied().collect();
        assert_eq!(
            epochs.len(),
            unique.len(),
            "job {id}: an epoch was reported twice: {epochs:?}"
        );
        assert_eq!(
            unique,
            (0..=2).collect::<BTreeSet<u64>>(),
            "job {id}: epochs 0, 1, 2"
        );
        let versions = grader_versions::Entity::find()
            .filter(grader_versions::Column::JobId.eq(id))
            .count(&conn)
            .await?;
        assert_eq!(versions, 1, "job {id}: one grader version");
        // What the subscriber on B saw is the whole log, in order.
        let live_seqs: Vec<i64> = live.iter().filter_map(|e| e["seq"].as_i64()).collect();
        let log_seqs: Vec<i64> = seqs.iter().map(|&s| i64::from(s)).collect();
        assert_eq!(
            live_seqs, log_seqs,
            "job {id}: the subscriber on B missed or reordered events"
        );
        let live_kinds: Vec<&str> = live.iter().filter_map(|e| e["kind"].as_str()).collect();
        let log_kinds: Vec<&str> = log.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(live_kinds, log_kinds, "job {id}");
        // Runs: who started it.
        let workers: Vec<&str> = log
            .iter()
            .filter(|e| e.kind == "started")
            .filter_map(|e| e.payload["worker"].as_str())
            .collect();
        if workers.iter().any(|w| c.owns(w)) && workers.len() > 1 {
            assert!(
                !c.owns(workers[workers.len() - 1]),
                "job {id}: finished on the killed replica"
            );
            taken_over.insert(id);
        }
    }
    assert!(
        taken_over.contains(&victim),
        "job {victim}, running on C when it was killed, was taken over by another replica"
    );
    // The victim resumed after its last finished epoch instead of starting over.
    let victim_log = job_events::Entity::find()
        .filter(job_events::Column::JobId.eq(victim))
        .filter(job_events::Column::Kind.eq("started"))
        .order_by_asc(job_events::Column::Seq)
        .all(&conn)
        .await?;
    assert_eq!(
        victim_log.last().map(|e| e.payload["resumed"].clone()),
        Some(Value::Bool(true))
    );

    // The survivors report the cluster's jobs, the LLM calls they made and the open
    // subscriptions; SIGTERM stops a replica promptly.
    let (status, metrics) = b.get("/metrics").await?;
    assert_eq!(status, 200);
    assert!(
        metrics.contains(&format!("gradelab_jobs{{state=\"succeeded\"}} {JOBS}")),
        "{metrics}"
    );
    assert!(metrics
        .contains("gradelab_llm_calls_total{model=\"canned\",outcome=\"ok\",cache=\"miss\"}"));
    assert!(metrics.contains("gradelab_subscriptions_open"));
    let mut a = a;
    let stopped = Instant::now();
    assert!(
        a.terminate(Duration::from_secs(20)).await,
        "replica A exits on SIGTERM"
    );
    let stop_took = stopped.elapsed();

    println!(
        "scale: {JOBS} jobs on 3 replicas, {} LLM calls; replica C (pid {}) killed at {:.1}s while running job {victim}; \
         {} job(s) taken over ({:?}); all done at {:.1}s; replica A stopped {:.2}s after SIGTERM",
        llm.calls(),
        c.pid,
        killed_at.as_secs_f64(),
        taken_over.len(),
        taken_over,
        finished_at.as_secs_f64(),
        stop_took.as_secs_f64(),
    );
    drop(conn);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_a_running_job_to_another_replica_at_once() -> anyhow::Result<()> {
    if skip_unless_postgres() {
        return Ok(());
    }
    let bin = server_binary()?;
    let db = PgDb::create("gradelab_scale").await?;
    let llm = CannedLlm::start(Duration::from_millis(150)).await?;
    let data = tempfile::tempdir()?;
    let config = ClusterConfig {
        bin,
        database_url: db.url.clone(),
        data_dir: data.path().to_path_buf(),
        llm_url: llm.base_url.clone(),
        workers: 1,
        // Long enough that a take-over by lease expiry would fail the timing below.
        lease_secs: 60,
    };
    let mut a = Replica::start(&config, "a").await?;
    let token = a.sign_up("drain").await?;
    let guide = a.small_guide(&token).await?;
    let job = a.start_training(&token, &guide, 3).await?;
    let id: i32 = job.as_str().unwrap_or_default().parse()?;
    let conn = sea_orm::Database::connect(&db.url).await?;
    // Wait until A has finished epoch 0 of the job.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        anyhow::ensure!(
            Instant::now() < deadline,
            "replica A never finished an epoch"
        );
        let row = jobs::Entity::find_by_id(id)
            .one(&conn)
            .await?
            .context("job")?;
        if row.current_epoch.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let b = Replica::start(&config, "b").await?;
    let subscriber = b.subscribe_job(&token, &job, 0).await?;
    let watcher = tokio::spawn(subscriber.collect(Duration::from_secs(120)));
    let sigterm = Instant::now();
    assert!(
        a.terminate(Duration::from_secs(15)).await,
        "A exits within its grace period after SIGTERM"
    );
    let exited = sigterm.elapsed();
    let events: Vec<Value> = watcher.await??.into_iter().map(|(e, _)| e).collect();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(
        kinds.last(),
        Some(&"succeeded"),
        "{kinds:?}: {:?}",
        events.last()
    );
    let starts: Vec<&Value> = events.iter().filter(|e| e["kind"] == "started").collect();
    assert_eq!(starts.len(), 2, "started on A, resumed on B: {kinds:?}");
    assert!(a.owns(starts[0]["payload"]["worker"].as_str().unwrap_or_default()));
    assert!(b.owns(starts[1]["payload"]["worker"].as_str().unwrap_or_default()));
    assert_eq!(starts[1]["payload"]["resumed"], true);
    let handed_back = events
        .iter()
        .position(|e| {
            e["payload"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("handed back"))
        })
        .context("A logged that it handed the job back")?;
    let resumed_at = events
        .iter()
        .position(|e| e == starts[1])
        .context("the second start")?;
    assert!(handed_back < resumed_at);
    // B took over long before A's 60 s lease would have lapsed.
    let log = job_events::Entity::find()
        .filter(job_events::Column::JobId.eq(id))
        .order_by_asc(job_events::Column::Seq)
        .all(&conn)
        .await?;
    let written = |seq: &Value| {
        log.iter()
            .find(|e| Some(i64::from(e.seq)) == seq.as_i64())
            .map(|e| e.created_at)
    };
    let (Some(released), Some(resumed)) = (
        written(&events[handed_back]["seq"]),
        written(&starts[1]["seq"]),
    ) else {
        anyhow::bail!("events missing from the log");
    };
    let gap_ms = (resumed - released).num_milliseconds();
    assert!(
        gap_ms < 5_000,
        "B claimed the job {gap_ms} ms after A handed it back"
    );
    let epochs: Vec<u64> = events
        .iter()
        .filter(|e| e["kind"] == "epoch")
        .filter_map(|e| e["payload"]["epoch"].as_u64())
        .collect();
    assert_eq!(epochs, vec![0, 1, 2, 3], "each epoch once, in order");
    println!(
        "drain: A exited {:.2}s after SIGTERM; B resumed the job {gap_ms} ms after it was handed back",
        exited.as_secs_f64()
    );
    Ok(())
}

#[tokio::test]
async fn readiness_and_prometheus_metrics_are_served_on_either_database() -> anyhow::Result<()> {
    let app = gradelab_tests::spawn_app().await;
    let ready = app
        .client
        .get(format!("{}/readyz", app.base_url))
        .send()
        .await?;
    assert_eq!(ready.status().as_u16(), 200);
    assert_eq!(ready.text().await?, "ready");
    let metrics = app
        .client
        .get(format!("{}/metrics", app.base_url))
        .send()
        .await?;
    assert_eq!(metrics.status().as_u16(), 200);
    assert!(metrics
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/openmetrics-text")));
    let body = metrics.text().await?;
    for state in ["queued", "running", "succeeded", "failed", "cancelled"] {
        assert!(
            body.contains(&format!("gradelab_jobs{{state=\"{state}\"}} 0")),
            "no jobs yet in state {state}: {body}"
        );
    }
    assert!(
        body.contains("# TYPE gradelab_subscriptions_open gauge"),
        "{body}"
    );
    assert!(
        body.contains("# TYPE gradelab_llm_call_seconds histogram"),
        "{body}"
    );
    assert!(body.trim_end().ends_with("# EOF"));
    Ok(())
}

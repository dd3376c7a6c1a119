//! PostgreSQL restarted under a running replica: a dedicated PostgreSQL instance (its own
//! data directory and port, so the shared cluster and other tests are untouched) is
//! stopped for a few seconds while a `gradelab serve` process runs a training job, then
//! started again. The replica reports 503 on `/readyz` during the outage and 200 after,
//! the job finishes exactly once, a subscriber opened before the outage receives every
//! event of the log in order, and the replica keeps serving requests.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use entity::{grader_versions, job_events, jobs};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};
use serde_json::Value;

use crate::cluster::{CannedLlm, ClusterConfig, Replica};

/// A PostgreSQL server of its own, run as the `postgres` OS user with `pg_ctl`.
struct OwnPostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl OwnPostgres {
    /// Initialises and starts an instance; `Err` when this machine cannot (not root, no
    /// PostgreSQL binaries).
    fn start() -> anyhow::Result<Self> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .context("PostgreSQL is not installed under /usr/lib/postgresql")?
            .flatten()
            .map(|entry| entry.path().join("bin"))
            .filter(|bin| bin.join("pg_ctl").exists())
            .max()
            .context("no pg_ctl under /usr/lib/postgresql")?;
        let dir = tempfile::Builder::new()
            .prefix("gradelab-pg-")
            .tempdir_in("/tmp")?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let chown = Command::new("chown")
            .arg("postgres:")
            .arg(dir.path())
            .status()?;
        anyhow::ensure!(chown.success(), "chown postgres failed (not root?)");
        let pg = Self { bin, dir, port };
        pg.run(
            "initdb",
            &[
                "-D",
                &pg.data(),
                "-U",
                "gradelab",
                "--auth=trust",
                "--no-sync",
            ],
        )?;
        pg.ctl("start")?;
        Ok(pg)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) -> anyhow::Result<()> {
        let output = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(tool))
            .args(args)
            .current_dir("/")
            .output()
            .with_context(|| format!("running {tool}"))?;
        if !output.status.success() {
            bail!(
                "{tool} failed: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    /// `pg_ctl start|stop` (stop in fast mode: sessions are terminated, as in a restart).
    fn ctl(&self, action: &str) -> anyhow::Result<()> {
        let log = self.dir.path().join("postgres.log").display().to_string();
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let mut args = vec!["-D", &*self.data(), "-l", &log, "-w", "-t", "60"]
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>();
        args.push(action.to_owned());
        if action == "start" {
            args.extend(["-o".to_owned(), options]);
        } else {
            args.extend(["-m".to_owned(), "fast".to_owned()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run("pg_ctl", &args)
    }

    fn url(&self) -> String {
        format!("postgres://gradelab@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", &self.data(), "-m", "immediate", "stop"])
            .current_dir("/")
            .output();
    }
}

/// Polls `/readyz` until it answers `status` (or `timeout`); returns how long it took.
async fn wait_ready(replica: &Replica, status: u16, timeout: Duration) -> anyhow::Result<Duration> {
    let began = Instant::now();
    loop {
        if let Ok((got, _)) = replica.get("/readyz").await {
            if got == status {
                return Ok(began.elapsed());
            }
        }
        if began.elapsed() > timeout {
            bail!("/readyz did not answer {status} within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_survives_a_postgres_restart_mid_job_and_loses_no_event() -> anyhow::Result<()> {
    if crate::skip_unless_postgres() {
        return Ok(());
    }
    let pg = match OwnPostgres::start() {
        Ok(pg) => pg,
        Err(err) => {
            eprintln!("SKIPPED: cannot run a PostgreSQL instance of its own here: {err:#}");
            return Ok(());
        }
    };
    let bin = crate::server_binary()?;
    let llm = CannedLlm::start(Duration::from_millis(150)).await?;
    let data = tempfile::tempdir()?;
    let config = ClusterConfig {
        bin,
        database_url: pg.url(),
        data_dir: data.path().to_path_buf(),
        llm_url: llm.base_url.clone(),
        workers: 1,
        lease_secs: 3,
    };
    let replica = Replica::start(&config, "a").await?;
    let token = replica.sign_up("restart").await?;
    let guide = replica.small_guide(&token).await?;
    let job = replica.start_training(&token, &guide, 4).await?;
    let id: i32 = job.as_str().unwrap_or_default().parse()?;
    let subscriber = replica.subscribe_job(&token, &job, 0).await?;
    let watcher = tokio::spawn(subscriber.collect(Duration::from_secs(180)));

    // Restart PostgreSQL once the job has finished its first epoch.
    {
        let conn = sea_orm::Database::connect(&pg.url()).await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            anyhow::ensure!(Instant::now() < deadline, "the job never finished an epoch");
            let row = jobs::Entity::find_by_id(id)
                .one(&conn)
                .await?
                .context("job")?;
            if row.current_epoch.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        conn.close().await?;
    }
    pg.ctl("stop")?;
    let stopped = Instant::now();
    let saw_503 = wait_ready(&replica, 503, Duration::from_secs(15)).await?;
    // Stay down long enough for the job, its heartbeat and the subscription to notice.
    tokio::time::sleep(Duration::from_secs(4)).await;
    pg.ctl("start")?;
    let outage = stopped.elapsed();
    let back_200 = wait_ready(&replica, 200, Duration::from_secs(30)).await?;

    let events: Vec<Value> = watcher.await??.into_iter().map(|(e, _)| e).collect();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(kinds.last(), Some(&"succeeded"), "{kinds:?}");

    let conn = sea_orm::Database::connect(&pg.url()).await?;
    let row = jobs::Entity::find_by_id(id)
        .one(&conn)
        .await?
        .context("job")?;
    assert_eq!(
        row.status,
        entity::enums::JobStatus::Succeeded,
        "{:?}",
        row.error
    );
    let log = job_events::Entity::find()
        .filter(job_events::Column::JobId.eq(id))
        .order_by_asc(job_events::Column::Seq)
        .all(&conn)
        .await?;
    let seqs: Vec<i64> = log.iter().map(|e| i64::from(e.seq)).collect();
    assert_eq!(
        seqs,
        (1..=log.len() as i64).collect::<Vec<_>>(),
        "gaps in the log"
    );
    let live: Vec<i64> = events.iter().filter_map(|e| e["seq"].as_i64()).collect();
    assert_eq!(
        live, seqs,
        "the subscriber saw every logged event, in order"
    );
    let terminal = log
        .iter()
        .filter(|e| matches!(e.kind.as_str(), "succeeded" | "failed" | "cancelled"))
        .count();
    assert_eq!(terminal, 1, "the job finished exactly once");
    let epochs: Vec<u64> = log
        .iter()
        .filter(|e| e.kind == "epoch")
        .filter_map(|e| e.payload["epoch"].as_u64())
        .collect();
    let mut unique = epochs.clone();
    unique.dedup();
    assert_eq!(epochs, unique, "each epoch reported once: {epochs:?}");
    assert_eq!(unique, vec![0, 1, 2, 3, 4]);
    let versions = grader_versions::Entity::find()
        .filter(grader_versions::Column::JobId.eq(id))
        .count(&conn)
        .await?;
    assert_eq!(versions, 1, "one grader version");
    let starts = kinds.iter().filter(|k| **k == "started").count();

    // The replica still serves: a new teacher signs up, and /readyz is 200.
    replica.sign_up("after").await?;
    assert_eq!(replica.get("/readyz").await?.0, 200);
    println!(
        "pg restart: /readyz 503 {:.2}s after the stop, PostgreSQL down {:.1}s, /readyz 200 {:.2}s after the start; \
         job {id} succeeded once with {} events ({starts} start(s)), the subscriber saw all of them",
        saw_503.as_secs_f64(),
        outage.as_secs_f64(),
        back_200.as_secs_f64(),
        log.len()
    );
    Ok(())
}

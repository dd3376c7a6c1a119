//! Load on the GraphQL read path, measured with `wrk` (Debian's package) against a real
//! `gradelab serve` process on SQLite, beside the ceiling of the same server: `/healthz`.
//!
//! The read path is the dashboard's query: a page of guides (a Relay connection) with each
//! guide's items and latest job — batched by DataLoaders, so the page costs a fixed number
//! of SQL queries whatever its size. The table gives requests/s and p50/p99 latency at a
//! fixed concurrency, and the ratio to `/healthz` in the same run. A third row is the
//! framework's ceiling: the same query answered from memory by an async-graphql schema of
//! the same shape on the same stack (`support/static_graphql.rs`; its answer is checked to
//! equal the server's), so the table separates what GradeLab's own work costs from what
//! executing a GraphQL response of this size costs.
//!
//! The page is read by one teacher (the figure), then by `BENCH_TEACHERS` teachers
//! in turn, each with their own guides: concurrent reads of the *same* page share one
//! database read, so the second row shows what the read costs when they cannot.
//!
//! `cargo bench -p gradelab-server --bench graphql_load`. Settings: `BENCH_SECONDS`
//! (default 10 per endpoint), `BENCH_CONNECTIONS` (default 16), `BENCH_GUIDES` (default 20,
//! 5 items each), `BENCH_TEACHERS` (default 8). Server and load generator share this
//! machine's cores.

#[path = "../../tests/scale/cluster.rs"]
mod cluster;
#[path = "support/static_graphql.rs"]
mod static_graphql;

// The same allocator as the server, for the in-memory ceiling.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};
use cluster::{ClusterConfig, Replica};
use serde_json::json;

/// The dashboard's read.
const QUERY: &str = "{ guides(first: 20) { edges { node { id title itemCount totalMarks \
    items { id label maxMarks } latestJob { id kind status progress } } } } }";

/// What `wrk --latency` reported.
struct Load {
    requests_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `wrk`, installed from Debian's packages when missing and running as root.
fn ensure_wrk() -> anyhow::Result<()> {
    if Command::new("wrk").arg("--version").output().is_ok() {
        return Ok(());
    }
    eprintln!("installing wrk (apt)");
    let status = Command::new("apt-get")
        .args(["install", "-y", "-qq", "wrk"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("apt-get")?;
    if !status.success() {
        bail!("wrk is not installed and apt-get could not install it");
    }
    Ok(())
}

/// A latency like `1.23ms`, `456.00us` or `1.02s`, in milliseconds.
fn millis(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => value / 1000.0,
        "ms" => value,
        "s" => value * 1000.0,
        "m" => value * 60_000.0,
        _ => return None,
    })
}

fn parse_wrk(output: &str) -> anyhow::Result<Load> {
    let mut load = Load {
        requests_per_second: 0.0,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        non_2xx: 0,
    };
    for line in output.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            ["Requests/sec:", value] => load.requests_per_second = value.parse()?,
            ["50%", value] => load.p50_ms = millis(value).context("p50")?,
            ["99%", value] => load.p99_ms = millis(value).context("p99")?,
            ["Non-2xx", "or", "3xx", "responses:", value] => load.non_2xx = value.parse()?,
            _ => {}
        }
    }
    if load.requests_per_second == 0.0 {
        bail!("no Requests/sec in wrk's output:\n{output}");
    }
    Ok(load)
}

/// Runs wrk against `url` with an optional Lua script.
fn wrk(url: &str, script: Option<&Path>, seconds: u64, connections: u64) -> anyhow::Result<Load> {
    let mut command = Command::new("wrk");
    command.args([
        "-t1",
        &format!("-c{connections}"),
        &format!("-d{seconds}s"),
        "--latency",
    ]);
    if let Some(script) = script {
        command.arg("-s").arg(script);
    }
    let output = command.arg(url).output().context("running wrk")?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        bail!(
            "wrk failed: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse_wrk(&text)
}

/// A 2-second warm-up, then the measured run; any failed request fails the bench.
fn measure(
    url: &str,
    script: Option<&Path>,
    seconds: u64,
    connections: u64,
) -> anyhow::Result<Load> {
    wrk(url, script, 2, connections)?;
    let load = wrk(url, script, seconds, connections)?;
    if load.non_2xx > 0 {
        bail!("{} requests to {url} failed", load.non_2xx);
    }
    Ok(load)
}

/// Signs up a teacher and creates `guides` guides of five items for them, each with an
/// extraction job.
async fn seed(server: &Replica, name: &str, guides: usize) -> anyhow::Result<String> {
    let token = server.sign_up(name).await?;
    for g in 0..guides {
        let text: String = (1..=5)
            .map(|q| {
                format!(
                    "Question {q} (2 marks)\nExplain idea {q} of topic {g}.\n\
                     Model answer: idea {q} follows from its cause and has an effect.\n\
                     Marking criteria:\n1) names the cause (1)\n2) names the effect (1)\n\n"
                )
            })
            .collect();
        server
            .graphql(
                Some(&token),
                "mutation($title: String!, $text: String!) { createGuideFromText(title: $title, text: $text, method: PARSER) { __typename } }",
                json!({ "title": format!("Guide {g}"), "text": text }),
            )
            .await?;
    }
    // Extraction runs in the background: wait until every guide has its items.
    let mut last = serde_json::Value::Null;
    for _ in 0..1200 {
        let data = server
            .graphql(
                Some(&token),
                "{ guides(first: 100) { edges { node { itemCount } } } }",
                json!({}),
            )
            .await?;
        let counts: Vec<i64> = data["guides"]["edges"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["node"]["itemCount"].as_i64())
            .collect();
        if counts.len() == guides && counts.iter().all(|c| *c == 5) {
            return Ok(token);
        }
        last = data;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    bail!("the seeded guides were not extracted in time: {last}")
}

fn main() -> anyhow::Result<()> {
    let seconds: u64 = env_or("BENCH_SECONDS", 10);
    let connections: u64 = env_or("BENCH_CONNECTIONS", 16);
    let guides: usize = env_or("BENCH_GUIDES", 20);
    ensure_wrk()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
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
    let teachers: usize = env_or("BENCH_TEACHERS", 8);
    let (server, token, others) = runtime.block_on(async {
        let server = Replica::start(&config, "load").await?;
        let token = seed(&server, "Load", guides).await?;
        let others = futures::future::try_join_all((1..=teachers).map(|n| {
            let server = &server;
            async move { seed(server, &format!("Teacher{n}"), guides).await }
        }))
        .await?;
        anyhow::Ok((server, token, others))
    })?;

    let body = json!({ "query": QUERY }).to_string();
    // A Lua long string: the JSON needs no escaping inside it.
    let request = format!(
        "wrk.method = \"POST\"\nwrk.body = [==[{body}]==]\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
    );
    let script = data.path().join("guides.lua");
    std::fs::write(
        &script,
        format!("{request}wrk.headers[\"Authorization\"] = \"Bearer {token}\"\n"),
    )?;
    // Each request as the next teacher in turn.
    let rotating = data.path().join("teachers.lua");
    let tokens: Vec<String> = others.iter().map(|t| format!("\"{t}\"")).collect();
    std::fs::write(
        &rotating,
        format!(
            "{request}local tokens = {{{}}}\nlocal turn = 0\nrequest = function()\n  \
             turn = turn % #tokens + 1\n  wrk.headers[\"Authorization\"] = \"Bearer \" .. tokens[turn]\n  \
             return wrk.format()\nend\n",
            tokens.join(", ")
        ),
    )?;

    let graphql = format!("{}/graphql", server.base_url);
    let health = measure(
        &format!("{}/healthz", server.base_url),
        None,
        seconds,
        connections,
    )?;
    let read = measure(&graphql, Some(&script), seconds, connections)?;
    let mixed = measure(&graphql, Some(&rotating), seconds, connections)?;

    // The framework's ceiling: the same answer from memory, measured while the server idles.
    let expected = runtime.block_on(server.graphql(Some(&token), QUERY, json!({})))?;
    let ceiling_runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let ceiling_addr = static_graphql::start(&ceiling_runtime, guides)?;
    let answer: serde_json::Value = ceiling_runtime.block_on(async {
        reqwest::Client::new()
            .post(format!("http://{ceiling_addr}/graphql"))
            .json(&json!({ "query": QUERY }))
            .send()
            .await?
            .json()
            .await
    })?;
    if answer["data"] != expected {
        bail!(
            "the in-memory schema answers differently:\n{}\nvs the server's\n{expected}",
            answer["data"]
        );
    }
    let ceiling = measure(
        &format!("http://{ceiling_addr}/graphql"),
        Some(&script),
        seconds,
        connections,
    )?;

    println!("\nGraphQL read path on SQLite: {guides} guides x 5 items, first 20 with items and latest job");
    println!("wrk -t1 -c{connections} -d{seconds}s, server and generator on this machine\n");
    println!("| endpoint | req/s | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|");
    for (name, load) in [
        ("GET /healthz (ceiling)", &health),
        ("POST /graphql guides page", &read),
        (&*format!("the same, {teachers} teachers in turn"), &mixed),
        ("same answer from memory, same framework (no DB)", &ceiling),
    ] {
        println!(
            "| {name} | {:.0} | {:.2} | {:.2} |",
            load.requests_per_second, load.p50_ms, load.p99_ms
        );
    }
    println!(
        "\nratio graphql/healthz: {:.3} (goal: p99 < 20 ms at >= 3000 req/s)",
        read.requests_per_second / health.requests_per_second
    );
    println!(
        "ratio graphql/in-memory: {:.3} (the share of the framework's ceiling the server reaches)",
        read.requests_per_second / ceiling.requests_per_second
    );
    drop(server);
    Ok(())
}

//! A server killed in the middle of an upload: a real `gradelab serve` process receives the
//! first half of a 10 MiB DOCX guide (seen in its open spool file) and is killed with
//! SIGKILL. Started again on the same database and data directory, it holds exactly the
//! rows and stored files it held before — nothing of the cut upload, nothing of the earlier
//! guide lost — the teacher's session still works, and the same file is taken again as a
//! new guide: the cut upload left no hash behind to refuse it as a duplicate. Runs on the
//! pass's database (SQLite, or PostgreSQL in the PostgreSQL pass).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _};
use entity::{guide_items, guides, job_events, jobs, uploads};
use futures::StreamExt as _;
use sea_orm::{DatabaseConnection, EntityTrait, QueryOrder};
use serde_json::{json, Value};

use crate::cluster::{docx_guide, ClusterConfig, PgDb, Replica};

const UPLOAD: &str =
    "mutation($f: Upload!) { uploadGuide(file: $f, method: PARSER) { guide { id } } }";

/// A GraphQL multipart request uploading `body` as `name`.
fn upload_form(name: &str, body: reqwest::Body) -> reqwest::multipart::Form {
    let operations = json!({ "query": UPLOAD, "variables": { "f": null } });
    reqwest::multipart::Form::new()
        .text("operations", operations.to_string())
        .text("map", r#"{"0":["variables.f"]}"#)
        .part(
            "0",
            reqwest::multipart::Part::stream(body).file_name(name.to_owned()),
        )
}

/// Uploads `bytes` whole and waits until its guide is extracted; returns the guide's id.
async fn upload_guide(server: &Replica, token: &str, bytes: Vec<u8>) -> anyhow::Result<Value> {
    let body: Value = reqwest::Client::new()
        .post(format!("{}/graphql", server.base_url))
        .bearer_auth(token)
        .multipart(upload_form("guide.docx", bytes.into()))
        .send()
        .await?
        .json()
        .await?;
    if let Some(errors) = body.get("errors") {
        bail!("upload refused: {errors}");
    }
    let guide = body["data"]["uploadGuide"]["guide"]["id"].clone();
    for _ in 0..300 {
        let data = server
            .graphql(
                Some(token),
                "query($id: ID!) { guide(id: $id) { status itemCount } }",
                json!({ "id": guide }),
            )
            .await?;
        match data["guide"]["status"].as_str() {
            Some("READY") => {
                anyhow::ensure!(data["guide"]["itemCount"] == 3, "three items: {data}");
                return Ok(guide);
            }
            Some("FAILED") => bail!("extraction failed: {data}"),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    bail!("guide {guide} not extracted within 30 s")
}

/// Every row a guide upload writes or could leave behind, in id order.
#[derive(Debug, PartialEq)]
struct Rows {
    guides: Vec<guides::Model>,
    items: Vec<guide_items::Model>,
    uploads: Vec<uploads::Model>,
    jobs: Vec<jobs::Model>,
    events: Vec<job_events::Model>,
}

async fn rows(db: &DatabaseConnection) -> anyhow::Result<Rows> {
    Ok(Rows {
        guides: guides::Entity::find()
            .order_by_asc(guides::Column::Id)
            .all(db)
            .await?,
        items: guide_items::Entity::find()
            .order_by_asc(guide_items::Column::Id)
            .all(db)
            .await?,
        uploads: uploads::Entity::find()
            .order_by_asc(uploads::Column::Id)
            .all(db)
            .await?,
        jobs: jobs::Entity::find()
            .order_by_asc(jobs::Column::Id)
            .all(db)
            .await?,
        events: job_events::Entity::find()
            .order_by_asc(job_events::Column::Id)
            .all(db)
            .await?,
    })
}

/// Every file below `dir` (the blob store, temporary files included), with its size.
fn files(dir: &Path) -> anyhow::Result<Vec<(PathBuf, u64)>> {
    let mut found = Vec::new();
    if !dir.exists() {
        return Ok(found);
    }
    for entry in std::fs::read_dir(dir).with_context(|| dir.display().to_string())? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            found.extend(files(&entry.path())?);
        } else {
            found.push((entry.path(), meta.len()));
        }
    }
    found.sort();
    Ok(found)
}

/// The size of the largest deleted file process `pid` holds open: the multipart spool of
/// an upload in progress (an unnamed temporary file).
fn spooled_bytes(pid: u32) -> u64 {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    fds.flatten()
        .filter(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|target| target.to_string_lossy().ends_with("(deleted)"))
        })
        .filter_map(|fd| std::fs::metadata(fd.path()).ok())
        .map(|meta| meta.len())
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_upload_keeps_what_it_had_and_takes_the_file_again(
) -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let pg = if std::env::var("GRADELAB_TEST_DB").as_deref() == Ok("postgres") {
        Some(PgDb::create("gradelab_upload_kill").await?)
    } else {
        None
    };
    let database_url = pg.as_ref().map_or_else(
        || format!("sqlite://{}/gradelab.db?mode=rwc", data.path().display()),
        |db| db.url.clone(),
    );
    let config = ClusterConfig {
        bin: crate::server_binary()?,
        database_url: database_url.clone(),
        data_dir: data.path().to_path_buf(),
        llm_url: "http://127.0.0.1:9/v1".to_owned(),
        workers: 1,
        lease_secs: 30,
    };
    let blobs = data.path().join("blobs");
    let mut server = Replica::start(&config, "first").await?;
    let token = server.sign_up("Uma").await?;
    let earlier = upload_guide(&server, &token, docx_guide(1, 64 * 1024)?).await?;
    let db = sea_orm::Database::connect(&database_url).await?;
    let rows_before = rows(&db).await?;
    let files_before = files(&blobs)?;
    assert_eq!(rows_before.guides.len(), 1);

    // Half of a 10 MiB upload, and the connection then waits for the rest.
    let big = docx_guide(2, 10 * 1024 * 1024)?;
    let half: Vec<Result<Vec<u8>, std::io::Error>> = big[..big.len() / 2]
        .chunks(64 * 1024)
        .map(|chunk| Ok(chunk.to_vec()))
        .collect();
    let body =
        reqwest::Body::wrap_stream(futures::stream::iter(half).chain(futures::stream::pending()));
    let cut = tokio::spawn(
        reqwest::Client::new()
            .post(format!("{}/graphql", server.base_url))
            .bearer_auth(&token)
            .multipart(upload_form("big.docx", body))
            .send(),
    );
    let mut received = 0;
    for _ in 0..300 {
        received = spooled_bytes(server.pid);
        if received >= 4 * 1024 * 1024 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        received >= 4 * 1024 * 1024,
        "the server spooled {received} bytes of the upload"
    );
    server.kill9();
    let answer = tokio::time::timeout(Duration::from_secs(10), cut).await??;
    assert!(answer.is_err(), "the cut upload got no answer: {answer:?}");

    let server = Replica::start(&config, "second").await?;
    assert_eq!(
        rows(&db).await?,
        rows_before,
        "no row of the cut upload, and every row of before"
    );
    assert_eq!(
        files(&blobs)?,
        files_before,
        "no stored or temporary file of the cut upload"
    );
    let listed = server
        .graphql(
            Some(&token),
            "{ guides(first: 10) { edges { node { id status itemCount } } } }",
            json!({}),
        )
        .await?;
    assert_eq!(
        listed["guides"]["edges"],
        json!([{ "node": { "id": earlier, "status": "READY", "itemCount": 3 } }]),
        "the session still works and the earlier guide is whole"
    );

    // The same file again, whole: a new guide, not a duplicate of the cut one.
    upload_guide(&server, &token, big).await?;
    let after = rows(&db).await?;
    assert_eq!(after.guides.len(), 2);
    assert_eq!(after.uploads.len(), 2);
    assert_eq!(
        files(&blobs)?.len(),
        files_before.len() + 1,
        "its file is stored once"
    );
    Ok(())
}

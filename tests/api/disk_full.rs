//! Disk full: the data directory is a 2 MiB tmpfs and a 3 MiB guide is uploaded. The
//! teacher gets a clear error (`extensions.code`, a message about disk space), no partial
//! file stays in the blob store, the database gains no guide or upload row, and a small
//! upload afterwards works. The database lives outside the tmpfs (a full data volume must
//! not take the database with it in this test; on PostgreSQL it is elsewhere anyway).
//! Needs `mount` (root); skipped with a printed reason otherwise.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::guides::{counts, files_under, spawn_with_db, upload, wait_for_job};

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `2m`) on `path`; `Err` says why it could not.
    fn mount(path: &Path, size: &str) -> Result<Self, String> {
        std::fs::create_dir_all(path).map_err(|err| err.to_string())?;
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700")])
            .arg("gradelab-disk-full")
            .arg(path)
            .output()
            .map_err(|err| format!("cannot run mount: {err}"))?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).trim().to_owned());
        }
        Ok(Self {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// A DOCX guide whose embedded image makes it `image_bytes` bigger (random, so nothing
/// along the way can compress it).
fn big_docx(image_bytes: usize) -> Vec<u8> {
    let document = r#"<?xml version="1.0" encoding="UTF-8"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r><w:t>Physics test</w:t></w:r></w:p><w:p><w:r><w:t>Question 1 (2 marks)</w:t></w:r></w:p><w:p><w:r><w:t>State Ohm's law.</w:t></w:r></w:p><w:p><w:r><w:t>Model answer: current is proportional to voltage at constant temperature.</w:t></w:r></w:p></w:body></w:document>"#;
    let image: Vec<u8> = (0..image_bytes).map(|_| rand::random::<u8>()).collect();
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut buf);
    let options = zip::write::SimpleFileOptions::default();
    zip.start_file("word/document.xml", options)
        .expect("zip entry");
    zip.write_all(document.as_bytes()).expect("zip write");
    zip.start_file(
        "word/media/image1.jpeg",
        options.compression_method(zip::CompressionMethod::Stored),
    )
    .expect("zip entry");
    zip.write_all(&image).expect("zip write");
    zip.finish().expect("zip finish");
    buf.into_inner()
}

#[tokio::test]
async fn an_upload_that_fills_the_disk_is_refused_cleanly_and_leaves_nothing_behind() {
    let outside = tempfile::tempdir().expect("temporary directory");
    let mount_point = outside.path().join("data");
    let tmpfs = match Tmpfs::mount(&mount_point, "2m") {
        Ok(tmpfs) => tmpfs,
        Err(reason) => {
            eprintln!("SKIPPED: cannot mount a 2 MiB tmpfs for the data directory ({reason}); run as root");
            return;
        }
    };
    let sqlite = format!(
        "sqlite://{}?mode=rwc",
        outside.path().join("gradelab.db").display()
    );
    let data_dir = tmpfs.path.clone();
    // `app.data_dir` is the helper's own temporary directory; the server's is the tmpfs.
    let blobs = tmpfs.path.join("blobs");
    let (app, db_url) = spawn_with_db(|settings| {
        settings.data_dir = data_dir;
        if settings.database.url.is_none() {
            settings.database.url = Some(sqlite.into());
        }
    })
    .await;
    let teacher = app.sign_up("fulldisk").await;
    let before = counts(&db_url).await;
    assert_eq!(files_under(&blobs).len(), 0);

    let big = big_docx(3 * 1024 * 1024);
    let refused = upload(&app, &teacher.token, "physics.docx", big, "PARSER").await;
    assert_eq!(
        refused.error_code(),
        Some("INTERNAL"),
        "{:?}",
        refused.errors
    );
    let message = refused.error_message().unwrap_or_default();
    assert!(
        message.contains("disk space") && message.contains("nothing was saved"),
        "the teacher is told the server ran out of space: {message}"
    );
    assert_eq!(
        files_under(&blobs),
        Vec::<PathBuf>::new(),
        "no partial file is left in the blob store"
    );
    assert_eq!(counts(&db_url).await, before, "no guide or upload row");
    let listed = app
        .graphql(
            Some(&teacher.token),
            "{ guides(first: 10) { edges { node { id } } } }",
            serde_json::json!({}),
        )
        .await
        .ok();
    assert_eq!(listed["guides"]["edges"], serde_json::json!([]));

    // The space the failed write took is free again: a small guide goes through.
    let small = upload(
        &app,
        &teacher.token,
        "small.txt",
        b"Physics check\n\nQuestion 1\nName the unit of electrical resistance. [1 mark]\nModel answer: The ohm.\nMark scheme:\n- ohm (1 mark)\n\nQuestion 2\nName the unit of current. [1 mark]\nModel answer: The ampere.\nMark scheme:\n- ampere (1 mark)\n".to_vec(),
        "PARSER",
    )
    .await
    .ok();
    assert!(small["uploadGuide"]["guide"]["id"].is_string(), "{small}");
    let job = wait_for_job(
        &app,
        &teacher.token,
        &small["uploadGuide"]["job"]["id"],
        std::time::Duration::from_secs(60),
    )
    .await;
    assert_eq!(job["status"], "SUCCEEDED", "{job}");
    assert_eq!(files_under(&blobs).len(), 1);
    let after = counts(&db_url).await;
    assert_eq!(after.guides, before.guides + 1);
    assert_eq!(after.uploads, before.uploads + 1);
    drop(app);
    drop(tmpfs);
}

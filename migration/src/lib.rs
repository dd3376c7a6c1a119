//! GradeLab's database schema as sea-orm migrations, for SQLite and PostgreSQL alike.
//!
//! Run [`Migrator::up`](MigratorTrait::up) at start-up. Migrations are append-only: once
//! one has shipped, change the schema with a new file, never by editing an old one.

pub use sea_orm_migration::prelude::*;

mod common;
mod m20261125_000001_create_users;
mod m20261125_000002_create_sessions;
mod m20261125_000003_create_guides;
mod m20261125_000004_create_uploads;
mod m20261125_000005_create_submissions;
mod m20261125_000006_create_jobs;
mod m20261125_000007_create_graders;
mod m20261125_000008_create_test_runs;
mod m20261125_000009_create_reports;
mod m20261125_000010_create_llm_calls;
mod m20261125_000011_create_answer_suggestions;
mod m20261127_000012_guide_revision;

/// Every table the migrations create, in creation (foreign-key) order.
pub const TABLES: &[&str] = &[
    "users",
    "sessions",
    "guides",
    "guide_items",
    "uploads",
    "submissions",
    "answers",
    "jobs",
    "job_events",
    "graders",
    "grader_versions",
    "test_runs",
    "gradings",
    "reports",
    "llm_calls",
    "llm_cache",
    "answer_suggestions",
];

/// All GradeLab migrations, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_create_users::Migration),
            Box::new(m20261125_000002_create_sessions::Migration),
            Box::new(m20261125_000003_create_guides::Migration),
            Box::new(m20261125_000004_create_uploads::Migration),
            Box::new(m20261125_000005_create_submissions::Migration),
            Box::new(m20261125_000006_create_jobs::Migration),
            Box::new(m20261125_000007_create_graders::Migration),
            Box::new(m20261125_000008_create_test_runs::Migration),
            Box::new(m20261125_000009_create_reports::Migration),
            Box::new(m20261125_000010_create_llm_calls::Migration),
            Box::new(m20261125_000011_create_answer_suggestions::Migration),
            Box::new(m20261127_000012_guide_revision::Migration),
        ]
    }
}

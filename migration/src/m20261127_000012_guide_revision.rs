//! Adds `guides.revision`, a counter the database bumps (by triggers) whenever one of the
//! guide's items or one of its jobs changes, so a cache of what hangs off a guide can be
//! checked against the guide's row alone. Triggers rather than application code: no write
//! path, present or future, can forget it.
//!
//! Jobs bump it only for the columns the API shows: a lease's heartbeat (`lease_owner`,
//! `lease_expires_at`) and checkpoints do not, so a running job does not rewrite its guide's
//! row every few seconds.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

use crate::m20261125_000003_create_guides::Guides;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The jobs columns a client can read (`Job` in the API).
const SHOWN_JOB_COLUMNS: &str = "guide_id, kind, status, params, progress, current_epoch, \
    result, error, cancel_requested, attempts, prompt_tokens, completion_tokens, cost_usd, \
    started_at, finished_at";

fn sqlite_triggers() -> Vec<String> {
    const BUMP: &str = "UPDATE guides SET revision = revision + 1 WHERE id =";
    let mut statements = Vec::new();
    for (table, update_of) in [
        ("guide_items", String::new()),
        ("jobs", format!(" OF {SHOWN_JOB_COLUMNS}")),
    ] {
        statements.push(format!(
            "CREATE TRIGGER {table}_revision_insert AFTER INSERT ON {table} \
             WHEN NEW.guide_id IS NOT NULL BEGIN {BUMP} NEW.guide_id; END"
        ));
        statements.push(format!(
            "CREATE TRIGGER {table}_revision_update AFTER UPDATE{update_of} ON {table} \
             BEGIN {BUMP} OLD.guide_id; \
             {BUMP} NEW.guide_id AND NEW.guide_id IS NOT OLD.guide_id; END"
        ));
        statements.push(format!(
            "CREATE TRIGGER {table}_revision_delete AFTER DELETE ON {table} \
             WHEN OLD.guide_id IS NOT NULL BEGIN {BUMP} OLD.guide_id; END"
        ));
    }
    statements
}

fn postgres_triggers() -> Vec<String> {
    vec![
        "CREATE FUNCTION gradelab_bump_guide_revision() RETURNS trigger AS $$ \
         BEGIN \
           IF TG_OP <> 'INSERT' AND OLD.guide_id IS NOT NULL THEN \
             UPDATE guides SET revision = revision + 1 WHERE id = OLD.guide_id; \
           END IF; \
           IF TG_OP <> 'DELETE' AND NEW.guide_id IS NOT NULL \
              AND (TG_OP = 'INSERT' OR NEW.guide_id IS DISTINCT FROM OLD.guide_id) THEN \
             UPDATE guides SET revision = revision + 1 WHERE id = NEW.guide_id; \
           END IF; \
           RETURN NULL; \
         END $$ LANGUAGE plpgsql"
            .to_owned(),
        "CREATE TRIGGER guide_items_revision AFTER INSERT OR UPDATE OR DELETE ON guide_items \
         FOR EACH ROW EXECUTE FUNCTION gradelab_bump_guide_revision()"
            .to_owned(),
        format!(
            "CREATE TRIGGER jobs_revision AFTER INSERT OR DELETE OR UPDATE OF {SHOWN_JOB_COLUMNS} \
             ON jobs FOR EACH ROW EXECUTE FUNCTION gradelab_bump_guide_revision()"
        ),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Guides::Table)
                    .add_column(ColumnDef::new(Revision).big_integer().not_null().default(0))
                    .to_owned(),
            )
            .await?;
        let statements = match manager.get_database_backend() {
            DbBackend::Sqlite => sqlite_triggers(),
            DbBackend::Postgres => postgres_triggers(),
            DbBackend::MySql => return Err(DbErr::Migration("MySQL is not supported".into())),
        };
        let db = manager.get_connection();
        for statement in statements {
            db.execute_unprepared(&statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let statements: Vec<String> = match manager.get_database_backend() {
            DbBackend::Sqlite => ["guide_items", "jobs"]
                .iter()
                .flat_map(|table| {
                    ["insert", "update", "delete"]
                        .map(|op| format!("DROP TRIGGER IF EXISTS {table}_revision_{op}"))
                })
                .collect(),
            _ => vec![
                "DROP TRIGGER IF EXISTS guide_items_revision ON guide_items".to_owned(),
                "DROP TRIGGER IF EXISTS jobs_revision ON jobs".to_owned(),
                "DROP FUNCTION IF EXISTS gradelab_bump_guide_revision()".to_owned(),
            ],
        };
        let db = manager.get_connection();
        for statement in statements {
            db.execute_unprepared(&statement).await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Guides::Table)
                    .drop_column(Revision)
                    .to_owned(),
            )
            .await
    }
}

/// `guides.revision`.
#[derive(DeriveIden)]
struct Revision;

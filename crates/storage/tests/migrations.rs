//! Migrations under a database lock: replicas of one service starting together on a fresh
//! PostgreSQL schema all migrate successfully and each migration is recorded once.
//! (SQLite needs no such test: a SQLite database belongs to one service instance.)

use sspr_storage::sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};
use sspr_storage::sea_orm_migration::prelude::*;
use sspr_testkit::TestDb;

struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(sspr_storage::outbox::CreateOutbox),
            Box::new(CreateWidgets),
            Box::new(AddWidgetColour),
        ]
    }
}

#[derive(DeriveIden)]
enum Widgets {
    Table,
    Id,
    Colour,
}

struct CreateWidgets;

impl MigrationName for CreateWidgets {
    fn name(&self) -> &str {
        "m0001_create_widgets"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateWidgets {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // No IF NOT EXISTS: a second, concurrent application would fail.
        manager
            .create_table(
                Table::create()
                    .table(Widgets::Table)
                    .col(
                        ColumnDef::new(Widgets::Id)
                            .integer()
                            .not_null()
                            .primary_key(),
                    )
                    .to_owned(),
            )
            .await
    }
}

struct AddWidgetColour;

impl MigrationName for AddWidgetColour {
    fn name(&self) -> &str {
        "m0002_add_widget_colour"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for AddWidgetColour {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Widgets::Table)
                    .add_column(ColumnDef::new(Widgets::Colour).string().null())
                    .to_owned(),
            )
            .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_migrating_together_apply_each_migration_once() -> anyhow::Result<()> {
    let Some(db) = TestDb::postgres().await? else {
        return Ok(());
    };
    let settings = db.settings();
    // Connect first, then migrate at the same moment.
    let mut conns = Vec::new();
    for _ in 0..6 {
        conns.push(sspr_storage::connect("migrating", &settings).await?);
    }
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(conns.len()));
    let runs = conns.into_iter().map(|conn| {
        let barrier = barrier.clone();
        tokio::spawn(async move {
            barrier.wait().await;
            sspr_storage::run_migrations::<Migrator>("migrating", &conn)
                .await
                .map(|()| conn)
        })
    });
    let mut migrated = Vec::new();
    for joined in futures::future::join_all(runs).await {
        migrated.push(joined?.map_err(|e| anyhow::anyhow!("a replica failed: {e}"))?);
    }
    let conn = &migrated[0];
    let rows = conn
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT version FROM seaql_migrations ORDER BY version",
        ))
        .await?;
    let versions: Vec<String> = rows
        .iter()
        .map(|r| r.try_get_by_index::<String>(0))
        .collect::<Result<_, _>>()?;
    assert_eq!(
        versions,
        vec![
            "m0000_create_outbox",
            "m0001_create_widgets",
            "m0002_add_widget_colour"
        ]
    );
    drop(migrated);
    db.cleanup().await?;
    Ok(())
}

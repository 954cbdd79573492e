//! The phone ledger: the global and per-prefix phone budgets, the phone codes sent in the last
//! hour (and which were verified) and the SMS circuit breaker's state, in the verification
//! database so every replica shares them.
//!
//! Invariants:
//! - [`PhoneLedger::admit`] decides and counts one phone code in one write transaction: it
//!   reads the last hour's sends, moves the breaker's state row by a conditional update (so of
//!   racing replicas exactly one sees the change and enqueues `sms.breaker_opened` or
//!   `sms.breaker_closed`, in the same transaction), then takes a slot of each budget with a
//!   conditional `UPDATE .. SET sends = sends + 1 WHERE sends < limit` (the row lock, or
//!   SQLite's write lock taken at `BEGIN`, serialises racing replicas: a budget is never
//!   exceeded) and records the send. A refused code counts nowhere.
//! - A budget's first refusal in its window enqueues one `reset.throttled` (a conditional
//!   update of the bucket's `notified` flag decides which call), not one per refused call.
//! - A decoy runs exactly the same statements, and the transaction is rolled back instead of
//!   committed: the same database work, nothing counted, no event.
//! - Rows hold no phone number: only its prefix (`+44`) and the code's id.
//! - Rows older than the window are deleted as sends go by.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction,
    EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
};
use sea_orm_migration::prelude::*;
use sspr_storage::outbox::{self, OutboxMessage};

use super::store::StoreError;
use crate::domain::phone_guard::{
    self, PhoneRefusal, PhoneRules, breaker_open, breaker_retry_after_secs,
    budget_retry_after_secs, window_start,
};

/// The budget bucket of every phone code.
const GLOBAL_BUCKET: &str = "*";
/// The id of the breaker's one state row.
const BREAKER_ROW: i32 = 1;

/// sea-orm entities of the ledger (schema: [`CreatePhoneLedger`]).
pub mod entities {
    /// `phone_budgets`: codes counted per bucket (`*` or a prefix) and clock hour.
    pub mod phone_budget {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "phone_budgets")]
        pub struct Model {
            /// `<bucket>@<window start, unix seconds>`.
            #[sea_orm(primary_key, auto_increment = false)]
            pub key: String,
            pub window_start: DateTimeUtc,
            pub sends: i64,
            /// Whether this window's `reset.throttled` was enqueued.
            pub notified: bool,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    /// `phone_sends`: one row per phone code sent, for the breaker's ratio.
    pub mod phone_send {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "phone_sends")]
        pub struct Model {
            /// The id of the code (`codes.id`).
            #[sea_orm(primary_key, auto_increment = false)]
            pub code_id: String,
            /// The prefix bucket (`+44`); empty when none.
            pub prefix: String,
            pub sent_at: DateTimeUtc,
            pub verified_at: Option<DateTimeUtc>,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }

    /// `sms_breaker`: one row, whether the breaker was last seen open.
    pub mod sms_breaker {
        use sea_orm::entity::prelude::*;

        #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
        #[sea_orm(table_name = "sms_breaker")]
        pub struct Model {
            #[sea_orm(primary_key, auto_increment = false)]
            pub id: i32,
            pub open: bool,
            pub changed_at: DateTimeUtc,
        }

        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    }
}

use entities::{phone_budget, phone_send, sms_breaker};

/// The last hour of phone codes, as the breaker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastHour {
    pub sent: u64,
    pub verified: u64,
    pub oldest: Option<DateTime<Utc>>,
}

/// A change of the breaker's state, to announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerChange {
    Opened,
    Closed,
}

/// An event [`PhoneLedger::admit`] enqueues, built by its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// The breaker changed state (`sms.breaker_opened` / `sms.breaker_closed`).
    Breaker(BreakerChange, LastHour),
    /// A budget's first refusal in its window (`reset.throttled`).
    Throttled(PhoneRefusal),
}

/// One phone code to admit.
pub struct Admission<'a> {
    pub rules: &'a PhoneRules,
    /// The prefix bucket (see [`phone_guard::prefix_of`]); `None`: no prefix budget.
    pub prefix: Option<&'a str>,
    /// The id of the code about to be stored.
    pub code_id: &'a str,
    /// A decoy: decided like a real send, counted nowhere.
    pub decoy: bool,
    pub now: DateTime<Utc>,
}

/// What [`PhoneLedger::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    pub refusal: Option<PhoneRefusal>,
    /// Whether the breaker is open now.
    pub breaker_open: bool,
    /// A state change this call made (and announced), real sends only.
    pub change: Option<BreakerChange>,
}

#[derive(Clone)]
pub struct PhoneLedger {
    db: DatabaseConnection,
}

impl PhoneLedger {
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    /// Decides (and for a real send counts) one phone code; `notice` builds the events
    /// (breaker changes, a budget's first refusal), enqueued in the same transaction.
    pub async fn admit(
        &self,
        admission: Admission<'_>,
        notice: impl Fn(Notice) -> OutboxMessage,
    ) -> Result<Admitted, StoreError> {
        let Admission {
            rules,
            prefix,
            code_id,
            decoy,
            now,
        } = admission;
        let txn = sspr_storage::begin_write(&self.db).await?;
        let since = now - phone_guard::WINDOW;
        let window = window_start(now);
        // Old rows first, so the counts below see only the window.
        phone_send::Entity::delete_many()
            .filter(phone_send::Column::SentAt.lte(since))
            .exec(&txn)
            .await?;
        phone_budget::Entity::delete_many()
            .filter(phone_budget::Column::WindowStart.lt(window))
            .exec(&txn)
            .await?;

        let last_hour = last_hour(&txn, since).await?;
        let open = breaker_open(rules, last_hour.sent, last_hour.verified);
        let mut change = None;
        if set_breaker(&txn, open, now).await? {
            let happened = if open {
                BreakerChange::Opened
            } else {
                BreakerChange::Closed
            };
            // Enqueued for decoys too (then rolled back): the same work.
            outbox::enqueue(&txn, notice(Notice::Breaker(happened, last_hour)), now).await?;
            if !decoy {
                change = Some(happened);
            }
        }

        let refusal = if open {
            Some(PhoneRefusal::BreakerOpen {
                retry_after_secs: breaker_retry_after_secs(now, last_hour.oldest),
            })
        } else if !take(&txn, GLOBAL_BUCKET, window, rules.budget_per_hour).await? {
            let refusal = PhoneRefusal::BudgetExhausted {
                retry_after_secs: budget_retry_after_secs(now),
            };
            if first_refusal(&txn, GLOBAL_BUCKET, window).await? {
                outbox::enqueue(&txn, notice(Notice::Throttled(refusal)), now).await?;
            }
            Some(refusal)
        } else {
            match prefix {
                Some(p) if !take(&txn, p, window, rules.budget_per_prefix_per_hour).await? => {
                    // Give back the global slot this code will not use.
                    untake(&txn, GLOBAL_BUCKET, window).await?;
                    let refusal = PhoneRefusal::PrefixBudgetExhausted {
                        retry_after_secs: budget_retry_after_secs(now),
                    };
                    if first_refusal(&txn, p, window).await? {
                        outbox::enqueue(&txn, notice(Notice::Throttled(refusal)), now).await?;
                    }
                    Some(refusal)
                }
                _ => {
                    phone_send::Entity::insert(phone_send::ActiveModel {
                        code_id: Set(code_id.to_owned()),
                        prefix: Set(prefix.unwrap_or_default().to_owned()),
                        sent_at: Set(now),
                        verified_at: Set(None),
                    })
                    .exec_without_returning(&txn)
                    .await?;
                    None
                }
            }
        };
        if decoy {
            txn.rollback().await?;
        } else {
            txn.commit().await?;
        }
        Ok(Admitted {
            refusal,
            breaker_open: open,
            change,
        })
    }

    /// Records that the code `code_id` was verified (nothing for a code that was not a phone
    /// code, or is no longer in the window).
    pub async fn record_verified(
        &self,
        code_id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        phone_send::Entity::update_many()
            .col_expr(phone_send::Column::VerifiedAt, Expr::value(now))
            .filter(phone_send::Column::CodeId.eq(code_id))
            .filter(phone_send::Column::VerifiedAt.is_null())
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// The last hour's phone codes (for tests and diagnostics).
    pub async fn last_hour(&self, now: DateTime<Utc>) -> Result<LastHour, StoreError> {
        last_hour(&self.db, now - phone_guard::WINDOW).await
    }
}

async fn last_hour(
    conn: &impl ConnectionTrait,
    since: DateTime<Utc>,
) -> Result<LastHour, StoreError> {
    let in_window = || phone_send::Entity::find().filter(phone_send::Column::SentAt.gt(since));
    let sent = in_window().count(conn).await?;
    let verified = in_window()
        .filter(phone_send::Column::VerifiedAt.is_not_null())
        .count(conn)
        .await?;
    let oldest = in_window()
        .order_by_asc(phone_send::Column::SentAt)
        .one(conn)
        .await?
        .map(|row| row.sent_at);
    Ok(LastHour {
        sent,
        verified,
        oldest,
    })
}

/// Moves the breaker's state row to `open`; true when this call changed it.
async fn set_breaker(
    txn: &DatabaseTransaction,
    open: bool,
    now: DateTime<Utc>,
) -> Result<bool, StoreError> {
    sms_breaker::Entity::insert(sms_breaker::ActiveModel {
        id: Set(BREAKER_ROW),
        open: Set(false),
        changed_at: Set(now),
    })
    .on_conflict_do_nothing()
    .exec_without_returning(txn)
    .await?;
    let changed = sms_breaker::Entity::update_many()
        .col_expr(sms_breaker::Column::Open, Expr::value(open))
        .col_expr(sms_breaker::Column::ChangedAt, Expr::value(now))
        .filter(sms_breaker::Column::Id.eq(BREAKER_ROW))
        .filter(sms_breaker::Column::Open.eq(!open))
        .exec(txn)
        .await?;
    Ok(changed.rows_affected == 1)
}

fn budget_key(bucket: &str, window: DateTime<Utc>) -> String {
    format!("{bucket}@{}", window.timestamp())
}

/// Takes one slot of `bucket`'s budget in `window`; false when it is spent.
async fn take(
    txn: &DatabaseTransaction,
    bucket: &str,
    window: DateTime<Utc>,
    limit: u32,
) -> Result<bool, StoreError> {
    let key = budget_key(bucket, window);
    phone_budget::Entity::insert(phone_budget::ActiveModel {
        key: Set(key.clone()),
        window_start: Set(window),
        sends: Set(0),
        notified: Set(false),
    })
    .on_conflict_do_nothing()
    .exec_without_returning(txn)
    .await?;
    let taken = phone_budget::Entity::update_many()
        .col_expr(
            phone_budget::Column::Sends,
            Expr::col(phone_budget::Column::Sends).add(1),
        )
        .filter(phone_budget::Column::Key.eq(key))
        .filter(phone_budget::Column::Sends.lt(i64::from(limit)))
        .exec(txn)
        .await?;
    Ok(taken.rows_affected == 1)
}

/// Marks `bucket`'s window as announced; true for the one call that did.
async fn first_refusal(
    txn: &DatabaseTransaction,
    bucket: &str,
    window: DateTime<Utc>,
) -> Result<bool, StoreError> {
    let marked = phone_budget::Entity::update_many()
        .col_expr(phone_budget::Column::Notified, Expr::value(true))
        .filter(phone_budget::Column::Key.eq(budget_key(bucket, window)))
        .filter(phone_budget::Column::Notified.eq(false))
        .exec(txn)
        .await?;
    Ok(marked.rows_affected == 1)
}

/// Gives back a slot [`take`] took in this transaction.
async fn untake(
    txn: &DatabaseTransaction,
    bucket: &str,
    window: DateTime<Utc>,
) -> Result<(), StoreError> {
    phone_budget::Entity::update_many()
        .col_expr(
            phone_budget::Column::Sends,
            Expr::col(phone_budget::Column::Sends).sub(1),
        )
        .filter(phone_budget::Column::Key.eq(budget_key(bucket, window)))
        .exec(txn)
        .await?;
    Ok(())
}

/// The ledger's tables: `phone_budgets`, `phone_sends` (indexed by `sent_at`) and
/// `sms_breaker`.
pub struct CreatePhoneLedger;

impl MigrationName for CreatePhoneLedger {
    fn name(&self) -> &str {
        "m0006_create_phone_ledger"
    }
}

#[derive(DeriveIden)]
enum PhoneBudgets {
    Table,
    Key,
    WindowStart,
    Sends,
    Notified,
}

#[derive(DeriveIden)]
enum PhoneSends {
    Table,
    CodeId,
    Prefix,
    SentAt,
    VerifiedAt,
}

#[derive(DeriveIden)]
enum SmsBreaker {
    Table,
    Id,
    Open,
    ChangedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for CreatePhoneLedger {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PhoneBudgets::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(PhoneBudgets::Key)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(PhoneBudgets::WindowStart)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(PhoneBudgets::Sends).big_integer().not_null())
                    .col(
                        ColumnDef::new(PhoneBudgets::Notified)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(PhoneSends::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(PhoneSends::CodeId)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(PhoneSends::Prefix).string_len(8).not_null())
                    .col(
                        ColumnDef::new(PhoneSends::SentAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PhoneSends::VerifiedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_phone_sends_sent_at")
                    .table(PhoneSends::Table)
                    .col(PhoneSends::SentAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SmsBreaker::Table)
                    .if_not_exists()
                    .col(
                        ColumnDef::new(SmsBreaker::Id)
                            .integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(SmsBreaker::Open).boolean().not_null())
                    .col(
                        ColumnDef::new(SmsBreaker::ChangedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            SmsBreaker::Table.into_iden(),
            PhoneSends::Table.into_iden(),
            PhoneBudgets::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

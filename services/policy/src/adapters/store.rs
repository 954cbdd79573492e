//! [`PolicyStore`] on the service's own database (SQLite or PostgreSQL through sea-orm).
//!
//! `replace` first makes sure the single row exists (`INSERT .. ON CONFLICT DO NOTHING`) and
//! then bumps its version with one `UPDATE .. SET version = version + 1`: the row lock (or
//! SQLite's write lock, taken by the first statement) serialises concurrent writers, so no two
//! policies ever share a version, and the outbox row commits with the policy.
//! `replace_password_policy` does the same on the `password_policy` row, which has its own
//! version sequence.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use sspr_storage::outbox::{self, OutboxSignal};

use crate::adapters::entity::{self, Column, Entity, POLICY_ROW_ID, password};
use crate::domain::limits::LimitsDraft;
use crate::domain::password_policy::{
    DEFAULT_MIN_LENGTH, PasswordPolicy, PasswordRules, PasswordRulesDraft,
};
use crate::domain::policy::{MethodKind, Policy, PolicyDraft, PolicyRules, Scope};
use crate::error::Error;
use crate::ports::{Announce, PolicyStore};

pub struct SqlPolicyStore {
    db: DatabaseConnection,
    signal: OutboxSignal,
}

impl SqlPolicyStore {
    /// `signal` wakes the outbox relay after each committed change.
    pub fn new(db: DatabaseConnection, signal: OutboxSignal) -> Self {
        Self { db, signal }
    }
}

fn join<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items.collect::<Vec<_>>().join(",")
}

fn split(list: &str) -> Vec<String> {
    list.split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn from_row(row: entity::Model) -> Result<Policy, Error> {
    let corrupt = |what: &str| Error::CorruptPolicy(what.to_owned());
    let draft = PolicyDraft {
        scope: Some(Scope::from_name(&row.scope).ok_or_else(|| corrupt("unknown scope"))?),
        group_ids: split(&row.group_ids),
        methods_required: u32::try_from(row.methods_required)
            .map_err(|_| corrupt("negative methods_required"))?,
        allowed_methods: split(&row.allowed_methods)
            .iter()
            .map(|m| MethodKind::from_name(m))
            .collect(),
        reconfirm_after_days: u32::try_from(row.reconfirm_after_days)
            .map_err(|_| corrupt("negative reconfirm_after_days"))?,
        require_full_destination: row.require_full_destination,
        helpdesk_contact: row.helpdesk_contact,
        allow_unlock: row.allow_unlock,
        security_questions: row
            .security_questions
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (id, text) = l.split_once('\t').unwrap_or((l, ""));
                (id.to_owned(), text.to_owned())
            })
            .collect(),
        questions_required_to_register: u32::try_from(row.questions_required_to_register)
            .map_err(|_| corrupt("negative questions_required_to_register"))?,
        questions_required_to_reset: u32::try_from(row.questions_required_to_reset)
            .map_err(|_| corrupt("negative questions_required_to_reset"))?,
        limits: LimitsDraft {
            values: row
                .limits
                .lines()
                .filter(|l| !l.is_empty())
                .map(|l| {
                    let (name, value) = l.split_once('=').ok_or_else(|| corrupt("limits"))?;
                    let value = value.parse().map_err(|_| corrupt("limits"))?;
                    Ok((name.to_owned(), value))
                })
                .collect::<Result<_, Error>>()?,
            phone_allowed_prefixes: split(&row.phone_allowed_prefixes),
        },
    };
    let rules = PolicyRules::parse(draft).map_err(|e| Error::CorruptPolicy(e.to_string()))?;
    let version = u64::try_from(row.version).map_err(|_| corrupt("negative version"))?;
    Ok(Policy { rules, version })
}

fn password_from_row(row: password::Model) -> Result<PasswordPolicy, Error> {
    let corrupt = |what: &str| Error::CorruptPolicy(what.to_owned());
    let draft = PasswordRulesDraft {
        min_length: u32::try_from(row.min_length).map_err(|_| corrupt("negative min_length"))?,
        custom_banned_terms: row
            .custom_banned_terms
            .split('\n')
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect(),
        organisation_name: row.organisation_name,
        history_count: u32::try_from(row.history_count)
            .map_err(|_| corrupt("negative history_count"))?,
    };
    let rules = PasswordRules::parse(draft).map_err(|e| Error::CorruptPolicy(e.to_string()))?;
    let version = u64::try_from(row.version).map_err(|_| corrupt("negative version"))?;
    Ok(PasswordPolicy { rules, version })
}

/// Reads the SSPR policy in force through `conn` (a connection or a transaction).
async fn current_policy(conn: &impl sea_orm::ConnectionTrait) -> Result<Policy, Error> {
    match Entity::find_by_id(POLICY_ROW_ID).one(conn).await? {
        Some(row) => from_row(row),
        None => Ok(Policy::default()),
    }
}

#[async_trait::async_trait]
impl PolicyStore for SqlPolicyStore {
    async fn current(&self) -> Result<Policy, Error> {
        current_policy(&self.db).await
    }

    async fn current_password_policy(&self) -> Result<PasswordPolicy, Error> {
        match password::Entity::find_by_id(POLICY_ROW_ID)
            .one(&self.db)
            .await?
        {
            Some(row) => password_from_row(row),
            None => Ok(PasswordPolicy::default()),
        }
    }

    async fn replace_password_policy(
        &self,
        rules: PasswordRules,
        now: DateTime<Utc>,
        announce: Announce,
    ) -> Result<PasswordPolicy, Error> {
        let out_of_range = |what: &str| Error::CorruptPolicy(format!("{what} out of range"));
        let min_length =
            i32::try_from(rules.min_length()).map_err(|_| out_of_range("min_length"))?;
        let history_count =
            i32::try_from(rules.history_count()).map_err(|_| out_of_range("history_count"))?;
        let terms = rules.custom_terms().join("\n");

        let txn = sspr_storage::begin_write(&self.db).await?;
        password::Entity::insert(password::ActiveModel {
            id: Set(POLICY_ROW_ID),
            min_length: Set(i32::try_from(DEFAULT_MIN_LENGTH).unwrap_or(8)),
            custom_banned_terms: Set(String::new()),
            organisation_name: Set(String::new()),
            history_count: Set(0),
            version: Set(0),
            updated_at: Set(now),
        })
        .on_conflict_do_nothing()
        .exec_without_returning(&txn)
        .await?;
        password::Entity::update_many()
            .col_expr(password::Column::MinLength, Expr::value(min_length))
            .col_expr(password::Column::CustomBannedTerms, Expr::value(terms))
            .col_expr(
                password::Column::OrganisationName,
                Expr::value(rules.organisation_name()),
            )
            .col_expr(password::Column::HistoryCount, Expr::value(history_count))
            .col_expr(
                password::Column::Version,
                Expr::col(password::Column::Version).add(1),
            )
            .col_expr(password::Column::UpdatedAt, Expr::value(now))
            .filter(password::Column::Id.eq(POLICY_ROW_ID))
            .exec(&txn)
            .await?;
        let row = password::Entity::find_by_id(POLICY_ROW_ID)
            .one(&txn)
            .await?
            .ok_or_else(|| {
                Error::CorruptPolicy(
                    "the password policy row vanished while it was written".to_owned(),
                )
            })?;
        let stored = password_from_row(row)?;
        let policy = current_policy(&txn).await?;
        outbox::enqueue(&txn, announce(&policy), now).await?;
        txn.commit().await?;
        self.signal.notify();
        Ok(stored)
    }

    async fn replace(
        &self,
        rules: PolicyRules,
        now: DateTime<Utc>,
        announce: Announce,
    ) -> Result<Policy, Error> {
        let groups = join(rules.group_ids().iter().map(|g| g.as_str()));
        let methods = join(rules.allowed_methods().iter().map(|m| m.as_str()));
        let required = i32::try_from(rules.methods_required())
            .map_err(|_| Error::CorruptPolicy("methods_required out of range".to_owned()))?;
        let reconfirm = i32::try_from(rules.reconfirm_after_days())
            .map_err(|_| Error::CorruptPolicy("reconfirm_after_days out of range".to_owned()))?;
        let questions = rules
            .security_questions()
            .iter()
            .map(|q| format!("{}\t{}", q.id(), q.text()))
            .collect::<Vec<_>>()
            .join("\n");
        let to_register = i32::try_from(rules.questions_required_to_register()).map_err(|_| {
            Error::CorruptPolicy("questions_required_to_register out of range".into())
        })?;
        let to_reset = i32::try_from(rules.questions_required_to_reset())
            .map_err(|_| Error::CorruptPolicy("questions_required_to_reset out of range".into()))?;

        let limits = rules
            .limits()
            .values()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("\n");
        let prefixes = join(
            rules
                .limits()
                .phone_allowed_prefixes()
                .iter()
                .map(|p| p.as_str()),
        );

        let txn = sspr_storage::begin_write(&self.db).await?;
        let default = PolicyRules::default();
        Entity::insert(entity::ActiveModel {
            id: Set(POLICY_ROW_ID),
            scope: Set(default.scope().as_str().to_owned()),
            group_ids: Set(String::new()),
            methods_required: Set(1),
            allowed_methods: Set(join(default.allowed_methods().iter().map(|m| m.as_str()))),
            version: Set(0),
            updated_at: Set(now),
            reconfirm_after_days: Set(0),
            require_full_destination: Set(false),
            helpdesk_contact: Set(String::new()),
            allow_unlock: Set(false),
            security_questions: Set(String::new()),
            questions_required_to_register: Set(0),
            questions_required_to_reset: Set(0),
            limits: Set(String::new()),
            phone_allowed_prefixes: Set(String::new()),
        })
        .on_conflict_do_nothing()
        .exec_without_returning(&txn)
        .await?;
        Entity::update_many()
            .col_expr(Column::Scope, Expr::value(rules.scope().as_str()))
            .col_expr(Column::GroupIds, Expr::value(groups))
            .col_expr(Column::MethodsRequired, Expr::value(required))
            .col_expr(Column::AllowedMethods, Expr::value(methods))
            .col_expr(Column::ReconfirmAfterDays, Expr::value(reconfirm))
            .col_expr(
                Column::RequireFullDestination,
                Expr::value(rules.require_full_destination()),
            )
            .col_expr(
                Column::HelpdeskContact,
                Expr::value(rules.helpdesk_contact()),
            )
            .col_expr(Column::AllowUnlock, Expr::value(rules.allow_unlock()))
            .col_expr(Column::SecurityQuestions, Expr::value(questions))
            .col_expr(
                Column::QuestionsRequiredToRegister,
                Expr::value(to_register),
            )
            .col_expr(Column::QuestionsRequiredToReset, Expr::value(to_reset))
            .col_expr(Column::Limits, Expr::value(limits))
            .col_expr(Column::PhoneAllowedPrefixes, Expr::value(prefixes))
            .col_expr(Column::Version, Expr::col(Column::Version).add(1))
            .col_expr(Column::UpdatedAt, Expr::value(now))
            .filter(Column::Id.eq(POLICY_ROW_ID))
            .exec(&txn)
            .await?;
        let row = Entity::find_by_id(POLICY_ROW_ID)
            .one(&txn)
            .await?
            .ok_or_else(|| {
                Error::CorruptPolicy("the policy row vanished while it was written".to_owned())
            })?;
        let policy = from_row(row)?;
        outbox::enqueue(&txn, announce(&policy), now).await?;
        txn.commit().await?;
        self.signal.notify();
        Ok(policy)
    }
}

//! Micro-benchmarks of policy's hot domain code: evaluating the policy for a user (every
//! StartReset and registration asks) and the banned-password check (every CompleteReset and
//! CheckPassword).
//!
//! `cargo bench -p sspr-policy --bench policy`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use sspr_policy::domain::password::{Account, check};
use sspr_policy::domain::password_policy::{PasswordRules, PasswordRulesDraft};
use sspr_policy::domain::policy::{MethodKind, PolicyDraft, PolicyRules, Scope, Subject};

fn policy() -> PolicyRules {
    let draft = PolicyDraft {
        scope: Some(Scope::Selected),
        group_ids: (0..20).map(|i| format!("group-{i}")).collect(),
        methods_required: 1,
        allowed_methods: vec![Some(MethodKind::Email), Some(MethodKind::Sms)],
        reconfirm_after_days: 180,
        require_full_destination: false,
        helpdesk_contact: "helpdesk@example.com".to_owned(),
        allow_unlock: false,
        security_questions: Vec::new(),
        questions_required_to_register: 0,
        questions_required_to_reset: 0,
        limits: Default::default(),
    };
    PolicyRules::parse(draft).unwrap_or_else(|e| panic!("policy: {e}"))
}

fn evaluate(c: &mut Criterion) {
    let rules = policy();
    let groups: Vec<String> = (10..20).map(|i| format!("group-{i}")).collect();
    let others: Vec<String> = (100..110).map(|i| format!("group-{i}")).collect();
    c.bench_function("policy evaluate (selected groups, in scope)", |b| {
        b.iter(|| {
            black_box(rules.evaluate(black_box(&Subject {
                group_ids: &groups,
                is_admin: false,
                enabled: true,
            })))
        })
    });
    c.bench_function("policy evaluate (selected groups, out of scope)", |b| {
        b.iter(|| {
            black_box(rules.evaluate(black_box(&Subject {
                group_ids: &others,
                is_admin: false,
                enabled: true,
            })))
        })
    });
}

fn banned(c: &mut Criterion) {
    let rules = PasswordRules::parse(PasswordRulesDraft {
        min_length: 8,
        custom_banned_terms: vec!["contoso".to_owned(), "fabrikam".to_owned()],
        organisation_name: "Example Corp".to_owned(),
        history_count: 0,
    })
    .unwrap_or_else(|e| panic!("password rules: {e}"));
    let account = Account {
        user_id: "alice.example",
        display_name: "Alice Example",
    };
    for (name, candidate) in [
        (
            "banned-password check (strong passphrase)",
            "violet tractor sings 42 kettles",
        ),
        ("banned-password check (common password)", "P@ssw0rd2024!"),
        (
            "banned-password check (name and organisation)",
            "AliceExampleCorp1",
        ),
    ] {
        c.bench_function(name, |b| {
            b.iter(|| black_box(check(black_box(candidate), account, &rules)))
        });
    }
}

criterion_group!(benches, evaluate, banned);
criterion_main!(benches);

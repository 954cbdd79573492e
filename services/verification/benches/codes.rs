//! Micro-benchmarks of the code hot path: issuing a code (generate + keyed hash) and verifying
//! one (the verdict with its constant-time comparison), as every SendCode and VerifyCode does.
//!
//! `cargo bench -p sspr-verification --bench codes`

use std::hint::black_box;

use chrono::{Duration, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use sspr_verification::domain::code::{Code, CodeBinding, CodeLength, CodeState, Purpose, judge};
use sspr_verification::domain::ids::{FlowId, MethodId, UserId};

fn ids() -> (UserId, MethodId, FlowId) {
    let user = UserId::parse("alice.example").unwrap_or_else(|e| panic!("user id: {e:?}"));
    let method = MethodId::parse("0192f7a2-5b1c-7e3a-9d4e-1f2a3b4c5d6e")
        .unwrap_or_else(|e| panic!("method id: {e:?}"));
    let flow = FlowId::from_uuid(uuid::Uuid::now_v7());
    (user, method, flow)
}

fn codes(c: &mut Criterion) {
    let key = [7u8; 32];
    let (user, method, flow) = ids();
    let binding = CodeBinding {
        purpose: Purpose::Reset,
        user_id: &user,
        method_id: &method,
        flow_id: &flow,
    };
    let length = CodeLength::from_policy(6);

    c.bench_function("code issue (generate + keyed hash)", |b| {
        b.iter(|| {
            let code = Code::generate(length);
            black_box(binding.hash(black_box(&key), &code))
        })
    });

    let code = Code::generate(length);
    let stored = binding.hash(&key, &code);
    let state = CodeState {
        attempts_left: 5,
        expires_at: Utc::now() + Duration::minutes(10),
        used_at: None,
        voided: false,
    };
    let typed = Code::parse(code.expose(), length).unwrap_or_else(|e| panic!("code: {e:?}"));
    c.bench_function("code verify (parse + judge, right code)", |b| {
        b.iter(|| {
            let candidate = Code::parse(black_box(typed.expose()), length)
                .unwrap_or_else(|e| panic!("code: {e:?}"));
            black_box(judge(Some(&state), Utc::now(), || {
                binding.matches(&key, &candidate, &stored)
            }))
        })
    });
    let wrong = if code.expose() == "000000" {
        "000001"
    } else {
        "000000"
    };
    c.bench_function("code verify (parse + judge, wrong code)", |b| {
        b.iter(|| {
            let candidate =
                Code::parse(black_box(wrong), length).unwrap_or_else(|e| panic!("code: {e:?}"));
            black_box(judge(Some(&state), Utc::now(), || {
                binding.matches(&key, &candidate, &stored)
            }))
        })
    });
}

criterion_group!(benches, codes);
criterion_main!(benches);

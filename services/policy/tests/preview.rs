//! `sspr.rpc.policy.preview` over NATS against stand-in directory and enrolment services: more
//! users than one directory batch, nested groups through `effective_group_ids`, totals and
//! reasons computed by the real evaluation, page tokens bound to the proposal, SetPolicy's
//! refusals, and nothing stored or announced. Also: `set_policy` names its actor in
//! `policy.changed`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use sspr_bus::subjects::rpc::{directory, enrolment, policy as rpc};
use sspr_bus::{Bus, BusConfig, BusError, ErrorCode, RequestContext, Router, RpcError};
use sspr_proto::admin::v1::{Policy, Scope};
use sspr_proto::common::v1::MethodKind;
use sspr_proto::internal::directory::v1 as dir;
use sspr_proto::internal::enrolment::v1 as enr;
use sspr_proto::internal::policy::v1::{
    GetPolicyRequest, GetPolicyResponse, PreviewRequest, PreviewResponse, SetPolicyRequest,
    SetPolicyResponse,
};
use sspr_testkit::{NatsServer, TestDb};
use tokio_util::sync::CancellationToken;

const USERS: usize = 1203;

/// User `i`: `i % 3` email methods; every 10th is an admin, every 7th disabled; users with an
/// even index are in `staff` (nested in `all-staff`), the rest in `guests`.
fn directory_users() -> Vec<dir::UserRecord> {
    (0..USERS)
        .map(|i| {
            let staff = i.is_multiple_of(2);
            dir::UserRecord {
                user_id: format!("user-{i:04}"),
                display_name: format!("User {i}"),
                locale: "en".into(),
                group_ids: vec![if staff { "staff" } else { "guests" }.into()],
                effective_group_ids: if staff {
                    vec!["all-staff".into(), "staff".into()]
                } else {
                    vec!["guests".into()]
                },
                is_admin: i.is_multiple_of(10),
                enabled: !i.is_multiple_of(7),
                ..Default::default()
            }
        })
        .collect()
}

fn index_of(user_id: &str) -> usize {
    user_id
        .trim_start_matches("user-")
        .parse()
        .expect("stand-in user id")
}

fn stand_ins(users: Arc<Vec<dir::UserRecord>>) -> (Router, Router) {
    let directory = Router::new("directory", "stand-in directory").route(
        directory::LIST_USERS,
        move |_: RequestContext, req: dir::ListUsersRequest| {
            let users = Arc::clone(&users);
            async move {
                let size = req.page_size as usize;
                if size == 0 || size > 1000 {
                    return Err(RpcError::invalid_argument("page_size"));
                }
                let page: Vec<dir::UserRecord> = users
                    .iter()
                    .filter(|u| u.user_id > req.after_user_id)
                    .take(size)
                    .cloned()
                    .collect();
                let next = match page.last() {
                    Some(last) if page.len() == size => last.user_id.clone(),
                    _ => String::new(),
                };
                Ok(dir::ListUsersResponse {
                    users: page,
                    next_after_user_id: next,
                })
            }
        },
    );
    let enrolment = Router::new("enrolment", "stand-in enrolment").route(
        enrolment::LIST_METHOD_KINDS,
        |_: RequestContext, req: enr::ListMethodKindsRequest| async move {
            Ok(enr::ListMethodKindsResponse {
                users: req
                    .user_ids
                    .into_iter()
                    .map(|id| enr::UserMethodKinds {
                        methods: (0..index_of(&id) % 3)
                            .map(|_| enr::ConfirmedMethodKind {
                                kind: MethodKind::Email as i32,
                                confirmed_at: None,
                            })
                            .collect(),
                        user_id: id,
                    })
                    .collect(),
            })
        },
    );
    (directory, enrolment)
}

/// What the proposal `SELECTED all-staff, 1 method, email` must say of user `i`.
fn expected_reason(i: usize) -> Option<&'static str> {
    let (admin, enabled, staff, methods) = (
        i.is_multiple_of(10),
        !i.is_multiple_of(7),
        i.is_multiple_of(2),
        i % 3,
    );
    if !enabled {
        Some("account_disabled")
    } else if !staff {
        Some("out_of_scope")
    } else if methods < if admin { 2 } else { 1 } {
        Some("not_enough_methods")
    } else {
        None
    }
}

fn proposal(groups: &[&str], required: u32) -> Policy {
    Policy {
        scope: Scope::Selected as i32,
        group_ids: groups.iter().map(|g| g.to_string()).collect(),
        methods_required: required,
        allowed_methods: vec![MethodKind::Email as i32],
        ..Default::default()
    }
}

async fn preview(
    bus: &Bus,
    policy: &Policy,
    size: u32,
    token: &str,
) -> Result<PreviewResponse, BusError> {
    bus.request(
        rpc::PREVIEW,
        &PreviewRequest {
            policy: Some(policy.clone()),
            page_size: size,
            page_token: token.to_owned(),
        },
    )
    .await
}

fn rpc_error<T: std::fmt::Debug>(result: Result<T, BusError>) -> (ErrorCode, String) {
    match result {
        Err(BusError::Rpc(e)) => (e.code, e.message),
        other => panic!("expected an RPC error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preview_judges_every_user_with_the_real_evaluation() {
    sspr_testkit::init_test_tracing();
    let db = TestDb::sqlite().expect("sqlite");
    let nats = NatsServer::start().await.expect("nats-server");
    let shutdown = CancellationToken::new();
    let users = Arc::new(directory_users());
    let (directory, enrolment) = stand_ins(Arc::clone(&users));
    for (name, router) in [("sspr-directory", directory), ("sspr-enrolment", enrolment)] {
        let bus = Bus::connect(&BusConfig::new(nats.url(), name))
            .await
            .expect("bus");
        let token = shutdown.clone();
        tokio::spawn(async move { sspr_bus::serve(&bus, router, token.cancelled_owned()).await });
    }
    let ctx = sspr_runtime::ServiceContext {
        bus: Bus::connect(&BusConfig::new(nats.url(), "sspr-policy"))
            .await
            .expect("bus"),
        db: sspr_storage::connect(sspr_policy::SERVICE, &db.settings())
            .await
            .expect("database"),
        clock: sspr_clock::system(),
    };
    let service = tokio::spawn(sspr_policy::run(
        ctx,
        sspr_policy::Config::default(),
        shutdown.clone(),
    ));
    let bus = Bus::connect(&BusConfig::new(nats.url(), "policy-test"))
        .await
        .expect("bus");

    // Wait for the service and the stand-ins.
    let staff = proposal(&["all-staff"], 1);
    let deadline = Instant::now() + Duration::from_secs(20);
    let first = loop {
        match preview(&bus, &staff, 500, "").await {
            Ok(p) => break p,
            Err(BusError::NoResponders(_)) | Err(BusError::Rpc(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("preview never answered: {e}"),
        }
    };
    let before: GetPolicyResponse = bus
        .request(rpc::GET_POLICY, &GetPolicyRequest {})
        .await
        .expect("get");

    let expected: Vec<(String, &str)> = (0..USERS)
        .filter_map(|i| expected_reason(i).map(|r| (format!("user-{i:04}"), r)))
        .collect();
    assert_eq!(first.users_total as usize, USERS);
    assert_eq!(first.users_unable as usize, expected.len());
    assert_eq!(first.users_able as usize, USERS - expected.len());

    // Every page, in order, covers every unable user exactly once.
    let mut seen = Vec::new();
    let mut page = first;
    loop {
        assert_eq!(page.users_total as usize, USERS);
        seen.extend(
            page.unable
                .iter()
                .map(|u| (u.user_id.clone(), u.reason.clone())),
        );
        for u in &page.unable {
            let i = index_of(&u.user_id);
            assert_eq!(u.is_admin, i.is_multiple_of(10));
            assert_eq!(u.usable_methods as usize, i % 3);
            assert_eq!(u.methods_required, if i.is_multiple_of(10) { 2 } else { 1 });
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page = preview(&bus, &staff, 500, &page.next_page_token)
            .await
            .expect("next page");
    }
    let expected: Vec<(String, String)> = expected
        .into_iter()
        .map(|(u, r)| (u, r.to_owned()))
        .collect();
    assert_eq!(seen, expected);

    // `all-staff` is only in effective_group_ids (nesting): the counts above hold only if
    // nested membership counts. A token does not carry over to another proposal; a bad
    // proposal is refused as set_policy refuses it.
    let one = preview(&bus, &staff, 1, "").await.expect("preview");
    assert!(!one.next_page_token.is_empty());
    let (code, message) =
        rpc_error(preview(&bus, &proposal(&["all-staff"], 2), 1, &one.next_page_token).await);
    assert_eq!(code, ErrorCode::InvalidArgument);
    assert!(message.contains("page_token"), "{message}");
    let (code, _) = rpc_error(preview(&bus, &staff, 1, "garbage!").await);
    assert_eq!(code, ErrorCode::InvalidArgument);
    let (code, _) = rpc_error(preview(&bus, &staff, 501, "").await);
    assert_eq!(code, ErrorCode::InvalidArgument);
    let bad = proposal(&[], 1);
    let previewed = rpc_error(preview(&bus, &bad, 0, "").await);
    let set = rpc_error(
        bus.request::<_, SetPolicyResponse>(
            rpc::SET_POLICY,
            &SetPolicyRequest {
                policy: Some(bad),
                actor: "alice".into(),
            },
        )
        .await,
    );
    assert_eq!(previewed, set);

    // Nothing stored.
    let after: GetPolicyResponse = bus
        .request(rpc::GET_POLICY, &GetPolicyRequest {})
        .await
        .expect("get");
    assert_eq!(after, before);

    // A real change names its actor in policy.changed.
    let mut events = bus
        .client()
        .subscribe("sspr.events.v1.policy.changed")
        .await
        .expect("subscribe");
    bus.client().flush().await.expect("flush");
    let _: SetPolicyResponse = bus
        .request(
            rpc::SET_POLICY,
            &SetPolicyRequest {
                policy: Some(staff.clone()),
                actor: "alice".into(),
            },
        )
        .await
        .expect("set");
    let msg = tokio::time::timeout(
        Duration::from_secs(15),
        futures::StreamExt::next(&mut events),
    )
    .await
    .expect("policy.changed within 15 s")
    .expect("a message");
    let changed = sspr_proto::events::v1::PolicyChanged::decode(msg.payload).expect("decodes");
    assert_eq!(changed.meta.expect("meta").actor, "alice");

    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(20), service).await;
    db.cleanup().await.expect("cleanup");
}

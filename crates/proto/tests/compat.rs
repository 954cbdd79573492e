//! Backward compatibility of every proto package against the committed descriptors.
//!
//! `proto/compat/baseline.binpb` is the encoded `FileDescriptorSet` of the protos as last
//! accepted. The current protos (what `build.rs` compiled) must keep everything in it: every
//! message, field (same number, name, type and cardinality; a removed field's number must be
//! `reserved`), enum value, service and method (same request and response types). Additions are
//! free. `SSPR_PROTO_BASELINE=update cargo test -p sspr-proto --test compat` folds compatible
//! additions into the baseline; it refuses while anything is broken, so a breaking change can only
//! go in by deleting the baseline, which a reviewer sees. Consumers of the events and of the
//! public API must never break silently.

use std::collections::BTreeMap;
use std::path::PathBuf;

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorSet,
    ServiceDescriptorProto,
};

fn baseline_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto/compat/baseline.binpb")
}

/// Every message, enum and service by full name (`.pkg.Outer.Inner`).
#[derive(Default)]
struct Index<'a> {
    messages: BTreeMap<String, &'a DescriptorProto>,
    enums: BTreeMap<String, &'a EnumDescriptorProto>,
    services: BTreeMap<String, &'a ServiceDescriptorProto>,
}

fn index(set: &FileDescriptorSet) -> Index<'_> {
    fn walk<'a>(prefix: &str, m: &'a DescriptorProto, ix: &mut Index<'a>) {
        let name = format!("{prefix}.{}", m.name());
        for nested in &m.nested_type {
            walk(&name, nested, ix);
        }
        for e in &m.enum_type {
            ix.enums.insert(format!("{name}.{}", e.name()), e);
        }
        ix.messages.insert(name, m);
    }
    let mut ix = Index::default();
    for file in &set.file {
        let prefix = match file.package() {
            "" => String::new(),
            p => format!(".{p}"),
        };
        for m in &file.message_type {
            walk(&prefix, m, &mut ix);
        }
        for e in &file.enum_type {
            ix.enums.insert(format!("{prefix}.{}", e.name()), e);
        }
        for s in &file.service {
            ix.services.insert(format!("{prefix}.{}", s.name()), s);
        }
    }
    ix
}

fn shape(f: &FieldDescriptorProto) -> (Option<Type>, Option<Label>, &str, bool) {
    (
        Type::try_from(f.r#type.unwrap_or_default()).ok(),
        Label::try_from(f.label.unwrap_or_default()).ok(),
        f.type_name(),
        f.proto3_optional(),
    )
}

/// What `current` breaks of `old`, one line each (empty: compatible).
fn breaking_changes(old: &FileDescriptorSet, current: &FileDescriptorSet) -> Vec<String> {
    let (old, new) = (index(old), index(current));
    let mut broken = Vec::new();
    for (name, m) in &old.messages {
        let Some(now) = new.messages.get(name) else {
            broken.push(format!("message {name} was removed"));
            continue;
        };
        for f in &m.field {
            match now.field.iter().find(|g| g.number() == f.number()) {
                Some(g) if g.name() != f.name() => broken.push(format!(
                    "{name} field {} was renamed {} -> {}",
                    f.number(),
                    f.name(),
                    g.name()
                )),
                Some(g) if shape(g) != shape(f) => broken.push(format!(
                    "{name}.{} (field {}) changed type or cardinality",
                    f.name(),
                    f.number()
                )),
                Some(_) => {}
                None => {
                    let reserved = now
                        .reserved_range
                        .iter()
                        .any(|r| (r.start()..r.end()).contains(&f.number()));
                    if !reserved {
                        broken.push(format!(
                            "{name}.{} (field {}) was removed without reserving its number",
                            f.name(),
                            f.number()
                        ));
                    }
                }
            }
        }
    }
    for (name, e) in &old.enums {
        let Some(now) = new.enums.get(name) else {
            broken.push(format!("enum {name} was removed"));
            continue;
        };
        for v in &e.value {
            if !now
                .value
                .iter()
                .any(|w| w.number() == v.number() && w.name() == v.name())
            {
                broken.push(format!(
                    "{name}.{} = {} was changed or removed",
                    v.name(),
                    v.number()
                ));
            }
        }
    }
    for (name, s) in &old.services {
        let Some(now) = new.services.get(name) else {
            broken.push(format!("service {name} was removed"));
            continue;
        };
        for m in &s.method {
            match now.method.iter().find(|n| n.name() == m.name()) {
                None => broken.push(format!("{name}.{} was removed", m.name())),
                Some(n)
                    if n.input_type() != m.input_type()
                        || n.output_type() != m.output_type()
                        || n.client_streaming() != m.client_streaming()
                        || n.server_streaming() != m.server_streaming() =>
                {
                    broken.push(format!("{name}.{} changed its signature", m.name()))
                }
                Some(_) => {}
            }
        }
    }
    broken
}

fn current() -> FileDescriptorSet {
    FileDescriptorSet::decode(sspr_proto::FILE_DESCRIPTOR_SET).expect("the compiled descriptors")
}

#[test]
fn every_proto_change_is_backward_compatible_with_the_committed_descriptors() {
    let current = current();
    let path = baseline_path();
    let baseline = std::fs::read(&path)
        .map(|b| FileDescriptorSet::decode(b.as_slice()).expect("a valid baseline"));
    let broken = match &baseline {
        Ok(old) => breaking_changes(old, &current),
        Err(_) => Vec::new(),
    };
    assert!(
        broken.is_empty(),
        "breaking proto changes against {}:\n  {}\n(add a new field or a new version package \
         instead; never reuse or renumber a field)",
        path.display(),
        broken.join("\n  ")
    );
    match (std::env::var("SSPR_PROTO_BASELINE").as_deref(), baseline) {
        (Ok("update"), _) => {
            std::fs::write(&path, current.encode_to_vec()).expect("write the baseline");
        }
        (_, Err(e)) => panic!(
            "no baseline at {} ({e}): create it with SSPR_PROTO_BASELINE=update",
            path.display()
        ),
        (_, Ok(_)) => {}
    }
}

#[test]
fn the_check_catches_each_kind_of_break() {
    let old = current();
    let mut broken_sets = Vec::new();
    // A field changes type.
    let mut s = old.clone();
    let m = s
        .file
        .iter_mut()
        .find(|f| f.package() == "sspr.reset.v1")
        .and_then(|f| {
            f.message_type
                .iter_mut()
                .find(|m| m.name() == "StartResetRequest")
        })
        .expect("StartResetRequest");
    m.field[0].r#type = Some(Type::Int64 as i32);
    broken_sets.push(("type change", s));
    // A field is removed without reserving its number.
    let mut s = old.clone();
    let m = s
        .file
        .iter_mut()
        .find(|f| f.package() == "sspr.events.v1")
        .and_then(|f| f.message_type.iter_mut().find(|m| m.name() == "CodeIssued"))
        .expect("CodeIssued");
    m.field.pop();
    broken_sets.push(("removed field", s));
    // An enum value is renumbered.
    let mut s = old.clone();
    let e = s
        .file
        .iter_mut()
        .find(|f| f.package() == "sspr.common.v1")
        .and_then(|f| f.enum_type.iter_mut().find(|e| e.name() == "MethodKind"))
        .expect("MethodKind");
    e.value[1].number = Some(42);
    broken_sets.push(("renumbered enum value", s));
    // A method is removed.
    let mut s = old.clone();
    let svc = s
        .file
        .iter_mut()
        .find(|f| f.package() == "sspr.admin.v1")
        .and_then(|f| f.service.first_mut())
        .expect("Admin");
    svc.method.pop();
    broken_sets.push(("removed method", s));
    for (what, set) in broken_sets {
        assert!(
            !breaking_changes(&old, &set).is_empty(),
            "{what} not caught"
        );
    }
    // Additions are compatible.
    let mut s = old.clone();
    let m = s
        .file
        .iter_mut()
        .find(|f| f.package() == "sspr.reset.v1")
        .and_then(|f| {
            f.message_type
                .iter_mut()
                .find(|m| m.name() == "StartResetRequest")
        })
        .expect("StartResetRequest");
    let mut added = m.field[0].clone();
    added.number = Some(99);
    added.name = Some("added_later".to_owned());
    m.field.push(added);
    assert!(breaking_changes(&old, &s).is_empty());
}

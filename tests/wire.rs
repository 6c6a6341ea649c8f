//! The contract types (junction_schema::wire, and the box's FlowReport for flow.v1) against the JSON
//! schemas in deploy/schema that the centre enforces: every field a type writes is a property of its
//! schema, every property is one the type can write, the required ones are those it always writes,
//! and what it writes validates.

use std::collections::BTreeSet;
use std::time::{Duration, UNIX_EPOCH};

use junction_schema::wire::{self, Detector, Event, EventFields, Status};
use serde_json::Value;

use crate::common::{assert_schema, repo};

fn schema(file: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let text = std::fs::read_to_string(repo().join("deploy/schema").join(file)).unwrap();
    let s: Value = serde_json::from_str(&text).unwrap();
    let props = s["properties"].as_object().unwrap().keys().cloned().collect();
    let required = s["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    (props, required)
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

/// Writes `full` (every optional field set) and `bare` (none): full has every property, bare only
/// the required ones, both valid.
fn check<T: serde::Serialize>(file: &str, full: &T, bare: &T) {
    let (props, required) = schema(file);
    let full: Value = serde_json::from_str(&wire::to_json(full)).unwrap();
    let bare: Value = serde_json::from_str(&wire::to_json(bare)).unwrap();
    assert_eq!(keys(&full), props, "{file}: the type's fields are the schema's properties");
    assert_eq!(keys(&bare), required, "{file}: the fields always written are the required ones");
    assert_schema(file, &full);
    assert_schema(file, &bare);
}

fn event(full: bool) -> Event {
    let fields = EventFields {
        rule: "x320",
        kind: if full { "movement" } else { "zone_enter" },
        direction: full.then_some("left"),
        class: "motorcycle",
        track: 7,
        pts_s: 12.5,
        at: "2026-11-26T08:00:12.500Z",
        dwell_s: full.then_some(3.25),
        to: full.then_some("east"),
        speed: full.then_some((31.26, true)),
        class_share: full.then_some(0.9),
    };
    Event::new("site-1", "cam-1", &fields)
}

#[test]
fn wire_types_match_deploy_schema() {
    check("event.v1.json", &event(true), &event(false));
    let d = Detector::new("site-1", "cam-1", "loop-1", 3, 82, "2026-11-26T08:00:12.5Z", "2026-11-26T08:00:12.512Z");
    check("detector.v1.json", &d, &d);
    let at = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
    let s = Status::new("site-1", "online", "0.1.0", at);
    check("status.v1.json", &s, &s);
    assert!(s.schema.ends_with(".v1") && d.schema == wire::DETECTOR_SCHEMA);
}

#[test]
fn flow_report_matches_deploy_schema() {
    let report = crate::centre::busy_report();
    let v: Value = serde_json::to_value(&report).unwrap();
    let (props, required) = schema("flow.v1.json");
    let written = keys(&v);
    assert!(written.is_subset(&props), "fields not in flow.v1.json: {:?}", written.difference(&props));
    assert!(required.is_subset(&written), "required but not written: {:?}", required.difference(&written));
    assert_eq!(v["schema"], wire::FLOW_SCHEMA);
    assert_schema("flow.v1.json", &v);
}

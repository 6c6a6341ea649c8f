//! The MQTT payloads of the example site on the bundled clip, byte for byte, against a golden file
//! made by the code and reviewed (tests/data/golden/mqtt_example.txt): a refactoring that changes a
//! field, its order, a number's formatting or a message's topic fails here.
//!
//! `JUNCTION_BLESS=1 cargo test --test integration golden` rewrites the file; review its diff.

use std::time::{Duration, Instant};

use crate::common::{junction, repo};
use crate::mqtt::{Broker, Subscriber};

/// Per topic, in the order published; topics sorted (the order across topics depends on the
/// publisher's interleaving, not on the payloads). Status messages are left out: they carry the wall
/// clock of the connection.
fn by_topic(lines: &[String]) -> String {
    let mut topics: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for l in lines {
        let Some((topic, payload)) = l.split_once(' ') else { continue };
        if topic.ends_with("/status") || topic == "junction/probe" {
            continue;
        }
        topics.entry(topic).or_default().push(payload);
    }
    let mut out = String::new();
    for (topic, payloads) in topics {
        for p in payloads {
            out.push_str(topic);
            out.push(' ');
            out.push_str(p);
            out.push('\n');
        }
    }
    out
}

#[test]
fn mqtt_payloads_of_the_example_site_are_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::start(dir.path());
    let sub = Subscriber::start(broker.port);
    let db = dir.path().join("j.db");
    let url = broker.url();
    let run = junction(
        &[
            "run",
            "--start",
            "2026-11-26T08:00:00Z",
            "--store",
            db.to_str().unwrap(),
            "--mqtt",
            &url,
            "--mqtt-events",
            "--format",
            "json",
        ],
        Duration::from_secs(300),
    );
    assert_eq!(run.code, Some(0), "stderr:\n{}", run.stderr);
    // Everything the store holds was acknowledged by the broker; wait until the subscriber has it too.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let count = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap() as usize;
    let want = count("SELECT COUNT(*) FROM reports")
        + count("SELECT COUNT(*) FROM events")
        + count("SELECT COUNT(*) FROM detector_events");
    let t = Instant::now();
    let mut got = by_topic(&sub.lines());
    while got.lines().count() < want && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
        got = by_topic(&sub.lines());
    }
    assert_eq!(got.lines().count(), want, "one message per stored row");
    for kind in ["/flow ", "/events ", "/detector "] {
        assert!(got.lines().any(|l| l.contains(kind)), "no {kind} message:\n{got}");
    }
    let golden = repo().join("tests/data/golden/mqtt_example.txt");
    if std::env::var_os("JUNCTION_BLESS").is_some() {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(&golden, &got).unwrap();
    }
    let expected = std::fs::read_to_string(&golden)
        .unwrap_or_else(|e| panic!("{}: {e} (JUNCTION_BLESS=1 makes it)", golden.display()));
    if got != expected {
        let first = got.lines().zip(expected.lines()).position(|(a, b)| a != b);
        panic!(
            "MQTT payloads differ from {} ({} lines vs {}); first difference at line {:?}:\n got: {:?}\nwant: {:?}",
            golden.display(),
            got.lines().count(),
            expected.lines().count(),
            first.map(|i| i + 1),
            first.and_then(|i| got.lines().nth(i)),
            first.and_then(|i| expected.lines().nth(i)),
        );
    }
}

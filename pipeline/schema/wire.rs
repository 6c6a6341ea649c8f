//! The MQTT messages a box publishes, one type each, with their topics and the schema names of
//! deploy/schema (checked against these types by a test of the box). A flow report
//! (`junction.flow.v1`) is the box's `aggregate::FlowReport`, serialised as it is stored.
//!
//! Fields are declared in the order they are written (alphabetical, as the first payloads were), so a
//! payload's bytes do not depend on how a JSON map is ordered.

use serde::{Deserialize, Serialize};

/// Schema names (`"schema"` in every payload; deploy/schema/<name>.json).
pub const FLOW_SCHEMA: &str = "junction.flow.v1";
pub const EVENT_SCHEMA: &str = "junction.event.v1";
pub const DETECTOR_SCHEMA: &str = "junction.detector.v1";
pub const STATUS_SCHEMA: &str = "junction.status.v1";

/// Largest MQTT packet sent or taken (bytes). A busy junction's 15-minute report is ~16 KiB (8 lines,
/// every class both ways, 4 approaches' movements); rumqttc's default, 10 KiB, refused it.
pub const MAX_PACKET_BYTES: usize = 1 << 20;

/// Every topic starts with this level, then the site.
pub const TOPIC_ROOT: &str = "junction/v1";

pub fn flow_topic(site: &str, camera: &str) -> String {
    format!("{TOPIC_ROOT}/{site}/{camera}/flow")
}

pub fn detector_topic(site: &str, camera: &str) -> String {
    format!("{TOPIC_ROOT}/{site}/{camera}/detector")
}

pub fn events_topic(site: &str, camera: &str) -> String {
    format!("{TOPIC_ROOT}/{site}/{camera}/events")
}

pub fn status_topic(site: &str) -> String {
    format!("{TOPIC_ROOT}/{site}/status")
}

/// What a topic names: the message kind, with its site and camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic<'a> {
    Flow { site: &'a str, camera: &'a str },
    Events { site: &'a str, camera: &'a str },
    Detector { site: &'a str, camera: &'a str },
    Status { site: &'a str },
}

impl<'a> Topic<'a> {
    /// `None` for a topic that is none of junction's.
    pub fn parse(topic: &'a str) -> Option<Self> {
        let rest = topic.strip_prefix(TOPIC_ROOT)?.strip_prefix('/')?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts[..] {
            [site, "status"] => Some(Self::Status { site }),
            [site, camera, "flow"] => Some(Self::Flow { site, camera }),
            [site, camera, "events"] => Some(Self::Events { site, camera }),
            [site, camera, "detector"] => Some(Self::Detector { site, camera }),
            _ => None,
        }
    }
}

/// A per-vehicle event (`junction.event.v1`, topic [`events_topic`]); its id is stable across
/// retries: site/camera/rule/track/kind/at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// UTC wall time of the frame, RFC 3339 with milliseconds.
    pub at: String,
    pub camera: String,
    /// Vehicle class (detect's names: car, motorcycle, …).
    pub class: String,
    /// The share of the track's class vote its class won, 0–1, two decimals.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class_share: Option<f64>,
    /// Crossings: in | out; movements: the turn (left | through | right | u_turn).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
    /// Zone exits: seconds in the zone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dwell_s: Option<f64>,
    pub id: String,
    /// crossing | zone_enter | zone_exit | movement.
    pub kind: String,
    /// Seconds on the stream's clock.
    pub pts_s: f64,
    /// The line, zone or (movements) entry approach.
    pub rule: String,
    pub schema: String,
    pub site: String,
    /// Ground speed, km/h to a tenth (calibrated cameras).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed_kmh: Option<f64>,
    /// Present with `speed_kmh`: false when the speed was implausible (not averaged in).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speed_plausible: Option<bool>,
    /// Movements: the exit approach.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    pub track: i64,
}

/// The fields of an [`Event`] that are the event's own (the rest come from where it happened).
#[derive(Debug, Clone, PartialEq)]
pub struct EventFields<'a> {
    pub rule: &'a str,
    pub kind: &'a str,
    pub direction: Option<&'a str>,
    pub class: &'a str,
    pub track: i64,
    pub pts_s: f64,
    /// RFC 3339 UTC, milliseconds.
    pub at: &'a str,
    pub dwell_s: Option<f64>,
    pub to: Option<&'a str>,
    /// km/h, as measured, and whether it was plausible.
    pub speed: Option<(f64, bool)>,
    pub class_share: Option<f64>,
}

impl Event {
    /// The message for `e` at `site`/`camera`, rounded as published (class share to 0.01, speed to
    /// 0.1 km/h).
    pub fn new(site: &str, camera: &str, e: &EventFields<'_>) -> Self {
        Self {
            at: e.at.to_owned(),
            camera: camera.to_owned(),
            class: e.class.to_owned(),
            class_share: e.class_share.map(|s| ((s * 100.0).round() / 100.0).clamp(0.0, 1.0)),
            direction: e.direction.map(str::to_owned),
            dwell_s: e.dwell_s,
            id: format!("{site}/{camera}/{}/{}/{}/{}", e.rule, e.track, e.kind, e.at),
            kind: e.kind.to_owned(),
            pts_s: e.pts_s,
            rule: e.rule.to_owned(),
            schema: EVENT_SCHEMA.to_owned(),
            site: site.to_owned(),
            speed_kmh: e.speed.map(|(kmh, _)| (kmh * 10.0).round() / 10.0),
            speed_plausible: e.speed.map(|(_, ok)| ok),
            to: e.to.map(str::to_owned),
            track: e.track,
        }
    }
}

/// A loop detector on/off event (`junction.detector.v1`, topic [`detector_topic`]), coded as ATSPM
/// high-resolution controller events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Detector {
    /// UTC wall time, RFC 3339 in tenths of a second (the resolution of controller logs).
    pub at: String,
    pub camera: String,
    /// Detector channel, the ATSPM event parameter.
    pub channel: i64,
    /// The loop's id.
    pub detector: String,
    /// 82 on, 81 off.
    pub event_code: i64,
    /// site/camera/detector/code/wall in milliseconds: unique per event, stable across retries.
    pub id: String,
    pub schema: String,
    pub site: String,
}

impl Detector {
    /// `at_id`: the time that goes into the id (milliseconds; tenths for rows kept before them).
    pub fn new(site: &str, camera: &str, detector: &str, channel: i64, code: i64, at: &str, at_id: &str) -> Self {
        Self {
            at: at.to_owned(),
            camera: camera.to_owned(),
            channel,
            detector: detector.to_owned(),
            event_code: code,
            id: format!("{site}/{camera}/{detector}/{code}/{at_id}"),
            schema: DETECTOR_SCHEMA.to_owned(),
            site: site.to_owned(),
        }
    }
}

/// A box's state (`junction.status.v1`, retained on [`status_topic`]; "offline" is its last will).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// UTC, RFC 3339 with milliseconds: a late will of the previous connection made in the same
    /// second must not equal (and so pass) the centre's "no older than" check of this connection's
    /// online.
    pub at: String,
    pub schema: String,
    pub site: String,
    /// online | offline.
    pub state: String,
    /// The box's junction version.
    pub version: String,
}

impl Status {
    pub fn new(site: &str, state: &str, version: &str, at: std::time::SystemTime) -> Self {
        Self {
            at: humantime::format_rfc3339_millis(at).to_string(),
            schema: STATUS_SCHEMA.to_owned(),
            site: site.to_owned(),
            state: state.to_owned(),
            version: version.to_owned(),
        }
    }
}

/// A message as published: compact JSON.
pub fn to_json<T: Serialize>(message: &T) -> String {
    // Serialising these types cannot fail: strings, numbers and options only.
    serde_json::to_string(message).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_parse_back() {
        let t = flow_topic("s", "c");
        assert_eq!(Topic::parse(&t), Some(Topic::Flow { site: "s", camera: "c" }));
        assert_eq!(Topic::parse(&status_topic("s")), Some(Topic::Status { site: "s" }));
        assert_eq!(Topic::parse(&events_topic("s", "c")), Some(Topic::Events { site: "s", camera: "c" }));
        assert_eq!(Topic::parse(&detector_topic("s", "c")), Some(Topic::Detector { site: "s", camera: "c" }));
        for bad in ["junction/v1/s/c/x", "junction/v2/s/c/flow", "junction/v1/s", "other"] {
            assert_eq!(Topic::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn fields_are_written_in_key_order_whatever_the_json_map() {
        let e = Event::new(
            "s",
            "c",
            &EventFields {
                rule: "x",
                kind: "movement",
                direction: Some("left"),
                class: "car",
                track: 3,
                pts_s: 1.5,
                at: "2026-01-01T00:00:00.000Z",
                dwell_s: None,
                to: Some("y"),
                speed: Some((12.34, true)),
                class_share: Some(0.876),
            },
        );
        let text = to_json(&e);
        let keys: Vec<&str> = text.split('"').skip(1).step_by(2).filter(|k| e_keys().contains(k)).collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(keys, sorted, "{text}");
        assert!(text.contains(r#""class_share":0.88"#) && text.contains(r#""speed_kmh":12.3"#), "{text}");
        assert!(!text.contains("dwell_s"), "absent fields are left out: {text}");
    }

    fn e_keys() -> [&'static str; 16] {
        [
            "at",
            "camera",
            "class",
            "class_share",
            "direction",
            "dwell_s",
            "id",
            "kind",
            "pts_s",
            "rule",
            "schema",
            "site",
            "speed_kmh",
            "speed_plausible",
            "to",
            "track",
        ]
    }
}

//! What `junction run` prints: events and closed bins as they happen (text or JSON lines), the
//! totals table, and the `--summary` JSON.

use std::io::Write;

use junction::aggregate::FlowReport;
use junction::analytics::{Direction, EventKind, TrafficEvent};
use junction::detect::VehicleClass;
use junction::runtime::{Observer, RunSummary, direction_total};

/// Prints events and closed bins as they happen.
pub struct Printer {
    pub json: bool,
    /// The site, for the events' ids.
    pub site: String,
    pub out: std::io::Stdout,
}

impl Observer for Printer {
    fn event(&mut self, camera: &str, e: &TrafficEvent) {
        let mut out = self.out.lock();
        let _ = if self.json {
            // The same object the MQTT topics carry, with its "type".
            match junction::store::Message::of(&self.site, camera, e) {
                Some(m) => writeln!(out, "{}", m.typed()),
                None => Ok(()),
            }
        } else {
            let what = match &e.kind {
                EventKind::Crossing { direction } => format!("{:<4}", direction.as_str()),
                EventKind::ZoneEnter => "enter".into(),
                EventKind::ZoneExit { dwell } => format!("exit after {:.1} s", dwell.as_secs_f64()),
                EventKind::Movement { to, turn } => format!("{} to {to}", turn.as_str()),
                EventKind::LoopOn { channel } => format!("on  (channel {channel})"),
                EventKind::LoopOff { channel } => format!("off (channel {channel})"),
            };
            let speed = e.speed.map(|s| format!("  {:.0} km/h", (f64::from(s.kmh) * 10.0).round() / 10.0));
            let wall = humantime::format_rfc3339_millis(e.wall);
            writeln!(
                out,
                "{wall}  {camera:<10} {:<10} {what} {:<10} track {}{}",
                &*e.rule,
                e.class.as_str(),
                e.track,
                speed.unwrap_or_default()
            )
        };
        let _ = out.flush();
    }

    fn report(&mut self, r: &FlowReport) {
        let mut out = self.out.lock();
        if self.json {
            let mut v = serde_json::to_value(r).unwrap_or_default();
            v["type"] = "report".into();
            let _ = writeln!(out, "{v}");
        } else {
            let _ = write!(out, "{}", report_table(r));
        }
        let _ = out.flush();
    }
}

/// A FlowReport as a table: one row per counter and direction, one column per class.
fn report_table(r: &FlowReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "── {} {} · {} + {} s{}{} · {} frames analysed, {} dropped",
        r.site,
        r.camera,
        r.bin_start,
        r.bin_seconds,
        if r.partial { format!(" (partial: {:.0} s covered)", r.covered_seconds) } else { String::new() },
        if r.revision > 1 { format!(" · revision {}", r.revision) } else { String::new() },
        r.frames_analysed,
        r.frames_dropped
    );
    for g in &r.gaps {
        let _ = writeln!(s, "   gap {} → {} ({:.1} s): {}", g.from, g.to, g.seconds, g.reason.as_str());
    }
    let _ = write!(s, "   {:<12} {:<4}", "counter", "dir");
    for c in VehicleClass::ALL {
        let _ = write!(s, " {:>10}", c.as_str());
    }
    let _ = writeln!(s, " {:>6} {:>8}", "total", "veh/h");
    for f in &r.flows {
        let _ = write!(s, "   {:<12} {:<4}", f.counter, f.direction.as_str());
        for c in VehicleClass::ALL {
            let n = r
                .volumes
                .iter()
                .find(|v| v.counter == f.counter && v.direction == f.direction && v.class == c)
                .map_or(0, |v| v.vehicles);
            let _ = write!(s, " {n:>10}");
        }
        let _ = writeln!(s, " {:>6} {:>8.0}", f.vehicles, f.veh_per_hour);
    }
    if r.flows.is_empty() {
        let _ = writeln!(s, "   (no vehicles counted)");
    }
    for z in &r.zones {
        let _ = writeln!(
            s,
            "   zone {:<12} entries {:>4}  mean {:>5.2} veh  max {:>3}  occupied {:>5.1} %  mean dwell {}",
            z.zone,
            z.entries,
            z.mean_vehicles,
            z.max_vehicles,
            100.0 * z.occupied_share,
            z.mean_dwell_s.map_or("-".into(), |d| format!("{d:.1} s"))
        );
        if z.kind == junction::analytics::ZoneKind::Queue {
            let _ = writeln!(
                s,
                "        queue: mean {:.2} veh, max {} veh{}",
                z.mean_queue_vehicles,
                z.max_queue_vehicles,
                z.max_queue_m.map_or(String::new(), |m| format!(", max {m:.1} m"))
            );
        }
    }
    for v in &r.speeds {
        let _ = writeln!(
            s,
            "   speed {:<12} {:<10} {:>3} veh  mean {:>5.1} km/h  85th percentile {:>5.1} km/h",
            v.counter,
            v.class.as_str(),
            v.vehicles,
            v.mean_kmh,
            v.p85_kmh
        );
    }
    for h in &r.headways {
        let _ = writeln!(
            s,
            "   headway {:<10} {:<4} {:>3} gaps  mean {:>6.1} s  min {:>5.1} s",
            h.counter,
            h.direction.as_str(),
            h.gaps,
            h.mean_s,
            h.min_s
        );
    }
    for m in &r.movements {
        let _ = writeln!(
            s,
            "   movement {} → {} {:<8} {:<10} {:>3} veh {:>6.1} PCU",
            m.from,
            m.to,
            m.movement.as_str(),
            m.class.as_str(),
            m.vehicles,
            m.pcu
        );
    }
    s
}

pub fn totals_table(s: &RunSummary) -> String {
    use std::fmt::Write as _;
    let mut out = String::from("══ totals\n");
    for c in &s.cameras {
        let _ = writeln!(out, "   camera {}: {} frames analysed, {} dropped", c.camera, c.frames, c.dropped);
        for (line, counts) in &c.lines {
            let _ = writeln!(
                out,
                "   {line:<12} in {:>4}  out {:>4}  total {:>4}",
                direction_total(counts, Direction::In),
                direction_total(counts, Direction::Out),
                counts.values().sum::<u64>()
            );
        }
    }
    out
}

/// `{"frames": N, "lines": [{"id", "camera", "in", "out", "by_class": {class: {"in", "out"}}}], …}`
pub fn summary_json(s: &RunSummary) -> serde_json::Value {
    let mut lines = Vec::new();
    for c in &s.cameras {
        for (id, counts) in &c.lines {
            let n = |d: Direction| direction_total(counts, d);
            let mut by_class = serde_json::Map::new();
            for ((d, class), count) in counts {
                let e = by_class.entry(class.as_str()).or_insert_with(|| serde_json::json!({"in": 0, "out": 0}));
                e[d.as_str()] = (*count).into();
            }
            lines.push(serde_json::json!({
                "id": id, "camera": c.camera, "in": n(Direction::In), "out": n(Direction::Out), "by_class": by_class,
            }));
        }
    }
    serde_json::json!({
        "frames": s.cameras.iter().map(|c| c.frames).sum::<u64>(),
        "frames_dropped": s.cameras.iter().map(|c| c.dropped).sum::<u64>(),
        "frames_detected": s.cameras.iter().map(|c| c.detected).sum::<u64>(),
        "cameras": s.cameras.iter().map(|c| serde_json::json!({
            "id": c.camera, "frames": c.frames, "dropped": c.dropped, "detected": c.detected, "deferred": c.deferred,
            "faults": c.faults, "error": c.error,
        })).collect::<Vec<_>>(),
        "recrossings_suppressed": s.cameras.iter().map(|c| c.recrossings_suppressed).sum::<u64>(),
        "lines": lines,
    })
}

//! Wall-clock-aligned bins per camera (1 min and 15 min by default): volumes by counter × direction ×
//! class, flow rates, zone occupancy and dwell, frames analysed and dropped, count-quality counters.
//!
//! Bins are aligned to multiples of their length since the Unix epoch (so to UTC midnight, the lengths
//! dividing a day) and are closed by the frames' wall clock, not by the system clock: a file replayed at
//! 10× gives the same reports as the live camera would have. No I/O here.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::analytics::{Direction, EventKind, RuleQuality, TrafficEvent, ZoneKind};
use crate::detect::VehicleClass;

pub const FLOW_SCHEMA: &str = "junction.flow.v1";

/// A first frame later than this after a bin's start makes the bin partial (seconds).
const PARTIAL_GRACE: Duration = Duration::from_secs(2);
/// Longest gap between frames credited to zone occupancy: a stalled stream is not "occupied".
const MAX_FRAME_GAP: Duration = Duration::from_secs(2);

/// One closed bin of one camera. The `id` is stable (site, camera, bin start, bin length) so that a
/// receiver can drop duplicates of at-least-once delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowReport {
    pub schema: String,
    pub id: String,
    pub site: String,
    pub camera: String,
    /// Bin start, RFC 3339 UTC.
    pub bin_start: String,
    pub bin_seconds: u64,
    /// The bin was cut short: the stream started after it began, or stopped before it ended.
    pub partial: bool,
    /// Seconds of the bin covered by frames (first to last frame).
    pub covered_seconds: f64,
    pub frames_analysed: u64,
    pub frames_dropped: u64,
    /// Non-zero counts only, sorted by counter, direction, class.
    pub volumes: Vec<Volume>,
    /// Per counter and direction, every class together.
    pub flows: Vec<Flow>,
    pub zones: Vec<ZoneStats>,
    pub quality: Quality,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub counter: String,
    pub direction: Direction,
    pub class: VehicleClass,
    pub vehicles: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flow {
    pub counter: String,
    pub direction: Direction,
    pub vehicles: u64,
    /// Vehicles per hour: over the bin length, or over the covered time for a partial bin.
    pub veh_per_hour: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ZoneStats {
    pub zone: String,
    pub kind: ZoneKind,
    pub entries: u64,
    /// Time-weighted mean of vehicles present.
    pub mean_vehicles: f64,
    pub max_vehicles: u32,
    /// Share of the covered time with at least one vehicle present, 0–1.
    pub occupied_share: f64,
    /// Mean dwell of the visits that ended in this bin, seconds.
    pub mean_dwell_s: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quality {
    pub recrossings_suppressed: u64,
    pub slow_crossings_ignored: u64,
}

#[derive(Debug, Default, Clone)]
struct ZoneAcc {
    entries: u64,
    vehicle_seconds: f64,
    occupied_seconds: f64,
    max_vehicles: u32,
    dwell_sum: f64,
    dwell_n: u64,
}

#[derive(Debug, Clone)]
struct Bin {
    start: SystemTime,
    first_frame: SystemTime,
    last_frame: SystemTime,
    frames_analysed: u64,
    frames_dropped: u64,
    volumes: BTreeMap<(usize, Direction, VehicleClass), u64>,
    zones: Vec<ZoneAcc>,
    quality_at_start: RuleQuality,
}

#[derive(Debug)]
struct BinSeries {
    len: Duration,
    current: Option<Bin>,
}

/// Bins of one camera, for each configured length.
#[derive(Debug)]
pub struct Aggregator {
    site: String,
    camera: String,
    counters: Vec<Arc<str>>,
    zones: Vec<(Arc<str>, ZoneKind)>,
    series: Vec<BinSeries>,
    last_frame: Option<SystemTime>,
    quality: RuleQuality,
}

fn align(t: SystemTime, len: Duration) -> SystemTime {
    let secs = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let len = len.as_secs().max(1);
    UNIX_EPOCH + Duration::from_secs(secs - secs % len)
}

fn secs_between(a: SystemTime, b: SystemTime) -> f64 {
    b.duration_since(a).unwrap_or_default().as_secs_f64()
}

impl Aggregator {
    pub fn new(
        site: &str,
        camera: &str,
        counters: Vec<Arc<str>>,
        zones: Vec<(Arc<str>, ZoneKind)>,
        bins: &[Duration],
    ) -> Self {
        Self {
            site: site.to_owned(),
            camera: camera.to_owned(),
            counters,
            zones,
            series: bins.iter().map(|len| BinSeries { len: *len, current: None }).collect(),
            last_frame: None,
            quality: RuleQuality::default(),
        }
    }

    /// Accounts one analysed frame at `wall`, closing the bins it has left behind into `out`.
    /// `dropped` is frames dropped since the previous call; `occupancy` the vehicles per zone now;
    /// `quality` the rules' cumulative counters.
    pub fn frame(
        &mut self,
        wall: SystemTime,
        dropped: u64,
        occupancy: &[u32],
        quality: RuleQuality,
        out: &mut Vec<FlowReport>,
    ) {
        self.close_before(wall, out);
        let dt = self
            .last_frame
            .map(|l| wall.duration_since(l).unwrap_or_default().min(MAX_FRAME_GAP).as_secs_f64())
            .unwrap_or(0.0);
        self.last_frame = Some(wall);
        self.quality = quality;
        let n_zones = self.zones.len();
        for s in &mut self.series {
            let bin = s.current.get_or_insert_with(|| Bin {
                start: align(wall, s.len),
                first_frame: wall,
                last_frame: wall,
                frames_analysed: 0,
                frames_dropped: 0,
                volumes: BTreeMap::new(),
                zones: vec![ZoneAcc::default(); n_zones],
                quality_at_start: quality,
            });
            bin.last_frame = wall;
            bin.frames_analysed += 1;
            bin.frames_dropped += dropped;
            for (acc, &n) in bin.zones.iter_mut().zip(occupancy) {
                acc.vehicle_seconds += f64::from(n) * dt;
                if n > 0 {
                    acc.occupied_seconds += dt;
                }
                acc.max_vehicles = acc.max_vehicles.max(n);
            }
        }
    }

    /// Adds an event to the open bins (call after `frame` for the frame that produced it).
    pub fn event(&mut self, e: &TrafficEvent) {
        for s in &mut self.series {
            let Some(bin) = s.current.as_mut() else { continue };
            match &e.kind {
                EventKind::Crossing { direction } => {
                    if let Some(c) = self.counters.iter().position(|c| *c == e.rule) {
                        *bin.volumes.entry((c, *direction, e.class)).or_insert(0) += 1;
                    }
                }
                EventKind::ZoneEnter => {
                    if let Some(z) = self.zones.iter().position(|(id, _)| *id == e.rule) {
                        bin.zones[z].entries += 1;
                    }
                }
                EventKind::ZoneExit { dwell } => {
                    if let Some(z) = self.zones.iter().position(|(id, _)| *id == e.rule) {
                        bin.zones[z].dwell_sum += dwell.as_secs_f64();
                        bin.zones[z].dwell_n += 1;
                    }
                }
            }
        }
    }

    /// Closes every open bin (end of stream, shutdown): those cut short are marked partial.
    pub fn finish(&mut self, out: &mut Vec<FlowReport>) {
        for i in 0..self.series.len() {
            if let Some(bin) = self.series[i].current.take() {
                let len = self.series[i].len;
                let complete = bin.last_frame + PARTIAL_GRACE >= bin.start + len;
                out.push(self.report(bin, len, !complete));
            }
        }
    }

    fn close_before(&mut self, wall: SystemTime, out: &mut Vec<FlowReport>) {
        for i in 0..self.series.len() {
            let len = self.series[i].len;
            let ended = self.series[i].current.as_ref().is_some_and(|b| wall >= b.start + len);
            if ended && let Some(bin) = self.series[i].current.take() {
                out.push(self.report(bin, len, false));
            }
        }
    }

    fn report(&self, bin: Bin, len: Duration, cut_short: bool) -> FlowReport {
        let late_start = bin.first_frame.duration_since(bin.start).unwrap_or_default() > PARTIAL_GRACE;
        let partial = cut_short || late_start;
        let covered = secs_between(bin.first_frame, bin.last_frame);
        let hours = if partial { covered.max(1.0) } else { len.as_secs_f64() } / 3600.0;
        let mut flows: BTreeMap<(usize, Direction), u64> = BTreeMap::new();
        let volumes = bin
            .volumes
            .iter()
            .map(|(&(c, direction, class), &vehicles)| {
                *flows.entry((c, direction)).or_insert(0) += vehicles;
                Volume { counter: self.counters[c].to_string(), direction, class, vehicles }
            })
            .collect();
        let flows = flows
            .into_iter()
            .map(|((c, direction), vehicles)| Flow {
                counter: self.counters[c].to_string(),
                direction,
                vehicles,
                veh_per_hour: vehicles as f64 / hours,
            })
            .collect();
        let zones = self
            .zones
            .iter()
            .zip(&bin.zones)
            .map(|((id, kind), acc)| ZoneStats {
                zone: id.to_string(),
                kind: *kind,
                entries: acc.entries,
                mean_vehicles: if covered > 0.0 { acc.vehicle_seconds / covered } else { 0.0 },
                max_vehicles: acc.max_vehicles,
                occupied_share: if covered > 0.0 { (acc.occupied_seconds / covered).min(1.0) } else { 0.0 },
                mean_dwell_s: (acc.dwell_n > 0).then(|| acc.dwell_sum / acc.dwell_n as f64),
            })
            .collect();
        let start = humantime::format_rfc3339_seconds(bin.start).to_string();
        FlowReport {
            schema: FLOW_SCHEMA.to_owned(),
            id: format!("{}/{}/{}/{}", self.site, self.camera, start, len.as_secs()),
            site: self.site.clone(),
            camera: self.camera.clone(),
            bin_start: start,
            bin_seconds: len.as_secs(),
            partial,
            covered_seconds: covered,
            frames_analysed: bin.frames_analysed,
            frames_dropped: bin.frames_dropped,
            volumes,
            flows,
            zones,
            quality: Quality {
                recrossings_suppressed: self.quality.recrossings_suppressed
                    - bin.quality_at_start.recrossings_suppressed,
                slow_crossings_ignored: self.quality.slow_crossings_ignored
                    - bin.quality_at_start.slow_crossings_ignored,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: f64) -> SystemTime {
        // 2026-11-26T08:00:00Z
        UNIX_EPOCH + Duration::from_secs(1_795_680_000) + Duration::from_secs_f64(s)
    }

    fn crossing(t: f64, class: VehicleClass, direction: Direction) -> TrafficEvent {
        TrafficEvent {
            rule: "x".into(),
            kind: EventKind::Crossing { direction },
            track: 1,
            class,
            pts: Duration::from_secs_f64(t),
            wall: at(t),
        }
    }

    #[test]
    fn bins_close_on_wall_clock_and_mark_partial() {
        let mut agg = Aggregator::new("s", "c", vec!["x".into()], vec![], &[Duration::from_secs(60)]);
        let mut out = Vec::new();
        // Frames every 0.5 s from 10 s to 130 s: the first bin starts late (partial), the second is
        // whole, the third is cut short by finish.
        let mut t = 10.0;
        while t <= 130.0 {
            agg.frame(at(t), 0, &[], RuleQuality::default(), &mut out);
            if (t - 30.0).abs() < 1e-9 || (t - 70.0).abs() < 1e-9 || (t - 75.0).abs() < 1e-9 {
                agg.event(&crossing(t, VehicleClass::Car, Direction::In));
            }
            if (t - 80.0).abs() < 1e-9 {
                agg.event(&crossing(t, VehicleClass::Motorcycle, Direction::Out));
            }
            t += 0.5;
        }
        agg.finish(&mut out);
        assert_eq!(out.len(), 3);
        assert!(out[0].partial && !out[1].partial && out[2].partial);
        assert_eq!(out[1].bin_start, "2026-11-26T08:01:00Z");
        assert_eq!(out[1].id, "s/c/2026-11-26T08:01:00Z/60");
        assert_eq!(
            out[0].volumes,
            vec![Volume { counter: "x".into(), direction: Direction::In, class: VehicleClass::Car, vehicles: 1 }]
        );
        assert_eq!(out[1].volumes.len(), 2);
        assert_eq!(out[1].flows[0].vehicles, 2);
        assert!((out[1].flows[0].veh_per_hour - 120.0).abs() < 1e-9);
        assert_eq!(out[1].frames_analysed, 120);
    }

    #[test]
    fn zone_occupancy_is_time_weighted() {
        let mut agg =
            Aggregator::new("s", "c", vec![], vec![("z".into(), ZoneKind::Queue)], &[Duration::from_secs(60)]);
        let mut out = Vec::new();
        // 0–10 s: 2 vehicles; 10–20 s: none; frames each second.
        for i in 0..=20 {
            let n = if i <= 10 { 2 } else { 0 };
            agg.frame(at(i as f64), 0, &[n], RuleQuality::default(), &mut out);
        }
        agg.finish(&mut out);
        let z = &out[0].zones[0];
        assert_eq!(z.max_vehicles, 2);
        assert!((z.occupied_share - 0.5).abs() < 1e-9, "{z:?}");
        assert!((z.mean_vehicles - 1.0).abs() < 1e-9, "{z:?}");
    }
}

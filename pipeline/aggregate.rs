//! Wall-clock-aligned bins per camera (1 min and 15 min by default): volumes by counter × direction ×
//! class with passenger-car units, flow rates, spot speeds (mean, 85th percentile), headways, turning
//! movements by approach × movement × class, zone occupancy, dwell and queues, frames analysed and
//! dropped, count-quality counters.
//!
//! Bins are aligned to multiples of their length since the Unix epoch (so to UTC midnight, the lengths
//! dividing a day) and are closed by the frames' wall clock, not by the system clock: a file replayed at
//! 10× gives the same reports as the live camera would have. No I/O here.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::analytics::{Direction, EventKind, RuleQuality, TrafficEvent, Turn, ZoneKind, ZoneNow};
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
    /// Spot speeds at each counter by class (calibrated cameras; plausible speeds only).
    #[serde(default)]
    pub speeds: Vec<SpeedStats>,
    /// Headways between successive vehicles over a counter in one direction.
    #[serde(default)]
    pub headways: Vec<HeadwayStats>,
    /// Turning movements completed in the bin, by entry approach, exit approach and class.
    #[serde(default)]
    pub movements: Vec<MovementCount>,
    pub quality: Quality,
}

/// Passenger-car units per class: what one vehicle of the class weighs in capacity terms.
///
/// Defaults: TCVN 4054:2005 (Vietnam's road design standard), table 2, flat terrain: bicycle 0.2,
/// motorcycle 0.3, car 1.0, truck 2.0 (2 axles; 3+ axles 2.5), bus 2.0 (under 25 seats; larger
/// 2.5). The motorcycle factor dominates the PCU total where motorcycles are most of the traffic
/// (Da Nang): the UK's 0.4 (DfT TA 79/99) would raise a 1 000-motorcycle hour by 100 PCU.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PcuFactors {
    pub car: f64,
    pub motorcycle: f64,
    pub bus: f64,
    pub truck: f64,
    pub bicycle: f64,
    /// Pedestrians are counted, not weighed: 0.
    pub person: f64,
}

impl Default for PcuFactors {
    fn default() -> Self {
        Self { car: 1.0, motorcycle: 0.3, bus: 2.0, truck: 2.0, bicycle: 0.2, person: 0.0 }
    }
}

impl PcuFactors {
    pub fn of(&self, class: VehicleClass) -> f64 {
        match class {
            VehicleClass::Car => self.car,
            VehicleClass::Motorcycle => self.motorcycle,
            VehicleClass::Bus => self.bus,
            VehicleClass::Truck => self.truck,
            VehicleClass::Bicycle => self.bicycle,
            VehicleClass::Person => self.person,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpeedStats {
    pub counter: String,
    pub class: VehicleClass,
    /// Vehicles with a plausible speed.
    pub vehicles: u64,
    pub mean_kmh: f64,
    /// 85th percentile (nearest rank), km/h.
    pub p85_kmh: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadwayStats {
    pub counter: String,
    pub direction: Direction,
    /// Gaps measured: vehicles in the bin with a predecessor on the same counter and direction.
    pub gaps: u64,
    /// Seconds between successive vehicles (wall clock).
    pub mean_s: f64,
    pub min_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MovementCount {
    pub from: String,
    pub to: String,
    pub movement: Turn,
    pub class: VehicleClass,
    pub vehicles: u64,
    pub pcu: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Volume {
    pub counter: String,
    pub direction: Direction,
    pub class: VehicleClass,
    pub vehicles: u64,
    /// Passenger-car units: vehicles × the class's factor.
    #[serde(default)]
    pub pcu: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flow {
    pub counter: String,
    pub direction: Direction,
    pub vehicles: u64,
    /// Vehicles per hour: over the bin length, or over the covered time for a partial bin.
    pub veh_per_hour: f64,
    /// The same in passenger-car units per hour.
    #[serde(default)]
    pub pcu_per_hour: f64,
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
    /// Queue zones: time-weighted mean and the most of queued (slow) vehicles.
    #[serde(default)]
    pub mean_queue_vehicles: f64,
    #[serde(default)]
    pub max_queue_vehicles: u32,
    /// Queue zones on a calibrated camera: queue length in metres from the front edge, time-weighted
    /// mean and maximum.
    #[serde(default)]
    pub mean_queue_m: Option<f64>,
    #[serde(default)]
    pub max_queue_m: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quality {
    pub recrossings_suppressed: u64,
    pub slow_crossings_ignored: u64,
    #[serde(default)]
    pub implausible_speeds: u64,
    #[serde(default)]
    pub unmatched_movements: u64,
    #[serde(default)]
    pub track_fragments: u64,
}

#[derive(Debug, Default, Clone)]
struct ZoneAcc {
    entries: u64,
    vehicle_seconds: f64,
    occupied_seconds: f64,
    max_vehicles: u32,
    dwell_sum: f64,
    dwell_n: u64,
    queued_seconds: f64,
    max_queued: u32,
    queue_m_seconds: f64,
    max_queue_m: Option<f64>,
}

#[derive(Debug, Clone)]
struct Bin {
    start: SystemTime,
    first_frame: SystemTime,
    last_frame: SystemTime,
    frames_analysed: u64,
    frames_dropped: u64,
    volumes: BTreeMap<(usize, Direction, VehicleClass), u64>,
    speeds: BTreeMap<(usize, VehicleClass), Vec<f64>>,
    headways: BTreeMap<(usize, Direction), Vec<f64>>,
    movements: BTreeMap<(Arc<str>, Arc<str>, Turn, VehicleClass), u64>,
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
    pcu: PcuFactors,
    /// Last crossing per counter and direction, across bins (a headway belongs to the bin of the
    /// second vehicle).
    last_crossing: HashMap<(usize, Direction), SystemTime>,
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
            pcu: PcuFactors::default(),
            last_crossing: HashMap::new(),
        }
    }

    pub fn with_pcu(mut self, pcu: PcuFactors) -> Self {
        self.pcu = pcu;
        self
    }

    /// Accounts one analysed frame at `wall`, closing the bins it has left behind into `out`.
    /// `dropped` is frames dropped since the previous call; `zones` each zone's state now;
    /// `quality` the rules' cumulative counters.
    pub fn frame(
        &mut self,
        wall: SystemTime,
        dropped: u64,
        zones: &[ZoneNow],
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
                speeds: BTreeMap::new(),
                headways: BTreeMap::new(),
                movements: BTreeMap::new(),
                zones: vec![ZoneAcc::default(); n_zones],
                quality_at_start: quality,
            });
            bin.last_frame = wall;
            bin.frames_analysed += 1;
            bin.frames_dropped += dropped;
            for (acc, z) in bin.zones.iter_mut().zip(zones) {
                let n = z.vehicles;
                acc.vehicle_seconds += f64::from(n) * dt;
                if n > 0 {
                    acc.occupied_seconds += dt;
                }
                acc.max_vehicles = acc.max_vehicles.max(n);
                acc.queued_seconds += f64::from(z.queued) * dt;
                acc.max_queued = acc.max_queued.max(z.queued);
                if let Some(m) = z.queue_m {
                    let m = f64::from(m);
                    acc.queue_m_seconds += m * dt;
                    acc.max_queue_m = Some(acc.max_queue_m.map_or(m, |x| x.max(m)));
                }
            }
        }
    }

    /// Adds an event to the open bins (call after `frame` for the frame that produced it).
    pub fn event(&mut self, e: &TrafficEvent) {
        let mut headway = None;
        if let EventKind::Crossing { direction } = e.kind
            && let Some(c) = self.counters.iter().position(|c| *c == e.rule)
            && let Some(prev) = self.last_crossing.insert((c, direction), e.wall)
        {
            headway = Some(e.wall.duration_since(prev).unwrap_or_default().as_secs_f64());
        }
        for s in &mut self.series {
            let Some(bin) = s.current.as_mut() else { continue };
            match &e.kind {
                EventKind::Crossing { direction } => {
                    if let Some(c) = self.counters.iter().position(|c| *c == e.rule) {
                        *bin.volumes.entry((c, *direction, e.class)).or_insert(0) += 1;
                        if let Some(sp) = e.speed.filter(|s| s.plausible) {
                            bin.speeds.entry((c, e.class)).or_default().push(f64::from(sp.kmh));
                        }
                        if let Some(h) = headway {
                            bin.headways.entry((c, *direction)).or_default().push(h);
                        }
                    }
                }
                EventKind::Movement { to, turn } => {
                    *bin.movements.entry((e.rule.clone(), to.clone(), *turn, e.class)).or_insert(0) += 1;
                }
                EventKind::LoopOn { .. } | EventKind::LoopOff { .. } => {}
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
        let mut pcus: BTreeMap<(usize, Direction), f64> = BTreeMap::new();
        let volumes = bin
            .volumes
            .iter()
            .map(|(&(c, direction, class), &vehicles)| {
                *flows.entry((c, direction)).or_insert(0) += vehicles;
                *pcus.entry((c, direction)).or_insert(0.0) += vehicles as f64 * self.pcu.of(class);
                Volume {
                    counter: self.counters[c].to_string(),
                    direction,
                    class,
                    vehicles,
                    pcu: vehicles as f64 * self.pcu.of(class),
                }
            })
            .collect();
        let flows = flows
            .into_iter()
            .map(|((c, direction), vehicles)| Flow {
                counter: self.counters[c].to_string(),
                direction,
                vehicles,
                veh_per_hour: vehicles as f64 / hours,
                pcu_per_hour: pcus.get(&(c, direction)).copied().unwrap_or(0.0) / hours,
            })
            .collect();
        let speeds = bin
            .speeds
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(&(c, class), v)| SpeedStats {
                counter: self.counters[c].to_string(),
                class,
                vehicles: v.len() as u64,
                mean_kmh: v.iter().sum::<f64>() / v.len() as f64,
                p85_kmh: percentile(v, 0.85),
            })
            .collect();
        let headways = bin
            .headways
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(&(c, direction), v)| HeadwayStats {
                counter: self.counters[c].to_string(),
                direction,
                gaps: v.len() as u64,
                mean_s: v.iter().sum::<f64>() / v.len() as f64,
                min_s: v.iter().copied().fold(f64::INFINITY, f64::min),
            })
            .collect();
        let movements = bin
            .movements
            .iter()
            .map(|((from, to, turn, class), &vehicles)| MovementCount {
                from: from.to_string(),
                to: to.to_string(),
                movement: *turn,
                class: *class,
                vehicles,
                pcu: vehicles as f64 * self.pcu.of(*class),
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
                mean_queue_vehicles: if covered > 0.0 { acc.queued_seconds / covered } else { 0.0 },
                max_queue_vehicles: acc.max_queued,
                mean_queue_m: acc.max_queue_m.map(|_| if covered > 0.0 { acc.queue_m_seconds / covered } else { 0.0 }),
                max_queue_m: acc.max_queue_m,
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
            speeds,
            headways,
            movements,
            quality: Quality {
                recrossings_suppressed: self.quality.recrossings_suppressed
                    - bin.quality_at_start.recrossings_suppressed,
                slow_crossings_ignored: self.quality.slow_crossings_ignored
                    - bin.quality_at_start.slow_crossings_ignored,
                implausible_speeds: self.quality.implausible_speeds - bin.quality_at_start.implausible_speeds,
                unmatched_movements: self.quality.unmatched_movements - bin.quality_at_start.unmatched_movements,
                track_fragments: self.quality.track_fragments - bin.quality_at_start.track_fragments,
            },
        }
    }
}

/// Nearest-rank percentile (`q` in 0–1) of unsorted values.
pub fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = (q * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
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
            speed: None,
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
            vec![Volume {
                counter: "x".into(),
                direction: Direction::In,
                class: VehicleClass::Car,
                vehicles: 1,
                pcu: 1.0
            }]
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
            let z = ZoneNow { vehicles: n, ..ZoneNow::default() };
            agg.frame(at(i as f64), 0, &[z], RuleQuality::default(), &mut out);
        }
        agg.finish(&mut out);
        let z = &out[0].zones[0];
        assert_eq!(z.max_vehicles, 2);
        assert!((z.occupied_share - 0.5).abs() < 1e-9, "{z:?}");
        assert!((z.mean_vehicles - 1.0).abs() < 1e-9, "{z:?}");
    }
}

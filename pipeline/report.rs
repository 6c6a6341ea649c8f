//! `junction report`: the traffic engineer's outputs from the store, offline. A turning-movement count
//! table (interval × approach × movement × class, vehicles and PCU) as CSV, a summary with the peak
//! hour and its peak-hour factor, and PNG charts: volumes per interval by movement, and the spot-speed
//! distribution. Coverage goes with every number: each TMC row says how much of its interval the
//! camera covered, `coverage.csv` lists every interval of every camera with its gaps, the chart marks
//! incomplete intervals (*) and the summary says when the peak hour rests on one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::aggregate::FlowReport;
use crate::analytics::Turn;
use crate::detect::VehicleClass;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("no reports of {interval_s} s bins between {from} and {to}{site} in {store}")]
    Empty { store: PathBuf, interval_s: u64, from: String, to: String, site: String },
    #[error("{path}: {message}")]
    Write { path: PathBuf, message: String },
    #[error("chart {path}: {message}")]
    Chart { path: PathBuf, message: String },
}

/// One row of the turning-movement count: one interval, entry approach, movement and class.
#[derive(Debug, Clone, PartialEq)]
pub struct TmcRow {
    /// Interval start, RFC 3339 UTC.
    pub start: String,
    pub seconds: u64,
    pub camera: String,
    pub approach: String,
    pub exit: String,
    pub movement: Turn,
    pub class: VehicleClass,
    pub vehicles: u64,
    pub pcu: f64,
    /// Seconds of the interval the camera covered, and whether that is all of it.
    pub covered_seconds: f64,
    pub complete: bool,
}

/// The TMC rows of stored reports (all of one bin length), in interval, camera, approach, movement,
/// class order. Intervals without any movement give no rows.
pub fn tmc(reports: &[FlowReport]) -> Vec<TmcRow> {
    /// (interval start, camera, approach, movement, exit, class).
    type Key = (String, String, String, Turn, String, VehicleClass);
    let mut rows: BTreeMap<Key, (&FlowReport, u64, f64)> = BTreeMap::new();
    for r in reports {
        for m in &r.movements {
            let key = (r.bin_start.clone(), r.camera.clone(), m.from.clone(), m.movement, m.to.clone(), m.class);
            let e = rows.entry(key).or_insert((r, 0, 0.0));
            e.1 += m.vehicles;
            e.2 += m.pcu;
        }
    }
    rows.into_iter()
        .map(|((start, camera, approach, movement, exit, class), (r, vehicles, pcu))| TmcRow {
            start,
            seconds: r.bin_seconds,
            camera,
            approach,
            exit,
            movement,
            class,
            vehicles,
            pcu,
            covered_seconds: r.covered_seconds,
            complete: !r.partial,
        })
        .collect()
}

pub const TMC_HEADER: &str =
    "interval_start,interval_seconds,camera,approach,exit,movement,class,vehicles,pcu,covered_seconds,complete";

pub const COVERAGE_HEADER: &str =
    "interval_start,interval_seconds,camera,covered_seconds,complete,frames_analysed,revision,gaps";

/// Every interval of every camera: its coverage, and its gaps as `reason:seconds` separated by `;`.
pub fn coverage_csv(reports: &[FlowReport]) -> String {
    let mut s = String::from(COVERAGE_HEADER);
    s.push('\n');
    for r in reports {
        let gaps: Vec<String> = r.gaps.iter().map(|g| format!("{}:{:.1}", g.reason.as_str(), g.seconds)).collect();
        s.push_str(&format!(
            "{},{},{},{:.1},{},{},{},{}\n",
            r.bin_start,
            r.bin_seconds,
            r.camera,
            r.covered_seconds,
            !r.partial,
            r.frames_analysed,
            r.revision,
            gaps.join(";")
        ));
    }
    s
}

/// Interval starts (in time order) that are incomplete: a camera's report there is partial, or a
/// camera seen in the period has no report there at all (the box was not running).
pub fn incomplete_intervals(reports: &[FlowReport]) -> std::collections::BTreeSet<String> {
    let cameras: std::collections::BTreeSet<&str> = reports.iter().map(|r| r.camera.as_str()).collect();
    let mut by: BTreeMap<&str, (std::collections::BTreeSet<&str>, bool)> = BTreeMap::new();
    for r in reports {
        let e = by.entry(r.bin_start.as_str()).or_default();
        e.0.insert(r.camera.as_str());
        e.1 |= r.partial;
    }
    by.into_iter().filter(|(_, (seen, partial))| *partial || *seen != cameras).map(|(s, _)| s.to_owned()).collect()
}

pub fn tmc_csv(rows: &[TmcRow]) -> String {
    let mut s = String::from(TMC_HEADER);
    s.push('\n');
    for r in rows {
        s.push_str(&format!(
            "{},{},{},{},{},{},{},{},{:.1},{:.1},{}\n",
            r.start,
            r.seconds,
            r.camera,
            r.approach,
            r.exit,
            r.movement.as_str(),
            r.class.as_str(),
            r.vehicles,
            r.pcu,
            r.covered_seconds,
            r.complete
        ));
    }
    s
}

/// The busiest hour: four consecutive 15-minute intervals.
#[derive(Debug, Clone, PartialEq)]
pub struct PeakHour {
    /// Start of its first interval, RFC 3339 UTC.
    pub start: String,
    pub vehicles: u64,
    pub pcu: f64,
    /// Peak-hour factor: the hour's volume over four times its busiest 15 minutes (0.25–1).
    pub phf: f64,
}

/// Vehicles and PCU per interval: (start, vehicles, pcu), in time order, over every movement (or,
/// for sites without approaches, every counted crossing).
pub fn interval_totals(reports: &[FlowReport]) -> Vec<(String, u64, f64)> {
    let mut by: BTreeMap<String, (u64, f64)> = BTreeMap::new();
    let with_movements = reports.iter().any(|r| !r.movements.is_empty());
    for r in reports {
        let e = by.entry(r.bin_start.clone()).or_insert((0, 0.0));
        if with_movements {
            e.0 += r.movements.iter().map(|m| m.vehicles).sum::<u64>();
            e.1 += r.movements.iter().map(|m| m.pcu).sum::<f64>();
        } else {
            e.0 += r.volumes.iter().map(|v| v.vehicles).sum::<u64>();
            e.1 += r.volumes.iter().map(|v| v.pcu).sum::<f64>();
        }
    }
    by.into_iter().map(|(s, (v, p))| (s, v, p)).collect()
}

/// The peak hour over 15-minute totals (`interval_totals` of 900 s reports): the four consecutive
/// intervals with the most vehicles. `None` with fewer than four consecutive intervals.
pub fn peak_hour(totals: &[(String, u64, f64)]) -> Option<PeakHour> {
    let parse = |s: &str| humantime::parse_rfc3339(s).ok();
    let mut best: Option<PeakHour> = None;
    for w in totals.windows(4) {
        let times: Option<Vec<_>> = w.iter().map(|t| parse(&t.0)).collect();
        let Some(times) = times else { continue };
        let consecutive =
            times.windows(2).all(|p| p[1].duration_since(p[0]).map(|d| d.as_secs() == 900).unwrap_or(false));
        if !consecutive {
            continue;
        }
        let vehicles: u64 = w.iter().map(|t| t.1).sum();
        let max15 = w.iter().map(|t| t.1).max().unwrap_or(0);
        if best.as_ref().is_none_or(|b| vehicles > b.vehicles) {
            best = Some(PeakHour {
                start: w[0].0.clone(),
                vehicles,
                pcu: w.iter().map(|t| t.2).sum(),
                phf: if max15 > 0 { vehicles as f64 / (4.0 * max15 as f64) } else { 0.0 },
            });
        }
    }
    best
}

static FONT: &[u8] = include_bytes!("report/DejaVuSans.ttf");

fn font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // The bundled font is valid; a failure would only leave text unrendered.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

fn chart_err(path: &Path) -> impl Fn(String) -> ReportError + '_ {
    move |message| ReportError::Chart { path: path.to_owned(), message }
}

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Volumes per interval as stacked bars, one colour per series (e.g. "south through"), as a PNG.
/// Intervals in `incomplete` are labelled with a star.
pub fn volume_chart(
    path: &Path,
    title: &str,
    intervals: &[String],
    incomplete: &std::collections::BTreeSet<String>,
    series: &BTreeMap<String, Vec<u64>>,
) -> Result<(), ReportError> {
    font();
    let err = chart_err(path);
    let root = BitMapBackend::new(path, (1000, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let n = intervals.len().max(1);
    let totals: Vec<u64> = (0..n).map(|i| series.values().map(|v| v.get(i).copied().unwrap_or(0)).sum()).collect();
    let top = totals.iter().copied().max().unwrap_or(0).max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            if incomplete.is_empty() { title.to_owned() } else { format!("{title} (* incomplete interval)") },
            ("sans-serif", 24),
        )
        .margin(16)
        .x_label_area_size(56)
        .y_label_area_size(56)
        // Segmented 0..k has k + 1 slots.
        .build_cartesian_2d((0..n - 1).into_segmented(), 0..(top + top / 4 + 1))
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n.min(16))
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => intervals
                .get(*i)
                .and_then(|s| {
                    let hm = s.get(11..16)?;
                    Some(if incomplete.contains(s) { format!("{hm}*") } else { hm.to_owned() })
                })
                .unwrap_or_default(),
            _ => String::new(),
        })
        .x_desc("interval start (UTC)")
        .y_desc("vehicles")
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(|e| err(e.to_string()))?;
    let mut base = vec![0u64; n];
    for (k, (name, values)) in series.iter().enumerate() {
        let colour = PALETTE[k % PALETTE.len()];
        let bars: Vec<Rectangle<(SegmentValue<usize>, u64)>> = (0..n)
            .filter(|i| values.get(*i).copied().unwrap_or(0) > 0)
            .map(|i| {
                let v = values[i];
                let mut r = Rectangle::new(
                    [(SegmentValue::Exact(i), base[i]), (SegmentValue::Exact(i + 1), base[i] + v)],
                    colour.filled(),
                );
                r.set_margin(0, 0, 12, 12);
                base[i] += v;
                r
            })
            .collect();
        chart
            .draw_series(bars)
            .map_err(|e| err(e.to_string()))?
            .label(name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], colour.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 15))
        .draw()
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))
}

/// Spot-speed histogram in 5 km/h classes, with the mean and 85th percentile in the caption.
pub fn speed_chart(path: &Path, speeds_kmh: &[f64]) -> Result<(), ReportError> {
    font();
    let err = chart_err(path);
    let root = BitMapBackend::new(path, (1000, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let top_speed = speeds_kmh.iter().copied().fold(0.0, f64::max);
    let classes = ((top_speed / 5.0).floor() as u32 + 1).max(8);
    let mut counts = vec![0u32; classes as usize];
    for s in speeds_kmh {
        counts[((s / 5.0).floor() as usize).min(classes as usize - 1)] += 1;
    }
    let ymax = counts.iter().copied().max().unwrap_or(0).max(1);
    let caption = if speeds_kmh.is_empty() {
        "Spot speeds: none measured (no calibrated crossings)".to_string()
    } else {
        format!(
            "Spot speeds: {} vehicles, mean {:.1} km/h, 85th percentile {:.1} km/h",
            speeds_kmh.len(),
            speeds_kmh.iter().sum::<f64>() / speeds_kmh.len() as f64,
            crate::aggregate::percentile(speeds_kmh, 0.85)
        )
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(50)
        .build_cartesian_2d(0u32..classes * 5, 0u32..ymax + 1)
        .map_err(|e| err(e.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("speed (km/h)")
        .y_desc("vehicles")
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(|e| err(e.to_string()))?;
    chart
        .draw_series(
            counts
                .iter()
                .enumerate()
                .map(|(i, c)| Rectangle::new([(i as u32 * 5, 0), (i as u32 * 5 + 5, *c)], PALETTE[0].filled())),
        )
        .map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))
}

/// What `junction report` is asked for.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    pub store: PathBuf,
    pub site: Option<String>,
    pub from: std::time::SystemTime,
    pub to: std::time::SystemTime,
    /// Bin length of the reports to use, seconds (900 for the 15-minute TMC).
    pub interval_s: u64,
    pub out_dir: PathBuf,
}

/// What `junction report` wrote and printed.
#[derive(Debug)]
pub struct ReportOutput {
    pub files: Vec<PathBuf>,
    pub summary: String,
}

/// Reads the store and writes `tmc.csv`, `volumes.png` and `speeds.png` into the output folder.
pub fn make(o: &ReportOptions) -> Result<ReportOutput, ReportError> {
    let store = crate::store::Store::open(&o.store)?;
    let secs = |t| humantime::format_rfc3339_seconds(t).to_string();
    let millis = |t| humantime::format_rfc3339_millis(t).to_string();
    let (from, to) = (secs(o.from), secs(o.to));
    let reports = store.reports(o.site.as_deref(), o.interval_s, &from, &to)?;
    if reports.is_empty() {
        return Err(ReportError::Empty {
            store: o.store.clone(),
            interval_s: o.interval_s,
            from,
            to,
            site: o.site.as_ref().map(|s| format!(" for site {s}")).unwrap_or_default(),
        });
    }
    std::fs::create_dir_all(&o.out_dir)
        .map_err(|e| ReportError::Write { path: o.out_dir.clone(), message: e.to_string() })?;
    let rows = tmc(&reports);
    let csv = o.out_dir.join("tmc.csv");
    write(&csv, &tmc_csv(&rows))?;

    // Intervals in time order, and the series charted: movements, or counters when there are none.
    let mut intervals: Vec<String> = reports.iter().map(|r| r.bin_start.clone()).collect();
    intervals.dedup();
    let at = |start: &str| intervals.iter().position(|s| s == start).unwrap_or(0);
    let mut series: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let with_movements = !rows.is_empty();
    for r in &reports {
        if with_movements {
            for m in &r.movements {
                let v = series.entry(format!("{} {}", m.from, m.movement.as_str())).or_insert(vec![0; intervals.len()]);
                v[at(&r.bin_start)] += m.vehicles;
            }
        } else {
            for f in &r.flows {
                let v =
                    series.entry(format!("{} {}", f.counter, f.direction.as_str())).or_insert(vec![0; intervals.len()]);
                v[at(&r.bin_start)] += f.vehicles;
            }
        }
    }
    let what = if with_movements { "movement" } else { "counter and direction" };
    let minutes = o.interval_s as f64 / 60.0;
    let incomplete = incomplete_intervals(&reports);
    let coverage = o.out_dir.join("coverage.csv");
    write(&coverage, &coverage_csv(&reports))?;
    let volumes = o.out_dir.join("volumes.png");
    volume_chart(&volumes, &format!("Vehicles per {minutes} min by {what}"), &intervals, &incomplete, &series)?;
    let speeds: Vec<f64> =
        store.crossing_speeds(o.site.as_deref(), &millis(o.from), &millis(o.to))?.into_iter().map(|(_, s)| s).collect();
    let speed_png = o.out_dir.join("speeds.png");
    speed_chart(&speed_png, &speeds)?;

    let mut summary = format!(
        "{} reports of {minutes} min from {} to {} ({} intervals)\n",
        reports.len(),
        intervals.first().map(String::as_str).unwrap_or(""),
        intervals.last().map(String::as_str).unwrap_or(""),
        intervals.len()
    );
    if with_movements {
        let mut totals: BTreeMap<(String, Turn), (u64, f64)> = BTreeMap::new();
        for r in &rows {
            let e = totals.entry((r.approach.clone(), r.movement)).or_insert((0, 0.0));
            e.0 += r.vehicles;
            e.1 += r.pcu;
        }
        summary.push_str("approach    movement   vehicles       PCU\n");
        for ((a, m), (v, p)) in &totals {
            summary.push_str(&format!("{a:<11} {:<9} {v:>9} {p:>9.1}\n", m.as_str()));
        }
    } else {
        summary.push_str("counter     direction  vehicles\n");
        for (name, v) in &series {
            let (c, d) = name.rsplit_once(' ').unwrap_or((name, ""));
            summary.push_str(&format!("{c:<11} {d:<9} {:>9}\n", v.iter().sum::<u64>()));
        }
    }
    let totals = interval_totals(&reports);
    let (vehicles, pcu) = totals.iter().fold((0, 0.0), |a, t| (a.0 + t.1, a.1 + t.2));
    summary.push_str(&format!("total: {vehicles} vehicles, {pcu:.1} PCU\n"));
    if !incomplete.is_empty() {
        let shown: Vec<&str> = incomplete.iter().take(8).map(String::as_str).collect();
        summary.push_str(&format!(
            "incomplete intervals: {} of {} (a camera down, restarting, or the box not running: coverage.csv): {}{}\n",
            incomplete.len(),
            intervals.len(),
            shown.join(", "),
            if incomplete.len() > shown.len() { ", …" } else { "" }
        ));
    }
    match (o.interval_s, peak_hour(&totals)) {
        (900, Some(p)) => {
            summary.push_str(&format!(
                "peak hour from {}: {} vehicles, {:.1} PCU, peak-hour factor {:.2}\n",
                p.start, p.vehicles, p.pcu, p.phf
            ));
            let start = humantime::parse_rfc3339(&p.start).ok();
            let within = |s: &String| {
                let t = humantime::parse_rfc3339(s).ok();
                matches!((start, t), (Some(a), Some(b)) if b >= a && b < a + std::time::Duration::from_secs(3600))
            };
            let short: Vec<&String> = incomplete.iter().filter(|s| within(s)).collect();
            if !short.is_empty() {
                summary.push_str(&format!(
                    "warning: the peak hour rests on {} incomplete interval(s); its volume and factor are low bounds\n",
                    short.len()
                ));
            }
        }
        (900, None) => summary.push_str("peak hour: needs four consecutive 15-minute intervals\n"),
        _ => summary.push_str("peak hour: use --interval 15m\n"),
    }
    if speeds.is_empty() {
        summary.push_str("speeds: none (is the camera calibrated with ground_points?)\n");
    } else {
        summary.push_str(&format!(
            "speeds: {} vehicles, mean {:.1} km/h, 85th percentile {:.1} km/h\n",
            speeds.len(),
            speeds.iter().sum::<f64>() / speeds.len() as f64,
            crate::aggregate::percentile(&speeds, 0.85)
        ));
    }
    Ok(ReportOutput { files: vec![csv, coverage, volumes, speed_png], summary })
}

/// Writes `text` to `path`, naming the file in the error.
pub fn write(path: &Path, text: &str) -> Result<(), ReportError> {
    std::fs::write(path, text).map_err(|e| ReportError::Write { path: path.to_owned(), message: e.to_string() })
}

#[cfg(test)]
mod tests;

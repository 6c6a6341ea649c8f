//! Entry points for fuzzing: each takes arbitrary bytes, as a hostile or broken peer would send them,
//! and must return (an error is fine) without panicking, hanging or growing without bound. The
//! cargo-fuzz targets (`pipeline/fuzz/`, run by `scripts/fuzz.sh` on a nightly toolchain) and the
//! stable smoke test (`tests/fuzz.rs`, every `cargo test`) call these same functions, over the seeds
//! in `pipeline/fuzz/corpus/<target>/`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// A target: bytes in, nothing out.
pub type Target = fn(&[u8]);

/// The targets by name (the cargo-fuzz binaries and the corpus folders are named the same).
pub const TARGETS: &[(&str, Target)] =
    &[("site", site), ("calibration", calibration), ("rules_body", rules_body), ("report_merge", report_merge)];

/// A scratch folder of this process for the parsers that read files.
fn scratch() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("junction-fuzz-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        dir
    })
}

/// A site file: parsed and validated, with everything it names (model card, calibration files)
/// resolved against its folder, as `junction check-config` does.
pub fn site(data: &[u8]) {
    let path = scratch().join("site.toml");
    if std::fs::write(&path, data).is_ok() {
        let _ = crate::config::Config::load(&path);
    }
}

/// A calibration (rules) file's text, as `check-config`, the console editor and a reload check it.
pub fn calibration(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::config::check_calibration_text(Path::new("fuzz-calibration.toml"), text);
    }
}

/// The console's rules editor body (POST /api/cameras/<camera>/rules): parsed, written into the
/// example camera's calibration text and checked, as the console does before saving.
pub fn rules_body(data: &[u8]) {
    const EXAMPLE: &str = include_str!("../calibration/example-street/street.toml");
    if let Ok(doc) = serde_json::from_slice::<crate::console::RulesDoc>(data)
        && let Ok(text) = doc.apply_to(EXAMPLE)
    {
        let _ = crate::config::check_calibration_text(Path::new("fuzz-rules.toml"), &text);
    }
}

/// Reports as the store and the console's exports read them back: turning-movement counts, coverage,
/// interval totals and the peak hour over a JSON array of flow reports; and a stored bin state
/// continued after a restart (resume, checkpoint, close).
pub fn report_merge(data: &[u8]) {
    if let Ok(reports) = serde_json::from_slice::<Vec<crate::aggregate::FlowReport>>(data) {
        let rows = crate::report::tmc(&reports);
        let _ = crate::report::tmc_csv(&rows);
        let _ = crate::report::coverage_csv(&reports);
        let totals = crate::report::interval_totals(&reports);
        let _ = crate::report::peak_hour(&totals);
        let _ = crate::report::incomplete_intervals(&reports);
    }
    if let Ok(states) = serde_json::from_slice::<Vec<crate::aggregate::BinState>>(data) {
        let lens: Vec<Duration> = states.iter().map(|s| Duration::from_secs(s.bin_seconds.clamp(1, 86_400))).collect();
        let mut agg = crate::aggregate::Aggregator::new("s1", "c1", vec!["x320".into()], vec![], &lens);
        agg.resume(states);
        let _ = agg.checkpoint();
        let mut out = Vec::new();
        agg.finish(crate::aggregate::GapReason::BoxNotRunning, &mut out);
    }
}

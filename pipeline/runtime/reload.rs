//! Reloading the rules while running: SIGHUP, or the console's editor after saving.

use super::*;

/// Reads the site configuration and its calibration files again and applies each camera's rules
/// (SIGHUP, or the console's editor after saving). A configuration with problems is refused as a
/// whole and the running rules stay. Only rules and ground planes are applied: other settings,
/// and cameras added or removed, wait for a restart (logged).
pub(super) fn reload_rules(cfg: &Config, out: &Outputs, snapshots: Option<&Snapshots>, cameras: &mut [Camera]) {
    let refused = |message: String| {
        tracing::error!(error = %message, "reload refused; the running rules stay");
        out.live(Live::Reloaded { ok: false, message, changes: Vec::new(), at: SystemTime::now() });
    };
    let Some(path) = cfg.path.clone() else {
        return refused("this run has no site configuration file to reload (run with --config)".into());
    };
    let new = match Config::load(&path) {
        Ok(c) => c,
        Err(e) => return refused(e.to_string()),
    };
    let mut all = Vec::new();
    let mut notes = Vec::new();
    for cam in cameras.iter_mut() {
        let Some(nc) = new.cameras.iter().find(|c| c.id == cam.id()) else {
            notes.push(format!("camera {:?} is no longer configured: it stops at the next restart", cam.id()));
            continue;
        };
        if nc.region() != cam.cfg().region() {
            notes.push(format!(
                "camera {:?}: the region of interest the new rules need is applied at the next restart",
                cam.id()
            ));
        }
        let mut produced = Produced::default();
        let changes = cam.pipe.reload(cfg, nc, timeline().now(), &mut produced);
        out.send(cam.id(), produced);
        if changes.is_empty() {
            continue;
        }
        cam.schedule.rules_changed();
        let list: Vec<String> = changes
            .iter()
            .map(|c| format!("{} {} {}", c.kind, c.id, format!("{:?}", c.change).to_lowercase()))
            .collect();
        tracing::info!(camera = %cam.id(), changes = %list.join(", "), "rules reloaded; changed rules' open bins closed as partial");
        if let Some(shared) = snapshots
            && let Ok(mut snaps) = shared.lock()
        {
            let snap = snaps.entry(cam.id().to_owned()).or_default();
            snap.lines = cam.cfg().lines.clone();
            snap.zones = cam.cfg().zones.clone();
        }
        all.extend(changes.into_iter().map(|c| (cam.id().to_owned(), c)));
    }
    for c in new.cameras.iter().filter(|c| !cameras.iter().any(|k| k.id() == c.id)) {
        notes.push(format!("camera {:?} is new: it starts at the next restart", c.id));
    }
    for n in &notes {
        tracing::warn!("reload: {n}");
    }
    let message = match (all.len(), notes.is_empty()) {
        (0, true) => "reloaded: no rule changed".to_owned(),
        (n, _) => {
            format!("reloaded: {n} rule change(s){}{}", if notes.is_empty() { "" } else { "; " }, notes.join("; "))
        }
    };
    out.live(Live::Reloaded { ok: true, message, changes: all, at: SystemTime::now() });
}

//! The command line over the site configuration: `junction run`'s flags merged into a [`Config`]
//! (or an ad-hoc site when a URI is given).

use std::path::Path;

use anyhow::{Context, Result};

use junction::analytics::{LineSpec, Side};
use junction::config::{Config, Override, parse_line_arg};
use junction::geometry::FramePoint;

use crate::{RunArgs, ViewArgs, bundled};

/// A path from the command line, relative to the working directory (the file's paths are relative to
/// the file).
fn absolute(p: &Path) -> Result<String> {
    Ok(std::path::absolute(p).with_context(|| format!("{}", p.display()))?.display().to_string())
}

/// `junction run`'s flags as values laid over the site file before it is validated.
fn overrides(args: &RunArgs) -> Result<Vec<Override>> {
    let mut o = Vec::new();
    if args.config.is_some()
        && let Some(uri) = &args.uri
    {
        let uri = match junction::source::SourceUri::parse(uri) {
            Ok(junction::source::SourceUri::File(p)) if !uri.contains("://") => absolute(&p)?,
            _ => uri.clone(),
        };
        o.push(Override::new("camera.0.uri", uri, "URI"));
    }
    if let Some(p) = &args.store {
        o.push(Override::new("store.path", absolute(p)?, "--store"));
        // The day's ATSPM files go with the store they come from.
        let beside = p.parent().unwrap_or(Path::new(".")).join("atspm");
        o.push(Override::new("store.atspm_dir", absolute(&beside)?, "--store"));
    }
    if let Some(s) = args.checkpoint_s {
        o.push(Override::new("store.checkpoint_s", f64::from(s), "--checkpoint-s"));
    }
    if !args.bins.is_empty() {
        o.push(Override::new("aggregate.bins", toml_edit::Array::from_iter(args.bins.iter()), "--bins"));
    }
    if let Some(m) = &args.model {
        o.push(Override::new("detector.model", absolute(m)?, "--model"));
    }
    if let Some(t) = args.threads {
        o.push(Override::new("detector.threads", i64::try_from(t).unwrap_or(i64::MAX), "--threads"));
    }
    if let Some(n) = args.detect_every {
        o.push(Override::new("detector.every", i64::from(n), "--detect-every"));
    }
    if let Some(p) = &args.onnxruntime {
        o.push(Override::new("detector.onnxruntime", absolute(p)?, "--onnxruntime"));
    }
    if let Some(listen) = args.http {
        o.push(Override::new("http.listen", listen.to_string(), "--http"));
    }
    if let Some(url) = &args.mqtt {
        o.push(Override::new("mqtt.url", url.as_str(), "--mqtt"));
    }
    Ok(o)
}

pub fn run_config(args: &RunArgs) -> Result<Config> {
    let adhoc_lines = args
        .lines
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let [x1, y1, x2, y2] = parse_line_arg(s).map_err(anyhow::Error::msg)?;
            Ok(LineSpec {
                id: format!("line-{}", i + 1).into(),
                a: FramePoint { x: x1, y: y1 },
                b: FramePoint { x: x2, y: y2 },
                in_side: Side::Left,
                anchor: args.anchor,
                lane: None,
                classes: None,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let overrides = overrides(args)?;
    let mut cfg = match (&args.config, &args.uri) {
        (Some(path), _) => Config::load_with(path, &overrides)?,
        (None, None) => Config::load_with(&bundled("deploy/junction.example.toml"), &overrides)?,
        (None, Some(uri)) => {
            if adhoc_lines.is_empty() {
                anyhow::bail!("run {uri}: no --line and no --config: nothing to count");
            }
            Config::load_adhoc(uri, &bundled("models/yolox_nano.toml"), &overrides)?
        }
    };
    if args.config.is_some() && args.uri.is_some() && cfg.cameras.len() > 1 {
        anyhow::bail!("run URI: the configuration has several cameras: which one is meant?");
    }
    if !adhoc_lines.is_empty() {
        match cfg.cameras.as_mut_slice() {
            [only] => only.lines.extend(adhoc_lines),
            _ => anyhow::bail!("--line: the configuration has several cameras: put the line in a calibration file"),
        }
    }
    apply_view(&mut cfg, &args.view)?;
    if args.realtime {
        for c in &mut cfg.cameras {
            if matches!(junction::source::SourceUri::parse(&c.uri), Ok(junction::source::SourceUri::File(_))) {
                c.realtime = true;
            }
        }
    }
    // Switches the file's rules do not judge: they only need their section to be there.
    if args.snapshots {
        match &mut cfg.http {
            Some(h) => h.snapshots = true,
            None => anyhow::bail!("--snapshots: no HTTP endpoint: add --http ADDR or [http] listen"),
        }
    }
    if args.mqtt_protocol.is_some() || args.mqtt_events {
        let Some(m) = &mut cfg.mqtt else {
            anyhow::bail!("--mqtt-protocol/--mqtt-events: no broker: add --mqtt URL or [mqtt] url");
        };
        if let Some(p) = args.mqtt_protocol {
            m.protocol = p;
        }
        m.events |= args.mqtt_events;
    }
    Ok(cfg)
}

/// The command line's region of interest, tiles and decoder, for every camera.
pub fn apply_view(cfg: &mut Config, view: &ViewArgs) -> Result<()> {
    let tiles = view.tiles()?;
    for cam in &mut cfg.cameras {
        if let Some(r) = view.roi {
            cam.roi = r;
        }
        if let Some(t) = tiles {
            cam.tiles = t;
        }
        if let Some(d) = &view.decoder {
            cam.decoder = d.clone();
        }
    }
    Ok(())
}

//! The command line over the site configuration: `junction run`'s flags merged into a [`Config`]
//! (or an ad-hoc site when a URI is given).

use std::time::Duration;

use anyhow::Result;

use junction::analytics::{LineSpec, Side};
use junction::config::{CameraConfig, Config, parse_bin, parse_line_arg};
use junction::geometry::FramePoint;

use crate::{RunArgs, ViewArgs, bundled};

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
    let mut cfg = match (&args.config, &args.uri) {
        (Some(path), _) => Config::load(path)?,
        (None, None) => Config::load(&bundled("deploy/junction.example.toml"))?,
        (None, Some(uri)) => {
            if adhoc_lines.is_empty() {
                anyhow::bail!("run {uri}: no --line and no --config: nothing to count");
            }
            Config::adhoc(bundled("models/yolox_nano.toml"), CameraConfig::new("camera", uri.clone()))
        }
    };
    if args.config.is_some()
        && let Some(uri) = &args.uri
    {
        match cfg.cameras.as_mut_slice() {
            [only] => only.uri = uri.clone(),
            _ => anyhow::bail!("run {uri}: the configuration has several cameras: which one is meant?"),
        }
    }
    if !adhoc_lines.is_empty() {
        match cfg.cameras.as_mut_slice() {
            [only] => only.lines.extend(adhoc_lines),
            _ => anyhow::bail!("--line: the configuration has several cameras: put the line in a calibration file"),
        }
    }
    if let Some(p) = &args.store {
        cfg.store.path = p.clone();
        // The day's ATSPM files go with the store they come from.
        cfg.store.atspm_dir = p.parent().unwrap_or(std::path::Path::new(".")).join("atspm");
    }
    if let Some(s) = args.checkpoint_s {
        cfg.store.checkpoint = Duration::from_secs(u64::from(s));
    }
    if !args.bins.is_empty() {
        cfg.bins = args
            .bins
            .iter()
            .map(|b| parse_bin(b).map_err(|e| anyhow::anyhow!("--bins: {e}")))
            .collect::<Result<_>>()?;
    }
    if let Some(m) = &args.model {
        cfg.model_card = m.clone();
    }
    if let Some(t) = args.threads {
        cfg.detector.intra_threads = t;
    }
    if let Some(n) = args.detect_every {
        cfg.detector.every = n;
    }
    if let Some(o) = &args.onnxruntime {
        cfg.detector.onnxruntime = Some(o.clone());
    }
    apply_view(&mut cfg, &args.view)?;
    if args.realtime {
        for c in &mut cfg.cameras {
            if matches!(junction::source::SourceUri::parse(&c.uri), Ok(junction::source::SourceUri::File(_))) {
                c.realtime = true;
            }
        }
    }
    if let Some(listen) = args.http {
        cfg.http = Some(match cfg.http.take() {
            Some(h) => junction::http::HttpConfig { listen, ..h },
            None => junction::http::HttpConfig::new(listen),
        });
        let problems = cfg.http.as_ref().map(|h| [h.problems(), junction::config::http_file_problems(h)].concat());
        if let Some((field, message)) = problems.and_then(|p| p.into_iter().next()) {
            anyhow::bail!("--http: {field}: {message}");
        }
    }
    if args.snapshots {
        match &mut cfg.http {
            Some(h) => h.snapshots = true,
            None => anyhow::bail!("--snapshots: no HTTP endpoint: add --http ADDR or [http] listen"),
        }
    }
    if let Some(url) = &args.mqtt {
        junction::publish::parse_broker_url(url).map_err(|e| anyhow::anyhow!("--mqtt: {e}"))?;
        match &mut cfg.mqtt {
            Some(m) => m.url = url.clone(),
            None => {
                cfg.mqtt = Some(junction::publish::MqttConfig::new(url.clone()));
            }
        }
    }
    if args.mqtt_protocol.is_some() || args.mqtt_events {
        let Some(m) = &mut cfg.mqtt else {
            anyhow::bail!("--mqtt-protocol/--mqtt-events: no broker: add --mqtt URL or [mqtt] url");
        };
        match args.mqtt_protocol.as_deref() {
            Some("5") => m.protocol = junction::publish::Protocol::V5,
            Some(_) => m.protocol = junction::publish::Protocol::V311,
            None => {}
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

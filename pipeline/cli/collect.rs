//! `junction collect`: frames a model finds hard, saved with pre-labels for a person to correct
//! (library: `junction::collect`).

use std::sync::atomic::AtomicBool;

use anyhow::{Context, Result};

use junction::collect::{CollectParams, Job};
use junction::config::Config;
use junction::detect::DetectorOptions;
use junction::detect::twowheel::TwoWheelerParams;
use junction::source::{Decoder, SourceUri};
use junction::track::TrackerConfig;

use crate::{CollectArgs, bundled};

pub fn collect(args: &CollectArgs) -> Result<()> {
    // Where the frames come from, and with which model and rules: a site's camera (only where
    // `collect = true`), or a video file given directly.
    let (camera, uri, card_path, mut opts, two_wheelers, tracker, decoder) = match (
        &args.config,
        &args.camera,
        &args.uri,
    ) {
        (Some(site), Some(id), None) => {
            let cfg = Config::load(site)?;
            let cam = cfg.cameras.iter().find(|c| c.id == *id).with_context(|| {
                let ids: Vec<&str> = cfg.cameras.iter().map(|c| c.id.as_str()).collect();
                format!("{}: no camera {id:?} (it has {})", site.display(), ids.join(", "))
            })?;
            if !cam.collect {
                anyhow::bail!(
                    "{}: camera {id:?} has collect off: set `collect = true` in its [[camera]] to let junction save \
                     its frames for labelling (they show people and number plates; see README \"Labelling\")",
                    site.display()
                );
            }
            let card = args.model.clone().unwrap_or_else(|| cfg.model_card.clone());
            let c = cfg.clone();
            (id.clone(), cam.uri.clone(), card, c.detector, c.two_wheelers, c.tracker, cam.decoder.clone())
        }
        (None, None, Some(uri)) => {
            if !matches!(SourceUri::parse(uri)?, SourceUri::File(_)) {
                anyhow::bail!(
                    "collect {uri}: a camera's frames are collected only through a site file whose [[camera]] has \
                     `collect = true` (--config SITE --camera ID); give a video file here"
                );
            }
            let stem =
                std::path::Path::new(uri).file_stem().map_or("clip".into(), |s| s.to_string_lossy().into_owned());
            let card = args.model.clone().unwrap_or_else(|| bundled("models/yolox_nano.toml"));
            let opts = DetectorOptions { parallel: 1, ..DetectorOptions::default() };
            let (wheels, tracker) = (TwoWheelerParams::default(), TrackerConfig::default());
            (stem, uri.clone(), card, opts, wheels, tracker, Decoder::Auto)
        }
        _ => anyhow::bail!("collect: give a video file, or --config SITE --camera ID (not both)"),
    };
    if args.threads > 0 {
        opts.intra_threads = args.threads;
    }
    opts.onnxruntime = args.onnxruntime.clone().or(opts.onnxruntime);
    let params = CollectParams {
        sample_s: args.sample_s,
        min_gap_s: args.min_gap_s,
        max_frames: args.max_frames,
        max_bytes: args.max_mb.saturating_mul(1024 * 1024),
        hour_quota: SourceUri::parse(&uri)?.is_live(),
        ..CollectParams::default()
    };
    if !(params.sample_s >= 0.0 && params.min_gap_s >= 0.0) || params.max_frames == 0 || params.max_bytes == 0 {
        anyhow::bail!("collect: --sample-s and --min-gap-s must be ≥ 0, --max-frames and --max-mb > 0");
    }

    let job = Job {
        camera,
        uri,
        card: card_path,
        detector: opts,
        two_wheelers,
        tracker,
        params,
        out: args.out.clone(),
        decoder,
        every: args.every,
        frames: args.frames,
        until: None,
    };
    let done = junction::collect::run(&job, &AtomicBool::new(false), |_| {})?;
    if done.already_full {
        println!("{}: already full ({} frames, {} bytes)", args.out.display(), done.total, done.bytes);
        return Ok(());
    }
    println!(
        "{}: {} frames saved ({} in the folder, {:.1} MB) of {} analysed, {} decoded; \
         COCO annotations.json, YOLO labels/ + classes.txt, manifest.jsonl",
        args.out.display(),
        done.saved,
        done.total,
        done.bytes as f64 / 1e6,
        done.analysed,
        done.decoded
    );
    Ok(())
}

//! `junction collect`: frames a model finds hard, saved with pre-labels for a person to correct
//! (library: `junction::collect`).

use std::time::Duration;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use junction::collect::{Analysed, CollectParams, Collection, Picture, Provenance, Selector, resize};
use junction::config::Config;
use junction::detect::card::ChannelOrder;
use junction::detect::twowheel::{TwoWheelerParams, fuse};
use junction::detect::{Detection, Detector, DetectorOptions, ImageView, Job, ModelCard};
use junction::geometry::{Plan, RegionSpec, TileGrid, TileSpec};
use junction::source::{Source, SourceOptions, SourceUri};
use junction::track::{ClassEvidence, Tracker, TrackerConfig, TrackerOutput};

use crate::{CollectArgs, bundled};

pub fn collect(args: &CollectArgs) -> Result<()> {
    // Where the frames come from, and with which model and rules: a site's camera (only where
    // `collect = true`), or a video file given directly.
    let (camera, uri, card_path, mut opts, two_wheelers, tracker) = match (&args.config, &args.camera, &args.uri) {
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
            (id.clone(), cam.uri.clone(), card, cfg.detector.clone(), cfg.two_wheelers.clone(), cfg.tracker.clone())
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
            (stem, uri.clone(), card, opts, TwoWheelerParams::default(), TrackerConfig::default())
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

    let card = ModelCard::load(&card_path)?;
    let card_text = std::fs::read(&card_path).with_context(|| format!("reading {}", card_path.display()))?;
    let who = Provenance {
        camera: camera.clone(),
        model: card.name.clone(),
        model_sha256: card.sha256.clone(),
        card_sha256: Sha256::digest(&card_text).iter().map(|b| format!("{b:02x}")).collect(),
    };
    let threshold = opts.score.unwrap_or(card.thresholds.score);
    let input = card.input_size();
    let (align, stride, swap) =
        (card.letterbox.align, card.input_stride(), card.input.channel_order == ChannelOrder::Rgb);
    // The model sees down to `near` below its threshold: the unsure boxes are a reason to keep a frame.
    let near = CollectParams::default().near;
    opts.score = Some((threshold - near).max(0.01));
    let mut detector = Detector::new(card, &opts)?;
    let mut tracker =
        Tracker::new(tracker).with_evidence(ClassEvidence { two_wheelers: two_wheelers.clone(), ground: None });
    let mut selector = Selector::new(params.clone(), threshold);
    let mut out = Collection::open(&args.out, params, who)?;
    let start_frames = out.len();
    if out.full() {
        println!("{}: already full ({} frames, {} bytes)", args.out.display(), out.len(), out.bytes());
        return Ok(());
    }

    // Frames at the camera's own size (for the labeller); the model's copy is scaled here. The first
    // frame tells the size.
    let native = {
        let mut probe =
            Source::open(&uri, SourceOptions { open_timeout: Duration::from_secs(20), ..SourceOptions::default() })?;
        let f = probe.next_frame()?.with_context(|| format!("collect {uri}: no frame"))?;
        f.frame_size()
    };
    let mut source = Source::open(
        &uri,
        SourceOptions {
            input: native,
            channel_order: ChannelOrder::Bgr,
            open_timeout: Duration::from_secs(20),
            stall_timeout: Some(Duration::from_secs(30)),
            ..SourceOptions::default()
        },
    )?;
    let mut dets = vec![Vec::new()];
    let mut scratch = Vec::new();
    let mut tracked = TrackerOutput::default();
    let (mut decoded, mut analysed) = (0u64, 0u64);
    while let Some(frame) = source.next_frame()? {
        decoded += 1;
        if args.frames > 0 && decoded > args.frames {
            break;
        }
        if (decoded - 1) % u64::from(args.every) != 0 {
            continue;
        }
        analysed += 1;
        let size = frame.frame_size();
        let plan = Plan::for_frame(size, &RegionSpec::Full, &TileSpec::Grid(TileGrid::ONE), input, align, stride);
        let full = frame.image();
        if full.width != size.width || full.height != size.height {
            // The stream changed size: this frame came scaled to the old one.
            continue;
        }
        let scaled = resize(&full, plan.scaled.width, plan.scaled.height, swap);
        let image = ImageView {
            data: &scaled,
            width: plan.scaled.width,
            height: plan.scaled.height,
            stride: plan.scaled.width as usize * 3,
        };
        detector.detect(&[Job { image, plan: &plan }], &mut dets)?;
        let raw = &dets[0];
        let mut kept: Vec<Detection> = raw.iter().filter(|d| d.score >= threshold).copied().collect();
        fuse(&mut kept, &two_wheelers, &mut scratch);
        tracker.update(frame.pts, &kept, &mut tracked);
        let seen = Analysed {
            pts: frame.pts,
            wall: frame.wall,
            raw,
            kept: &kept,
            tracks: &tracked.tracks,
            ended: &tracked.ended,
        };
        let reasons = selector.consider(&seen);
        if reasons.is_empty() {
            continue;
        }
        let packed = pack(&full);
        let picture = Picture { bgr: &packed, width: size.width, height: size.height };
        if out.save(&picture, &seen, &reasons)? {
            selector.saved(&seen, &reasons);
            tracing::info!(camera = %camera, pts = frame.pts.as_secs_f64(), ?reasons, boxes = kept.len(), "frame collected");
        }
        if out.full() {
            tracing::info!(frames = out.len(), bytes = out.bytes(), "collection full");
            break;
        }
    }
    println!(
        "{}: {} frames saved ({} in the folder, {:.1} MB) of {analysed} analysed, {decoded} decoded; \
         COCO annotations.json, YOLO labels/ + classes.txt, manifest.jsonl",
        args.out.display(),
        out.len() - start_frames,
        out.len(),
        out.bytes() as f64 / 1e6
    );
    Ok(())
}

/// The frame's rows without GStreamer's padding.
fn pack(img: &ImageView<'_>) -> Vec<u8> {
    let row = img.width as usize * 3;
    let mut v = Vec::with_capacity(row * img.height as usize);
    for y in 0..img.height as usize {
        if let Some(r) = img.data.get(y * img.stride..y * img.stride + row) {
            v.extend_from_slice(r);
        }
    }
    v
}

//! `junction check-card`: a new model and its card, checked before a site uses them: the card's
//! fields, the file's sha256, the graph's inputs and outputs against the card (refused naming the
//! tensor and both shapes), and one frame run through the model.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, Result};

use junction::detect::{Detector, DetectorOptions, ModelCard};
use junction::source::{Source, SourceOptions};

use crate::{CheckCardArgs, bundled};

pub fn check_card(args: &CheckCardArgs) -> Result<()> {
    let card = ModelCard::load(&args.card)?;
    let opts = DetectorOptions {
        intra_threads: args.threads,
        onnxruntime: args.onnxruntime.clone(),
        parallel: 1,
        ..DetectorOptions::default()
    };
    let source_opts = SourceOptions::for_card(&card);
    let (name, sha, format) = (card.name.clone(), card.sha256.clone(), card.output.format);
    let mapped: Vec<String> = card
        .class_names
        .iter()
        .zip(&card.class_map)
        .filter_map(|(n, c)| c.map(|c| if n == c.as_str() { n.clone() } else { format!("{n} → {c}") }))
        .collect();
    let classes = card.class_names.len();
    let mut detector = Detector::new(card, &opts)?;
    println!("{}: model {name} ({}), sha256 {sha}", args.card.display(), detector.card().model_path.display());
    for (what, tensor, shape, ty) in detector.tensors() {
        println!("  {what} {tensor:?}: {shape} {ty}");
    }
    println!(
        "  fits the card: {format:?} output, {classes} classes; counted as junction classes: {}",
        mapped.join(", ")
    );

    let image = args.image.clone().unwrap_or_else(|| bundled("calibration/example-street/street_frame.png"));
    let mut source = Source::open(&image.to_string_lossy(), source_opts)
        .with_context(|| format!("check-card: the frame {}", image.display()))?;
    let frame = source.next_frame()?.with_context(|| format!("check-card: {}: no frame decoded", image.display()))?;
    let mut out = vec![Vec::new()];
    // Once to allocate, once timed.
    detector.detect(&[frame.job()], &mut out)?;
    let t = Instant::now();
    detector.detect(&[frame.job()], &mut out)?;
    let took = t.elapsed();
    let size = frame.frame_size();
    let bad: Vec<String> = out[0]
        .iter()
        .filter(|d| {
            let b = d.bbox;
            let inside =
                b.x1 >= -1.0 && b.y1 >= -1.0 && b.x2 <= size.width as f32 + 1.0 && b.y2 <= size.height as f32 + 1.0;
            ![b.x1, b.y1, b.x2, b.y2, d.score].iter().all(|v| v.is_finite()) || !inside || b.x2 <= b.x1 || b.y2 <= b.y1
        })
        .map(|d| format!("{:?} {} {:.2}", [d.bbox.x1, d.bbox.y1, d.bbox.x2, d.bbox.y2], d.class, d.score))
        .collect();
    if !bad.is_empty() {
        anyhow::bail!(
            "{}: the model's boxes on {} ({}x{}) are not boxes of the frame: {} (check [output] format and \
             grid_decoded, and [letterbox] in the card)",
            args.card.display(),
            image.display(),
            size.width,
            size.height,
            bad.join("; ")
        );
    }
    let mut by_class = BTreeMap::new();
    for d in &out[0] {
        *by_class.entry(d.class.as_str()).or_insert(0u32) += 1;
    }
    let found: Vec<String> = by_class.iter().map(|(c, n)| format!("{n} {c}")).collect();
    println!(
        "  one frame ({}, {}x{}): {} detections{}{} in {:.1} ms",
        image.display(),
        size.width,
        size.height,
        out[0].len(),
        if found.is_empty() { String::new() } else { format!(" ({})", found.join(", ")) },
        if out[0].is_empty() {
            " — none on a frame with vehicles: check [input] channel_order, scale, mean/std and the score threshold"
        } else {
            ""
        },
        took.as_secs_f64() * 1000.0
    );
    if out[0].is_empty() && args.image.is_none() {
        anyhow::bail!(
            "{}: no vehicle detected on the bundled street frame, which shows several: the card does not \
             describe how this model wants its input",
            args.card.display()
        );
    }
    println!("ok");
    Ok(())
}

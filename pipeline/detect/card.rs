//! The model card: everything the pipeline must know about an ONNX detector, in one reviewed TOML file
//! beside the model (`models/<name>.toml`). Parsed with unknown fields refused, then validated with every
//! problem named by file and field, then the model file is checked against its sha256.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{DetectError, VehicleClass};
use crate::geometry::{LetterboxAlign, Size};

/// Which output layout the model emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// `[1, N, 5 + C]` row-major: `cx, cy, w, h, objectness, C class scores` (YOLOX, YOLOv5).
    /// With `grid_decoded = false` the box columns are raw and need the stride-grid decode.
    Yolox,
    /// `[1, 4 + C, N]` row-major: `cx, cy, w, h, C class scores`, no objectness, boxes already in
    /// model-input pixels (Ultralytics YOLOv8/v11 export).
    Yolov8,
    /// NMS-free, DETR style (RT-DETR, D-FINE, DEIMv2): three outputs per image, `labels` `[N, Q]` i64
    /// (class index), `boxes` `[N, Q, 4]` f32 (`x1, y1, x2, y2`, scaled to the size given in the
    /// `input.sizes` tensor) and `scores` `[N, Q]` f32. The same object can come back under two labels.
    Detr,
}

/// Channel order of the tensor's C axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelOrder {
    Rgb,
    Bgr,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Tensor name in the ONNX graph.
    pub name: String,
    /// Model input in pixels.
    pub width: u32,
    pub height: u32,
    /// Only "nchw" is supported: `[1, 3, H, W]` row-major f32.
    pub layout: String,
    pub channel_order: ChannelOrder,
    /// `value = (pixel (0–255) × scale − mean[c]) / std[c]`, `c` in the tensor's channel order.
    #[serde(default = "one")]
    pub scale: f32,
    /// DETR family: the name of a second input, `[N, 2]` i64, the (width, height) the boxes come back
    /// scaled to; junction passes the model input's size, so boxes are in model-input pixels.
    #[serde(default)]
    pub sizes: Option<String>,
    #[serde(default = "zeros")]
    pub mean: [f32; 3],
    #[serde(default = "ones")]
    pub std: [f32; 3],
    /// The model is fully convolutional with dynamic height and width: it takes any input whose sides
    /// are multiples of its largest output stride, so a frame is fed in its own shape (416 × 256 for
    /// 16:9) instead of padded to `width` × `height`. Its graph must declare H and W dynamic.
    #[serde(default)]
    pub rectangular: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LetterboxSpec {
    pub align: LetterboxAlign,
    /// Padding value in pixel units (0–255), before normalisation.
    pub pad_value: u8,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// YOLOX and YOLOv8: the output tensor's name.
    #[serde(default)]
    pub name: String,
    pub format: OutputFormat,
    /// DETR: the names of the label, box and score outputs.
    #[serde(default)]
    pub labels: String,
    #[serde(default)]
    pub boxes: String,
    #[serde(default)]
    pub scores: String,
    /// YOLOX only: false when the export leaves the grid decode to the caller (`demo_postprocess`).
    #[serde(default = "yes")]
    pub grid_decoded: bool,
    /// YOLOX raw output: strides of the heads, in the order their anchors appear.
    #[serde(default)]
    pub strides: Vec<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Thresholds {
    /// Minimum score (objectness × class score for YOLOX) to keep a candidate.
    pub score: f32,
    /// IoU above which a lower-scoring box of the same class is suppressed (YOLO formats; with tiles,
    /// also between tiles).
    pub nms_iou: f32,
    /// IoU above which two boxes under different labels are one object and the weaker is dropped
    /// (DETR: its queries are not de-duplicated across labels). Absent: not applied.
    #[serde(default)]
    pub label_merge_iou: Option<f32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassSpec {
    /// Class names in the model's output order.
    pub names: Vec<String>,
    /// Model class name → vehicle class. Classes not listed are dropped.
    pub map: BTreeMap<String, VehicleClass>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCard {
    name: String,
    /// Model file, relative to the card.
    file: PathBuf,
    sha256: String,
    licence: String,
    #[serde(default)]
    source: String,
    input: InputSpec,
    letterbox: LetterboxSpec,
    output: OutputSpec,
    thresholds: Thresholds,
    classes: ClassSpec,
}

/// A validated model card with the model file verified.
#[derive(Debug, Clone)]
pub struct ModelCard {
    pub card_path: PathBuf,
    pub name: String,
    pub model_path: PathBuf,
    pub sha256: String,
    pub licence: String,
    pub source: String,
    pub input: InputSpec,
    pub letterbox: LetterboxSpec,
    pub output: OutputSpec,
    pub thresholds: Thresholds,
    pub class_names: Vec<String>,
    /// Model class index → vehicle class (None: dropped).
    pub class_map: Vec<Option<VehicleClass>>,
}

fn one() -> f32 {
    1.0
}
fn zeros() -> [f32; 3] {
    [0.0; 3]
}
fn ones() -> [f32; 3] {
    [1.0; 3]
}
fn yes() -> bool {
    true
}

impl ModelCard {
    /// Reads, validates and verifies a card and its model file (sha256).
    pub fn load(card_path: &Path) -> Result<Self, DetectError> {
        let text = std::fs::read_to_string(card_path)
            .map_err(|source| DetectError::CardRead { path: card_path.to_owned(), source })?;
        let card = Self::parse(card_path, &text)?;
        card.verify_file()?;
        Ok(card)
    }

    /// Parses and validates a card without touching the model file.
    pub fn parse(card_path: &Path, text: &str) -> Result<Self, DetectError> {
        let raw: RawCard = toml::from_str(text).map_err(|e| DetectError::CardParse {
            path: card_path.to_owned(),
            message: e.message().to_owned(),
            field: e.span().map(|s| line_of(text, s.start)).map_or_else(String::new, |l| format!("line {l}")),
        })?;
        let mut problems = Vec::new();
        let mut bad = |field: &str, msg: String| problems.push(format!("{field}: {msg}"));

        let sha = raw.sha256.to_ascii_lowercase();
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            bad("sha256", "must be 64 hexadecimal digits".into());
        }
        if raw.input.layout != "nchw" {
            bad("input.layout", format!("{:?} is not supported (only \"nchw\")", raw.input.layout));
        }
        if raw.input.width == 0 || raw.input.height == 0 {
            bad("input.width/height", "must be positive".into());
        }
        if !(raw.input.scale.is_finite() && raw.input.scale > 0.0) {
            bad("input.scale", "must be a positive number".into());
        }
        if raw.input.std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            bad("input.std", "every entry must be a positive number".into());
        }
        if !(0.0..=1.0).contains(&raw.thresholds.score) {
            bad("thresholds.score", "must be within 0..=1".into());
        }
        if !(0.0..=1.0).contains(&raw.thresholds.nms_iou) {
            bad("thresholds.nms_iou", "must be within 0..=1".into());
        }
        if let Some(m) = raw.thresholds.label_merge_iou
            && !(0.0..=1.0).contains(&m)
        {
            bad("thresholds.label_merge_iou", "must be within 0..=1".into());
        }
        match raw.output.format {
            OutputFormat::Yolox | OutputFormat::Yolov8 => {
                if raw.output.name.is_empty() {
                    bad("output.name", "the output tensor's name is needed".into());
                }
            }
            OutputFormat::Detr => {
                for (field, v) in [
                    ("output.labels", &raw.output.labels),
                    ("output.boxes", &raw.output.boxes),
                    ("output.scores", &raw.output.scores),
                ] {
                    if v.is_empty() {
                        bad(field, "needed with format = \"detr\" (the output tensor's name)".into());
                    }
                }
                if raw.input.sizes.is_none() {
                    bad("input.sizes", "needed with format = \"detr\": the [N, 2] input of target sizes".into());
                }
            }
        }
        if raw.input.rectangular {
            if raw.output.format == OutputFormat::Detr {
                bad(
                    "input.rectangular",
                    "only for the YOLO formats (a DETR model's queries are sized to one input)".into(),
                );
            }
            if raw.output.strides.is_empty() {
                bad("input.rectangular", "needs output.strides (inputs are padded to the largest stride)".into());
            }
        }
        if raw.classes.names.is_empty() {
            bad("classes.names", "must list the model's classes".into());
        }
        if raw.output.format == OutputFormat::Yolox && !raw.output.grid_decoded {
            if raw.output.strides.is_empty() {
                bad("output.strides", "needed when grid_decoded = false".into());
            }
            for s in &raw.output.strides {
                if *s == 0 || !raw.input.width.is_multiple_of(*s) || !raw.input.height.is_multiple_of(*s) {
                    bad(
                        "output.strides",
                        format!("stride {s} does not divide the input size {}x{}", raw.input.width, raw.input.height),
                    );
                }
            }
        }
        let mut class_map = vec![None; raw.classes.names.len()];
        for (name, class) in &raw.classes.map {
            match raw.classes.names.iter().position(|n| n == name) {
                Some(i) => class_map[i] = Some(*class),
                None => bad(&format!("classes.map.{name}"), "not one of classes.names".into()),
            }
        }
        if class_map.iter().all(Option::is_none) {
            bad("classes.map", "maps no model class to a vehicle class".into());
        }
        if !problems.is_empty() {
            return Err(DetectError::CardInvalid { path: card_path.to_owned(), problems: problems.join("; ") });
        }

        let dir = card_path.parent().unwrap_or(Path::new("."));
        Ok(Self {
            card_path: card_path.to_owned(),
            name: raw.name,
            model_path: dir.join(&raw.file),
            sha256: sha,
            licence: raw.licence,
            source: raw.source,
            input: raw.input,
            letterbox: raw.letterbox,
            output: raw.output,
            thresholds: raw.thresholds,
            class_names: raw.classes.names,
            class_map,
        })
    }

    /// Checks the model file exists and matches the card's sha256.
    pub fn verify_file(&self) -> Result<(), DetectError> {
        let bytes = std::fs::read(&self.model_path).map_err(|source| DetectError::ModelRead {
            path: self.model_path.clone(),
            card: self.card_path.clone(),
            source,
        })?;
        let actual = hex(&Sha256::digest(&bytes));
        if actual != self.sha256 {
            return Err(DetectError::Sha256Mismatch {
                path: self.model_path.clone(),
                card: self.card_path.clone(),
                expected: self.sha256.clone(),
                actual,
            });
        }
        Ok(())
    }

    pub fn input_size(&self) -> Size {
        Size::new(self.input.width, self.input.height)
    }

    /// Model pixels an input's sides must be multiples of, for a card with `input.rectangular`.
    pub fn input_stride(&self) -> Option<u32> {
        self.input.rectangular.then(|| self.output.strides.iter().copied().max()).flatten()
    }

    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// Candidate count the output must have for a raw YOLOX head: Σ (W/s)·(H/s) over strides.
    pub fn grid_anchors(&self) -> Option<usize> {
        if self.output.format == OutputFormat::Yolox && !self.output.grid_decoded {
            Some(self.output.strides.iter().map(|s| ((self.input.width / s) * (self.input.height / s)) as usize).sum())
        } else {
            None
        }
    }
}

fn line_of(text: &str, byte: usize) -> usize {
    text.as_bytes()[..byte.min(text.len())].iter().filter(|b| **b == b'\n').count() + 1
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CARD: &str = include_str!("../../models/yolox_nano.toml");

    #[test]
    fn shipped_card_parses() {
        let card = ModelCard::parse(Path::new("models/yolox_nano.toml"), CARD).expect("card");
        assert_eq!(card.num_classes(), 80);
        assert_eq!(card.grid_anchors(), Some(3549));
        assert_eq!(card.class_map[3], Some(VehicleClass::Motorcycle));
        assert_eq!(card.class_map[4], None); // airplane
    }

    #[test]
    fn unknown_field_is_refused_with_its_name() {
        let text = CARD.replace("[thresholds]", "[thresholds]\nconfidence = 0.5");
        let err = ModelCard::parse(Path::new("m.toml"), &text).unwrap_err().to_string();
        assert!(err.contains("m.toml") && err.contains("confidence"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let text = CARD.replace("score = 0.3", "score = 3.0").replace("layout = \"nchw\"", "layout = \"nhwc\"");
        let err = ModelCard::parse(Path::new("m.toml"), &text).unwrap_err().to_string();
        assert!(err.contains("thresholds.score") && err.contains("input.layout"), "{err}");
    }

    #[test]
    fn map_to_unknown_class_is_named() {
        let text = CARD.replace("truck = \"truck\"", "lorry = \"truck\"");
        let err = ModelCard::parse(Path::new("m.toml"), &text).unwrap_err().to_string();
        assert!(err.contains("classes.map.lorry"), "{err}");
    }
}

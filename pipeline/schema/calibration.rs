//! A camera's calibration file (TOML) as written: the frame size its coordinates refer to, the
//! counting rules ([`crate::rules`]), the ground plane's image ↔ ground points and lens, and the
//! region the detector sees. The box checks and resolves it (shapes inside the frame, the
//! homography); nothing here validates beyond what serde refuses.

use serde::Deserialize;

use crate::rules::{ApproachDoc, LineDoc, LoopDoc, ZoneDoc};

/// The default region of interest: the box around the rules grown by this share of the frame's width
/// (left, right) and height (above, below), so vehicles are tracked before they reach a line.
pub const DEFAULT_ROI_MARGIN: f32 = 0.2;

/// A calibration file as written (unknown fields refused).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalibrationFile {
    /// Frame size in pixels the coordinates below refer to: [width, height].
    pub frame_size: [u32; 2],
    #[serde(default, rename = "line")]
    pub lines: Vec<LineDoc>,
    #[serde(default, rename = "zone")]
    pub zones: Vec<ZoneDoc>,
    /// Image ↔ ground correspondences (at least 4, better 6 or more) for the ground plane.
    #[serde(default)]
    pub ground_points: Vec<GroundPointDoc>,
    pub lens: Option<LensDoc>,
    #[serde(default, rename = "approach")]
    pub approaches: Vec<ApproachDoc>,
    #[serde(default, rename = "loop")]
    pub loops: Vec<LoopDoc>,
    /// The part of the frame the detector sees: "auto" (the rules' surroundings), "full", or
    /// [x1, y1, x2, y2] in frame pixels.
    pub roi: Option<RoiDoc>,
    /// With roi = "auto": share of the frame's width and height added around the rules on each side
    /// (default [`DEFAULT_ROI_MARGIN`]).
    pub roi_margin: Option<f32>,
}

/// One image ↔ ground correspondence.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroundPointDoc {
    /// Frame pixels.
    pub image: [f64; 2],
    /// Metres on the road plane.
    pub ground: [f64; 2],
}

/// The camera's intrinsics, for a lens that bends straight lines.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LensDoc {
    /// [[fx, 0, cx], [0, fy, cy], [0, 0, 1]], frame pixels.
    pub camera_matrix: [[f64; 3]; 3],
    /// k1, k2, p1, p2[, k3]: OpenCV's order.
    pub distortion: Vec<f64>,
}

/// A region of interest as written: `"auto"`, `"full"` or `[x1, y1, x2, y2]` (frame pixels).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RoiDoc {
    Word(String),
    Box([f32; 4]),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_calibration_reads() {
        let cal: CalibrationFile =
            toml::from_str(include_str!("../../calibration/example-street/street.toml")).unwrap();
        assert_eq!(cal.frame_size, [640, 360]);
        assert_eq!(cal.lines.len(), 1);
        assert!(cal.ground_points.len() >= 4, "{:?}", cal.ground_points);
    }

    #[test]
    fn a_region_is_a_word_or_a_box() {
        let word: CalibrationFile = toml::from_str("frame_size = [10, 10]\nroi = \"full\"\n").unwrap();
        assert!(matches!(word.roi, Some(RoiDoc::Word(w)) if w == "full"));
        let rect: CalibrationFile = toml::from_str("frame_size = [10, 10]\nroi = [1, 2, 3, 4]\n").unwrap();
        assert!(matches!(rect.roi, Some(RoiDoc::Box([1.0, 2.0, 3.0, 4.0]))));
        assert!(toml::from_str::<CalibrationFile>("frame_size = [10, 10]\nheight = 3\n").is_err());
    }
}

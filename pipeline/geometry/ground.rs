//! The ground plane: metres on the road surface, reached from frame pixels through a homography
//! solved by OpenCV from image ↔ ground point pairs, after optional lens undistortion.
//!
//! Ground coordinates are whatever right-handed or left-handed metric frame the calibration file's
//! surveyor chose (x, y in metres on the road plane); only distances and angles are used.

use opencv::core::{Mat, Point2d, Vector};
use opencv::prelude::*;

use super::FramePoint;

/// A point on the road plane, metres.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct GroundPoint {
    pub x: f64,
    pub y: f64,
}

impl GroundPoint {
    pub fn distance(&self, o: &Self) -> f64 {
        (self.x - o.x).hypot(self.y - o.y)
    }
}

/// Pinhole lens with Brown–Conrady distortion, as OpenCV's `calibrateCamera` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Lens {
    /// [[fx, 0, cx], [0, fy, cy], [0, 0, 1]], frame pixels.
    pub camera_matrix: [[f64; 3]; 3],
    /// k1, k2, p1, p2[, k3]: OpenCV's order.
    pub distortion: Vec<f64>,
}

impl Lens {
    fn mats(&self) -> Result<(Mat, Mat), GeometryError> {
        let k = Mat::from_slice_2d(&self.camera_matrix).map_err(cv)?;
        let d = Mat::from_slice(&self.distortion).map_err(cv)?.try_clone().map_err(cv)?;
        Ok((k, d))
    }

    /// Distorted (as the camera sees) → ideal pinhole pixel position, by OpenCV's `undistortPoints`
    /// with the camera matrix as the new projection (so the result stays in frame pixels).
    pub fn undistort(&self, pts: &[FramePoint]) -> Result<Vec<FramePoint>, GeometryError> {
        let (k, d) = self.mats()?;
        let src: Vector<Point2d> = pts.iter().map(|p| Point2d::new(f64::from(p.x), f64::from(p.y))).collect();
        let mut dst: Vector<Point2d> = Vector::new();
        opencv::calib3d::undistort_points(&src, &mut dst, &k, &d, &opencv::core::no_array(), &k).map_err(cv)?;
        Ok(dst.iter().map(|p| FramePoint { x: p.x as f32, y: p.y as f32 }).collect())
    }

    /// Ideal pinhole → distorted pixel position (the forward Brown–Conrady model), for drawing ground
    /// geometry onto the camera's own image.
    pub fn distort(&self, p: FramePoint) -> FramePoint {
        let [[fx, _, cx], [_, fy, cy], _] = self.camera_matrix;
        let d = |i: usize| self.distortion.get(i).copied().unwrap_or(0.0);
        let (k1, k2, p1, p2, k3) = (d(0), d(1), d(2), d(3), d(4));
        let x = (f64::from(p.x) - cx) / fx;
        let y = (f64::from(p.y) - cy) / fy;
        let r2 = x * x + y * y;
        let radial = 1.0 + k1 * r2 + k2 * r2 * r2 + k3 * r2 * r2 * r2;
        let xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x);
        let yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y;
        FramePoint { x: (xd * fx + cx) as f32, y: (yd * fy + cy) as f32 }
    }
}

/// One surveyed correspondence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PointPair {
    /// Frame pixels, as the camera delivers them (distorted, if the lens distorts).
    pub image: FramePoint,
    pub ground: GroundPoint,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum GeometryError {
    #[error("{n} ground points: a homography needs at least 4")]
    TooFew { n: usize },
    #[error("no 4 of the {n} points are in general position in {space} (every choice has 3 on one line)")]
    Collinear { n: usize, space: &'static str },
    #[error("the points give no invertible homography (determinant {det:e})")]
    Singular { det: f64 },
    #[error("OpenCV: {0}")]
    OpenCv(String),
}

fn cv(e: opencv::Error) -> GeometryError {
    GeometryError::OpenCv(e.to_string())
}

/// Frame pixels (undistorted) ↔ ground metres.
#[derive(Debug, Clone, PartialEq)]
pub struct Homography {
    /// Undistorted frame pixels → ground metres (homogeneous).
    to_ground: [[f64; 3]; 3],
    to_frame: [[f64; 3]; 3],
    /// Sign of the homogeneous w of `to_frame` for ground points in front of the camera.
    front: f64,
    lens: Option<Lens>,
}

/// A solved calibration and how well it fits its own points.
#[derive(Debug, Clone)]
pub struct Solution {
    pub homography: Homography,
    /// Per point: distance in metres between the surveyed ground point and where the homography puts
    /// its image point.
    pub errors_m: Vec<f64>,
    /// Per point: used by the solution (RANSAC may reject outliers when there are 6 or more points).
    pub inliers: Vec<bool>,
    /// Root mean square of the inliers' errors, metres.
    pub rms_m: f64,
}

/// RANSAC threshold, metres on the ground: a point farther than this from where the others put it is
/// an outlier (a mistyped or misread survey point).
pub const RANSAC_THRESHOLD_M: f64 = 0.5;

fn apply(m: &[[f64; 3]; 3], x: f64, y: f64) -> (f64, f64) {
    let w = m[2][0] * x + m[2][1] * y + m[2][2];
    ((m[0][0] * x + m[0][1] * y + m[0][2]) / w, (m[1][0] * x + m[1][1] * y + m[1][2]) / w)
}

fn det3(m: &[[f64; 3]; 3]) -> f64 {
    m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
        + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
}

fn inverse3(m: &[[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let det = det3(m);
    if !det.is_finite() || det.abs() < 1e-12 {
        return None;
    }
    let c = |r1: usize, c1: usize, r2: usize, c2: usize| m[r1][c1] * m[r2][c2] - m[r1][c2] * m[r2][c1];
    Some([
        [c(1, 1, 2, 2) / det, -c(0, 1, 2, 2) / det, c(0, 1, 1, 2) / det],
        [-c(1, 0, 2, 2) / det, c(0, 0, 2, 2) / det, -c(0, 0, 1, 2) / det],
        [c(1, 0, 2, 1) / det, -c(0, 0, 2, 1) / det, c(0, 0, 1, 1) / det],
    ])
}

/// Three points on one line, relative to their spread (sine of the angle at `a` below 1 %).
fn collinear(a: (f64, f64), b: (f64, f64), c: (f64, f64)) -> bool {
    let (ux, uy, vx, vy) = (b.0 - a.0, b.1 - a.1, c.0 - a.0, c.1 - a.1);
    let cross = (ux * vy - uy * vx).abs();
    let norms = ux.hypot(uy) * vx.hypot(vy);
    norms == 0.0 || cross / norms < 0.01
}

/// Whether some 4 of the points have no 3 on one line.
fn general_position(pts: &[(f64, f64)]) -> bool {
    let n = pts.len();
    for i in 0..n {
        for j in i + 1..n {
            for k in j + 1..n {
                if collinear(pts[i], pts[j], pts[k]) {
                    continue;
                }
                for l in k + 1..n {
                    let t = [pts[i], pts[j], pts[k], pts[l]];
                    if !collinear(t[0], t[1], t[3]) && !collinear(t[0], t[2], t[3]) && !collinear(t[1], t[2], t[3]) {
                        return true;
                    }
                }
            }
        }
    }
    false
}

impl Homography {
    /// From a matrix taking undistorted frame pixels to ground metres; `visible` is any ground point
    /// the camera sees (it tells the near side of the horizon from the far one).
    pub fn from_matrix(
        to_ground: [[f64; 3]; 3],
        lens: Option<Lens>,
        visible: GroundPoint,
    ) -> Result<Self, GeometryError> {
        let to_frame = inverse3(&to_ground).ok_or(GeometryError::Singular { det: det3(&to_ground) })?;
        let w = to_frame[2][0] * visible.x + to_frame[2][1] * visible.y + to_frame[2][2];
        Ok(Self { to_ground, to_frame, front: w.signum(), lens })
    }

    /// Solves from ≥ 4 pairs with OpenCV's `findHomography`: least squares over all points for 4–5,
    /// RANSAC (threshold [`RANSAC_THRESHOLD_M`]) for 6 or more.
    pub fn solve(pairs: &[PointPair], lens: Option<Lens>) -> Result<Solution, GeometryError> {
        let n = pairs.len();
        if n < 4 {
            return Err(GeometryError::TooFew { n });
        }
        let image: Vec<FramePoint> = match &lens {
            Some(l) => l.undistort(&pairs.iter().map(|p| p.image).collect::<Vec<_>>())?,
            None => pairs.iter().map(|p| p.image).collect(),
        };
        let img: Vec<(f64, f64)> = image.iter().map(|p| (f64::from(p.x), f64::from(p.y))).collect();
        let gnd: Vec<(f64, f64)> = pairs.iter().map(|p| (p.ground.x, p.ground.y)).collect();
        if !general_position(&img) {
            return Err(GeometryError::Collinear { n, space: "the image" });
        }
        if !general_position(&gnd) {
            return Err(GeometryError::Collinear { n, space: "ground coordinates" });
        }
        let src: Vector<Point2d> = img.iter().map(|&(x, y)| Point2d::new(x, y)).collect();
        let dst: Vector<Point2d> = gnd.iter().map(|&(x, y)| Point2d::new(x, y)).collect();
        let mut mask = Mat::default();
        let method = if n >= 6 { opencv::calib3d::RANSAC } else { 0 };
        let h = opencv::calib3d::find_homography(&src, &dst, &mut mask, method, RANSAC_THRESHOLD_M).map_err(cv)?;
        if h.empty() || h.rows() != 3 || h.cols() != 3 {
            return Err(GeometryError::Singular { det: 0.0 });
        }
        let mut m = [[0.0; 3]; 3];
        for (r, row) in m.iter_mut().enumerate() {
            for (c, v) in row.iter_mut().enumerate() {
                *v = *h.at_2d::<f64>(r as i32, c as i32).map_err(cv)?;
            }
        }
        let det = det3(&m);
        // A homography squashing the image to a line or point (|det| tiny relative to its scale).
        let scale = m.iter().flatten().map(|v| v.abs()).fold(0.0, f64::max);
        if !det.is_finite() || det.abs() <= 1e-9 * scale.powi(3) {
            return Err(GeometryError::Singular { det });
        }
        let centroid = GroundPoint {
            x: gnd.iter().map(|g| g.0).sum::<f64>() / n as f64,
            y: gnd.iter().map(|g| g.1).sum::<f64>() / n as f64,
        };
        let homography = Self::from_matrix(m, lens, centroid)?;
        let errors_m: Vec<f64> = img
            .iter()
            .zip(&gnd)
            .map(|(&(x, y), &(gx, gy))| {
                let (px, py) = apply(&m, x, y);
                (px - gx).hypot(py - gy)
            })
            .collect();
        let inliers: Vec<bool> = (0..n)
            .map(|i| if mask.empty() { true } else { mask.at::<u8>(i as i32).map(|v| *v != 0).unwrap_or(true) })
            .collect();
        let used: Vec<f64> = errors_m.iter().zip(&inliers).filter(|(_, ok)| **ok).map(|(e, _)| e * e).collect();
        let rms_m = if used.is_empty() { f64::NAN } else { (used.iter().sum::<f64>() / used.len() as f64).sqrt() };
        Ok(Solution { homography, errors_m, inliers, rms_m })
    }

    /// Frame pixels (as delivered) → ground metres. Undistorts through OpenCV when there is a lens.
    pub fn to_ground(&self, p: FramePoint) -> GroundPoint {
        let p = match &self.lens {
            Some(l) => l.undistort(&[p]).ok().and_then(|v| v.first().copied()).unwrap_or(p),
            None => p,
        };
        let (x, y) = apply(&self.to_ground, f64::from(p.x), f64::from(p.y));
        GroundPoint { x, y }
    }

    /// Ground metres → frame pixels (as delivered: distorted again when there is a lens). `None` for
    /// a point on or behind the horizon.
    pub fn to_frame(&self, g: GroundPoint) -> Option<FramePoint> {
        let m = &self.to_frame;
        // Beyond the horizon w changes sign: dividing by it would fold the far side back into the image.
        let w = (m[2][0] * g.x + m[2][1] * g.y + m[2][2]) * self.front;
        if w <= 1e-9 {
            return None;
        }
        let (x, y) = apply(m, g.x, g.y);
        let p = FramePoint { x: x as f32, y: y as f32 };
        Some(match &self.lens {
            Some(l) => l.distort(p),
            None => p,
        })
    }

    pub fn lens(&self) -> Option<&Lens> {
        self.lens.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tilted camera over a road: ground metres → frame pixels (1280 × 720).
    fn camera() -> [[f64; 3]; 3] {
        [[40.0, -12.0, 640.0], [2.0, 8.0, 200.0], [0.001, 0.012, 1.0]]
    }

    fn project(m: &[[f64; 3]; 3], g: GroundPoint) -> FramePoint {
        let (x, y) = apply(m, g.x, g.y);
        FramePoint { x: x as f32, y: y as f32 }
    }

    /// Deterministic noise in [-1, 1].
    fn noise(i: usize) -> f32 {
        ((i as f32 * 12.9898).sin() * 43758.547).fract() * 2.0 - 1.0
    }

    #[test]
    fn recovers_distances_within_one_percent_from_noisy_points() {
        let cam = camera();
        let grid: Vec<GroundPoint> = (0..4)
            .flat_map(|i| (0..3).map(move |j| GroundPoint { x: -6.0 + 4.0 * i as f64, y: 4.0 * j as f64 }))
            .collect();
        // Half a pixel of survey noise on every image point.
        let pairs: Vec<PointPair> = grid
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let p = project(&cam, *g);
                PointPair {
                    image: FramePoint { x: p.x + 0.5 * noise(2 * i), y: p.y + 0.5 * noise(2 * i + 1) },
                    ground: *g,
                }
            })
            .collect();
        let s = Homography::solve(&pairs, None).unwrap();
        assert!(s.rms_m < 0.2, "rms {}", s.rms_m);
        // Distances between fresh (noise-free) ground points, measured through the solution.
        let probes = [
            (GroundPoint { x: -5.0, y: 1.0 }, GroundPoint { x: 5.0, y: 1.0 }),
            (GroundPoint { x: 0.0, y: 0.5 }, GroundPoint { x: 0.0, y: 7.5 }),
            (GroundPoint { x: -4.0, y: 6.0 }, GroundPoint { x: 3.0, y: 2.0 }),
        ];
        for (a, b) in probes {
            let ga = s.homography.to_ground(project(&cam, a));
            let gb = s.homography.to_ground(project(&cam, b));
            let (want, got) = (a.distance(&b), ga.distance(&gb));
            assert!((got - want).abs() / want < 0.01, "{a:?}-{b:?}: {got} m vs {want} m");
        }
        // And back: ground → frame lands on the projection.
        let p = s.homography.to_frame(GroundPoint { x: 1.0, y: 3.0 }).unwrap();
        let q = project(&cam, GroundPoint { x: 1.0, y: 3.0 });
        assert!((p.x - q.x).abs() < 2.0 && (p.y - q.y).abs() < 2.0, "{p:?} vs {q:?}");
    }

    #[test]
    fn ransac_rejects_a_misread_point() {
        let cam = camera();
        let mut pairs: Vec<PointPair> =
            [(0.0, 0.0), (8.0, 0.0), (0.0, 8.0), (8.0, 8.0), (4.0, 4.0), (2.0, 6.0), (6.0, 2.0)]
                .iter()
                .map(|&(x, y)| {
                    let g = GroundPoint { x, y };
                    PointPair { image: project(&cam, g), ground: g }
                })
                .collect();
        pairs[4].ground.x += 3.0; // a survey typo: 3 m off
        let s = Homography::solve(&pairs, None).unwrap();
        assert!(!s.inliers[4], "{:?}", s.inliers);
        assert!(s.errors_m[4] > 2.0 && s.rms_m < 0.01, "{:?} rms {}", s.errors_m, s.rms_m);
    }

    #[test]
    fn degenerate_points_are_refused() {
        let g = |x, y| GroundPoint { x, y };
        let f = |x, y| FramePoint { x, y };
        let three = [PointPair { image: f(0.0, 0.0), ground: g(0.0, 0.0) }; 3];
        assert_eq!(Homography::solve(&three, None).unwrap_err(), GeometryError::TooFew { n: 3 });
        // Three of four image points on one line.
        let pairs = [
            PointPair { image: f(0.0, 0.0), ground: g(0.0, 0.0) },
            PointPair { image: f(10.0, 10.0), ground: g(1.0, 0.0) },
            PointPair { image: f(20.0, 20.0), ground: g(1.0, 1.0) },
            PointPair { image: f(0.0, 30.0), ground: g(0.0, 1.0) },
        ];
        let e = Homography::solve(&pairs, None).unwrap_err();
        assert!(matches!(e, GeometryError::Collinear { space: "the image", .. }), "{e}");
        // Every ground point on one line (a survey along a single kerb).
        let pairs: Vec<PointPair> =
            (0..6).map(|i| PointPair { image: f(i as f32 * 10.0, (i * i) as f32), ground: g(i as f64, 0.0) }).collect();
        let e = Homography::solve(&pairs, None).unwrap_err();
        assert!(matches!(e, GeometryError::Collinear { space: "ground coordinates", .. }), "{e}");
        assert!(matches!(
            Homography::from_matrix([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [0.0, 0.0, 1.0]], None, GroundPoint::default()),
            Err(GeometryError::Singular { .. })
        ));
    }

    #[test]
    fn lens_round_trip() {
        let lens = Lens {
            camera_matrix: [[800.0, 0.0, 640.0], [0.0, 800.0, 360.0], [0.0, 0.0, 1.0]],
            distortion: vec![-0.25, 0.08, 0.001, -0.0005, 0.0],
        };
        let ideal = FramePoint { x: 1000.0, y: 600.0 };
        let seen = lens.distort(ideal);
        assert!((seen.x - ideal.x).abs() > 5.0, "the lens must move the point: {seen:?}");
        let back = lens.undistort(&[seen]).unwrap()[0];
        assert!((back.x - ideal.x).abs() < 0.05 && (back.y - ideal.y).abs() < 0.05, "{back:?}");
    }
}

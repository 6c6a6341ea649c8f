//! `junction calibrate`: solves a camera's ground plane from its calibration file, reports how well
//! it fits (error per point in metres, RMS), and draws an overlay on a frame of the camera: a 5 m
//! ground grid, the ground points (surveyed vs where the solution puts them), every rule (lines,
//! zones, approaches, loops) and the region of interest the detector sees (for the default model's
//! 416 × 416 input). Drawing is OpenCV's imgproc; reading and writing the PNG or JPEG is the `image`
//! crate's (OpenCV's imgcodecs would link GDAL and, through it, libpq into the box).

use std::path::{Path, PathBuf};

use opencv::core::{Mat, Point, Scalar, Vector};
use opencv::imgproc;
use opencv::prelude::*;

use crate::analytics::Region;
use crate::config::{CameraConfig, ConfigError, calibration_points, load_calibration_file};
use crate::geometry::{FramePoint, GeometryError, GroundPoint, Homography, PointPair, Size, Solution};

#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{path}: ground_points: {source}")]
    Geometry { path: PathBuf, source: GeometryError },
    #[error("{path}: no ground_points: add at least 4 image ↔ ground pairs")]
    NoPoints { path: PathBuf },
    #[error("frame {path}: {message}")]
    Frame { path: PathBuf, message: String },
    #[error("overlay {path}: {message}")]
    Overlay { path: PathBuf, message: String },
}

/// What `calibrate` found.
#[derive(Debug)]
pub struct Calibration {
    pub pairs: Vec<PointPair>,
    pub solution: Solution,
    pub camera: CameraConfig,
}

/// Solves the calibration file's ground plane (its rules are checked too).
pub fn solve(path: &Path) -> Result<Calibration, CalibrateError> {
    let (pairs, lens) = calibration_points(path)?;
    if pairs.is_empty() {
        return Err(CalibrateError::NoPoints { path: path.to_owned() });
    }
    let solution =
        Homography::solve(&pairs, lens).map_err(|source| CalibrateError::Geometry { path: path.to_owned(), source })?;
    let camera = load_calibration_file(path)?;
    Ok(Calibration { pairs, solution, camera })
}

/// The per-point table and RMS, for the terminal.
pub fn table(c: &Calibration) -> String {
    let mut s = String::from("point  image (px)        ground (m)        error (m)\n");
    for (i, (p, e)) in c.pairs.iter().zip(&c.solution.errors_m).enumerate() {
        let flag = if c.solution.inliers[i] { "" } else { "  outlier (not used)" };
        s.push_str(&format!(
            "{:>5}  ({:>6.1}, {:>6.1})  ({:>7.2}, {:>7.2})  {:>8.3}{flag}\n",
            i + 1,
            p.image.x,
            p.image.y,
            p.ground.x,
            p.ground.y,
            e
        ));
    }
    let used = c.solution.inliers.iter().filter(|u| **u).count();
    s.push_str(&format!("RMS {:.3} m over {used} of {} points\n", c.solution.rms_m, c.pairs.len()));
    s
}

/// The default model's input (YOLOX-Nano at 416): whether the automatic region is cropped depends on it.
const DEFAULT_INPUT: Size = Size::new(416, 416);

fn bgr(r: f64, g: f64, b: f64) -> Scalar {
    Scalar::new(b, g, r, 0.0)
}

fn ipt(p: FramePoint) -> Point {
    Point::new(p.x.round() as i32, p.y.round() as i32)
}

fn cv_err(path: &Path) -> impl Fn(opencv::Error) -> CalibrateError + '_ {
    move |e| CalibrateError::Overlay { path: path.to_owned(), message: e.to_string() }
}

/// Text with a dark outline so it reads on any background.
fn label(img: &mut Mat, text: &str, at: Point, colour: Scalar, scale: f64) -> opencv::Result<()> {
    let font = imgproc::FONT_HERSHEY_SIMPLEX;
    imgproc::put_text(img, text, at, font, scale, bgr(0.0, 0.0, 0.0), 3, imgproc::LINE_AA, false)?;
    imgproc::put_text(img, text, at, font, scale, colour, 1, imgproc::LINE_AA, false)
}

/// The ground area the image shows: ground points of an image grid that map back onto themselves
/// (in front of the camera), as (min x, min y, max x, max y) metres, bounded to 200 m around the
/// calibration points.
fn visible_ground(h: &Homography, width: i32, height: i32, pairs: &[PointPair]) -> (f64, f64, f64, f64) {
    let n = pairs.len().max(1) as f64;
    let (cx, cy) =
        (pairs.iter().map(|p| p.ground.x).sum::<f64>() / n, pairs.iter().map(|p| p.ground.y).sum::<f64>() / n);
    let mut b = (f64::MAX, f64::MAX, f64::MIN, f64::MIN);
    for yi in 0..=24 {
        for xi in 0..=24 {
            let p = FramePoint { x: (xi * width) as f32 / 24.0, y: (yi * height) as f32 / 24.0 };
            let g = h.to_ground(p);
            let Some(back) = h.to_frame(g) else { continue };
            if (back.x - p.x).abs() > 1.0 || (back.y - p.y).abs() > 1.0 {
                continue;
            }
            if (g.x - cx).abs() > 200.0 || (g.y - cy).abs() > 200.0 {
                continue;
            }
            b = (b.0.min(g.x), b.1.min(g.y), b.2.max(g.x), b.3.max(g.y));
        }
    }
    b
}

/// Draws a ground polyline (metres), split where it leaves the camera's side of the horizon.
fn ground_polyline(
    img: &mut Mat,
    h: &Homography,
    pts: &[GroundPoint],
    colour: Scalar,
    thickness: i32,
) -> opencv::Result<()> {
    let (w, hgt) = (img.cols() as f32, img.rows() as f32);
    let inside = |p: &FramePoint| p.x > -w && p.x < 2.0 * w && p.y > -hgt && p.y < 2.0 * hgt;
    let mut prev: Option<FramePoint> = None;
    for g in pts {
        let p = h.to_frame(*g).filter(inside);
        if let (Some(a), Some(b)) = (prev, p) {
            imgproc::line(img, ipt(a), ipt(b), colour, thickness, imgproc::LINE_AA, 0)?;
        }
        prev = p;
    }
    Ok(())
}

fn polygon(img: &mut Mat, pts: &[FramePoint], colour: Scalar, thickness: i32) -> opencv::Result<()> {
    let v: Vector<Point> = pts.iter().copied().map(ipt).collect();
    let mut all: Vector<Vector<Point>> = Vector::new();
    all.push(v);
    imgproc::polylines(img, &all, true, colour, thickness, imgproc::LINE_AA, 0)
}

/// Writes the overlay of `c` on the PNG (or JPEG) `frame` to `out`.
pub fn overlay(c: &Calibration, frame: &Path, out: &Path) -> Result<(), CalibrateError> {
    let frame_err = |message: String| CalibrateError::Frame { path: frame.to_owned(), message };
    let mut img = read_bgr(frame).map_err(frame_err)?;
    if let Some(size) = c.camera.frame_size
        && (img.cols() as u32 != size.width || img.rows() as u32 != size.height)
    {
        return Err(frame_err(format!("is {}x{}, but the calibration's frame_size is {size}", img.cols(), img.rows())));
    }
    let err = cv_err(out);
    let h = &c.solution.homography;
    let (x0, y0, x1, y1) = visible_ground(h, img.cols(), img.rows(), &c.pairs);
    // The 5 m grid: lines of constant x and constant y, sampled every 0.25 m.
    let grid = bgr(255.0, 255.0, 255.0);
    let step = 5.0;
    let (gx0, gx1) = ((x0 / step).floor() as i64, (x1 / step).ceil() as i64);
    let (gy0, gy1) = ((y0 / step).floor() as i64, (y1 / step).ceil() as i64);
    let along = |a: f64, b: f64| ((b - a) / 0.25).ceil().max(1.0) as usize;
    for k in gx0..=gx1 {
        let x = k as f64 * step;
        let n = along(y0, y1);
        let pts: Vec<GroundPoint> =
            (0..=n).map(|i| GroundPoint { x, y: y0 + (y1 - y0) * i as f64 / n as f64 }).collect();
        ground_polyline(&mut img, h, &pts, grid, 1).map_err(&err)?;
    }
    for k in gy0..=gy1 {
        let y = k as f64 * step;
        let n = along(x0, x1);
        let pts: Vec<GroundPoint> =
            (0..=n).map(|i| GroundPoint { x: x0 + (x1 - x0) * i as f64 / n as f64, y }).collect();
        ground_polyline(&mut img, h, &pts, grid, 1).map_err(&err)?;
    }
    // Metre labels along the first visible grid row.
    for k in gx0..=gx1 {
        let g = GroundPoint { x: k as f64 * step, y: (gy0.max((y0 / step).ceil() as i64)) as f64 * step };
        if let Some(p) =
            h.to_frame(g).filter(|p| p.x >= 0.0 && p.y >= 0.0 && p.x < img.cols() as f32 && p.y < img.rows() as f32)
        {
            label(&mut img, &format!("{} m", k as f64 * step), ipt(p) + Point::new(3, -3), grid, 0.35).map_err(&err)?;
        }
    }
    // Rules.
    let yellow = bgr(255.0, 220.0, 0.0);
    let cyan = bgr(0.0, 220.0, 255.0);
    let magenta = bgr(255.0, 60.0, 220.0);
    let orange = bgr(255.0, 140.0, 0.0);
    for z in &c.camera.zones {
        polygon(&mut img, &z.polygon, cyan, 2).map_err(&err)?;
        label(&mut img, &format!("zone {}", z.id), ipt(z.polygon[0]) + Point::new(4, 14), cyan, 0.45).map_err(&err)?;
    }
    for a in &c.camera.approaches {
        match &a.region {
            Region::Polygon(p) => polygon(&mut img, p, magenta, 2).map_err(&err)?,
            Region::Line(p, q) => {
                imgproc::line(&mut img, ipt(*p), ipt(*q), magenta, 2, imgproc::LINE_AA, 0).map_err(&err)?
            }
        }
        label(&mut img, &format!("approach {}", a.id), ipt(a.region.reference()), magenta, 0.5).map_err(&err)?;
    }
    for l in &c.camera.loops {
        polygon(&mut img, &l.polygon, orange, 2).map_err(&err)?;
        label(
            &mut img,
            &format!("loop {} ch {}", l.id, l.channel),
            ipt(l.polygon[0]) + Point::new(2, -4),
            orange,
            0.45,
        )
        .map_err(&err)?;
    }
    for l in &c.camera.lines {
        imgproc::line(&mut img, ipt(l.a), ipt(l.b), yellow, 3, imgproc::LINE_AA, 0).map_err(&err)?;
        label(&mut img, &format!("line {}", l.id), ipt(l.a) + Point::new(6, 16), yellow, 0.5).map_err(&err)?;
    }
    // The region of interest: cropped (white), or the rules' surroundings left uncropped (grey, the
    // whole frame is analysed).
    let size = Size::new(img.cols() as u32, img.rows() as u32);
    let spec = c.camera.region();
    let (rect, text, colour) = match (spec.resolve(size, DEFAULT_INPUT), spec.candidate(size)) {
        (Some(r), _) => (Some(r), "region of interest (cropped for the detector)", bgr(255.0, 255.0, 255.0)),
        (None, Some(r)) => (
            Some(r),
            "rules' surroundings; whole frame analysed (a crop would not double the detail)",
            bgr(150.0, 150.0, 150.0),
        ),
        (None, None) => (None, "", grid),
    };
    if let Some(r) = rect {
        let (a, b) =
            (Point::new(r.x as i32, r.y as i32), Point::new((r.x + r.width) as i32 - 1, (r.y + r.height) as i32 - 1));
        imgproc::rectangle_points(&mut img, a, b, colour, 1, imgproc::LINE_AA, 0).map_err(&err)?;
        label(&mut img, text, a + Point::new(4, 28), colour, 0.4).map_err(&err)?;
    }
    // Ground points: green circle where surveyed in the image, a cross where the solution puts the
    // surveyed ground position; red for RANSAC outliers.
    for (i, (p, e)) in c.pairs.iter().zip(&c.solution.errors_m).enumerate() {
        let colour = if c.solution.inliers[i] { bgr(40.0, 230.0, 40.0) } else { bgr(255.0, 40.0, 40.0) };
        imgproc::circle(&mut img, ipt(p.image), 5, colour, 2, imgproc::LINE_AA, 0).map_err(&err)?;
        if let Some(q) = h.to_frame(p.ground) {
            let q = ipt(q);
            imgproc::line(&mut img, q + Point::new(-4, -4), q + Point::new(4, 4), colour, 2, imgproc::LINE_AA, 0)
                .map_err(&err)?;
            imgproc::line(&mut img, q + Point::new(-4, 4), q + Point::new(4, -4), colour, 2, imgproc::LINE_AA, 0)
                .map_err(&err)?;
        }
        label(&mut img, &format!("{} ({:.2} m)", i + 1, e), ipt(p.image) + Point::new(7, -7), colour, 0.4)
            .map_err(&err)?;
    }
    let rms = format!("5 m grid; RMS {:.2} m over the ground points", c.solution.rms_m);
    let bottom = img.rows() - 10;
    label(&mut img, &rms, Point::new(8, bottom), bgr(255.0, 255.0, 255.0), 0.5).map_err(&err)?;
    write_bgr(&img, out).map_err(|message| CalibrateError::Overlay { path: out.to_owned(), message })
}

/// A PNG or JPEG as an 8-bit 3-channel BGR `Mat` (OpenCV's order), one row of `cols × 3` bytes per
/// pixel row.
fn read_bgr(path: &Path) -> Result<Mat, String> {
    let rgb = image::io::Reader::open(path)
        .map_err(|e| e.to_string())?
        .with_guessed_format()
        .map_err(|e| e.to_string())?
        .decode()
        .map_err(|e| format!("cannot be read as an image (PNG or JPEG): {e}"))?
        .into_rgb8();
    let (w, h) = (i32::try_from(rgb.width()), i32::try_from(rgb.height()));
    let (Ok(w), Ok(h)) = (w, h) else { return Err("too large".into()) };
    let mut mat =
        Mat::new_rows_cols_with_default(h, w, opencv::core::CV_8UC3, Scalar::all(0.0)).map_err(|e| e.to_string())?;
    let bytes = mat.data_bytes_mut().map_err(|e| e.to_string())?;
    for (dst, src) in bytes.chunks_exact_mut(3).zip(rgb.pixels()) {
        dst.copy_from_slice(&[src[2], src[1], src[0]]);
    }
    Ok(mat)
}

/// Writes a BGR `Mat` as the format `path`'s extension names (`.png`, `.jpg`).
fn write_bgr(img: &Mat, path: &Path) -> Result<(), String> {
    let (w, h) = (img.cols() as u32, img.rows() as u32);
    let bytes = img.data_bytes().map_err(|e| e.to_string())?;
    let rgb: Vec<u8> = bytes.chunks_exact(3).flat_map(|p| [p[2], p[1], p[0]]).collect();
    let out = image::RgbImage::from_raw(w, h, rgb).ok_or("the drawing is not w × h × 3 bytes")?;
    out.save(path).map_err(|e| e.to_string())
}

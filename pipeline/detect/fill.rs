//! Tensor fill: a letterboxed 8-bit, 3-channel image (already scaled and in the model's channel order by
//! GStreamer) into one `[3, H, W]` row-major f32 slot of the model's `[N, 3, H, W]` input, with the
//! padding written here. With tiles, each slot takes its letterbox's window of the scaled image.
//!
//! GStreamer's padding elements (videobox, videoscale add-borders) fill only with fixed colours such as
//! black; YOLOX wants 114 grey, and this pass touches every tensor element anyway, so padding costs
//! nothing extra here.

use crate::geometry::Letterbox;

/// A packed 3-channel, 8-bit image: `height` rows of `stride` bytes, `width * 3` of them used.
#[derive(Debug, Clone, Copy)]
pub struct ImageView<'a> {
    pub data: &'a [u8],
    pub width: u32,
    pub height: u32,
    /// Bytes from one row to the next (GStreamer pads rows to 4 bytes).
    pub stride: usize,
}

/// Per-channel normalisation as a lookup table: `lut[c][pixel] = (pixel × scale − mean[c]) / std[c]`.
#[derive(Debug, Clone)]
pub struct Normalise {
    lut: [[f32; 256]; 3],
    pad: [f32; 3],
}

impl Normalise {
    pub fn new(scale: f32, mean: [f32; 3], std: [f32; 3], pad_value: u8) -> Self {
        let mut lut = [[0.0f32; 256]; 3];
        for (c, table) in lut.iter_mut().enumerate() {
            for (v, out) in table.iter_mut().enumerate() {
                *out = (v as f32 * scale - mean[c]) / std[c];
            }
        }
        let pad = [lut[0][pad_value as usize], lut[1][pad_value as usize], lut[2][pad_value as usize]];
        Self { lut, pad }
    }
}

/// Errors are shape mismatches between the image, the letterbox and the tensor: a bug, not bad input,
/// but reported rather than panicking in the analysis thread.
#[derive(Debug, thiserror::Error)]
#[error("tensor fill: {0}")]
pub struct FillError(String);

/// Writes the letterbox's window of `img` (the scaled region) at the letterbox offset into `out`
/// (`[3, input.h, input.w]`), padding the rest.
pub fn fill_nchw(img: &ImageView<'_>, lb: &Letterbox, norm: &Normalise, out: &mut [f32]) -> Result<(), FillError> {
    let (iw, ih) = (lb.input.width as usize, lb.input.height as usize);
    let win = lb.window;
    let (w, h) = (win.width as usize, win.height as usize);
    let (wx, wy) = (win.x as usize, win.y as usize);
    let (ox, oy) = (lb.offset_x as usize, lb.offset_y as usize);
    let plane = iw * ih;
    if out.len() != 3 * plane {
        return Err(FillError(format!("tensor holds {} values, {}x{}x3 needed", out.len(), iw, ih)));
    }
    if ox + w > iw || oy + h > ih {
        return Err(FillError(format!("image {w}x{h} at ({ox}, {oy}) does not fit the input {iw}x{ih}")));
    }
    if wx + w > img.width as usize || wy + h > img.height as usize {
        return Err(FillError(format!("window {win} is not inside the {}x{} image", img.width, img.height)));
    }
    let last = (wy + h).saturating_sub(1) * img.stride + (wx + w) * 3;
    if img.stride < img.width as usize * 3 || img.data.len() < last {
        return Err(FillError(format!(
            "image buffer of {} bytes too small for {}x{}",
            img.data.len(),
            img.width,
            img.height
        )));
    }
    let (p0, rest) = out.split_at_mut(plane);
    let (p1, p2) = rest.split_at_mut(plane);
    let planes = [p0, p1, p2];
    for (c, p) in planes.into_iter().enumerate() {
        let lut = &norm.lut[c];
        let pad = norm.pad[c];
        // Rows above and below the image.
        p[..oy * iw].fill(pad);
        p[(oy + h) * iw..].fill(pad);
        for y in 0..h {
            let row = &mut p[(oy + y) * iw..(oy + y + 1) * iw];
            row[..ox].fill(pad);
            row[ox + w..].fill(pad);
            let at = (wy + y) * img.stride + wx * 3;
            let src = &img.data[at..at + w * 3];
            for (dst, px) in row[ox..ox + w].iter_mut().zip(src.chunks_exact(3)) {
                *dst = lut[px[c] as usize];
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::{LetterboxAlign, Rect, Size};

    #[test]
    fn a_tile_takes_its_window() {
        // 4x2 image, pixel value = 10 * column + row (all channels); a 2x2 tile at column 2.
        let mut data = Vec::new();
        for y in 0..2u8 {
            for x in 0..4u8 {
                data.extend([10 * x + y; 3]);
            }
        }
        let img = ImageView { data: &data, width: 4, height: 2, stride: 12 };
        let lb = Letterbox::new(Size::new(4, 2), Size::new(2, 2), LetterboxAlign::TopLeft);
        let lb = Letterbox { scaled: Size::new(4, 2), window: Rect::new(2, 0, 2, 2), ..lb };
        let norm = Normalise::new(1.0, [0.0; 3], [1.0; 3], 114);
        let mut out = vec![0.0; 12];
        fill_nchw(&img, &lb, &norm, &mut out).unwrap();
        assert_eq!(&out[0..4], &[20.0, 30.0, 21.0, 31.0]);
        // A window past the image's edge is refused.
        let lb = Letterbox { window: Rect::new(3, 0, 2, 2), ..lb };
        assert!(fill_nchw(&img, &lb, &norm, &mut out).is_err());
    }

    #[test]
    fn fills_channels_planar_and_pads() {
        // 2x1 image, stride 8 (row padding), into a 4x4 input, top-left.
        let data = [10u8, 20, 30, 40, 50, 60, 0, 0];
        let img = ImageView { data: &data, width: 2, height: 1, stride: 8 };
        let lb = Letterbox::new(Size::new(2, 1), Size::new(4, 4), LetterboxAlign::TopLeft);
        assert_eq!(lb.scaled, Size::new(4, 2)); // frame scale, not the image given here
        let lb = Letterbox { scaled: Size::new(2, 1), window: Rect::new(0, 0, 2, 1), ..lb };
        let norm = Normalise::new(1.0, [0.0; 3], [1.0; 3], 114);
        let mut out = vec![0.0; 48];
        fill_nchw(&img, &lb, &norm, &mut out).unwrap();
        assert_eq!(&out[0..4], &[10.0, 40.0, 114.0, 114.0]);
        assert_eq!(&out[16..20], &[20.0, 50.0, 114.0, 114.0]);
        assert_eq!(&out[32..36], &[30.0, 60.0, 114.0, 114.0]);
        assert!(out[4..16].iter().all(|v| *v == 114.0));
    }

    #[test]
    fn centred_with_normalisation() {
        let data = [255u8, 0, 255];
        let img = ImageView { data: &data, width: 1, height: 1, stride: 3 };
        let lb = Letterbox::new(Size::new(1, 1), Size::new(3, 3), LetterboxAlign::Center);
        assert_eq!((lb.scaled, lb.offset_x, lb.offset_y), (Size::new(3, 3), 0, 0));
        let lb = Letterbox { scaled: Size::new(1, 1), window: Rect::new(0, 0, 1, 1), offset_x: 1, offset_y: 1, ..lb };
        let norm = Normalise::new(1.0 / 255.0, [0.0; 3], [1.0; 3], 114);
        let mut out = vec![0.0; 27];
        fill_nchw(&img, &lb, &norm, &mut out).unwrap();
        assert_eq!(out[4], 1.0);
        assert_eq!(out[9 + 4], 0.0);
        assert!((out[0] - 114.0 / 255.0).abs() < 1e-6);
    }

    #[test]
    fn refuses_image_larger_than_input() {
        let data = [0u8; 12];
        let img = ImageView { data: &data, width: 2, height: 2, stride: 6 };
        let lb = Letterbox {
            scaled: Size::new(2, 2),
            window: Rect::new(0, 0, 2, 2),
            ..Letterbox::new(Size::new(2, 2), Size::new(1, 1), LetterboxAlign::TopLeft)
        };
        let norm = Normalise::new(1.0, [0.0; 3], [1.0; 3], 0);
        assert!(fill_nchw(&img, &lb, &norm, &mut [0.0; 3]).is_err());
    }
}

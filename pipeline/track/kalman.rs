//! Constant-velocity Kalman filter on a box, as ByteTrack uses it.
//!
//! State `[cx, cy, a, h, vcx, vcy, va, vh]`: centre (frame pixels), aspect ratio w/h, height (frame
//! pixels), and their velocities in units per *reference frame* of 1/30 s. Keeping ByteTrack's velocity
//! unit keeps its tuned noise weights; the time step is the real PTS gap divided by 1/30 s, so a
//! variable frame rate (10 fps here, 25 there, gaps when frames drop) is handled without a frame counter.

// Matrix algebra reads best with explicit indices.
#![allow(clippy::needless_range_loop)]

/// Reference frame period, seconds: the unit of velocity in the state.
pub const REFERENCE_DT: f64 = 1.0 / 30.0;

const STD_POSITION: f64 = 1.0 / 20.0;
const STD_VELOCITY: f64 = 1.0 / 160.0;

type Vec4 = [f64; 4];
type Vec8 = [f64; 8];
type Mat8 = [[f64; 8]; 8];
type Mat4 = [[f64; 4]; 4];

/// Box as the filter measures it: centre x, centre y, aspect w/h, height.
pub fn measurement(x1: f32, y1: f32, x2: f32, y2: f32) -> Vec4 {
    let w = f64::from(x2 - x1).max(1e-3);
    let h = f64::from(y2 - y1).max(1e-3);
    [f64::from(x1) + w / 2.0, f64::from(y1) + h / 2.0, w / h, h]
}

#[derive(Debug, Clone)]
pub struct Kalman {
    pub mean: Vec8,
    cov: Mat8,
}

impl Kalman {
    pub fn new(z: Vec4) -> Self {
        let h = z[3];
        let std = [
            2.0 * STD_POSITION * h,
            2.0 * STD_POSITION * h,
            1e-2,
            2.0 * STD_POSITION * h,
            10.0 * STD_VELOCITY * h,
            10.0 * STD_VELOCITY * h,
            1e-5,
            10.0 * STD_VELOCITY * h,
        ];
        let mut cov = [[0.0; 8]; 8];
        for i in 0..8 {
            cov[i][i] = std[i] * std[i];
        }
        Self { mean: [z[0], z[1], z[2], z[3], 0.0, 0.0, 0.0, 0.0], cov }
    }

    /// Advances the state by `dt` seconds. Process noise grows with the step.
    pub fn predict(&mut self, dt: f64) {
        let k = (dt / REFERENCE_DT).clamp(0.0, 300.0);
        if k == 0.0 {
            return;
        }
        let h = self.mean[3];
        let q = [
            STD_POSITION * h,
            STD_POSITION * h,
            1e-2,
            STD_POSITION * h,
            STD_VELOCITY * h,
            STD_VELOCITY * h,
            1e-5,
            STD_VELOCITY * h,
        ];
        for i in 0..4 {
            self.mean[i] += k * self.mean[i + 4];
        }
        // P = F P Fᵀ + Q·k, F = [[I, kI], [0, I]].
        let mut fp = self.cov;
        for i in 0..4 {
            for j in 0..8 {
                fp[i][j] += k * self.cov[i + 4][j];
            }
        }
        let mut p = fp;
        for i in 0..8 {
            for j in 0..4 {
                p[i][j] += k * fp[i][j + 4];
            }
        }
        for i in 0..8 {
            p[i][i] += q[i] * q[i] * k;
        }
        self.cov = p;
        // A box never has negative height.
        self.mean[3] = self.mean[3].max(1.0);
    }

    /// Corrects the state with a measured box.
    pub fn update(&mut self, z: Vec4) {
        let h = self.mean[3];
        let r = [STD_POSITION * h, STD_POSITION * h, 1e-1, STD_POSITION * h];
        // S = H P Hᵀ + R (H picks the first four state entries).
        let mut s: Mat4 = [[0.0; 4]; 4];
        for i in 0..4 {
            for j in 0..4 {
                s[i][j] = self.cov[i][j];
            }
            s[i][i] += r[i] * r[i];
        }
        let Some(s_inv) = invert4(&s) else { return };
        // K = P Hᵀ S⁻¹  (8 × 4).
        let mut gain = [[0.0; 4]; 8];
        for i in 0..8 {
            for j in 0..4 {
                gain[i][j] = (0..4).map(|m| self.cov[i][m] * s_inv[m][j]).sum();
            }
        }
        let innovation: Vec4 = [z[0] - self.mean[0], z[1] - self.mean[1], z[2] - self.mean[2], z[3] - self.mean[3]];
        for i in 0..8 {
            self.mean[i] += (0..4).map(|j| gain[i][j] * innovation[j]).sum::<f64>();
        }
        // P = P − K H P.
        let old = self.cov;
        for i in 0..8 {
            for j in 0..8 {
                self.cov[i][j] -= (0..4).map(|m| gain[i][m] * old[m][j]).sum::<f64>();
            }
        }
    }

    /// Current box as (x1, y1, x2, y2) in frame pixels.
    pub fn bbox(&self) -> [f64; 4] {
        let [cx, cy, a, h] = [self.mean[0], self.mean[1], self.mean[2], self.mean[3]];
        let w = a * h;
        [cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0]
    }

    /// Centre velocity in frame pixels per second.
    pub fn velocity(&self) -> (f64, f64) {
        (self.mean[4] / REFERENCE_DT, self.mean[5] / REFERENCE_DT)
    }
}

/// Gauss–Jordan inverse with partial pivoting; `None` for a singular matrix.
fn invert4(m: &Mat4) -> Option<Mat4> {
    let mut a = *m;
    let mut inv: Mat4 = [[0.0; 4]; 4];
    for (i, row) in inv.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    for col in 0..4 {
        let pivot = (col..4).max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        inv.swap(col, pivot);
        let d = a[col][col];
        for j in 0..4 {
            a[col][j] /= d;
            inv[col][j] /= d;
        }
        for r in 0..4 {
            if r != col {
                let f = a[r][col];
                for j in 0..4 {
                    a[r][j] -= f * a[col][j];
                    inv[r][j] -= f * inv[col][j];
                }
            }
        }
    }
    Some(inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_constant_velocity_with_variable_steps() {
        // A box moving +60 px/s in x, sampled at uneven intervals (10 fps with jitter and a gap).
        let times = [0.0, 0.1, 0.2, 0.28, 0.41, 0.5, 0.6, 0.9, 1.0, 1.1, 1.2, 1.3];
        let mut kf = Kalman::new(measurement(0.0, 0.0, 40.0, 20.0));
        let mut last = 0.0;
        for &t in &times[1..] {
            kf.predict(t - last);
            let x = (60.0 * t) as f32;
            kf.update(measurement(x, 0.0, x + 40.0, 20.0));
            last = t;
        }
        let (vx, vy) = kf.velocity();
        assert!((vx - 60.0).abs() < 6.0, "vx {vx}");
        assert!(vy.abs() < 1.0, "vy {vy}");
        kf.predict(0.5);
        let b = kf.bbox();
        assert!((b[0] - 60.0 * 1.8).abs() < 5.0, "predicted x1 {}", b[0]);
    }

    #[test]
    fn inverse_is_an_inverse() {
        let m = [[4.0, 1.0, 0.0, 0.0], [1.0, 3.0, 0.5, 0.0], [0.0, 0.5, 2.0, 0.1], [0.0, 0.0, 0.1, 1.0]];
        let inv = invert4(&m).unwrap();
        for i in 0..4 {
            for j in 0..4 {
                let v: f64 = (0..4).map(|k| m[i][k] * inv[k][j]).sum();
                assert!((v - if i == j { 1.0 } else { 0.0 }).abs() < 1e-9);
            }
        }
        assert!(invert4(&[[0.0; 4]; 4]).is_none());
    }
}

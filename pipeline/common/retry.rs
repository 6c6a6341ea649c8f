//! Retry timing shared by the camera supervisor and the publisher.

use std::time::{Duration, SystemTime};

/// Exponential backoff with ±25 % jitter: `base` doubling up to `max`.
pub fn backoff(attempt: u32, base: Duration, max: Duration) -> Duration {
    let d = base.as_secs_f64() * 2f64.powi(attempt.min(16) as i32);
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    let jitter = 0.75 + 0.5 * f64::from(nanos % 1000) / 1000.0;
    Duration::from_secs_f64(d.min(max.as_secs_f64()) * jitter)
}

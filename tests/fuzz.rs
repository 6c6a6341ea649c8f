//! The fuzz targets' smoke test, on the stable toolchain in every `cargo test` (and so in CI): each
//! target (junction::fuzzing) gets its seeds (pipeline/fuzz/corpus/<target>/), every crash input
//! kept as a regression (pipeline/fuzz/regressions/<target>/), and a few thousand deterministic
//! mutations of the seeds (bytes flipped, inserted, removed, spliced, numbers and strings swapped for
//! hostile ones). A panic fails the test. `scripts/fuzz.sh` runs the same targets under libFuzzer for
//! minutes each.

use std::path::Path;

use crate::common::repo;

/// Mutations per target: enough to reach past the parsers' first checks, quick in a debug build.
const MUTATIONS: usize = 4000;

/// xorshift64*: the same sequence on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Values that break parsers: huge, negative, fractional, non-finite, empty, control characters.
const HOSTILE: &[&str] = &[
    "0",
    "-1",
    "4294967296",
    "9223372036854775808",
    "1e308",
    "-1e308",
    "1e-320",
    "nan",
    "inf",
    "0.0",
    "\"\"",
    "\"\\u0000\"",
    "\"9999-12-31T23:59:59Z\"",
    "\"0000-01-01T00:00:00Z\"",
    "[]",
    "{}",
    "null",
    "true",
    "[[0,0],[0,0]]",
    "\"../../../etc/passwd\"",
    "\"a/b#c+d\"",
];

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut d = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(4) {
        let len = d.len();
        match rng.below(6) {
            0 if len > 0 => {
                let i = rng.below(len);
                d[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(len + 1);
                d.insert(i, rng.next() as u8);
            }
            2 if len > 0 => {
                let (a, n) = (rng.below(len), 1 + rng.below(16));
                d.drain(a..(a + n).min(len));
            }
            3 => {
                // Splice a piece of another seed.
                let other = &seeds[rng.below(seeds.len())];
                if !other.is_empty() {
                    let a = rng.below(other.len());
                    let b = (a + 1 + rng.below(64)).min(other.len());
                    let i = rng.below(len + 1);
                    d.splice(i..i, other[a..b].iter().copied());
                }
            }
            4 => {
                // A number or a quoted string replaced by a hostile value.
                let i = rng.below(len + 1);
                let is_token = |c: &u8| c.is_ascii_digit() || *c == b'.' || *c == b'-';
                if let Some(start) = d[i..].iter().position(is_token).map(|k| i + k) {
                    let end = d[start..].iter().position(|c| !is_token(c)).map_or(d.len(), |k| start + k);
                    let v = HOSTILE[rng.below(HOSTILE.len())].as_bytes();
                    d.splice(start..end, v.iter().copied());
                }
            }
            _ => {
                // Duplicate a stretch (deep or long input).
                if len > 0 {
                    let a = rng.below(len);
                    let b = (a + 1 + rng.below(256)).min(len);
                    let piece = d[a..b].to_vec();
                    d.splice(b..b, piece);
                }
            }
        }
    }
    d
}

fn files(dir: &Path) -> Vec<Vec<u8>> {
    let mut v: Vec<_> =
        std::fs::read_dir(dir).map(|r| r.filter_map(Result::ok).map(|e| e.path()).collect()).unwrap_or_default();
    v.sort();
    v.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

#[test]
fn every_fuzz_target_survives_its_seeds_regressions_and_mutations() {
    let fuzz = repo().join("pipeline/fuzz");
    // The centre's target lives in its own crate (junction-centre), the rest in the box's.
    let centre: (&str, junction::fuzzing::Target) = ("centre_payload", junction_centre::fuzz_payload);
    for (name, target) in junction::fuzzing::TARGETS.iter().chain([&centre]) {
        let seeds = files(&fuzz.join("corpus").join(name));
        assert!(!seeds.is_empty(), "no seeds in pipeline/fuzz/corpus/{name}");
        for s in seeds.iter().chain(&files(&fuzz.join("regressions").join(name))) {
            target(s);
        }
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ name.len() as u64);
        for _ in 0..MUTATIONS {
            let input = mutate(&mut rng, &seeds);
            let shown = String::from_utf8_lossy(&input[..input.len().min(400)]).into_owned();
            let run = std::panic::catch_unwind(|| target(&input));
            if run.is_err() {
                // Kept whole for the regression folder.
                let kept = repo().join("target/fuzz-smoke").join(format!("{name}-crash"));
                let _ = std::fs::create_dir_all(kept.parent().unwrap());
                let _ = std::fs::write(&kept, &input);
                panic!("fuzz target {name} panicked on {} (first 400 bytes):\n{shown}", kept.display());
            }
        }
    }
}

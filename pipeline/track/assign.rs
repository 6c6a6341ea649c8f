//! Minimum-cost assignment (Hungarian algorithm, shortest augmenting paths, O(n²·m)) with a gate:
//! pairs costlier than `max_cost` are never matched.

/// Reusable buffers, so that an update allocates nothing once warmed up.
#[derive(Debug, Default)]
pub struct Assigner {
    u: Vec<f64>,
    v: Vec<f64>,
    p: Vec<usize>,
    way: Vec<usize>,
    minv: Vec<f64>,
    used: Vec<bool>,
    gated: Vec<f64>,
}

/// Cost given to gated pairs: large enough that any assignment avoiding them is preferred.
const FORBIDDEN: f64 = 1e6;

impl Assigner {
    /// `cost` is `rows × cols` row-major. Appends `(row, col)` pairs with cost ≤ `max_cost` to `out`.
    pub fn solve(&mut self, cost: &[f64], rows: usize, cols: usize, max_cost: f64, out: &mut Vec<(usize, usize)>) {
        if rows == 0 || cols == 0 {
            return;
        }
        debug_assert_eq!(cost.len(), rows * cols);
        // The algorithm needs n ≤ m: transpose when there are more rows than columns.
        let transposed = rows > cols;
        let (n, m) = if transposed { (cols, rows) } else { (rows, cols) };
        self.gated.clear();
        self.gated.extend((0..n * m).map(|k| {
            let (i, j) = (k / m, k % m);
            let c = if transposed { cost[j * cols + i] } else { cost[i * cols + j] };
            if c <= max_cost { c } else { FORBIDDEN }
        }));
        let a = &self.gated;
        // 1-based potentials and matching, index 0 is the virtual start column.
        self.u.clear();
        self.u.resize(n + 1, 0.0);
        self.v.clear();
        self.v.resize(m + 1, 0.0);
        self.p.clear();
        self.p.resize(m + 1, 0);
        self.way.clear();
        self.way.resize(m + 1, 0);
        for i in 1..=n {
            self.p[0] = i;
            let mut j0 = 0;
            self.minv.clear();
            self.minv.resize(m + 1, f64::INFINITY);
            self.used.clear();
            self.used.resize(m + 1, false);
            loop {
                self.used[j0] = true;
                let i0 = self.p[j0];
                let mut delta = f64::INFINITY;
                let mut j1 = 0;
                for j in 1..=m {
                    if !self.used[j] {
                        let cur = a[(i0 - 1) * m + (j - 1)] - self.u[i0] - self.v[j];
                        if cur < self.minv[j] {
                            self.minv[j] = cur;
                            self.way[j] = j0;
                        }
                        if self.minv[j] < delta {
                            delta = self.minv[j];
                            j1 = j;
                        }
                    }
                }
                for j in 0..=m {
                    if self.used[j] {
                        self.u[self.p[j]] += delta;
                        self.v[j] -= delta;
                    } else {
                        self.minv[j] -= delta;
                    }
                }
                j0 = j1;
                if self.p[j0] == 0 {
                    break;
                }
            }
            loop {
                let j1 = self.way[j0];
                self.p[j0] = self.p[j1];
                j0 = j1;
                if j0 == 0 {
                    break;
                }
            }
        }
        for j in 1..=m {
            let i = self.p[j];
            if i == 0 || a[(i - 1) * m + (j - 1)] >= FORBIDDEN {
                continue;
            }
            out.push(if transposed { (j - 1, i - 1) } else { (i - 1, j - 1) });
        }
        out.sort_unstable();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solve(cost: &[f64], rows: usize, cols: usize, max: f64) -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        Assigner::default().solve(cost, rows, cols, max, &mut out);
        out
    }

    #[test]
    fn finds_the_global_minimum_not_the_greedy_one() {
        // Greedy takes (0,0)=1 then (1,1)=10: total 11. Optimal: (0,1)=2 + (1,0)=3 = 5.
        assert_eq!(solve(&[1.0, 2.0, 3.0, 10.0], 2, 2, 100.0), vec![(0, 1), (1, 0)]);
    }

    #[test]
    fn rectangular_both_ways() {
        assert_eq!(solve(&[5.0, 1.0, 9.0], 1, 3, 100.0), vec![(0, 1)]);
        assert_eq!(solve(&[5.0, 1.0, 9.0], 3, 1, 100.0), vec![(1, 0)]);
    }

    #[test]
    fn gate_leaves_pairs_unmatched() {
        assert_eq!(solve(&[0.9, 0.95, 0.2, 0.9], 2, 2, 0.8), vec![(1, 0)]);
        assert!(solve(&[0.9], 1, 1, 0.8).is_empty());
        assert!(solve(&[], 0, 3, 0.8).is_empty());
    }
}

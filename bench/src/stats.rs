//! Order statistics of measured samples (pure).

/// The `p`-th percentile (0..=100) by the nearest-rank method: the smallest sample such that at
/// least `p` % of all samples are less than or equal to it. `None` for no samples.
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut v: Vec<f64> = samples.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let p = p.clamp(0.0, 100.0);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

/// The median: the middle sample, or the mean of the two middle ones. `None` for no samples.
pub fn median(samples: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = samples.iter().copied().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The largest sample. `None` for no samples.
pub fn max(samples: &[f64]) -> Option<f64> {
    samples
        .iter()
        .copied()
        .filter(|x| !x.is_nan())
        .max_by(f64::total_cmp)
}

/// Which end of a figure's samples is its worst (every figure in the table is a cost: larger is worse).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Worse {
    /// Larger is worse.
    Higher,
}

/// Median and worst of one figure over several runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Median over the runs.
    pub median: f64,
    /// Worst run.
    pub worst: f64,
    /// Runs.
    pub n: usize,
}

/// Summarises one figure over runs. `None` when no run produced it.
pub fn summarize(samples: &[f64], worse: Worse) -> Option<Summary> {
    let median = median(samples)?;
    let clean: Vec<f64> = samples.iter().copied().filter(|x| !x.is_nan()).collect();
    let worst = match worse {
        Worse::Higher => max(&clean)?,
    };
    Some(Summary {
        median,
        worst,
        n: clean.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        // Unsorted input, few samples: p99 of 10 samples is the largest.
        let w = [5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0, 4.0, 6.0, 10.0];
        assert_eq!(percentile(&w, 99.0), Some(10.0));
        assert_eq!(percentile(&w, 50.0), Some(5.0));
        assert_eq!(percentile(&w, 90.0), Some(9.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[f64::NAN], 50.0), None);
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[7.0]), Some(7.0));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn worst_depends_on_direction() {
        let s = summarize(&[3.0, 9.0, 5.0], Worse::Higher).unwrap();
        assert_eq!(
            s,
            Summary {
                median: 5.0,
                worst: 9.0,
                n: 3
            }
        );
        let s = summarize(&[f64::NAN, 2.0], Worse::Higher).unwrap();
        assert_eq!((s.median, s.worst, s.n), (2.0, 2.0, 1));
        assert!(summarize(&[], Worse::Higher).is_none());
    }
}

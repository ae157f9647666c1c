//! Median and spread of repeated measurements.

use serde::Serialize;

/// Summary of the throughputs of the repetitions of one test on one engine.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Spread {
    /// The middle value (the mean of the two middle ones for an even count).
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
    /// Sample standard deviation (0 for a single value).
    pub stddev: f64,
    /// Every value, in the order measured.
    pub samples: Vec<f64>,
}

impl Spread {
    /// The summary of `samples`; `None` when there are none.
    pub fn of(samples: &[f64]) -> Option<Spread> {
        let n = samples.len();
        if n == 0 {
            return None;
        }
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        let mean = samples.iter().sum::<f64>() / n as f64;
        let stddev = if n > 1 {
            let squares: f64 = samples.iter().map(|v| (v - mean).powi(2)).sum();
            (squares / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        Some(Spread {
            median,
            min: sorted[0],
            max: sorted[n - 1],
            stddev,
            samples: samples.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn odd_count_takes_the_middle_value() {
        let s = Spread::of(&[30.0, 10.0, 20.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (20.0, 10.0, 30.0));
        assert!(close(s.stddev, 10.0));
        assert_eq!(s.samples, vec![30.0, 10.0, 20.0], "kept in measured order");
    }

    #[test]
    fn even_count_averages_the_two_middle_values() {
        let s = Spread::of(&[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert!(close(s.median, 2.5));
        // Sample variance of 1..4 is 5/3.
        assert!(close(s.stddev, (5.0f64 / 3.0).sqrt()));
    }

    #[test]
    fn single_value_has_no_spread_and_empty_has_no_summary() {
        let s = Spread::of(&[7.5]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.stddev), (7.5, 7.5, 7.5, 0.0));
        assert_eq!(Spread::of(&[]), None);
    }
}

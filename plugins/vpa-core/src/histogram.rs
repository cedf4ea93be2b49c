//! VPA's exponential-bucket histogram with exponential decay of sample
//! weights (`pkg/recommender/util/histogram.go`, `decaying_histogram.go`).

use serde::{Deserialize, Serialize};

/// Bucket i ≥ 1 starts at `first × (ratio^i − 1) / (ratio − 1)`; bucket 0
/// starts at 0; the last bucket has no end.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    pub first_bucket: f64,
    pub ratio: f64,
    pub buckets: usize,
    /// Weights below this count as none.
    pub epsilon: f64,
}

/// Smallest weight that counts (`histogram.go` epsilon).
pub const EPSILON: f64 = 0.0001;

impl Options {
    /// Buckets growing by `ratio` from `first_bucket` until `max` is covered.
    pub fn exponential(max: f64, first_bucket: f64, ratio: f64) -> Options {
        let buckets = ((max * (ratio - 1.0) / first_bucket + 1.0).ln() / ratio.ln()).ceil() as usize + 1;
        Options { first_bucket, ratio, buckets, epsilon: EPSILON }
    }

    /// CPU in cores: first bucket 0.01 core, up to 1000 cores, ratio 1.05 (176 buckets).
    pub fn cpu() -> Options {
        Options::exponential(1000.0, 0.01, 1.05)
    }

    /// Memory in bytes: first bucket 1e7 B, up to 1e12 B, ratio 1.05 (176 buckets).
    pub fn memory() -> Options {
        Options::exponential(1e12, 1e7, 1.05)
    }

    pub fn find_bucket(&self, value: f64) -> usize {
        if value < self.first_bucket {
            return 0;
        }
        let bucket = ((value * (self.ratio - 1.0) / self.first_bucket + 1.0).ln() / self.ratio.ln()) as usize;
        bucket.min(self.buckets - 1)
    }

    pub fn bucket_start(&self, bucket: usize) -> f64 {
        if bucket == 0 {
            return 0.0;
        }
        self.first_bucket * (self.ratio.powf(bucket as f64) - 1.0) / (self.ratio - 1.0)
    }
}

/// Weights double every `half_life_ms` forward in time, relative to a
/// reference time; when the exponent would pass 100 the reference moves
/// forward (to a multiple of the half-life) and the weights are rescaled.
/// Serialized sparsely: only buckets holding weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "Stored", into = "Stored")]
pub struct DecayingHistogram {
    weights: Vec<f64>,
    total: f64,
    min_bucket: usize,
    max_bucket: usize,
    /// `None` before the first sample.
    reference_ms: Option<i64>,
}

const MAX_DECAY_EXPONENT: i64 = 100;

impl DecayingHistogram {
    pub fn new(options: &Options) -> DecayingHistogram {
        DecayingHistogram {
            weights: vec![0.0; options.buckets],
            total: 0.0,
            min_bucket: options.buckets - 1,
            max_bucket: 0,
            reference_ms: None,
        }
    }

    pub fn add(&mut self, options: &Options, value: f64, weight: f64, at_ms: i64, half_life_ms: i64) {
        let weight = weight * self.decay_factor(options, at_ms, half_life_ms);
        self.ensure_size(options);
        let bucket = options.find_bucket(value);
        self.weights[bucket] += weight;
        self.total += weight;
        if bucket < self.min_bucket && self.weights[bucket] >= options.epsilon {
            self.min_bucket = bucket;
        }
        if bucket > self.max_bucket && self.weights[bucket] >= options.epsilon {
            self.max_bucket = bucket;
        }
    }

    pub fn subtract(&mut self, options: &Options, value: f64, weight: f64, at_ms: i64, half_life_ms: i64) {
        let weight = weight * self.decay_factor(options, at_ms, half_life_ms);
        self.ensure_size(options);
        let bucket = options.find_bucket(value);
        let safe = |value: f64| if value - weight < options.epsilon { 0.0 } else { value - weight };
        self.total = safe(self.total);
        self.weights[bucket] = safe(self.weights[bucket]);
        self.update_min_and_max(options);
    }

    pub fn is_empty(&self, options: &Options) -> bool {
        self.weights.get(self.min_bucket).is_none_or(|w| *w < options.epsilon)
    }

    /// The end of the first bucket where the cumulative weight reaches
    /// `p × total` (the start of the last bucket if it is that one); 0 when empty.
    pub fn percentile(&self, options: &Options, p: f64) -> f64 {
        if self.is_empty(options) {
            return 0.0;
        }
        let threshold = p * self.total;
        let mut partial = 0.0;
        let mut bucket = self.min_bucket;
        while bucket < self.max_bucket {
            partial += self.weights[bucket];
            if partial >= threshold {
                break;
            }
            bucket += 1;
        }
        if bucket < options.buckets - 1 { options.bucket_start(bucket + 1) } else { options.bucket_start(bucket) }
    }

    fn ensure_size(&mut self, options: &Options) {
        if self.weights.len() != options.buckets {
            self.weights.resize(options.buckets, 0.0);
            self.min_bucket = self.min_bucket.min(options.buckets - 1);
            self.max_bucket = self.max_bucket.min(options.buckets - 1);
        }
    }

    fn decay_factor(&mut self, options: &Options, at_ms: i64, half_life_ms: i64) -> f64 {
        let reference = match self.reference_ms {
            Some(reference) if at_ms <= reference + half_life_ms * MAX_DECAY_EXPONENT => reference,
            _ => self.shift_reference(options, at_ms, half_life_ms),
        };
        ((at_ms - reference) as f64 / half_life_ms as f64).exp2()
    }

    fn shift_reference(&mut self, options: &Options, to_ms: i64, half_life_ms: i64) -> i64 {
        // a multiple of the half-life, rounded half away from zero like Go's Time.Round
        let rounded = round_to(to_ms, half_life_ms);
        if let Some(old) = self.reference_ms {
            let exponent = ((old - rounded) as f64 / half_life_ms as f64 + 0.5).floor() as i32;
            let factor = 2f64.powi(exponent);
            self.ensure_size(options);
            for bucket in self.min_bucket..=self.max_bucket.max(self.min_bucket).min(options.buckets - 1) {
                self.weights[bucket] *= factor;
            }
            self.total *= factor;
            self.update_min_and_max(options);
        }
        self.reference_ms = Some(rounded);
        rounded
    }

    fn update_min_and_max(&mut self, options: &Options) {
        let last = options.buckets - 1;
        while self.weights[self.min_bucket] < options.epsilon && self.min_bucket < last {
            self.min_bucket += 1;
        }
        while self.weights[self.max_bucket] < options.epsilon && self.max_bucket > 0 {
            self.max_bucket -= 1;
        }
    }

    /// Buckets holding any weight.
    pub fn occupied(&self) -> usize {
        self.weights.iter().filter(|w| **w > 0.0).count()
    }
}

fn round_to(ms: i64, unit: i64) -> i64 {
    let rem = ms.rem_euclid(unit);
    if rem * 2 >= unit { ms - rem + unit } else { ms - rem }
}

/// The serialized form: `[bucket, weight]` pairs of the non-empty buckets.
#[derive(Serialize, Deserialize)]
struct Stored {
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    reference_ms: Option<i64>,
    #[serde(rename = "t")]
    total: f64,
    #[serde(rename = "w")]
    weights: Vec<(u16, f64)>,
}

impl From<DecayingHistogram> for Stored {
    fn from(h: DecayingHistogram) -> Stored {
        Stored {
            reference_ms: h.reference_ms,
            total: h.total,
            weights: h
                .weights
                .iter()
                .enumerate()
                .filter(|(_, w)| **w > 0.0)
                .map(|(bucket, w)| (bucket as u16, *w))
                .collect(),
        }
    }
}

impl From<Stored> for DecayingHistogram {
    fn from(s: Stored) -> DecayingHistogram {
        // both resources use 176 buckets; `ensure_size` adapts to other options
        let size = s.weights.iter().map(|(b, _)| usize::from(*b) + 1).max().unwrap_or(0).max(176);
        let mut weights = vec![0.0; size];
        for (bucket, weight) in s.weights {
            weights[usize::from(bucket)] = weight;
        }
        let occupied = |w: &f64| *w >= EPSILON;
        let min_bucket = weights.iter().position(occupied).unwrap_or(size - 1);
        let max_bucket = weights.iter().rposition(occupied).unwrap_or(0);
        DecayingHistogram { weights, total: s.total, min_bucket, max_bucket, reference_ms: s.reference_ms }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_scheme_matches_vpa() {
        let cpu = Options::cpu();
        assert_eq!(cpu.buckets, 176);
        assert_eq!(Options::memory().buckets, 176);
        assert_eq!(cpu.find_bucket(0.5), 25);
        assert_eq!((cpu.bucket_start(26) * 1000.0) as i64, 511);
        assert_eq!(Options::memory().bucket_start(26) as i64, 511_134_537);
        assert_eq!(cpu.find_bucket(0.001), 0);
        assert_eq!(cpu.find_bucket(1e9), 175);
    }

    #[test]
    fn percentile_is_the_end_of_the_bucket_reaching_the_weight() {
        let o = Options::cpu();
        let mut h = DecayingHistogram::new(&o);
        assert_eq!(h.percentile(&o, 0.9), 0.0);
        let day = 86_400_000;
        for i in 0..9 {
            h.add(&o, 0.1, 1.0, i, day);
        }
        h.add(&o, 1.0, 1.0, 9, day);
        assert_eq!(h.percentile(&o, 0.5), o.bucket_start(o.find_bucket(0.1) + 1));
        assert_eq!(h.percentile(&o, 1.0), o.bucket_start(o.find_bucket(1.0) + 1));
    }

    #[test]
    fn a_sample_a_half_life_later_weighs_twice_and_state_round_trips() {
        let o = Options::memory();
        let day = 86_400_000;
        let mut h = DecayingHistogram::new(&o);
        h.add(&o, 1e8, 1.0, 1_700_000_000_000, day);
        h.add(&o, 1e9, 1.0, 1_700_000_000_000 + day, day);
        // 1e9 weighs 2 of 3: the 60th percentile lands in its bucket
        assert_eq!(h.percentile(&o, 0.6), o.bucket_start(o.find_bucket(1e9) + 1));
        assert_eq!(h.percentile(&o, 0.3), o.bucket_start(o.find_bucket(1e8) + 1));
        let json = serde_json::to_string(&h).unwrap();
        let back: DecayingHistogram = serde_json::from_str(&json).unwrap();
        assert_eq!(back, h);
        // 150 days on, the reference moves: what was there has decayed to nothing
        let mut far = back.clone();
        far.add(&o, 1e10, 1.0, 1_700_000_000_000 + 150 * day, day);
        assert_eq!(far.percentile(&o, 0.01), o.bucket_start(o.find_bucket(1e10) + 1));
        assert_eq!(far.percentile(&o, 0.5), far.percentile(&o, 0.99));
    }
}

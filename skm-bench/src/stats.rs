//! Samples and how they are summarised: median, min and max, and durations in a readable unit.

use std::time::Duration;

/// Repeated measurements of one quantity, in seconds (or any unit, for counts).
#[derive(Debug, Clone, Default)]
pub struct Samples {
    values: Vec<f64>,
}

impl Samples {
    /// No samples yet.
    pub fn new() -> Self {
        Samples::default()
    }

    /// Adds a duration, in seconds.
    pub fn push_duration(&mut self, d: Duration) {
        self.values.push(d.as_secs_f64());
    }

    /// Adds a value.
    pub fn push(&mut self, v: f64) {
        self.values.push(v);
    }

    /// Adds every sample of `other` (runs of two approaches interleaved, then each collected).
    pub fn extend(&mut self, other: &Samples) {
        self.values.extend_from_slice(&other.values);
    }

    /// How many samples there are.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    fn sorted(&self) -> Vec<f64> {
        let mut v = self.values.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    /// The median (the mean of the two middle values for an even count); NaN when empty.
    pub fn median(&self) -> f64 {
        let v = self.sorted();
        match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    /// The smallest sample; NaN when empty.
    pub fn min(&self) -> f64 {
        self.values.iter().copied().reduce(f64::min).unwrap_or(f64::NAN)
    }

    /// The largest sample; NaN when empty.
    pub fn max(&self) -> f64 {
        self.values.iter().copied().reduce(f64::max).unwrap_or(f64::NAN)
    }

    /// `median` as a duration, e.g. `23.4 ms`.
    pub fn median_time(&self) -> String {
        fmt_secs(self.median())
    }

    /// `min–max` as durations, e.g. `21.9–25.0 ms`.
    pub fn range_time(&self) -> String {
        let (lo, hi) = (self.min(), self.max());
        let unit = Unit::for_secs(hi);
        format!("{}–{} {}", unit.number(lo), unit.number(hi), unit.name())
    }

    /// `min–max` as plain numbers with `decimals` decimals.
    pub fn range(&self, decimals: usize) -> String {
        format!("{:.*}–{:.*}", decimals, self.min(), decimals, self.max())
    }
}

/// A time unit chosen so that a figure has a few significant digits.
#[derive(Debug, Clone, Copy)]
enum Unit {
    Ns,
    Us,
    Ms,
    S,
}

impl Unit {
    fn for_secs(secs: f64) -> Unit {
        match secs.abs() {
            s if s < 1e-6 => Unit::Ns,
            s if s < 1e-3 => Unit::Us,
            s if s < 1.0 => Unit::Ms,
            _ => Unit::S,
        }
    }

    fn scale(self) -> f64 {
        match self {
            Unit::Ns => 1e9,
            Unit::Us => 1e6,
            Unit::Ms => 1e3,
            Unit::S => 1.0,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Unit::Ns => "ns",
            Unit::Us => "µs",
            Unit::Ms => "ms",
            Unit::S => "s",
        }
    }

    fn number(self, secs: f64) -> String {
        let x = secs * self.scale();
        // Three significant digits for figures below 100, whole numbers above.
        if x < 10.0 {
            format!("{x:.2}")
        } else if x < 100.0 {
            format!("{x:.1}")
        } else {
            format!("{x:.0}")
        }
    }
}

/// A duration in seconds, written in the unit that suits it: `850 ns`, `1.23 ms`, `2.61 s`.
pub fn fmt_secs(secs: f64) -> String {
    if secs.is_nan() {
        return "n/a".into();
    }
    let unit = Unit::for_secs(secs);
    format!("{} {}", unit.number(secs), unit.name())
}

/// A ratio written as `12.3×`.
pub fn fmt_ratio(r: f64) -> String {
    if r.is_nan() || r.is_infinite() {
        "n/a".into()
    } else if r < 10.0 {
        format!("{r:.2}×")
    } else {
        format!("{r:.1}×")
    }
}

/// A file size written as `812 KB` or `2.51 MB` (powers of 1000, as `ls -l --si` writes them).
pub fn fmt_size(bytes: u64) -> String {
    if bytes >= 1_000_000 {
        format!("{:.2} MB", bytes as f64 / 1e6)
    } else {
        format!("{:.0} KB", bytes as f64 / 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_max() {
        let mut s = Samples::new();
        for v in [3.0, 1.0, 2.0, 10.0] {
            s.push(v);
        }
        assert_eq!(s.median(), 2.5);
        assert_eq!(s.min(), 1.0);
        assert_eq!(s.max(), 10.0);
        s.push(0.5);
        assert_eq!(s.median(), 2.0);
    }

    #[test]
    fn units() {
        assert_eq!(fmt_secs(850e-9), "850 ns");
        assert_eq!(fmt_secs(1.234e-3), "1.23 ms");
        assert_eq!(fmt_secs(2.61), "2.61 s");
        assert_eq!(fmt_secs(0.0234), "23.4 ms");
        assert_eq!(fmt_ratio(31.04), "31.0×");
        assert_eq!(fmt_ratio(0.874), "0.87×");
    }
}

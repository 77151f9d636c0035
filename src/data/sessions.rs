//! Sessions: a user's consecutive interactions grouped by a time gap or by a session
//! column, and the "high-quality session" filter on engagement (after OneRec: enough
//! items, enough total watch time, at least one positive action).

use std::ops::Range;

/// Session starts (history indices) when a new session begins after a gap strictly
/// greater than `gap` between consecutive timestamps. Empty history: no sessions.
pub fn starts_by_gap(times: &[i64], gap: i64) -> Vec<usize> {
    if times.is_empty() {
        return vec![];
    }
    let mut starts = vec![0];
    starts.extend((1..times.len()).filter(|&i| times[i].saturating_sub(times[i - 1]) > gap));
    starts
}

/// Session starts where the session key changes between consecutive interactions.
pub fn starts_by_key(keys: &[u32]) -> Vec<usize> {
    if keys.is_empty() {
        return vec![];
    }
    let mut starts = vec![0];
    starts.extend((1..keys.len()).filter(|&i| keys[i] != keys[i - 1]));
    starts
}

/// The high-quality filter. Each engagement test applies only when its column exists.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QualityRule {
    /// Minimum number of interactions in the session.
    pub min_items: usize,
    /// Minimum total watch time over the session (watch column units).
    pub min_watch_time: Option<f32>,
    /// Require at least one interaction with a positive (> 0) engagement value.
    pub require_positive: bool,
}

impl QualityRule {
    /// Whether the session `r` passes, given the user's watch/positive columns.
    pub fn passes(&self, r: &Range<usize>, watch: Option<&[f32]>, positive: Option<&[f32]>) -> bool {
        if r.len() < self.min_items {
            return false;
        }
        if let (Some(min), Some(w)) = (self.min_watch_time, watch) {
            if w[r.clone()].iter().sum::<f32>() < min {
                return false;
            }
        }
        if let (true, Some(p)) = (self.require_positive, positive) {
            if !p[r.clone()].iter().any(|&v| v > 0.0) {
                return false;
            }
        }
        true
    }
}

/// Ranges of a history of length `n` from session starts.
pub fn ranges(starts: &[usize], n: usize) -> Vec<Range<usize>> {
    starts.iter().enumerate().map(|(k, &s)| s..starts.get(k + 1).copied().unwrap_or(n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gap_and_key_sessions() {
        assert_eq!(starts_by_gap(&[0, 10, 20, 100, 101, 500], 30), vec![0, 3, 5]);
        assert_eq!(starts_by_gap(&[5, 5, 5], 0), vec![0]);
        assert_eq!(starts_by_gap(&[], 1), Vec::<usize>::new());
        assert_eq!(starts_by_key(&[7, 7, 8, 8, 7]), vec![0, 2, 4]);
        assert_eq!(ranges(&[0, 2, 4], 5), vec![0..2, 2..4, 4..5]);
    }

    #[test]
    fn quality_rule() {
        let rule = QualityRule { min_items: 2, min_watch_time: Some(10.0), require_positive: true };
        let watch = [4.0, 7.0, 1.0, 1.0];
        let like = [0.0, 1.0, 0.0, 0.0];
        assert!(rule.passes(&(0..2), Some(&watch), Some(&like)));
        assert!(!rule.passes(&(0..1), Some(&watch), Some(&like)), "too few items");
        assert!(!rule.passes(&(2..4), Some(&watch), Some(&like)), "watch time 2 < 10");
        assert!(rule.passes(&(2..4), None, None), "absent columns are not tested");
        let no_like = QualityRule { min_watch_time: None, ..rule.clone() };
        assert!(!no_like.passes(&(2..4), Some(&watch), Some(&like)), "no positive");
    }
}

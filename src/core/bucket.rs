//! Per-connection message rate: a token bucket plus a sliding one-second abuse window.

/// A token bucket refilled continuously at `per_s`, holding at most `burst` tokens.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    /// Tokens, in thousandths.
    milli_tokens: u64,
    last_ms: u64,
    per_s: u32,
    burst: u32,
    /// Messages received in the current one-second window (any outcome)...
    window_start_ms: u64,
    window_count: u32,
    /// ...and in the window before it: the sliding count weighs it by the part of it
    /// that is still within the last second.
    previous_count: u32,
}

/// What the bucket says about one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within the rate.
    Allow,
    /// Over the rate: drop and answer `rate_limited`.
    Limited,
    /// More than `abuse_factor` × the rate within one second: close the connection.
    Abusive,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(per_s: u32, burst: u32, now_ms: u64) -> Self {
        TokenBucket {
            milli_tokens: u64::from(burst) * 1000,
            last_ms: now_ms,
            per_s,
            burst,
            window_start_ms: now_ms,
            window_count: 0,
            previous_count: 0,
        }
    }

    /// Takes one token for a message arriving at `now_ms`.
    pub fn take(&mut self, now_ms: u64, abuse_factor: u32) -> Verdict {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now_ms);
        let cap = u64::from(self.burst) * 1000;
        self.milli_tokens = (self.milli_tokens + elapsed * u64::from(self.per_s)).min(cap);
        let since = now_ms.saturating_sub(self.window_start_ms);
        if since >= 2000 {
            self.window_start_ms = now_ms - now_ms.saturating_sub(self.window_start_ms) % 1000;
            self.previous_count = 0;
            self.window_count = 0;
        } else if since >= 1000 {
            self.window_start_ms += 1000;
            self.previous_count = self.window_count;
            self.window_count = 0;
        }
        self.window_count = self.window_count.saturating_add(1);
        let into = now_ms.saturating_sub(self.window_start_ms).min(1000);
        let sliding =
            u64::from(self.previous_count) * (1000 - into) / 1000 + u64::from(self.window_count);
        if sliding > u64::from(self.per_s.saturating_mul(abuse_factor)) {
            return Verdict::Abusive;
        }
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            Verdict::Allow
        } else {
            Verdict::Limited
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_limited_then_refilled() {
        let mut b = TokenBucket::new(10, 5, 0);
        for _ in 0..5 {
            assert_eq!(b.take(0, 10), Verdict::Allow);
        }
        assert_eq!(b.take(0, 10), Verdict::Limited);
        assert_eq!(
            b.take(100, 10),
            Verdict::Allow,
            "100 ms refills one token at 10/s"
        );
        assert_eq!(b.take(100, 10), Verdict::Limited);
    }

    #[test]
    fn more_than_ten_times_the_rate_in_a_second_is_abusive() {
        let mut b = TokenBucket::new(10, 20, 0);
        let verdicts: Vec<_> = (0..101).map(|i| b.take(i, 10)).collect();
        assert_eq!(verdicts[99], Verdict::Limited);
        assert_eq!(verdicts[100], Verdict::Abusive);
        // two seconds later the window is clean again
        assert_ne!(b.take(2100, 10), Verdict::Abusive);
    }

    #[test]
    fn bursts_either_side_of_a_window_boundary_count_together() {
        let mut b = TokenBucket::new(1, 1, 0);
        for _ in 0..10 {
            assert_ne!(
                b.take(450, 10),
                Verdict::Abusive,
                "10 in a second is the bound, not over it"
            );
        }
        let verdicts: Vec<_> = (0..10).map(|_| b.take(1100, 10)).collect();
        assert!(
            verdicts.contains(&Verdict::Abusive),
            "20 within 650 ms: {verdicts:?}"
        );
    }
}

//! The waiting line of a pool: three priorities, with aging so that no job waits for ever.
//!
//! A high-priority job overtakes queued normal and low ones. A job that has waited longer than
//! the aging threshold competes as if it were high priority, and among those the oldest goes
//! first, so under a constant flood of high-priority work a low-priority job still starts once it
//! has waited that long (plus however long the jobs ahead of it take to free a slot).

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

/// Scheduling priority of a job within its pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub enum Priority {
    /// Overtakes queued normal and low jobs.
    High,
    /// The default.
    #[default]
    Normal,
    /// Runs when nothing more urgent waits, or once it has aged.
    Low,
}

impl Priority {
    fn index(self) -> usize {
        match self {
            Self::High => 0,
            Self::Normal => 1,
            Self::Low => 2,
        }
    }

    /// The priority's name in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::High => "high",
            Self::Normal => "normal",
            Self::Low => "low",
        }
    }
}

struct Waiting<T> {
    item: T,
    enqueued: Instant,
}

/// Items waiting by priority. Not synchronised: each pool keeps it under its own lock.
pub(crate) struct PriorityQueue<T> {
    lines: [VecDeque<Waiting<T>>; 3],
    aging: Duration,
}

impl<T> PriorityQueue<T> {
    /// An empty queue whose items count as high priority after waiting `aging`.
    pub(crate) fn new(aging: Duration) -> Self {
        Self { lines: [VecDeque::new(), VecDeque::new(), VecDeque::new()], aging }
    }

    /// Items waiting.
    pub(crate) fn len(&self) -> usize {
        self.lines.iter().map(VecDeque::len).sum()
    }

    /// Adds an item at the back of its priority's line.
    pub(crate) fn push(&mut self, item: T, priority: Priority, now: Instant) {
        self.lines[priority.index()].push_back(Waiting { item, enqueued: now });
    }

    /// Takes the next item: the oldest of the line heads that are high priority or aged, else
    /// the head of the most urgent non-empty line.
    pub(crate) fn pop(&mut self, now: Instant) -> Option<T> {
        let urgent =
            |line: usize, waiting: &Waiting<T>| line == 0 || now.duration_since(waiting.enqueued) >= self.aging;
        let oldest_urgent = (0..3)
            .filter_map(|line| {
                self.lines[line].front().filter(|head| urgent(line, head)).map(|head| (head.enqueued, line))
            })
            .min()
            .map(|(_, line)| line);
        let line = oldest_urgent.or_else(|| (0..3).find(|&line| !self.lines[line].is_empty()))?;
        self.lines[line].pop_front().map(|waiting| waiting.item)
    }

    /// Takes every waiting item, most urgent line first.
    pub(crate) fn take_all(&mut self) -> Vec<T> {
        self.lines.iter_mut().flat_map(|line| line.drain(..).map(|waiting| waiting.item)).collect()
    }

    /// Removes the first item matching `is_it`, wherever it waits; true if one was removed.
    pub(crate) fn remove(&mut self, mut is_it: impl FnMut(&T) -> bool) -> bool {
        for line in &mut self.lines {
            if let Some(position) = line.iter().position(|waiting| is_it(&waiting.item)) {
                line.remove(position);
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AGING: Duration = Duration::from_secs(1);

    #[test]
    fn high_overtakes_normal_and_low() {
        let start = Instant::now();
        let mut queue = PriorityQueue::new(AGING);
        queue.push("low", Priority::Low, start);
        queue.push("normal-1", Priority::Normal, start);
        queue.push("high", Priority::High, start);
        queue.push("normal-2", Priority::Normal, start);
        let order: Vec<_> = std::iter::from_fn(|| queue.pop(start)).collect();
        assert_eq!(order, ["high", "normal-1", "normal-2", "low"]);
    }

    #[test]
    fn an_aged_low_job_goes_before_fresher_high_ones() {
        let start = Instant::now();
        let mut queue = PriorityQueue::new(AGING);
        queue.push("low", Priority::Low, start);
        let later = start + AGING;
        queue.push("high-1", Priority::High, later);
        queue.push("high-2", Priority::High, later);
        assert_eq!(queue.pop(later), Some("low"));
        assert_eq!(queue.pop(later), Some("high-1"));
    }

    #[test]
    fn under_a_constant_flood_of_high_jobs_low_still_runs() {
        // One slot frees every 10 ms and two new high jobs arrive each time; the low job must
        // start within the aging threshold plus one step.
        let start = Instant::now();
        let mut queue = PriorityQueue::new(Duration::from_millis(200));
        queue.push(0_u32, Priority::Low, start);
        let mut started_low = None;
        for step in 1..1000_u32 {
            let now = start + Duration::from_millis(u64::from(step) * 10);
            queue.push(step, Priority::High, now);
            queue.push(step + 10_000, Priority::High, now);
            if queue.pop(now) == Some(0) {
                started_low = Some(now.duration_since(start));
                break;
            }
        }
        let waited = started_low.expect("the low job never started");
        assert!(waited <= Duration::from_millis(210), "{waited:?}");
    }

    #[test]
    fn items_can_be_removed() {
        let now = Instant::now();
        let mut queue = PriorityQueue::new(AGING);
        for n in 0..5 {
            queue.push(n, if n % 2 == 0 { Priority::Low } else { Priority::High }, now);
        }
        assert!(queue.remove(|&n| n == 2));
        assert!(!queue.remove(|&n| n == 2));
        assert_eq!(queue.len(), 4);
        assert_eq!(queue.take_all(), [1, 3, 0, 4]);
        assert_eq!(queue.len(), 0);
    }
}

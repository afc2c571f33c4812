//! Which due jobs one claim takes when several tenants have work: a round over the tenants,
//! starting after the one served last, each taking its most urgent job in turn, so that a
//! tenant with a long queue delays another's job by at most one claim. Store-wide limits cap
//! each tenant's and each kind's share. Both stores read candidates with this plan and take
//! the jobs it picks; it only decides.

use crate::rules::{Running, RunningLimits};
use std::collections::BTreeMap;

/// A due job a tenant could start, in its tenant's order (priority, due time, id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Candidate {
    pub(super) id: String,
    pub(super) kind: String,
}

/// One tenant's turn in the round.
#[derive(Debug)]
struct Turn {
    tenant: String,
    /// How many more of its jobs may run (its limit less what runs).
    room: usize,
    /// How many of its first due jobs were last asked for.
    asked: usize,
    rows: Vec<Candidate>,
    /// It had fewer due jobs than asked for.
    exhausted: bool,
}

/// Reads past this many are not worth it: what is not picked by then waits for the next claim.
const MAX_READS: usize = 4;

/// One claim's plan: read each tenant's first due jobs (more of them while others run out),
/// then pick round by round.
#[derive(Debug)]
pub(super) struct FairClaim {
    limit: usize,
    turns: Vec<Turn>,
    /// Room left per kind with a store-wide limit.
    kind_room: BTreeMap<String, usize>,
    reads: usize,
}

impl FairClaim {
    /// A plan for up to `limit` jobs over `tenants` (in name order), the round starting with the
    /// first after `after`; tenants at their limit get no turn.
    pub(super) fn new(
        mut tenants: Vec<String>,
        after: Option<&str>,
        limit: usize,
        limits: &RunningLimits,
        running: &Running,
    ) -> Self {
        tenants.sort_unstable();
        tenants.dedup();
        let start = after.map_or(0, |after| tenants.partition_point(|tenant| tenant.as_str() <= after));
        tenants.rotate_left(start);
        let room_of = |tenant: &str| {
            limits
                .tenant
                .map_or(usize::MAX, |limit| limit.saturating_sub(running.tenants.get(tenant).copied().unwrap_or(0)))
        };
        // No more tenants than jobs can be served in one round.
        let turns = tenants
            .into_iter()
            .map(|tenant| Turn { room: room_of(&tenant), tenant, asked: 0, rows: Vec::new(), exhausted: false })
            .filter(|turn| turn.room > 0)
            .take(limit)
            .collect();
        let kind_room = limits
            .kinds
            .iter()
            .map(|(kind, limit)| (kind.clone(), limit.saturating_sub(running.kinds.get(kind).copied().unwrap_or(0))))
            .collect();
        Self { limit, turns, kind_room, reads: 0 }
    }

    /// Kinds at their store-wide limit: no job of theirs can start, so none is read.
    pub(super) fn kinds_without_room(&self) -> impl Iterator<Item = &String> {
        self.kind_room.iter().filter(|(_, room)| **room == 0).map(|(kind, _)| kind)
    }

    /// The next reads, as (tenant, how many of its first due jobs); none once the plan can pick
    /// all it may. Each read after the first shares what the round still lacks among the
    /// tenants that had more.
    pub(super) fn asks(&mut self) -> Vec<(String, usize)> {
        if self.reads == MAX_READS {
            return Vec::new();
        }
        let (picked, taken) = self.round();
        let picked = picked.len();
        let open: Vec<usize> = (0..self.turns.len())
            .filter(|at| !self.turns[*at].exhausted && taken[*at] < self.turns[*at].room)
            .collect();
        if picked >= self.limit || open.is_empty() {
            return Vec::new();
        }
        self.reads += 1;
        let share = (self.limit - picked).div_ceil(open.len());
        open.into_iter()
            .map(|at| {
                let turn = &mut self.turns[at];
                // The first read stops at the tenant's room; later ones read past jobs skipped
                // for their kind's limit.
                turn.asked = if turn.asked == 0 { share.min(turn.room) } else { turn.asked.saturating_add(share) };
                (turn.tenant.clone(), turn.asked)
            })
            .collect()
    }

    /// What a read asked by [`Self::asks`] found for `tenant`: its first due jobs, in order.
    pub(super) fn add(&mut self, tenant: &str, rows: Vec<Candidate>) {
        if let Some(turn) = self.turns.iter_mut().find(|turn| turn.tenant == tenant) {
            turn.exhausted = rows.len() < turn.asked;
            turn.rows = rows;
        }
    }

    /// The ids to take, in the round's order: each tenant's next job in turn, skipping jobs of
    /// kinds out of room, until `limit` or no tenant has one left.
    pub(super) fn pick(&self) -> Vec<&str> {
        self.round().0
    }

    /// The ids the round picks, and how many each turn took.
    fn round(&self) -> (Vec<&str>, Vec<usize>) {
        let mut kind_room = self.kind_room.clone();
        let mut next = vec![0; self.turns.len()];
        let mut taken = vec![0; self.turns.len()];
        let mut picked = Vec::new();
        loop {
            let mut progress = false;
            for (at, turn) in self.turns.iter().enumerate() {
                if picked.len() == self.limit {
                    return (picked, taken);
                }
                if taken[at] >= turn.room {
                    continue;
                }
                while let Some(candidate) = turn.rows.get(next[at]) {
                    next[at] += 1;
                    if let Some(room) = kind_room.get_mut(&candidate.kind) {
                        if *room == 0 {
                            continue;
                        }
                        *room -= 1;
                    }
                    picked.push(candidate.id.as_str());
                    taken[at] += 1;
                    progress = true;
                    break;
                }
            }
            if !progress {
                return (picked, taken);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jobs(tenant: &str, kind: &str, count: usize) -> Vec<Candidate> {
        (0..count).map(|n| Candidate { id: format!("{tenant}{n}"), kind: kind.to_owned() }).collect()
    }

    /// Reads what the plan asks for from `queues` until it asks nothing more.
    fn run(mut plan: FairClaim, queues: &BTreeMap<&str, Vec<Candidate>>) -> Vec<String> {
        loop {
            let asks = plan.asks();
            if asks.is_empty() {
                return plan.pick().into_iter().map(str::to_owned).collect();
            }
            for (tenant, count) in asks {
                let rows = queues[tenant.as_str()].iter().take(count).cloned().collect();
                plan.add(&tenant, rows);
            }
        }
    }

    fn tenants(queues: &BTreeMap<&str, Vec<Candidate>>) -> Vec<String> {
        queues.keys().map(|tenant| (*tenant).to_owned()).collect()
    }

    #[test]
    fn tenants_take_turns_starting_after_the_last_served() {
        let queues = BTreeMap::from([("a", jobs("a", "k", 100)), ("b", jobs("b", "k", 2)), ("c", jobs("c", "k", 100))]);
        let none = (RunningLimits::default(), Running::default());
        let plan = FairClaim::new(tenants(&queues), None, 5, &none.0, &none.1);
        assert_eq!(run(plan, &queues), ["a0", "b0", "c0", "a1", "b1"]);
        let plan = FairClaim::new(tenants(&queues), Some("b"), 4, &none.0, &none.1);
        assert_eq!(run(plan, &queues), ["c0", "a0", "b0", "c1"]);
        let plan = FairClaim::new(tenants(&queues), Some("c"), 1, &none.0, &none.1);
        assert_eq!(run(plan, &queues), ["a0"], "after the last tenant the round starts over");
    }

    #[test]
    fn a_short_queue_leaves_its_share_to_the_others() {
        let queues = BTreeMap::from([("a", jobs("a", "k", 100)), ("b", jobs("b", "k", 1))]);
        let none = (RunningLimits::default(), Running::default());
        let picked = run(FairClaim::new(tenants(&queues), None, 10, &none.0, &none.1), &queues);
        assert_eq!(picked.len(), 10);
        assert_eq!(picked.iter().filter(|id| id.starts_with('b')).count(), 1);
    }

    #[test]
    fn store_wide_limits_cap_tenants_and_kinds() {
        let mut a = jobs("a", "slow", 3);
        a.extend(jobs("x", "fast", 3));
        let queues = BTreeMap::from([("a", a), ("b", jobs("b", "fast", 10))]);
        let limits = RunningLimits { kinds: BTreeMap::from([("slow".to_owned(), 2)]), tenant: Some(3) };
        let mut running = Running::default();
        running.add("slow".into(), "a".into(), 1);
        running.add("fast".into(), "b".into(), 1);
        let picked = run(FairClaim::new(tenants(&queues), None, 10, &limits, &running), &queues);
        // a: room 2, one slow job has room; b: room 2.
        assert_eq!(picked, ["a0", "b0", "x0", "b1"]);
        let full = RunningLimits { kinds: BTreeMap::from([("slow".to_owned(), 1)]), tenant: Some(1) };
        let plan = FairClaim::new(tenants(&queues), None, 10, &full, &running);
        assert_eq!(plan.kinds_without_room().collect::<Vec<_>>(), ["slow"]);
        assert_eq!(run(plan, &queues), Vec::<String>::new(), "both tenants at their limit");
    }
}

//! Claims on SQLite, inside the writer's transaction: nothing changes between what a claim
//! reads and what it takes. One tenant with work and no store-wide limit: one statement, as
//! before tenants. Otherwise a round over the tenants ([`FairClaim`](super::super::fair::FairClaim)).

use super::super::{CLAIM_TURNS_SQL, RUNNING_SQL, StoreError, Turns, fair::Candidate, in_order};
use crate::{
    model::{Claimed, Priority},
    rules::{ClaimRequest, Running},
};
use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension as _, params};

/// Claims as [`crate::store::JobStore::claim`] says.
pub(super) fn claim(conn: &Connection, request: &ClaimRequest) -> Result<Vec<Claimed>, StoreError> {
    // One writer: nothing changes between these reads and the update.
    let rows = conn
        .prepare_cached(&CLAIM_TURNS_SQL)?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<Vec<(String, String)>, _>>()?;
    let turns = Turns::new(request, rows);
    if turns.tenants.is_empty() {
        return Ok(Vec::new());
    }
    if turns.single(request) {
        let excluded = serde_json::to_string(&turns.excluded_kinds).unwrap_or_else(|_| "[]".into());
        return claim_in_order(conn, request, &turns.tenants[0], &excluded);
    }
    let running = if request.limits.any() { running(conn)? } else { Running::default() };
    let (mut plan, excluded) = turns.plan(request, &running);
    let excluded = serde_json::to_string(&excluded).unwrap_or_else(|_| "[]".into());
    let mut read = conn.prepare_cached(
        "SELECT id, kind FROM jobs WHERE status = 'queued' AND tenant = ?1 AND run_after <= ?2
                AND (start_by IS NULL OR start_by >= ?2) AND kind NOT IN (SELECT value FROM json_each(?3))
         ORDER BY priority, run_after, id LIMIT ?4",
    )?;
    loop {
        let asks = plan.asks();
        if asks.is_empty() {
            break;
        }
        for (tenant, count) in asks {
            let rows = read
                .query_map(params![tenant, request.now, excluded, i64::try_from(count).unwrap_or(i64::MAX)], |row| {
                    Ok(Candidate { id: row.get(0)?, kind: row.get(1)? })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            plan.add(&tenant, rows);
        }
    }
    let picked = plan.pick();
    if picked.is_empty() {
        return Ok(Vec::new());
    }
    let ids = serde_json::to_string(&picked).unwrap_or_else(|_| "[]".into());
    let token: i64 = fastrand::i64(1..);
    let mut take = conn.prepare_cached(
        "UPDATE jobs SET status = 'running', attempt = attempt + 1, attempt_token = ?1, lease_owner = ?2,
                lease_expires_at = ?3, started_at = COALESCE(started_at, ?4)
         WHERE id IN (SELECT value FROM json_each(?5)) AND status = 'queued'
         RETURNING id, kind, priority, attempt, max_attempts, timeout_ms, created_at, traceparent, tenant",
    )?;
    let claimed = take
        .query_map(params![token, request.owner, request.lease_until, request.now, ids], |row| claimed_row(row, token))?
        .collect::<Result<Vec<_>, _>>()?;
    with_payloads(conn, in_order(claimed, &picked))
}

/// Claims one tenant's due jobs in its order, in one statement: the claim when a single tenant
/// has work and no store-wide limit applies (the common case, kept as cheap as before tenants).
fn claim_in_order(
    conn: &Connection,
    request: &ClaimRequest,
    tenant: &str,
    excluded: &str,
) -> Result<Vec<Claimed>, StoreError> {
    let token: i64 = fastrand::i64(1..);
    // Without kinds to leave out, the kind of each queued job is not read (a lookup per job).
    let mut select = if excluded == "[]" {
        conn.prepare_cached(
            "UPDATE jobs SET status = 'running', attempt = attempt + 1, attempt_token = ?1, lease_owner = ?2,
                    lease_expires_at = ?3, started_at = COALESCE(started_at, ?4)
             WHERE id IN (SELECT id FROM jobs WHERE status = 'queued' AND tenant = ?7 AND run_after <= ?4
                          AND ?5 = '[]' AND (start_by IS NULL OR start_by >= ?4)
                          ORDER BY priority, run_after, id LIMIT ?6)
             RETURNING id, kind, priority, attempt, max_attempts, timeout_ms, created_at, traceparent, tenant",
        )?
    } else {
        conn.prepare_cached(
            "UPDATE jobs SET status = 'running', attempt = attempt + 1, attempt_token = ?1, lease_owner = ?2,
                    lease_expires_at = ?3, started_at = COALESCE(started_at, ?4)
             WHERE id IN (SELECT id FROM jobs WHERE status = 'queued' AND tenant = ?7 AND run_after <= ?4
                          AND kind NOT IN (SELECT value FROM json_each(?5))
                          AND (start_by IS NULL OR start_by >= ?4)
                          ORDER BY priority, run_after, id LIMIT ?6)
             RETURNING id, kind, priority, attempt, max_attempts, timeout_ms, created_at, traceparent, tenant",
        )?
    };
    let limit = i64::try_from(request.limit).unwrap_or(i64::MAX);
    let rows = select
        .query_map(params![token, request.owner, request.lease_until, request.now, excluded, limit, tenant], |row| {
            claimed_row(row, token)
        })?;
    let mut claimed = rows.collect::<Result<Vec<_>, _>>()?;
    // RETURNING gives rows in no set order: most urgent first, as claimed.
    claimed.sort_by(|a, b| (a.priority, &a.id).cmp(&(b.priority, &b.id)));
    with_payloads(conn, claimed)
}

/// A claimed job from a claim's `RETURNING` row (its payload still to read).
fn claimed_row(row: &rusqlite::Row<'_>, token: i64) -> rusqlite::Result<Claimed> {
    Ok(Claimed {
        id: row.get(0)?,
        kind: row.get(1)?,
        payload: Bytes::new(),
        priority: Priority::from_stored(row.get(2)?),
        attempt: row.get(3)?,
        max_attempts: row.get(4)?,
        token,
        timeout_ms: row.get(5)?,
        created_at: row.get(6)?,
        traceparent: row.get(7)?,
        tenant: row.get(8)?,
    })
}

/// Reads the claimed jobs' payloads.
fn with_payloads(conn: &Connection, mut claimed: Vec<Claimed>) -> Result<Vec<Claimed>, StoreError> {
    let mut payload = conn.prepare_cached("SELECT payload FROM job_payloads WHERE id = ?1")?;
    for job in &mut claimed {
        let bytes: Option<Vec<u8>> = payload.query_row([&job.id], |row| row.get(0)).optional()?;
        job.payload = bytes.map(Bytes::from).unwrap_or_default();
    }
    Ok(claimed)
}

/// Running jobs by kind and tenant.
fn running(conn: &Connection) -> Result<Running, StoreError> {
    let mut running = Running::default();
    let mut select = conn.prepare_cached(RUNNING_SQL)?;
    let rows = select.query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get::<_, i64>(2)?)))?;
    for row in rows {
        let (kind, tenant, count) = row?;
        running.add(kind, tenant, usize::try_from(count).unwrap_or(0));
    }
    Ok(running)
}

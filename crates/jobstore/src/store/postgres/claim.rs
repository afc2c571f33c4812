//! Claims on PostgreSQL. One tenant with work and no store-wide limit: one statement, as before
//! tenants. Otherwise a round over the tenants ([`FairClaim`]): their first due jobs read in one
//! statement per read, then the picked ones taken with `FOR UPDATE SKIP LOCKED`, so gateways
//! never wait on each other's claims. With store-wide limits, claims across all gateways take
//! turns on an advisory lock, so that the running jobs they count cannot change under them.

use super::super::{
    QUEUED_TENANTS, RUNNING_SQL, StoreError, TURNS_OF_TENANTS, Turns, fair::Candidate, in_order, paused_sql,
};
use crate::{
    model::{Claimed, Priority, now_micros},
    rules::{ClaimRequest, Running},
};
use bytes::Bytes;
use sqlx::{PgConnection, PgPool, Row as _};
use std::sync::LazyLock;

/// The advisory lock claims under store-wide limits take turns on ("rampart claims").
const CLAIM_LOCK: i64 = 0x7261_6d70_636c_6169;

/// Claims as [`crate::store::JobStore::claim`] says.
pub(super) async fn claim(pool: &PgPool, request: &ClaimRequest) -> Result<Vec<Claimed>, StoreError> {
    if request.limits.any() {
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(CLAIM_LOCK).execute(&mut *tx).await?;
        // A claim that waited for its turn claims as of when it got it: its jobs start after
        // the jobs whose end let them, not at the time the wait began.
        let waited = now_micros().saturating_sub(request.now).max(0);
        let request = ClaimRequest {
            now: request.now.saturating_add(waited),
            lease_until: request.lease_until.saturating_add(waited),
            ..request.clone()
        };
        let claimed = claim_on(&mut tx, &request).await?;
        tx.commit().await?;
        Ok(claimed)
    } else {
        claim_on(&mut *pool.acquire().await?, request).await
    }
}

async fn claim_on(conn: &mut PgConnection, request: &ClaimRequest) -> Result<Vec<Claimed>, StoreError> {
    let (claimed, turns) = claim_if_single(conn, request).await?;
    if turns.tenants.is_empty() || turns.single(request) {
        return Ok(claimed);
    }
    let running = if request.limits.any() { running(conn).await? } else { Running::default() };
    let (mut plan, excluded) = turns.plan(request, &running);
    loop {
        let asks = plan.asks();
        if asks.is_empty() {
            break;
        }
        let (tenants, counts): (Vec<String>, Vec<i64>) =
            asks.into_iter().map(|(tenant, count)| (tenant, i64::try_from(count).unwrap_or(i64::MAX))).unzip();
        let rows = sqlx::query(
            "SELECT t.tenant, c.id, c.kind FROM UNNEST($1::text[], $2::int8[]) AS t(tenant, n)
             CROSS JOIN LATERAL (
                SELECT id, kind, priority, run_after FROM jobs
                WHERE status = 'queued' AND tenant = t.tenant AND run_after <= $3
                  AND (start_by IS NULL OR start_by >= $3) AND NOT (kind = ANY($4))
                ORDER BY priority, run_after, id LIMIT t.n) c
             ORDER BY t.tenant, c.priority, c.run_after, c.id",
        )
        .bind(&tenants)
        .bind(&counts)
        .bind(request.now)
        .bind(&excluded)
        .fetch_all(&mut *conn)
        .await?;
        let mut found: std::collections::HashMap<String, Vec<Candidate>> = std::collections::HashMap::new();
        for row in rows {
            found
                .entry(row.try_get("tenant")?)
                .or_default()
                .push(Candidate { id: row.try_get("id")?, kind: row.try_get("kind")? });
        }
        for tenant in tenants {
            let rows = found.remove(&tenant).unwrap_or_default();
            plan.add(&tenant, rows);
        }
    }
    let picked = plan.pick();
    if picked.is_empty() {
        return Ok(Vec::new());
    }
    static TAKE: LazyLock<String> = LazyLock::new(|| {
        take_sql(&format!(
            "SELECT id FROM jobs WHERE id = ANY($5) AND status = 'queued' AND NOT {} FOR UPDATE SKIP LOCKED",
            paused_sql("jobs")
        ))
    });
    let token: i64 = fastrand::i64(1..);
    let rows = leased(sqlx::query(TAKE.as_str()), token, request).bind(&picked).fetch_all(&mut *conn).await?;
    let claimed = rows.iter().map(|row| claimed_job(row, token)).collect::<Result<Vec<_>, _>>()?;
    Ok(in_order(claimed, &picked))
}

/// Reads the turns and, when they are one tenant's and no store-wide limit holds, claims its
/// due jobs in its order in the same statement: the one round trip a claim took before tenants.
/// Otherwise it claims nothing, and the turns say what to do.
async fn claim_if_single(conn: &mut PgConnection, request: &ClaimRequest) -> Result<(Vec<Claimed>, Turns), StoreError> {
    // The pause is looked at again as rows are locked: one that came after the turns were read
    // still holds.
    static IF_SINGLE: LazyLock<String> = LazyLock::new(|| {
        format!(
            "WITH RECURSIVE {QUEUED_TENANTS},
             turns AS ({TURNS_OF_TENANTS}),
             single AS (SELECT name FROM turns WHERE scope = 'tenant' AND $7
                        AND (SELECT COUNT(*) FROM turns WHERE scope = 'tenant') = 1),
             ready AS (
                SELECT id FROM jobs WHERE status = 'queued' AND tenant = (SELECT name FROM single)
                AND run_after <= $4 AND NOT (kind = ANY($5)) AND (start_by IS NULL OR start_by >= $4) AND NOT {}
                ORDER BY priority, run_after, id LIMIT $6 FOR UPDATE SKIP LOCKED),
             taken AS ({TAKE_READY})
             SELECT 'job' AS row_kind, id, kind, priority, attempt, max_attempts, timeout_ms, created_at, payload,
                    traceparent, tenant FROM taken
             UNION ALL
             SELECT scope, NULL, name, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM turns",
            paused_sql("jobs")
        )
    });
    let token: i64 = fastrand::i64(1..);
    let rows = leased(sqlx::query(IF_SINGLE.as_str()), token, request)
        .bind(&request.excluded_kinds)
        .bind(i64::try_from(request.limit).unwrap_or(i64::MAX))
        .bind(!request.limits.any())
        .fetch_all(&mut *conn)
        .await?;
    let mut claimed = Vec::new();
    let mut turns = Vec::new();
    for row in &rows {
        let row_kind: String = row.try_get("row_kind")?;
        if row_kind == "job" {
            claimed.push(claimed_job(row, token)?);
        } else {
            turns.push((row_kind, row.try_get::<String, _>("kind")?));
        }
    }
    // RETURNING gives rows in no set order: most urgent first, as claimed.
    claimed.sort_by(|a, b| (a.priority, &a.id).cmp(&(b.priority, &b.id)));
    Ok((claimed, Turns::new(request, turns)))
}

/// Takes the jobs a `ready` CTE selects (and locks): each gets its next attempt, the token `$1`
/// and a lease held by `$2` until `$3`, started at `$4` if it never was.
const TAKE_READY: &str = "UPDATE jobs j SET status = 'running', attempt = j.attempt + 1, attempt_token = $1,
                lease_owner = $2, lease_expires_at = $3, started_at = COALESCE(j.started_at, $4)
         FROM ready JOIN job_payloads p ON p.id = ready.id
         WHERE j.id = ready.id
         RETURNING j.id, j.kind, j.priority, j.attempt, j.max_attempts, j.timeout_ms, j.created_at, p.payload,
                   j.traceparent, j.tenant";

/// `query` with [`TAKE_READY`]'s parameters `$1` to `$4` bound.
fn leased<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    token: i64,
    request: &'q ClaimRequest,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    query.bind(token).bind(&request.owner).bind(request.lease_until).bind(request.now)
}

/// The statement that takes the jobs `ready` selects.
fn take_sql(ready: &str) -> String {
    format!("WITH ready AS ({ready}) {TAKE_READY}")
}

/// Running jobs by kind and tenant.
async fn running(conn: &mut PgConnection) -> Result<Running, StoreError> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(RUNNING_SQL).fetch_all(&mut *conn).await?;
    let mut running = Running::default();
    for (kind, tenant, count) in rows {
        running.add(kind, tenant, usize::try_from(count).unwrap_or(0));
    }
    Ok(running)
}

fn claimed_job(row: &sqlx::postgres::PgRow, token: i64) -> Result<Claimed, StoreError> {
    let payload: Vec<u8> = row.try_get("payload")?;
    Ok(Claimed {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        payload: Bytes::from(payload),
        priority: Priority::from_stored(row.try_get("priority")?),
        attempt: row.try_get("attempt")?,
        max_attempts: row.try_get("max_attempts")?,
        token,
        timeout_ms: row.try_get("timeout_ms")?,
        created_at: row.try_get("created_at")?,
        traceparent: row.try_get("traceparent")?,
        tenant: row.try_get("tenant")?,
    })
}

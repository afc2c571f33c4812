//! The shared store for many gateways: PostgreSQL. Claims take ready rows with
//! `FOR UPDATE SKIP LOCKED`, so gateways never wait on each other's claims; the `jobs` rows are
//! narrow (payloads and results live apart) and filled to 80% so lease updates stay on their page.

use super::{CancelOutcome, Depth, JobStore, Lease, Renewal, StoreError};
use crate::jobs::model::{Accepted, Claimed, Completion, JobRecord, Micros, NewJob, Outcome, Status};
use bytes::Bytes;
use sqlx::{
    Row as _,
    postgres::{PgPool, PgPoolOptions},
};
use std::time::Duration;

/// The PostgreSQL job store.
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://USER:PASS@HOST/DB`) and runs migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(|error| StoreError::Url { url: redact(url), reason: error.to_string() })?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }
}

/// The URL with any password hidden, for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[async_trait::async_trait]
impl JobStore for PostgresStore {
    async fn insert(&self, jobs: Vec<NewJob>) -> Result<Vec<Accepted>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut accepted = Vec::with_capacity(jobs.len());
        for job in jobs {
            let inserted = sqlx::query(
                "INSERT INTO jobs (id, kind, priority, status, max_attempts, run_after, timeout_ms, idempotency_key, created_at)
                 VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7, $5) ON CONFLICT (idempotency_key) DO NOTHING",
            )
            .bind(&job.id)
            .bind(&job.kind)
            .bind(job.priority)
            .bind(job.max_attempts)
            .bind(job.created_at)
            .bind(job.timeout_ms)
            .bind(&job.idempotency_key)
            .execute(&mut *tx)
            .await?;
            if inserted.rows_affected() == 1 {
                sqlx::query("INSERT INTO job_payloads (id, payload) VALUES ($1, $2)")
                    .bind(&job.id)
                    .bind(job.payload.as_ref())
                    .execute(&mut *tx)
                    .await?;
                accepted.push(Accepted { id: job.id, created: true });
            } else {
                let earlier: String = sqlx::query_scalar("SELECT id FROM jobs WHERE idempotency_key = $1")
                    .bind(&job.idempotency_key)
                    .fetch_one(&mut *tx)
                    .await?;
                accepted.push(Accepted { id: earlier, created: false });
            }
        }
        tx.commit().await?;
        Ok(accepted)
    }

    async fn claim(
        &self,
        limit: usize,
        owner: &str,
        lease_until: Micros,
        excluded_kinds: &[String],
        now: Micros,
    ) -> Result<Vec<Claimed>, StoreError> {
        let token: i64 = fastrand::i64(1..);
        let rows = sqlx::query(
            "WITH ready AS (
                SELECT id FROM jobs WHERE status = 'queued' AND run_after <= $4 AND NOT (kind = ANY($5))
                ORDER BY priority, run_after, id LIMIT $6 FOR UPDATE SKIP LOCKED)
             UPDATE jobs j SET status = 'running', attempt = j.attempt + 1, attempt_token = $1, lease_owner = $2,
                    lease_expires_at = $3, started_at = COALESCE(j.started_at, $4)
             FROM ready JOIN job_payloads p ON p.id = ready.id
             WHERE j.id = ready.id
             RETURNING j.id, j.kind, j.priority, j.attempt, j.max_attempts, j.timeout_ms, j.created_at, p.payload",
        )
        .bind(token)
        .bind(owner)
        .bind(lease_until)
        .bind(now)
        .bind(excluded_kinds)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| claimed(row, token)).collect()
    }

    async fn complete(&self, completions: Vec<Completion>) -> Result<Vec<bool>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut accepted = Vec::with_capacity(completions.len());
        for Completion { id, token, outcome, at } in completions {
            let done = match &outcome {
                Outcome::Succeeded(result) => {
                    let updated = sqlx::query(
                        "UPDATE jobs SET status = 'succeeded', finished_at = $3, error = NULL, lease_owner = NULL,
                                lease_expires_at = NULL WHERE id = $1 AND attempt_token = $2 AND status = 'running'",
                    )
                    .bind(&id)
                    .bind(token)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                    if updated.rows_affected() == 1 {
                        sqlx::query(
                            "INSERT INTO job_results (id, result) VALUES ($1, $2)
                             ON CONFLICT (id) DO UPDATE SET result = EXCLUDED.result",
                        )
                        .bind(&id)
                        .bind(result.as_ref())
                        .execute(&mut *tx)
                        .await?;
                    }
                    updated.rows_affected()
                }
                Outcome::Failed { error, retry_at: Some(retry_at) } => sqlx::query(
                    "UPDATE jobs SET status = 'queued', run_after = $3, error = $4, lease_owner = NULL,
                            lease_expires_at = NULL WHERE id = $1 AND attempt_token = $2 AND status = 'running'",
                )
                .bind(&id)
                .bind(token)
                .bind(retry_at)
                .bind(error)
                .execute(&mut *tx)
                .await?
                .rows_affected(),
                Outcome::Failed { error, retry_at: None } => sqlx::query(
                    "UPDATE jobs SET status = 'dead', finished_at = $3, error = $4, lease_owner = NULL,
                            lease_expires_at = NULL WHERE id = $1 AND attempt_token = $2 AND status = 'running'",
                )
                .bind(&id)
                .bind(token)
                .bind(at)
                .bind(error)
                .execute(&mut *tx)
                .await?
                .rows_affected(),
                Outcome::Refused(error) => sqlx::query(
                    "UPDATE jobs SET status = 'failed', finished_at = $3, error = $4, lease_owner = NULL,
                            lease_expires_at = NULL WHERE id = $1 AND attempt_token = $2 AND status = 'running'",
                )
                .bind(&id)
                .bind(token)
                .bind(at)
                .bind(error)
                .execute(&mut *tx)
                .await?
                .rows_affected(),
                Outcome::NotStarted { retry_at } => sqlx::query(
                    "UPDATE jobs SET status = 'queued', run_after = $3, attempt = attempt - 1, lease_owner = NULL,
                            lease_expires_at = NULL WHERE id = $1 AND attempt_token = $2 AND status = 'running'",
                )
                .bind(&id)
                .bind(token)
                .bind(retry_at)
                .execute(&mut *tx)
                .await?
                .rows_affected(),
                Outcome::Cancelled => sqlx::query(
                    "UPDATE jobs SET status = 'cancelled', finished_at = $3, lease_owner = NULL, lease_expires_at = NULL
                     WHERE id = $1 AND attempt_token = $2 AND status = 'running'",
                )
                .bind(&id)
                .bind(token)
                .bind(at)
                .execute(&mut *tx)
                .await?
                .rows_affected(),
            };
            accepted.push(done == 1);
        }
        tx.commit().await?;
        Ok(accepted)
    }

    async fn renew(&self, owner: &str, leases: Vec<Lease>, until: Micros) -> Result<Renewal, StoreError> {
        let (ids, tokens): (Vec<String>, Vec<i64>) = leases.into_iter().map(|lease| (lease.id, lease.token)).unzip();
        let rows = sqlx::query(
            "UPDATE jobs j SET lease_expires_at = $1
             FROM UNNEST($2::text[], $3::bigint[]) AS lease(id, token)
             WHERE j.id = lease.id AND j.attempt_token = lease.token AND j.lease_owner = $4 AND j.status = 'running'
             RETURNING j.id, j.cancel_requested",
        )
        .bind(until)
        .bind(&ids)
        .bind(&tokens)
        .bind(owner)
        .fetch_all(&self.pool)
        .await?;
        let mut renewal = Renewal::default();
        let mut renewed = std::collections::HashSet::with_capacity(rows.len());
        for row in rows {
            let id: String = row.try_get("id")?;
            if row.try_get::<bool, _>("cancel_requested")? {
                renewal.cancel.push(id.clone());
            }
            renewed.insert(id);
        }
        renewal.lost = ids.into_iter().filter(|id| !renewed.contains(id)).collect();
        Ok(renewal)
    }

    async fn rescue(&self, now: Micros) -> Result<u64, StoreError> {
        let rescued = sqlx::query(
            "UPDATE jobs SET
                status = CASE WHEN cancel_requested THEN 'cancelled' WHEN attempt >= max_attempts THEN 'dead' ELSE 'queued' END,
                finished_at = CASE WHEN cancel_requested OR attempt >= max_attempts THEN $1 ELSE NULL END,
                error = 'its gateway stopped renewing the lease (rescued)',
                lease_owner = NULL, lease_expires_at = NULL, run_after = $1
             WHERE status = 'running' AND lease_expires_at < $1",
        )
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(rescued.rows_affected())
    }

    async fn recover(&self, owner: &str, now: Micros) -> Result<u64, StoreError> {
        let recovered = sqlx::query(
            "UPDATE jobs SET
                status = CASE WHEN cancel_requested THEN 'cancelled' WHEN attempt >= max_attempts THEN 'dead' ELSE 'queued' END,
                finished_at = CASE WHEN cancel_requested OR attempt >= max_attempts THEN $1 ELSE NULL END,
                error = 'its gateway restarted while it ran (recovered)',
                lease_owner = NULL, lease_expires_at = NULL, run_after = $1
             WHERE status = 'running' AND lease_owner = $2",
        )
        .bind(now)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(recovered.rows_affected())
    }

    async fn get(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT j.id, j.kind, j.status, j.priority, j.attempt, j.max_attempts, j.created_at, j.started_at,
                    j.finished_at, j.error, r.result
             FROM jobs j LEFT JOIN job_results r ON r.id = j.id WHERE j.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(record).transpose()
    }

    async fn cancel(&self, id: &str, now: Micros) -> Result<CancelOutcome, StoreError> {
        let queued =
            sqlx::query("UPDATE jobs SET status = 'cancelled', finished_at = $2 WHERE id = $1 AND status = 'queued'")
                .bind(id)
                .bind(now)
                .execute(&self.pool)
                .await?;
        if queued.rows_affected() == 1 {
            return Ok(CancelOutcome::Cancelled);
        }
        let running = sqlx::query("UPDATE jobs SET cancel_requested = TRUE WHERE id = $1 AND status = 'running'")
            .bind(id)
            .execute(&self.pool)
            .await?;
        if running.rows_affected() == 1 {
            return Ok(CancelOutcome::Requested);
        }
        let exists: Option<String> =
            sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1").bind(id).fetch_optional(&self.pool).await?;
        Ok(if exists.is_some() { CancelOutcome::AlreadyFinished } else { CancelOutcome::NotFound })
    }

    async fn prune(&self, before: Micros) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        for table in [
            "DELETE FROM job_payloads WHERE id IN (SELECT id FROM jobs WHERE finished_at < $1)",
            "DELETE FROM job_results WHERE id IN (SELECT id FROM jobs WHERE finished_at < $1)",
        ] {
            sqlx::query(table).bind(before).execute(&mut *tx).await?;
        }
        let deleted = sqlx::query("DELETE FROM jobs WHERE finished_at < $1").bind(before).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(deleted.rows_affected())
    }

    async fn depth(&self) -> Result<Depth, StoreError> {
        let rows =
            sqlx::query("SELECT status, COUNT(*) AS n FROM jobs WHERE status IN ('queued', 'running') GROUP BY status")
                .fetch_all(&self.pool)
                .await?;
        let mut depth = Depth::default();
        for row in rows {
            let status: String = row.try_get("status")?;
            let count: i64 = row.try_get("n")?;
            match status.as_str() {
                "queued" => depth.queued = count,
                "running" => depth.running = count,
                _ => {}
            }
        }
        Ok(depth)
    }
}

fn claimed(row: &sqlx::postgres::PgRow, token: i64) -> Result<Claimed, StoreError> {
    let payload: Vec<u8> = row.try_get("payload")?;
    Ok(Claimed {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        payload: Bytes::from(payload),
        priority: row.try_get("priority")?,
        attempt: row.try_get("attempt")?,
        max_attempts: row.try_get("max_attempts")?,
        token,
        timeout_ms: row.try_get("timeout_ms")?,
        created_at: row.try_get("created_at")?,
    })
}

fn record(row: &sqlx::postgres::PgRow) -> Result<JobRecord, StoreError> {
    let status: String = row.try_get("status")?;
    let result: Option<Vec<u8>> = row.try_get("result")?;
    Ok(JobRecord {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        status: Status::parse(&status).unwrap_or(Status::Queued),
        priority: row.try_get("priority")?,
        attempt: row.try_get("attempt")?,
        max_attempts: row.try_get("max_attempts")?,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
        error: row.try_get("error")?,
        result: result.map(Bytes::from),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden_from_errors() {
        assert_eq!(redact("postgres://app:s3cret@db:5432/jobs"), "postgres://app:***@db:5432/jobs");
        assert_eq!(redact("postgres://app@db/jobs"), "postgres://app@db/jobs");
    }
}

//! The trial archive on a PostgreSQL server, for workers on many machines:
//! the same rows as the SQLite archive, in tables `audionas_meta` and
//! `audionas_trials` (prefixed, so a database may hold other tables too).
//! A transaction-scoped advisory lock orders the writes that must not
//! interleave (creating the tables, counting trials before adding one).

use super::archive::{now, Archive, NewTrial, Outcome, RawTrial, Trial};
use anyhow::{anyhow, bail};
use postgres::{Client, Config, NoTls};
use std::time::Duration;

/// How long connecting may take before the server counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The advisory lock key of the archive's writes ("audi").
const LOCK: i64 = 0x6175_6469;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audionas_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audionas_trials (
    id BIGSERIAL PRIMARY KEY,
    parent_id BIGINT,
    architecture TEXT NOT NULL,
    hparams TEXT NOT NULL,
    state TEXT NOT NULL,
    score DOUBLE PRECISION,
    metrics TEXT,
    params BIGINT NOT NULL,
    macs BIGINT NOT NULL,
    model_path TEXT,
    worker TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    ended_at DOUBLE PRECISION,
    heartbeat_at DOUBLE PRECISION NOT NULL,
    error TEXT
);";

pub struct PostgresArchive {
    client: Client,
    /// The URL without its password, for messages.
    shown: String,
}

/// The hosts of a parsed URL, for messages.
fn hosts(config: &Config) -> String {
    let names: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            postgres::config::Host::Tcp(name) => name.clone(),
            postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    if names.is_empty() {
        "localhost".into()
    } else {
        names.join(",")
    }
}

impl PostgresArchive {
    /// Connects (waiting at most 10 s) and creates the tables if needed.
    pub fn open(url: &str, shown: &str) -> anyhow::Result<PostgresArchive> {
        let mut config: Config = url
            .parse()
            .map_err(|e| anyhow!("{shown}: not a PostgreSQL URL: {e}"))?;
        config.connect_timeout(CONNECT_TIMEOUT);
        let host = hosts(&config);
        let client = config.connect(NoTls).map_err(|e| {
            anyhow!(
                "PostgreSQL server {host} ({shown}): cannot connect within {} s: {e}",
                CONNECT_TIMEOUT.as_secs()
            )
        })?;
        let mut archive = PostgresArchive {
            client,
            shown: shown.to_string(),
        };
        let mut tx = archive
            .client
            .transaction()
            .map_err(|e| anyhow!("{shown}: {e}"))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
            .map_err(|e| anyhow!("{shown}: {e}"))?;
        tx.batch_execute(SCHEMA)
            .map_err(|e| anyhow!("{shown}: creating the tables: {e}"))?;
        tx.commit().map_err(|e| anyhow!("{shown}: {e}"))?;
        Ok(archive)
    }
}

/// Names the archive in a database error.
fn pg(shown: &str) -> impl Fn(postgres::Error) -> anyhow::Error + '_ {
    move |e| anyhow!("archive {shown}: {e}")
}

const TRIAL_COLUMNS: &str = "id, parent_id, architecture, hparams, state, score, metrics, params, macs, model_path, worker, started_at, ended_at, heartbeat_at, error";

impl Archive for PostgresArchive {
    fn start_trial(&mut self, trial: &NewTrial, max_trials: usize) -> anyhow::Result<Option<i64>> {
        let PostgresArchive { client, shown } = self;
        let mut tx = client.transaction().map_err(pg(shown))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
            .map_err(pg(shown))?;
        let count: i64 = tx
            .query_one("SELECT COUNT(*) FROM audionas_trials", &[])
            .map_err(pg(shown))?
            .get(0);
        if count as usize >= max_trials {
            return Ok(None);
        }
        let t = now();
        let row = tx
            .query_one(
                "INSERT INTO audionas_trials (parent_id, architecture, hparams, state, params, macs, worker, started_at, heartbeat_at)
                 VALUES ($1, $2, $3, 'running', $4, $5, $6, $7, $7) RETURNING id",
                &[
                    &trial.parent,
                    &serde_json::to_string(&trial.tower)?,
                    &trial.hparams.to_string(),
                    &(trial.params as i64),
                    &(trial.macs as i64),
                    &trial.worker,
                    &t,
                ],
            )
            .map_err(pg(shown))?;
        tx.commit().map_err(pg(shown))?;
        Ok(Some(row.get(0)))
    }

    fn heartbeat(&mut self, id: i64) -> anyhow::Result<()> {
        let PostgresArchive { client, shown } = self;
        client
            .execute(
                "UPDATE audionas_trials SET heartbeat_at = $1 WHERE id = $2 AND state = 'running'",
                &[&now(), &id],
            )
            .map_err(pg(shown))?;
        Ok(())
    }

    fn finish(&mut self, id: i64, outcome: &Outcome) -> anyhow::Result<()> {
        let PostgresArchive { client, shown } = self;
        let t = now();
        let result = match outcome {
            Outcome::Completed {
                score,
                metrics,
                model_path,
            } => client.execute(
                "UPDATE audionas_trials SET state = 'completed', score = $1, metrics = $2, model_path = $3, ended_at = $4, heartbeat_at = $4 WHERE id = $5",
                &[score, &metrics.to_string(), model_path, &t, &id],
            ),
            Outcome::Failed { error } => client.execute(
                "UPDATE audionas_trials SET state = 'failed', error = $1, ended_at = $2, heartbeat_at = $2 WHERE id = $3",
                &[error, &t, &id],
            ),
        };
        result.map_err(pg(shown))?;
        Ok(())
    }

    fn trials(&mut self) -> anyhow::Result<Vec<Trial>> {
        let query = format!("SELECT {TRIAL_COLUMNS} FROM audionas_trials ORDER BY id");
        let rows = self.client.query(&query, &[]).map_err(pg(&self.shown))?;
        rows.into_iter()
            .map(|row| {
                RawTrial {
                    id: row.get(0),
                    parent: row.get(1),
                    architecture: row.get(2),
                    hparams: row.get(3),
                    state: row.get(4),
                    score: row.get(5),
                    metrics: row.get(6),
                    params: row.get(7),
                    macs: row.get(8),
                    model_path: row.get(9),
                    worker: row.get(10),
                    started_at: row.get(11),
                    ended_at: row.get(12),
                    heartbeat_at: row.get(13),
                    error: row.get(14),
                }
                .decode()
            })
            .collect()
    }

    fn fail_stale(&mut self, stale_after: f64) -> anyhow::Result<Vec<i64>> {
        let PostgresArchive { client, shown } = self;
        let t = now();
        let rows = client
            .query(
                "UPDATE audionas_trials SET state = 'failed', error = $1, ended_at = $2
                 WHERE state = 'running' AND heartbeat_at < $3 RETURNING id",
                &[
                    &format!("its worker stopped sending heartbeats for {stale_after:.0} s"),
                    &t,
                    &(t - stale_after),
                ],
            )
            .map_err(pg(shown))?;
        let mut ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        ids.sort_unstable();
        Ok(ids)
    }

    fn meta_or_insert(&mut self, key: &str, value: &str) -> anyhow::Result<String> {
        let PostgresArchive { client, shown } = self;
        client
            .execute(
                "INSERT INTO audionas_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                &[&key, &value],
            )
            .map_err(pg(shown))?;
        let row = client
            .query_opt("SELECT value FROM audionas_meta WHERE key = $1", &[&key])
            .map_err(pg(shown))?;
        match row {
            Some(row) => Ok(row.get(0)),
            None => bail!("archive {shown}: meta key {key:?} vanished"),
        }
    }

    fn set_meta(&mut self, key: &str, value: &str) -> anyhow::Result<()> {
        let PostgresArchive { client, shown } = self;
        client
            .execute(
                "INSERT INTO audionas_meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                &[&key, &value],
            )
            .map_err(pg(shown))?;
        Ok(())
    }
}

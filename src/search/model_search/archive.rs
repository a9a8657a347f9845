//! The trial archive that Model Search workers share: one table of trials,
//! ids assigned by the database, and a `meta` table that says whose archive
//! it is. SQLite (a file in the run folder, WAL mode) is the default; the
//! same interface over PostgreSQL lets workers on many machines share one
//! search.

use anyhow::{anyhow, bail, Context};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The `meta` value that marks an archive as ours.
pub const FORMAT: &str = "audionas-model-search";
/// The schema this build writes; an archive of a newer one is refused.
pub const SCHEMA: i64 = 1;

/// Seconds since the Unix epoch.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrialState {
    Running,
    Completed,
    Failed,
}

impl TrialState {
    pub fn name(&self) -> &'static str {
        match self {
            TrialState::Running => "running",
            TrialState::Completed => "completed",
            TrialState::Failed => "failed",
        }
    }

    fn parse(text: &str) -> anyhow::Result<TrialState> {
        match text {
            "running" => Ok(TrialState::Running),
            "completed" => Ok(TrialState::Completed),
            "failed" => Ok(TrialState::Failed),
            other => bail!("a trial in state {other:?}, which this version does not know"),
        }
    }
}

/// A trial about to start: what it trains and what it costs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewTrial {
    pub parent: Option<i64>,
    pub tower: Vec<String>,
    /// Learning rate, optimizer and how the tower was proposed.
    pub hparams: serde_json::Value,
    pub params: u64,
    pub macs: u64,
    pub worker: String,
}

/// One row of the archive.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    pub id: i64,
    pub parent: Option<i64>,
    pub tower: Vec<String>,
    pub hparams: serde_json::Value,
    pub state: TrialState,
    /// The objective, higher is better (validation accuracy, or minus the loss).
    pub score: Option<f64>,
    pub metrics: Option<serde_json::Value>,
    pub params: u64,
    pub macs: u64,
    /// The trained model, relative to the run folder.
    pub model_path: Option<String>,
    pub worker: String,
    pub started_at: f64,
    pub ended_at: Option<f64>,
    pub heartbeat_at: f64,
    pub error: Option<String>,
}

/// How a trial ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Completed {
        score: f64,
        metrics: serde_json::Value,
        model_path: String,
    },
    Failed {
        error: String,
    },
}

/// The store behind a search. Every call is one transaction, so workers
/// never see half a trial.
pub trait Archive: Send {
    /// Starts a trial unless `max_trials` trials exist already; the id is
    /// the database's.
    fn start_trial(&mut self, trial: &NewTrial, max_trials: usize) -> anyhow::Result<Option<i64>>;
    /// Says that trial `id` is still being trained.
    fn heartbeat(&mut self, id: i64) -> anyhow::Result<()>;
    fn finish(&mut self, id: i64, outcome: &Outcome) -> anyhow::Result<()>;
    /// Every trial, by id.
    fn trials(&mut self) -> anyhow::Result<Vec<Trial>>;
    /// Marks failed every running trial whose heartbeat is older than
    /// `stale_after` seconds; returns their ids.
    fn fail_stale(&mut self, stale_after: f64) -> anyhow::Result<Vec<i64>>;
    /// The value of `key` in the meta table, set to `value` first if absent.
    fn meta_or_insert(&mut self, key: &str, value: &str) -> anyhow::Result<String>;
    fn set_meta(&mut self, key: &str, value: &str) -> anyhow::Result<()>;
}

/// Where an archive lives: `postgres://...` / `postgresql://...`, or a path
/// to a SQLite file (optionally written `sqlite:PATH`).
#[derive(Clone, Debug, PartialEq)]
pub enum ArchiveUrl {
    Sqlite(PathBuf),
    Postgres(String),
}

impl ArchiveUrl {
    pub fn parse(text: &str) -> ArchiveUrl {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            ArchiveUrl::Postgres(text.to_string())
        } else {
            ArchiveUrl::Sqlite(PathBuf::from(text.strip_prefix("sqlite:").unwrap_or(text)))
        }
    }

    /// As given on a command line (the password of a URL is left out).
    pub fn display(&self) -> String {
        match self {
            ArchiveUrl::Sqlite(path) => path.display().to_string(),
            ArchiveUrl::Postgres(url) => redact(url),
        }
    }

    pub fn to_arg(&self) -> String {
        match self {
            ArchiveUrl::Sqlite(path) => path.display().to_string(),
            ArchiveUrl::Postgres(url) => url.clone(),
        }
    }
}

/// `url` without the password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let user_info = &url[scheme + 3..at];
            let user = user_info.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// Opens (creating if needed) the archive at `url` for the search
/// `search_id`, refusing one that is not ours, of another search or of a
/// newer schema.
pub fn open_archive(url: &ArchiveUrl, search_id: &str) -> anyhow::Result<Box<dyn Archive>> {
    let mut archive = open_unchecked(url)?;
    check_identity(archive.as_mut(), search_id)
        .with_context(|| format!("archive {}", url.display()))?;
    Ok(archive)
}

/// Opens (creating if needed) the store at `url` without asking whose it is.
pub fn open_unchecked(url: &ArchiveUrl) -> anyhow::Result<Box<dyn Archive>> {
    Ok(match url {
        ArchiveUrl::Sqlite(path) => Box::new(SqliteArchive::open(path)?),
        ArchiveUrl::Postgres(url) => Box::new(super::postgres_archive::PostgresArchive::open(
            url,
            &redact(url),
        )?),
    })
}

fn check_identity(archive: &mut dyn Archive, search_id: &str) -> anyhow::Result<()> {
    let format = archive.meta_or_insert("format", FORMAT)?;
    if format != FORMAT {
        bail!("is not a Model Search archive of audionas (its format is {format:?})");
    }
    let schema = archive.meta_or_insert("schema", &SCHEMA.to_string())?;
    let schema: i64 = schema
        .parse()
        .map_err(|_| anyhow!("has a schema {schema:?} that is not a number"))?;
    if schema > SCHEMA {
        bail!("has schema {schema}, newer than this version's {SCHEMA}; use a newer audionas");
    }
    let search = archive.meta_or_insert("search", search_id)?;
    if search != search_id {
        bail!("belongs to another search ({search}), not to this one ({search_id}); give each search its own archive");
    }
    Ok(())
}

/// The archive in one SQLite file.
pub struct SqliteArchive {
    connection: Connection,
    path: PathBuf,
}

const SQLITE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    parent_id INTEGER,
    architecture TEXT NOT NULL,
    hparams TEXT NOT NULL,
    state TEXT NOT NULL,
    score REAL,
    metrics TEXT,
    params INTEGER NOT NULL,
    macs INTEGER NOT NULL,
    model_path TEXT,
    worker TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL,
    heartbeat_at REAL NOT NULL,
    error TEXT
);";

const TRIAL_COLUMNS: &str = "id, parent_id, architecture, hparams, state, score, metrics, params, macs, model_path, worker, started_at, ended_at, heartbeat_at, error";

impl SqliteArchive {
    pub fn open(path: &Path) -> anyhow::Result<SqliteArchive> {
        let fail = |e: rusqlite::Error| anyhow!("{}: {e}", path.display());
        let connection = Connection::open(path).map_err(fail)?;
        // Workers write at once: wait for the lock rather than fail.
        connection
            .busy_timeout(Duration::from_secs(30))
            .map_err(fail)?;
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| anyhow!("{}: is it a SQLite database? {e}", path.display()))?;
        connection.execute_batch(SQLITE_SCHEMA).map_err(fail)?;
        Ok(SqliteArchive {
            connection,
            path: path.to_path_buf(),
        })
    }
}

/// Names the archive in a database error.
fn sql(path: &Path) -> impl Fn(rusqlite::Error) -> anyhow::Error + '_ {
    move |e| anyhow!("archive {}: {e}", path.display())
}

fn row_to_trial(row: &rusqlite::Row) -> rusqlite::Result<RawTrial> {
    Ok(RawTrial {
        id: row.get(0)?,
        parent: row.get(1)?,
        architecture: row.get(2)?,
        hparams: row.get(3)?,
        state: row.get(4)?,
        score: row.get(5)?,
        metrics: row.get(6)?,
        params: row.get(7)?,
        macs: row.get(8)?,
        model_path: row.get(9)?,
        worker: row.get(10)?,
        started_at: row.get(11)?,
        ended_at: row.get(12)?,
        heartbeat_at: row.get(13)?,
        error: row.get(14)?,
    })
}

/// A row as stored: JSON as text, the state as its name. Shared by both stores.
pub(crate) struct RawTrial {
    pub id: i64,
    pub parent: Option<i64>,
    pub architecture: String,
    pub hparams: String,
    pub state: String,
    pub score: Option<f64>,
    pub metrics: Option<String>,
    pub params: i64,
    pub macs: i64,
    pub model_path: Option<String>,
    pub worker: String,
    pub started_at: f64,
    pub ended_at: Option<f64>,
    pub heartbeat_at: f64,
    pub error: Option<String>,
}

impl RawTrial {
    pub fn decode(self) -> anyhow::Result<Trial> {
        let id = self.id;
        fn json<T: serde::de::DeserializeOwned>(
            id: i64,
            what: &str,
            text: &str,
        ) -> anyhow::Result<T> {
            serde_json::from_str(text)
                .with_context(|| format!("trial {id}: its {what} is not valid JSON"))
        }
        Ok(Trial {
            id,
            parent: self.parent,
            tower: json(id, "architecture", &self.architecture)?,
            hparams: json(id, "hparams", &self.hparams)?,
            state: TrialState::parse(&self.state).with_context(|| format!("trial {id}"))?,
            score: self.score,
            metrics: self
                .metrics
                .as_deref()
                .map(|m| json(id, "metrics", m))
                .transpose()?,
            params: self.params.max(0) as u64,
            macs: self.macs.max(0) as u64,
            model_path: self.model_path,
            worker: self.worker,
            started_at: self.started_at,
            ended_at: self.ended_at,
            heartbeat_at: self.heartbeat_at,
            error: self.error,
        })
    }
}

impl Archive for SqliteArchive {
    fn start_trial(&mut self, trial: &NewTrial, max_trials: usize) -> anyhow::Result<Option<i64>> {
        let SqliteArchive { connection, path } = self;
        let tx = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql(path))?;
        let count: i64 = tx
            .query_row("SELECT COUNT(*) FROM trials", [], |r| r.get(0))
            .map_err(sql(path))?;
        if count as usize >= max_trials {
            return Ok(None);
        }
        let t = now();
        tx.execute(
            "INSERT INTO trials (parent_id, architecture, hparams, state, params, macs, worker, started_at, heartbeat_at)
             VALUES (?1, ?2, ?3, 'running', ?4, ?5, ?6, ?7, ?7)",
            params![
                trial.parent,
                serde_json::to_string(&trial.tower)?,
                trial.hparams.to_string(),
                trial.params as i64,
                trial.macs as i64,
                trial.worker,
                t
            ],
        )
        .map_err(sql(path))?;
        let id = tx.last_insert_rowid();
        tx.commit().map_err(sql(path))?;
        Ok(Some(id))
    }

    fn heartbeat(&mut self, id: i64) -> anyhow::Result<()> {
        self.connection
            .execute(
                "UPDATE trials SET heartbeat_at = ?1 WHERE id = ?2 AND state = 'running'",
                params![now(), id],
            )
            .map_err(sql(&self.path))?;
        Ok(())
    }

    fn finish(&mut self, id: i64, outcome: &Outcome) -> anyhow::Result<()> {
        let t = now();
        let result = match outcome {
            Outcome::Completed {
                score,
                metrics,
                model_path,
            } => self.connection.execute(
                "UPDATE trials SET state = 'completed', score = ?1, metrics = ?2, model_path = ?3, ended_at = ?4, heartbeat_at = ?4 WHERE id = ?5",
                params![score, metrics.to_string(), model_path, t, id],
            ),
            Outcome::Failed { error } => self.connection.execute(
                "UPDATE trials SET state = 'failed', error = ?1, ended_at = ?2, heartbeat_at = ?2 WHERE id = ?3",
                params![error, t, id],
            ),
        };
        result.map_err(sql(&self.path))?;
        Ok(())
    }

    fn trials(&mut self) -> anyhow::Result<Vec<Trial>> {
        let SqliteArchive { connection, path } = self;
        let query = format!("SELECT {TRIAL_COLUMNS} FROM trials ORDER BY id");
        let mut statement = connection.prepare(&query).map_err(sql(path))?;
        let raw = statement
            .query_map([], row_to_trial)
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(sql(path))?;
        raw.into_iter().map(RawTrial::decode).collect()
    }

    fn fail_stale(&mut self, stale_after: f64) -> anyhow::Result<Vec<i64>> {
        let t = now();
        let SqliteArchive { connection, path } = self;
        let tx = connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql(path))?;
        let ids: Vec<i64> = {
            let mut statement = tx
                .prepare("SELECT id FROM trials WHERE state = 'running' AND heartbeat_at < ?1")
                .map_err(sql(path))?;
            let rows = statement
                .query_map(params![t - stale_after], |r| r.get(0))
                .and_then(|rows| rows.collect::<Result<Vec<i64>, _>>())
                .map_err(sql(path))?;
            rows
        };
        for id in &ids {
            tx.execute(
                "UPDATE trials SET state = 'failed', error = ?1, ended_at = ?2 WHERE id = ?3",
                params![
                    format!("its worker stopped sending heartbeats for {stale_after:.0} s"),
                    t,
                    id
                ],
            )
            .map_err(sql(path))?;
        }
        tx.commit().map_err(sql(path))?;
        Ok(ids)
    }

    fn meta_or_insert(&mut self, key: &str, value: &str) -> anyhow::Result<String> {
        self.connection
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO NOTHING",
                params![key, value],
            )
            .map_err(sql(&self.path))?;
        let stored: Option<String> = self
            .connection
            .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sql(&self.path))?;
        stored.ok_or_else(|| anyhow!("archive {}: meta key {key:?} vanished", self.path.display()))
    }

    fn set_meta(&mut self, key: &str, value: &str) -> anyhow::Result<()> {
        self.connection
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map_err(sql(&self.path))?;
        Ok(())
    }
}

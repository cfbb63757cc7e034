//! The SQL that reads and writes rows, and the mapping between table rows and records.
//!
//! Owns every statement touching the five tables (parameterized, never built from data),
//! and the decoding of a table row into a [`ResultRow`] or [`WinnerRow`]. Decoding reads
//! each column as a raw SQLite value, checks its type, reads text through `substr` so no
//! value larger than the largest field bound is ever loaded, and never panics: this is also
//! how rows of an untrusted file are read. The caller validates the decoded record.
//!
//! Depends on [`crate::record`], [`crate::key`], `field`, [`crate::timestamp`],
//! [`crate::error`] and rusqlite.

use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OptionalExtension, Row};

use crate::error::FieldError;
use crate::field;
use crate::key::{DeviceFingerprint, ProblemRecord, TemplateKey, WinnerKey};
use crate::record::{Provenance, ResultRow, Status, Throughput, Timing, WinnerRow};
use crate::timestamp::Timestamp;

/// Longest text read from any column; longer values are cut here and refused by validation.
const TEXT_READ: usize = field::MAX_JSON_LEN + 1;

fn t(col: &str) -> String {
    format!("substr({col}, 1, {TEXT_READ})")
}

/// `SELECT` of result rows (rowid first), to be followed by `WHERE ...`.
pub(crate) fn result_select() -> String {
    let text = [
        "d.name",
        "d.arch",
        "d.driver",
        "d.toolchain",
        "r.template_name",
        "r.template_hash",
        "p.key",
        "p.op",
        "p.json",
        "r.kernel_name",
        "r.config",
        "r.config_json",
        "r.guards_json",
        "r.status",
        "r.reason",
        "r.throughput_unit",
        "r.measured_at",
        "r.origin_host",
        "r.tool_version",
    ]
    .map(t);
    let [name, arch, driver, toolchain, tname, thash, pkey, pop, pjson, kernel, config, cjson, guards, status, reason, unit, at, host, tool] =
        text;
    format!(
        "SELECT r.rowid, {name}, {arch}, d.sm_count, {driver}, {toolchain}, d.simulated, \
         {tname}, {thash}, {pkey}, {pop}, {pjson}, {kernel}, {config}, {cjson}, {guards}, \
         {status}, {reason}, r.median_ms, r.p10_ms, r.p90_ms, r.samples, r.throughput, {unit}, \
         r.max_rel_error, r.compile_s, {at}, {host}, {tool} \
         FROM results r LEFT JOIN devices d ON d.id = r.device_id LEFT JOIN problems p ON p.key = r.problem_key"
    )
}

/// `SELECT` of winner rows (rowid first), to be followed by `WHERE ...`.
pub(crate) fn winner_select() -> String {
    let text = [
        "d.name",
        "d.arch",
        "d.driver",
        "d.toolchain",
        "w.template_name",
        "w.template_hash",
        "p.key",
        "p.op",
        "p.json",
        "w.kernel_name",
        "w.config",
        "w.config_json",
        "w.guards_json",
        "w.measured_at",
        "w.origin_host",
        "w.tool_version",
    ]
    .map(t);
    let [name, arch, driver, toolchain, tname, thash, pkey, pop, pjson, kernel, config, cjson, guards, at, host, tool] =
        text;
    format!(
        "SELECT w.rowid, {name}, {arch}, d.sm_count, {driver}, {toolchain}, d.simulated, \
         {tname}, {thash}, {pkey}, {pop}, {pjson}, {kernel}, {config}, {cjson}, w.median_ms, \
         {guards}, {at}, {host}, {tool} \
         FROM winners w LEFT JOIN devices d ON d.id = w.device_id LEFT JOIN problems p ON p.key = w.problem_key"
    )
}

/// Reads the columns of one row in order, checking each value's type.
struct Cols<'r, 's> {
    row: &'r Row<'s>,
    next: usize,
}

type Decoded<T> = rusqlite::Result<Result<T, FieldError>>;

/// Unwraps a decoded column: SQL errors propagate, an invalid value ends the row with `Ok(Err)`.
macro_rules! col {
    ($e:expr) => {
        field!($e?)
    };
}

/// Unwraps a parsed value: an invalid one ends the row with `Ok(Err)`.
macro_rules! field {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        }
    };
}

impl Cols<'_, '_> {
    fn raw(&mut self) -> rusqlite::Result<ValueRef<'_>> {
        let i = self.next;
        self.next += 1;
        self.row.get_ref(i)
    }

    fn text_opt(&mut self, field: &'static str) -> Decoded<Option<String>> {
        Ok(match self.raw()? {
            ValueRef::Null => Ok(None),
            ValueRef::Text(b) => match std::str::from_utf8(b) {
                Ok(s) => Ok(Some(s.to_owned())),
                Err(_) => Err(FieldError::new(field, "is not UTF-8")),
            },
            other => Err(FieldError::new(
                field,
                format!("is {:?}, not text", other.data_type()),
            )),
        })
    }

    fn text(&mut self, field: &'static str) -> Decoded<String> {
        Ok(match self.text_opt(field)? {
            Ok(Some(s)) => Ok(s),
            Ok(None) => Err(FieldError::new(field, "is missing")),
            Err(e) => Err(e),
        })
    }

    fn int(&mut self, field: &'static str) -> Decoded<i64> {
        Ok(match self.raw()? {
            ValueRef::Integer(i) => Ok(i),
            other => Err(FieldError::new(
                field,
                format!("is {:?}, not an integer", other.data_type()),
            )),
        })
    }

    fn real_opt(&mut self, field: &'static str) -> Decoded<Option<f64>> {
        Ok(match self.raw()? {
            ValueRef::Null => Ok(None),
            ValueRef::Real(f) => Ok(Some(f)),
            ValueRef::Integer(i) => Ok(Some(i as f64)),
            other => Err(FieldError::new(
                field,
                format!("is {:?}, not a number", other.data_type()),
            )),
        })
    }

    fn real(&mut self, field: &'static str) -> Decoded<f64> {
        Ok(match self.real_opt(field)? {
            Ok(Some(f)) => Ok(f),
            Ok(None) => Err(FieldError::new(field, "is missing")),
            Err(e) => Err(e),
        })
    }

    fn device(&mut self) -> Decoded<DeviceFingerprint> {
        let name = col!(self.text("device.name"));
        let arch = col!(self.text("device.arch"));
        let sm = col!(self.int("device.sm_count"));
        let driver = col!(self.text("device.driver"));
        let toolchain = col!(self.text("device.toolchain"));
        let sim = col!(self.int("device.simulated"));
        let Ok(sm_count) = u32::try_from(sm) else {
            return Ok(Err(FieldError::new(
                "device.sm_count",
                format!("{sm} is out of range"),
            )));
        };
        let simulated = match sim {
            0 => false,
            1 => true,
            _ => {
                return Ok(Err(FieldError::new(
                    "device.simulated",
                    format!("{sim} is not 0 or 1"),
                )))
            }
        };
        Ok(Ok(DeviceFingerprint {
            name,
            arch,
            sm_count,
            driver,
            toolchain,
            simulated,
        }))
    }

    fn template_and_problem(&mut self) -> Decoded<(TemplateKey, ProblemRecord)> {
        let name = col!(self.text("template.name"));
        let source_hash = col!(self.text("template.source_hash"));
        let key = col!(self.text("problem.key"));
        let op = col!(self.text("problem.op"));
        let json = col!(self.text("problem.json"));
        Ok(Ok((
            TemplateKey { name, source_hash },
            ProblemRecord { key, op, json },
        )))
    }

    fn provenance(&mut self) -> Decoded<Provenance> {
        let at = col!(self.text("measured_at"));
        if at.len() > field::MAX_TIMESTAMP_LEN {
            return Ok(Err(FieldError::new("measured_at", "is too long")));
        }
        let measured_at = field!(Timestamp::parse(&at));
        let origin_host = col!(self.text("provenance.origin_host"));
        let tool_version = col!(self.text("provenance.tool_version"));
        Ok(Ok(Provenance {
            origin_host,
            tool_version,
            measured_at,
        }))
    }
}

/// Decodes a row of [`result_select`] into its rowid and the record, or why it is not one.
/// The record is not yet validated.
pub(crate) fn decode_result(
    row: &Row<'_>,
) -> rusqlite::Result<(i64, Result<ResultRow, FieldError>)> {
    let mut c = Cols { row, next: 0 };
    let rowid = c.int("rowid")?.unwrap_or(-1);
    Ok((rowid, decode_result_fields(&mut c)?))
}

fn decode_result_fields(c: &mut Cols<'_, '_>) -> Decoded<ResultRow> {
    let device = col!(c.device());
    let (template, problem) = col!(c.template_and_problem());
    let kernel_name = col!(c.text("kernel_name"));
    let config = col!(c.text("config"));
    let config_json = col!(c.text("config_json"));
    let guards_json = col!(c.text("guards_json"));
    let status_word = col!(c.text("status"));
    let status: Status = field!(status_word.parse());
    let reason = col!(c.text("reason"));
    let median = col!(c.real_opt("median_ms"));
    let p10 = col!(c.real_opt("p10_ms"));
    let p90 = col!(c.real_opt("p90_ms"));
    let samples = col!(c.int("samples"));
    let timing = match (median, p10, p90) {
        (None, None, None) if samples == 0 => None,
        (Some(median_ms), Some(p10_ms), Some(p90_ms)) => {
            let Ok(samples) = u32::try_from(samples) else {
                return Ok(Err(FieldError::new(
                    "timing.samples",
                    format!("{samples} is out of range"),
                )));
            };
            Some(Timing {
                median_ms,
                p10_ms,
                p90_ms,
                samples,
            })
        }
        _ => {
            return Ok(Err(FieldError::new(
                "timing",
                "median, p10, p90 and samples must be all present or all absent",
            )))
        }
    };
    let tp_value = col!(c.real_opt("throughput"));
    let tp_unit = col!(c.text_opt("throughput_unit"));
    let throughput = match (tp_value, tp_unit) {
        (None, None) => None,
        (Some(value), Some(unit)) => Some(Throughput {
            value,
            unit: field!(unit.parse()),
        }),
        _ => {
            return Ok(Err(FieldError::new(
                "throughput",
                "value and unit must be both present or both absent",
            )))
        }
    };
    let max_rel_error = col!(c.real_opt("max_rel_error"));
    let compile_s = col!(c.real_opt("compile_s"));
    let provenance = col!(c.provenance());
    Ok(Ok(ResultRow {
        device,
        template,
        problem,
        kernel_name,
        config,
        config_json,
        guards_json,
        status,
        reason,
        timing,
        throughput,
        max_rel_error,
        compile_s,
        provenance,
    }))
}

/// Decodes a row of [`winner_select`]; not yet validated.
pub(crate) fn decode_winner(
    row: &Row<'_>,
) -> rusqlite::Result<(i64, Result<WinnerRow, FieldError>)> {
    let mut c = Cols { row, next: 0 };
    let rowid = c.int("rowid")?.unwrap_or(-1);
    Ok((rowid, decode_winner_fields(&mut c)?))
}

fn decode_winner_fields(c: &mut Cols<'_, '_>) -> Decoded<WinnerRow> {
    let device = col!(c.device());
    let (template, problem) = col!(c.template_and_problem());
    let kernel_name = col!(c.text("kernel_name"));
    let config = col!(c.text("config"));
    let config_json = col!(c.text("config_json"));
    let median_ms = col!(c.real("median_ms"));
    let guards_json = col!(c.text("guards_json"));
    let provenance = col!(c.provenance());
    Ok(Ok(WinnerRow {
        device,
        template,
        problem,
        kernel_name,
        config,
        config_json,
        median_ms,
        guards_json,
        provenance,
    }))
}

/// What to do when a problem key is already stored with different op/JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProblemConflict {
    /// This process just described the problem: its description wins.
    Replace,
    /// Merged: keep the smaller (op, json), so merges do not depend on order.
    KeepSmaller,
    /// Imported into a live cache: the description already there is never replaced.
    KeepExisting,
}

/// Makes sure the device, template and problem of a row exist.
pub(crate) fn put_parents(
    conn: &Connection,
    device: &DeviceFingerprint,
    template: &TemplateKey,
    problem: &ProblemRecord,
    conflict: ProblemConflict,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO devices (id, name, arch, sm_count, driver, toolchain, simulated) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (id) DO NOTHING",
    )?
    .execute(params![
        device.id().as_str(),
        device.name,
        device.arch,
        device.sm_count,
        device.driver,
        device.toolchain,
        device.simulated
    ])?;
    conn.prepare_cached(
        "INSERT INTO templates (name, source_hash) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
    )?
    .execute(params![template.name, template.source_hash])?;
    let sql = match conflict {
        ProblemConflict::Replace => {
            "INSERT INTO problems (key, op, json) VALUES (?1, ?2, ?3) \
             ON CONFLICT (key) DO UPDATE SET op = excluded.op, json = excluded.json"
        }
        ProblemConflict::KeepSmaller => {
            "INSERT INTO problems (key, op, json) VALUES (?1, ?2, ?3) \
             ON CONFLICT (key) DO UPDATE SET op = excluded.op, json = excluded.json \
             WHERE (excluded.op, excluded.json) < (problems.op, problems.json)"
        }
        ProblemConflict::KeepExisting => {
            "INSERT INTO problems (key, op, json) VALUES (?1, ?2, ?3) ON CONFLICT (key) DO NOTHING"
        }
    };
    conn.prepare_cached(sql)?
        .execute(params![problem.key, problem.op, problem.json])?;
    Ok(())
}

/// Inserts or replaces a result row (parents must exist).
pub(crate) fn put_result(conn: &Connection, r: &ResultRow) -> rusqlite::Result<()> {
    let timing = r.timing;
    conn.prepare_cached(
        "INSERT OR REPLACE INTO results (device_id, template_name, template_hash, problem_key, \
         kernel_name, config, config_json, guards_json, status, reason, median_ms, p10_ms, p90_ms, \
         samples, throughput, throughput_unit, max_rel_error, compile_s, measured_at, origin_host, \
         tool_version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, \
         ?16, ?17, ?18, ?19, ?20, ?21)",
    )?
    .execute(params![
        r.device.id().as_str(),
        r.template.name,
        r.template.source_hash,
        r.problem.key,
        r.kernel_name,
        r.config,
        r.config_json,
        r.guards_json,
        r.status.as_str(),
        r.reason,
        timing.map(|t| t.median_ms),
        timing.map(|t| t.p10_ms),
        timing.map(|t| t.p90_ms),
        timing.map_or(0, |t| t.samples),
        r.throughput.map(|t| t.value),
        r.throughput.map(|t| t.unit.as_str()),
        r.max_rel_error,
        r.compile_s,
        r.provenance.measured_at.to_string(),
        r.provenance.origin_host,
        r.provenance.tool_version,
    ])?;
    Ok(())
}

/// Inserts or replaces a winner row (parents must exist).
pub(crate) fn put_winner(conn: &Connection, w: &WinnerRow) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO winners (device_id, template_name, template_hash, problem_key, \
         kernel_name, config, config_json, median_ms, guards_json, measured_at, origin_host, \
         tool_version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    )?
    .execute(params![
        w.device.id().as_str(),
        w.template.name,
        w.template.source_hash,
        w.problem.key,
        w.kernel_name,
        w.config,
        w.config_json,
        w.median_ms,
        w.guards_json,
        w.provenance.measured_at.to_string(),
        w.provenance.origin_host,
        w.provenance.tool_version,
    ])?;
    Ok(())
}

/// Deletes the winner of a key, if any.
pub(crate) fn delete_winner(conn: &Connection, key: &WinnerKey) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "DELETE FROM winners WHERE device_id = ?1 AND template_name = ?2 AND template_hash = ?3 \
         AND problem_key = ?4",
    )?
    .execute(params![
        key.device.id().as_str(),
        key.template.name,
        key.template.source_hash,
        key.problem_key
    ])?;
    Ok(())
}

/// Every result row of one key, decoded (not validated).
pub(crate) fn results_of_key(
    conn: &Connection,
    key: &WinnerKey,
) -> rusqlite::Result<Vec<(i64, Result<ResultRow, FieldError>)>> {
    let sql = format!(
        "{} WHERE r.device_id = ?1 AND r.template_name = ?2 AND r.template_hash = ?3 \
         AND r.problem_key = ?4 ORDER BY r.kernel_name",
        result_select()
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(
        params![
            key.device.id().as_str(),
            key.template.name,
            key.template.source_hash,
            key.problem_key
        ],
        decode_result,
    )?;
    rows.collect()
}

/// One result row by its full key, decoded (not validated).
pub(crate) fn result_by_key(
    conn: &Connection,
    key: &WinnerKey,
    kernel_name: &str,
) -> rusqlite::Result<Option<(i64, Result<ResultRow, FieldError>)>> {
    let sql = format!(
        "{} WHERE r.device_id = ?1 AND r.template_name = ?2 AND r.template_hash = ?3 \
         AND r.problem_key = ?4 AND r.kernel_name = ?5",
        result_select()
    );
    conn.prepare_cached(&sql)?
        .query_row(
            params![
                key.device.id().as_str(),
                key.template.name,
                key.template.source_hash,
                key.problem_key,
                kernel_name
            ],
            decode_result,
        )
        .optional()
}

/// The winner row of one key, decoded (not validated).
pub(crate) fn winner_by_key(
    conn: &Connection,
    key: &WinnerKey,
) -> rusqlite::Result<Option<(i64, Result<WinnerRow, FieldError>)>> {
    let sql = format!(
        "{} WHERE w.device_id = ?1 AND w.template_name = ?2 AND w.template_hash = ?3 \
         AND w.problem_key = ?4",
        winner_select()
    );
    conn.prepare_cached(&sql)?
        .query_row(
            params![
                key.device.id().as_str(),
                key.template.name,
                key.template.source_hash,
                key.problem_key
            ],
            decode_winner,
        )
        .optional()
}

/// Deletes problems and devices no result or winner refers to, and template versions with
/// no rows. Returns (problems, devices, templates) deleted.
pub(crate) fn delete_orphans(conn: &Connection) -> rusqlite::Result<(usize, usize, usize)> {
    let problems = conn.execute(
        "DELETE FROM problems WHERE key NOT IN (SELECT problem_key FROM results) \
         AND key NOT IN (SELECT problem_key FROM winners)",
        [],
    )?;
    let devices = conn.execute(
        "DELETE FROM devices WHERE id NOT IN (SELECT device_id FROM results) \
         AND id NOT IN (SELECT device_id FROM winners)",
        [],
    )?;
    let templates = conn.execute(
        "DELETE FROM templates WHERE NOT EXISTS (SELECT 1 FROM results r WHERE \
         r.template_name = templates.name AND r.template_hash = templates.source_hash) \
         AND NOT EXISTS (SELECT 1 FROM winners w WHERE w.template_name = templates.name \
         AND w.template_hash = templates.source_hash)",
        [],
    )?;
    Ok((problems, devices, templates))
}

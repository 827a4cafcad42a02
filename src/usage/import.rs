//! `usage import FILE`: usage events from a CSV or JSON-lines file, through [`ingest`] in batches.
//!
//! Every event id is deduplicated, so importing the same file again (after an interruption, or twice by
//! mistake) adds nothing. Bad lines do not stop the good ones; they are listed with their line numbers.

use super::validate::{self, FieldError, RawEvent, MAX_BATCH};
use super::{ingest, NewEvent};
use crate::db::Db;
use crate::domain::time;
use anyhow::Context;
use chrono_tz::Tz;
use serde_json::Value;
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A header `event_id,tenant_id,type,quantity,occurred_at[,metadata]` (any order), one event a row.
    Csv,
    /// One JSON object a line, with the API's event fields.
    JsonLines,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    /// Lines holding an event (blank lines and the header excluded).
    pub lines: u64,
    pub accepted: u64,
    pub duplicates: u64,
    /// `(line number, why)`, in file order.
    pub rejected: Vec<(u64, String)>,
}

/// The format by extension, or else by the first non-blank line (`{` starts JSON).
pub fn detect_format(path: &Path, first_line: &str) -> Format {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
    {
        Some(e) if e == "csv" => Format::Csv,
        Some(e) if e == "jsonl" || e == "ndjson" || e == "json" => Format::JsonLines,
        _ if first_line.trim_start().starts_with('{') => Format::JsonLines,
        _ => Format::Csv,
    }
}

/// Imports `path` into `db`; shows a progress bar on stderr when it is a terminal and `progress` is set.
pub async fn import_file(
    db: &Db,
    path: &Path,
    tz: Tz,
    progress: bool,
) -> anyhow::Result<ImportSummary> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut bar = Progress::new(size, progress && std::io::stderr().is_terminal());
    let result = import_reader(db, BufReader::new(file), path, tz, |bytes| bar.set(bytes)).await;
    bar.finish();
    result
}

/// Imports from any reader; `on_progress` gets the bytes read so far.
pub async fn import_reader<R: Read>(
    db: &Db,
    reader: BufReader<R>,
    path: &Path,
    tz: Tz,
    mut on_progress: impl FnMut(u64),
) -> anyhow::Result<ImportSummary> {
    let mut summary = ImportSummary::default();
    let mut format: Option<Format> = None;
    let mut columns: Option<Columns> = None;
    let mut batch: Vec<(u64, NewEvent)> = Vec::with_capacity(MAX_BATCH);
    let mut bytes = 0u64;
    for (i, line) in reader.lines().enumerate() {
        let line_no = i as u64 + 1;
        let line = line.with_context(|| format!("cannot read line {line_no}"))?;
        bytes += line.len() as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        let format = *format.get_or_insert_with(|| detect_format(path, &line));
        if format == Format::Csv && columns.is_none() {
            columns = Some(Columns::from_header(&line).with_context(|| {
                format!("line {line_no}: the CSV header must name event_id, tenant_id, type and quantity (occurred_at and metadata optional)")
            })?);
            continue;
        }
        summary.lines += 1;
        let parsed = match format {
            Format::JsonLines => parse_json_line(&line),
            Format::Csv => columns.as_ref().expect("header read").parse(&line),
        };
        let received_at = time::now();
        let checked = parsed.and_then(|value| {
            let raw = RawEvent::from_json(&value).map_err(|e| describe(&[e]))?;
            validate::check(&raw, received_at).map_err(|e| describe(&e))
        });
        match checked {
            Ok(event) => batch.push((line_no, event)),
            Err(why) => summary.rejected.push((line_no, why)),
        }
        if batch.len() == MAX_BATCH {
            flush(db, &mut batch, tz, &mut summary).await?;
            on_progress(bytes);
        }
    }
    flush(db, &mut batch, tz, &mut summary).await?;
    on_progress(bytes);
    summary.rejected.sort_by_key(|(n, _)| *n);
    Ok(summary)
}

/// Ingests a batch, rejecting (by line) the events whose tenant does not exist.
async fn flush(
    db: &Db,
    batch: &mut Vec<(u64, NewEvent)>,
    tz: Tz,
    summary: &mut ImportSummary,
) -> anyhow::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let unknown = validate::unknown_tenants(db, batch.iter().map(|(_, e)| &e.tenant_id)).await?;
    let mut events = Vec::with_capacity(batch.len());
    for (line_no, event) in batch.drain(..) {
        if unknown.contains(event.tenant_id.as_str()) {
            summary.rejected.push((
                line_no,
                format!("tenant_id: no tenant {:?}", event.tenant_id.as_str()),
            ));
        } else {
            events.push(event);
        }
    }
    let outcome = ingest(db, &events, time::now(), tz).await?;
    summary.accepted += outcome.accepted;
    summary.duplicates += outcome.duplicates;
    Ok(())
}

fn describe(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| {
            if e.field.is_empty() {
                e.message.clone()
            } else {
                format!("{}: {}", e.field, e.message)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn parse_json_line(line: &str) -> Result<Value, String> {
    serde_json::from_str(line).map_err(|e| format!("not valid JSON: {e}"))
}

/// Where each field is in a CSV row.
struct Columns {
    event_id: usize,
    tenant_id: usize,
    usage_type: usize,
    quantity: usize,
    occurred_at: Option<usize>,
    metadata: Option<usize>,
}

impl Columns {
    fn from_header(line: &str) -> anyhow::Result<Columns> {
        let names: Vec<String> = split_csv(line)
            .map_err(anyhow::Error::msg)?
            .into_iter()
            .map(|n| n.trim().to_ascii_lowercase())
            .collect();
        let find = |n: &str| names.iter().position(|c| c == n);
        let need = |n: &str| find(n).ok_or_else(|| anyhow::anyhow!("no column {n:?}"));
        Ok(Columns {
            event_id: need("event_id")?,
            tenant_id: need("tenant_id")?,
            usage_type: need("type")?,
            quantity: need("quantity")?,
            occurred_at: find("occurred_at"),
            metadata: find("metadata"),
        })
    }

    /// A row as the API's JSON event, so that one validator serves both.
    fn parse(&self, line: &str) -> Result<Value, String> {
        let cells = split_csv(line)?;
        let cell = |i: usize| cells.get(i).map(|c| c.trim()).filter(|c| !c.is_empty());
        let mut event = serde_json::Map::new();
        for (name, i) in [
            ("event_id", self.event_id),
            ("tenant_id", self.tenant_id),
            ("type", self.usage_type),
        ] {
            if let Some(v) = cell(i) {
                event.insert(name.into(), Value::String(v.into()));
            }
        }
        if let Some(q) = cell(self.quantity) {
            // A number when it is one; otherwise the text, which the validator rejects with the reason.
            let v = q
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::String(q.into()));
            event.insert("quantity".into(), v);
        }
        if let Some(t) = self.occurred_at.and_then(cell) {
            event.insert("occurred_at".into(), Value::String(t.into()));
        }
        if let Some(m) = self.metadata.and_then(cell) {
            let v = serde_json::from_str(m).unwrap_or_else(|_| Value::String(m.into()));
            event.insert("metadata".into(), v);
        }
        Ok(Value::Object(event))
    }
}

/// Splits one CSV record (RFC 4180 quoting: `"a, b"`, `""` for a quote inside quotes).
fn split_csv(line: &str) -> Result<Vec<String>, String> {
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut chars = line.trim_end_matches('\r').chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cell.push(c),
            (false, '"') if cell.trim().is_empty() => {
                cell.clear();
                quoted = true;
            }
            (false, ',') => cells.push(std::mem::take(&mut cell)),
            (false, c) => cell.push(c),
        }
    }
    if quoted {
        return Err("a quoted field is not closed".into());
    }
    cells.push(cell);
    Ok(cells)
}

/// A one-line progress bar on stderr (only drawn on a terminal).
struct Progress {
    total: u64,
    enabled: bool,
    started: std::time::Instant,
}

impl Progress {
    fn new(total: u64, enabled: bool) -> Progress {
        Progress {
            total,
            enabled,
            started: std::time::Instant::now(),
        }
    }

    fn set(&mut self, done: u64) {
        if !self.enabled || self.total == 0 {
            return;
        }
        let done = done.min(self.total);
        let width = 30;
        let filled = (done * width / self.total) as usize;
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let _ = write!(
            std::io::stderr(),
            "\r[{}{}] {:>3}%  {:.1} MB/s ",
            "#".repeat(filled),
            "-".repeat(width as usize - filled),
            done * 100 / self.total,
            done as f64 / secs / 1e6
        );
    }

    fn finish(&mut self) {
        if self.enabled {
            let _ = writeln!(std::io::stderr());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quoting() {
        assert_eq!(split_csv("a,b,,c").unwrap(), ["a", "b", "", "c"]);
        assert_eq!(
            split_csv(r#"e1,"t,1","{""k"": ""v""}""#).unwrap(),
            ["e1", "t,1", r#"{"k": "v"}"#]
        );
        assert!(split_csv(r#"a,"b"#).is_err());
    }

    #[test]
    fn csv_rows_become_api_events() {
        let cols =
            Columns::from_header("tenant_id,event_id,type,quantity,occurred_at,metadata").unwrap();
        let v = cols
            .parse(r#"acme,e1,stt_words,12,2026-10-01T00:00:00Z,"{""a"":1}""#)
            .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"event_id": "e1", "tenant_id": "acme", "type": "stt_words",
                               "quantity": 12, "occurred_at": "2026-10-01T00:00:00Z", "metadata": {"a": 1}})
        );
        let v = cols.parse("acme,e2,stt_words,twelve,,").unwrap();
        assert_eq!(v["quantity"], "twelve");
        assert!(v.get("occurred_at").is_none());
        assert!(Columns::from_header("event_id,tenant_id,quantity").is_err());
    }

    #[test]
    fn formats_by_extension_then_content() {
        assert_eq!(detect_format(Path::new("x.csv"), "{"), Format::Csv);
        assert_eq!(
            detect_format(Path::new("x.jsonl"), "event_id"),
            Format::JsonLines
        );
        assert_eq!(
            detect_format(Path::new("x.txt"), " {\"a\":1}"),
            Format::JsonLines
        );
        assert_eq!(
            detect_format(Path::new("x"), "event_id,tenant_id"),
            Format::Csv
        );
    }
}

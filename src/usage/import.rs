//! `usage import FILE`: usage events from a CSV or JSON-lines file, through [`ingest`] in batches.
//!
//! Every event id is deduplicated, so importing the same file again (after an interruption, or twice by
//! mistake) adds nothing. Bad lines do not stop the good ones; they are listed with their line numbers
//! (for a CSV record, the line it starts on: a quoted field may hold line breaks).

use super::validate::{self, FieldError, RawEvent, MAX_BATCH};
use super::{ingest, NewEvent};
use crate::db::Db;
use crate::domain::time;
use anyhow::Context;
use chrono_tz::Tz;
use serde_json::Value;
use std::io::{BufRead, BufReader, Cursor, IsTerminal, Read, Write};
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
    /// Lines (CSV records) holding an event: blank lines and the header excluded.
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
    mut reader: BufReader<R>,
    path: &Path,
    tz: Tz,
    on_progress: impl FnMut(u64),
) -> anyhow::Result<ImportSummary> {
    // The first non-blank line decides the format (when the extension does not).
    let mut skipped = 0u64;
    let mut skipped_bytes = 0u64;
    let mut first = String::new();
    loop {
        first.clear();
        let n = reader
            .read_line(&mut first)
            .with_context(|| format!("cannot read line {}", skipped + 1))?;
        if n == 0 {
            return Ok(ImportSummary::default());
        }
        if !first.trim().is_empty() {
            break;
        }
        skipped += 1;
        skipped_bytes += n as u64;
    }
    let format = detect_format(path, &first);
    // That line is read again, as the start of the rest.
    let input = Cursor::new(first.into_bytes()).chain(reader);
    let mut import = Import {
        db,
        tz,
        summary: ImportSummary::default(),
        batch: Vec::with_capacity(MAX_BATCH),
        on_progress,
    };
    let bytes = match format {
        Format::JsonLines => import.json_lines(input, skipped, skipped_bytes).await?,
        Format::Csv => import.csv(input, skipped, skipped_bytes).await?,
    };
    import.flush(bytes).await?;
    let mut summary = import.summary;
    summary.rejected.sort_by_key(|(n, _)| *n);
    Ok(summary)
}

/// An import in progress: its summary so far and the batch not yet ingested.
struct Import<'a, P> {
    db: &'a Db,
    tz: Tz,
    summary: ImportSummary,
    batch: Vec<(u64, NewEvent)>,
    on_progress: P,
}

impl<P: FnMut(u64)> Import<'_, P> {
    /// One JSON object a line; lines are numbered from `skipped + 1`.
    async fn json_lines(
        &mut self,
        input: impl Read,
        skipped: u64,
        mut bytes: u64,
    ) -> anyhow::Result<u64> {
        for (i, line) in BufReader::new(input).lines().enumerate() {
            let line_no = skipped + i as u64 + 1;
            let line = line.with_context(|| format!("cannot read line {line_no}"))?;
            bytes += line.len() as u64 + 1;
            if line.trim().is_empty() {
                continue;
            }
            self.event(line_no, parse_json_line(&line), bytes).await?;
        }
        Ok(bytes)
    }

    /// A header record, then one event a record; `skipped` blank lines came before the header.
    async fn csv(&mut self, input: impl Read, skipped: u64, bytes: u64) -> anyhow::Result<u64> {
        let mut reader = csv_reader(Tee::new(input));
        let mut columns: Option<Columns> = None;
        let mut record = csv::StringRecord::new();
        loop {
            let result = reader.read_record(&mut record);
            if let Ok(false) = result {
                break;
            }
            let start = match &result {
                Ok(_) => record.position(),
                Err(e) => e.position(),
            }
            .cloned()
            .unwrap_or_else(|| reader.position().clone());
            let end = reader.position().byte();
            // The reader counts the blank lines before a record (and the `\n` of a CRLF) into its start.
            let line_no =
                skipped + start.line() + reader.get_mut().breaks_before_content(start.byte(), end);
            if let Err(e) = result {
                match e.kind() {
                    csv::ErrorKind::Utf8 { .. } => {
                        anyhow::bail!("cannot read line {line_no}: not valid UTF-8")
                    }
                    _ => anyhow::bail!("cannot read line {line_no}: {e}"),
                }
            }
            let read = bytes + reader.position().byte();
            if record.len() == 1 && record[0].trim().is_empty() {
                continue;
            }
            let Some(columns) = &columns else {
                columns = Some(Columns::from_header(&record).with_context(|| {
                    format!("line {line_no}: the CSV header must name event_id, tenant_id, type and quantity (occurred_at and metadata optional)")
                })?);
                continue;
            };
            let parsed = Ok(columns.parse(&record));
            self.event(line_no, parsed, read).await?;
        }
        Ok(bytes + reader.position().byte())
    }

    /// Validates one event and adds it to the batch, ingesting the batch once it is full.
    async fn event(
        &mut self,
        line_no: u64,
        parsed: Result<Value, String>,
        bytes: u64,
    ) -> anyhow::Result<()> {
        self.summary.lines += 1;
        let received_at = time::now();
        let checked = parsed.and_then(|value| {
            let raw = RawEvent::from_json(&value).map_err(|e| describe(&[e]))?;
            validate::check(&raw, received_at).map_err(|e| describe(&e))
        });
        match checked {
            Ok(event) => self.batch.push((line_no, event)),
            Err(why) => self.summary.rejected.push((line_no, why)),
        }
        if self.batch.len() == MAX_BATCH {
            self.flush(bytes).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, bytes: u64) -> anyhow::Result<()> {
        flush(self.db, &mut self.batch, self.tz, &mut self.summary).await?;
        (self.on_progress)(bytes);
        Ok(())
    }
}

/// The CSV reader's input, keeping what it has read since the start of the current record, so that the
/// line a record starts on can be told from the line breaks skipped before it.
struct Tee<R> {
    inner: R,
    kept: std::collections::VecDeque<u8>,
    /// The offset of `kept[0]` in the input.
    kept_from: u64,
}

impl<R> Tee<R> {
    fn new(inner: R) -> Tee<R> {
        Tee {
            inner,
            kept: Default::default(),
            kept_from: 0,
        }
    }

    /// How many `\n` come before the first byte that is not a line break in `from..to` (a record and
    /// what the reader skipped before it); what comes before `to` is no longer kept.
    fn breaks_before_content(&mut self, from: u64, to: u64) -> u64 {
        let skip = usize::try_from(from.saturating_sub(self.kept_from)).unwrap_or(usize::MAX);
        let breaks = self
            .kept
            .iter()
            .skip(skip)
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .filter(|b| **b == b'\n')
            .count();
        let done = usize::try_from(to.saturating_sub(self.kept_from)).unwrap_or(usize::MAX);
        self.kept.drain(..done.min(self.kept.len()));
        self.kept_from = self.kept_from.max(to);
        breaks as u64
    }
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.kept.extend(&buf[..n]);
        Ok(n)
    }
}

/// RFC 4180 records, the first of them the header; a short row is the validator's to reject (a missing
/// field), not a parse error.
fn csv_reader<R: Read>(input: R) -> csv::Reader<R> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(input)
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
    fn from_header(header: &csv::StringRecord) -> anyhow::Result<Columns> {
        let names: Vec<String> = header
            .iter()
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
    fn parse(&self, record: &csv::StringRecord) -> Value {
        let cell = |i: usize| record.get(i).map(str::trim).filter(|c| !c.is_empty());
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
        Value::Object(event)
    }
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

    /// Each record with the line it starts on.
    fn records(text: &str) -> Vec<(u64, Vec<String>)> {
        let mut reader = csv_reader(Tee::new(text.as_bytes()));
        let mut record = csv::StringRecord::new();
        let mut all = Vec::new();
        while reader.read_record(&mut record).unwrap() {
            let start = record.position().unwrap().clone();
            let end = reader.position().byte();
            let breaks = reader.get_mut().breaks_before_content(start.byte(), end);
            all.push((
                start.line() + breaks,
                record.iter().map(str::to_owned).collect(),
            ));
        }
        all
    }

    fn record(line: &str) -> csv::StringRecord {
        csv_reader(line.as_bytes())
            .records()
            .next()
            .unwrap()
            .unwrap()
    }

    #[test]
    fn csv_quoting() {
        let text = "a,b,,c\r\ne1,\"t,1\",\"{\"\"k\"\": \"\"v\"\"}\"\n\"two\nlines\",x\n\nlast\n";
        assert_eq!(
            records(text),
            [
                (1, vec!["a", "b", "", "c"]),
                (2, vec!["e1", "t,1", r#"{"k": "v"}"#]),
                (3, vec!["two\nlines", "x"]),
                (6, vec!["last"]),
            ]
            .map(|(line, cells)| (line, cells.into_iter().map(String::from).collect()))
        );
        // CRLF blank lines, and a last record without a line break.
        let lines: Vec<u64> = records("h\r\n\r\n\r\n\"x\r\ny\"\r\n \r\nz")
            .iter()
            .map(|r| r.0)
            .collect();
        assert_eq!(lines, [1, 4, 6, 7]);
    }

    #[test]
    fn csv_rows_become_api_events() {
        let cols = Columns::from_header(&record(
            "tenant_id,event_id,type,quantity,occurred_at,metadata",
        ))
        .unwrap();
        let v = cols.parse(&record(
            r#"acme,e1,stt_words,12,2026-10-01T00:00:00Z,"{""a"":1}""#,
        ));
        assert_eq!(
            v,
            serde_json::json!({"event_id": "e1", "tenant_id": "acme", "type": "stt_words",
                               "quantity": 12, "occurred_at": "2026-10-01T00:00:00Z", "metadata": {"a": 1}})
        );
        let v = cols.parse(&record("acme,e2,stt_words,twelve,,"));
        assert_eq!(v["quantity"], "twelve");
        assert!(v.get("occurred_at").is_none());
        let v = cols.parse(&record("acme,e3,stt_words"));
        assert!(v.get("quantity").is_none());
        assert!(Columns::from_header(&record("event_id,tenant_id,quantity")).is_err());
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

//! Aligned text tables and the number formats `tessera cache` prints.

use tessera_cache::{Throughput, ThroughputUnit};

/// A table of text cells printed with aligned columns: text left-aligned, numbers
/// right-aligned, two spaces between columns, no trailing spaces.
pub struct Table {
    headers: Vec<&'static str>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// Columns as (header, right-aligned).
    pub fn new(columns: &[(&'static str, bool)]) -> Table {
        Table {
            headers: columns.iter().map(|c| c.0).collect(),
            right: columns.iter().map(|c| c.1).collect(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<String>) {
        debug_assert_eq!(row.len(), self.headers.len());
        self.rows.push(row);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as lines, each prefixed with `indent`.
    pub fn render(&self, indent: &str) -> String {
        let n = self.headers.len();
        let mut width: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in width.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::from(indent);
            for (i, cell) in cells.iter().enumerate().take(n) {
                if i > 0 {
                    s.push_str("  ");
                }
                let pad = width[i].saturating_sub(cell.chars().count());
                if self.right[i] {
                    s.push_str(&" ".repeat(pad));
                    s.push_str(cell);
                } else {
                    s.push_str(cell);
                    s.push_str(&" ".repeat(pad));
                }
            }
            s.truncate(s.trim_end().len());
            s.push('\n');
            s
        };
        let headers: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        let mut out = line(&headers);
        for row in &self.rows {
            out.push_str(&line(row));
        }
        out
    }
}

/// Milliseconds with four significant decimals (`0.0123`, `1.2346`, `12.35`).
pub fn ms(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

pub fn opt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), ms)
}

/// `512.3 TFLOP/s` or `1834 GB/s`; `-` when unknown.
pub fn throughput(t: Option<&Throughput>) -> String {
    match t {
        None => "-".into(),
        Some(t) => match t.unit {
            ThroughputUnit::Tflops => format!("{:.1} TFLOP/s", t.value),
            ThroughputUnit::Gbs => format!("{:.0} GB/s", t.value),
        },
    }
}

pub fn throughput_json(t: Option<&Throughput>) -> serde_json::Value {
    match t {
        None => serde_json::Value::Null,
        Some(t) => serde_json::json!({"value": t.value, "unit": t.unit.as_str()}),
    }
}

/// Free text (a compile log, say) on one line, at most `max` characters.
pub fn one_line(text: &str, max: usize) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() <= max {
        return flat;
    }
    let mut s: String = flat.chars().take(max.saturating_sub(1)).collect();
    s.push('…');
    s
}

/// `n thing` / `n things`.
pub fn count(n: impl Into<u64>, thing: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("1 {thing}")
    } else {
        format!("{n} {thing}s")
    }
}

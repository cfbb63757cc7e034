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

/// A sort key that orders numbers inside text by value: `m=64` before `m=384` before
/// `m=1024`.
pub fn natural(s: &str) -> Vec<(String, u128)> {
    let mut key = Vec::new();
    let mut text = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            let mut n = u128::from(c as u8 - b'0');
            while let Some(d) = chars.peek().and_then(|d| d.to_digit(10)) {
                n = n.saturating_mul(10).saturating_add(u128::from(d));
                chars.next();
            }
            key.push((std::mem::take(&mut text), n));
        } else {
            text.push(c);
        }
    }
    key.push((text, 0));
    key
}

/// The width a table must fit: `COLUMNS` when set, else the terminal's when stdout is one;
/// `None` (no limit) when writing to a pipe or file.
pub fn terminal_width() -> Option<usize> {
    if let Some(cols) = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|&c| c > 0)
    {
        return Some(cols);
    }
    console::Term::stdout()
        .size_checked()
        .map(|(_, cols)| usize::from(cols))
        .filter(|&c| c > 0)
}

/// A summary line (`a, b, c in PATH`) broken after its commas, and before ` in PATH`, so
/// that no line is wider than `width` where that can be helped; continuation lines are
/// indented two spaces. Ends with a newline.
pub fn wrap_list(line: &str, width: usize) -> String {
    let (list, path) = match line.rsplit_once(" in ") {
        Some((list, path)) => (list, Some(path)),
        None => (line, None),
    };
    let mut out = String::new();
    let mut current = String::new();
    let pieces: Vec<&str> = list.split(", ").collect();
    for (i, piece) in pieces.iter().enumerate() {
        let piece = if i + 1 < pieces.len() {
            format!("{piece},")
        } else {
            piece.to_string()
        };
        let extra = usize::from(!current.is_empty()) + piece.chars().count();
        if !current.is_empty() && current.chars().count() + extra > width {
            out.push_str(&current);
            out.push('\n');
            current = format!("  {piece}");
        } else {
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(&piece);
        }
    }
    if let Some(path) = path {
        let tail = format!(" in {path}");
        if current.chars().count() + tail.chars().count() > width {
            out.push_str(&current);
            out.push('\n');
            current = format!("  in {path}");
        } else {
            current.push_str(&tail);
        }
    }
    out.push_str(&current);
    out.push('\n');
    out
}

/// Seconds with two significant digits for short times (`0.00041`, `0.41`), two decimals
/// from one second up: a fast compile is not shown as `0.00`.
pub fn seconds(s: f64) -> String {
    if !(s.is_finite() && s > 0.0) {
        return format!("{s:.2}");
    }
    let decimals = (1 - s.log10().floor() as i32).clamp(2, 7) as usize;
    format!("{s:.decimals$}")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_compares_numbers_by_value() {
        let mut keys = vec![
            "gemm m=1024 n=768",
            "gemm m=384 n=3072",
            "gemm m=384 n=768",
            "attention",
        ];
        keys.sort_by_key(|k| natural(k));
        assert_eq!(
            keys,
            [
                "attention",
                "gemm m=384 n=768",
                "gemm m=384 n=3072",
                "gemm m=1024 n=768"
            ]
        );
    }

    #[test]
    fn summary_lines_wrap_after_commas_and_before_the_path() {
        let line = "5 results (3 ok, 2 rejected), 2 winners, 1 device in /tmp/x/tune.db";
        assert_eq!(wrap_list(line, 200), format!("{line}\n"));
        assert_eq!(
            wrap_list(line, 40),
            "5 results (3 ok, 2 rejected), 2 winners,\n  1 device in /tmp/x/tune.db\n"
        );
    }

    #[test]
    fn short_compile_times_keep_two_significant_digits() {
        assert_eq!(seconds(0.000414604), "0.00041");
        assert_eq!(seconds(0.0419), "0.042");
        assert_eq!(seconds(0.41), "0.41");
        assert_eq!(seconds(12.345), "12.35");
        assert_eq!(seconds(0.0), "0.00");
    }
}

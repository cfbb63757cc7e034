//! `Source`: an indenting text buffer that generated kernels are written into.
//!
//! Deterministic by construction: it only appends what it is given.

#[derive(Debug, Default)]
pub struct Source {
    text: String,
    indent: usize,
}

impl Source {
    pub fn new() -> Self {
        Self::default()
    }

    /// Append one line at the current indentation (empty lines carry no indentation).
    pub fn line(&mut self, s: impl AsRef<str>) {
        let s = s.as_ref();
        if !s.is_empty() {
            for _ in 0..self.indent {
                self.text.push_str("  ");
            }
            self.text.push_str(s);
        }
        self.text.push('\n');
    }

    /// Append several lines (split on '\n'), each at the current indentation.
    pub fn lines(&mut self, s: &str) {
        for l in s.lines() {
            self.line(l);
        }
    }

    /// `head {` and indent.
    pub fn open(&mut self, head: impl AsRef<str>) {
        let head = head.as_ref();
        if head.is_empty() {
            self.line("{");
        } else {
            self.line(format!("{head} {{"));
        }
        self.indent += 1;
    }

    /// Dedent and `}` (plus an optional suffix such as `;`).
    pub fn close(&mut self, suffix: &str) {
        self.indent = self.indent.saturating_sub(1);
        self.line(format!("}}{suffix}"));
    }

    pub fn finish(self) -> String {
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indents_blocks() {
        let mut s = Source::new();
        s.open("if (x)");
        s.line("y();");
        s.line("");
        s.close("");
        assert_eq!(s.finish(), "if (x) {\n  y();\n\n}\n");
    }
}

//! Diagnostics: collecting several spanned errors into one, "did you mean" suggestions, and
//! the comma-separated lists every hint ends with.

use quote::ToTokens;
use std::fmt::Display;

/// Spanned errors gathered during one phase, reported together.
#[derive(Default)]
pub struct Diagnostics {
    first: Option<syn::Error>,
}

impl Diagnostics {
    pub fn push(&mut self, error: syn::Error) {
        match &mut self.first {
            Some(first) => first.combine(error),
            None => self.first = Some(error),
        }
    }

    /// An error spanning `at` (from its first token to its last).
    pub fn error(&mut self, at: impl ToTokens, message: impl Display) {
        self.push(syn::Error::new_spanned(at, message));
    }

    /// Record every message of `error` with `hint` appended (a fix for a grammar error).
    pub fn error_at(&mut self, error: syn::Error, hint: &str) {
        for e in error {
            self.push(syn::Error::new(e.span(), format!("{e}{hint}")));
        }
    }

    /// Keep the value of `result`, or record its error.
    pub fn take<T>(&mut self, result: syn::Result<T>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.push(e);
                None
            }
        }
    }

    /// `Ok` when nothing was recorded, else every recorded error.
    pub fn finish(self) -> syn::Result<()> {
        match self.first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Edit distance with adjacent transpositions (optimal string alignment): `lable` is one
/// edit from `label`.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// The candidate closest to `word`, if it is close enough to be a plausible typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let len = word.chars().count();
    let limit = (len / 3).clamp(1, 2);
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|&(d, _)| d <= limit && d < len)
        // on a tie, a completion of the word (`sm_90` → `sm_90a`) beats a substitution
        .min_by_key(|&(d, c)| (d, !c.starts_with(word)))
        .map(|(_, c)| c)
}

/// `"did you mean `x`? "` for a close candidate, else the empty string.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(word, candidates)
        .map(|c| format!("did you mean `{c}`? "))
        .unwrap_or_default()
}

/// `a, b, c`, or `none` for an empty list.
pub fn list<S: AsRef<str>>(items: &[S]) -> String {
    if items.is_empty() {
        return "none".to_string();
    }
    items
        .iter()
        .map(AsRef::as_ref)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_words_only() {
        let ops = ["shared", "fragment", "mainloop", "load", "mma", "epilogue"];
        assert_eq!(closest("mmaa", ops), Some("mma"));
        assert_eq!(closest("fragmnet", ops), Some("fragment"));
        assert_eq!(closest("epilog", ops), Some("epilogue"));
        assert_eq!(closest("store", ops), None);
        assert_eq!(closest("lable", ["name", "op", "label"]), Some("label"));
        assert_eq!(closest("q", ["a", "b", "c"]), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}

//! Labels: the part of a kernel name that spells a config's parameter values, from the
//! `label = "{tile_m}x{tile_n}..."` format or, by default, `tile_m128_tile_n64_...`.
//!
//! A target knob (a parameter with one value every target offers and values some targets add,
//! `mfma in [16] + gfx90a [32] + gfx942 [32]`) that the format leaves out is appended as
//! `_mfma32` when it is not at its default, so adding one keeps every existing name.

use crate::diagnostics::list;
use syn::{Ident, LitStr};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Text(String),
    /// Index into the parameter list.
    Param(usize),
}

#[derive(Debug, Clone)]
pub struct Label {
    pub segments: Vec<Segment>,
    /// The format string, when the author gave one.
    pub format: Option<LitStr>,
    /// Target knobs the format does not mention: (parameter index, `_name` text, default),
    /// appended as `_name<value>` off their default.
    pub knobs: Vec<(usize, String, i64)>,
}

impl Label {
    /// `name` + value for each parameter, joined by `_`.
    pub fn default_for(params: &[Ident]) -> Label {
        let mut segments = Vec::new();
        for (i, p) in params.iter().enumerate() {
            let prefix = if i == 0 {
                String::new()
            } else {
                "_".to_string()
            };
            segments.push(Segment::Text(format!("{prefix}{p}")));
            segments.push(Segment::Param(i));
        }
        Label {
            segments,
            format: None,
            knobs: Vec::new(),
        }
    }

    /// Add the target knobs among `params` that the label does not mention.
    pub fn with_knobs(mut self, params: &[crate::template::Param]) -> Label {
        self.knobs = params
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.segments.contains(&Segment::Param(*i)))
            .filter_map(|(i, p)| p.default.map(|d| (i, format!("_{}", p.ident), d)))
            .collect();
        self
    }

    /// Parse a `{param}` format string. Text between placeholders becomes part of a symbol, so
    /// it may hold only ASCII letters, digits and `_`.
    pub fn parse(format: &LitStr, params: &[Ident]) -> syn::Result<Label> {
        let text = format.value();
        let err = |msg: String| Err(syn::Error::new_spanned(format, msg));
        let names: Vec<String> = params.iter().map(Ident::to_string).collect();
        let mut segments = Vec::new();
        let mut rest = text.as_str();
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('{') {
                let Some(close) = after.find('}') else {
                    return err(format!("label `{text}` opens a `{{` it never closes; write placeholders as `{{tile_m}}`"));
                };
                let name = after[..close].trim();
                match names.iter().position(|n| n == name) {
                    Some(i) => segments.push(Segment::Param(i)),
                    None => {
                        return err(format!(
                            "label placeholder `{{{name}}}` names no parameter; parameters are: {}",
                            list(&names)
                        ))
                    }
                }
                rest = &after[close + 1..];
            } else {
                let end = rest.find('{').unwrap_or(rest.len());
                let chunk = &rest[..end];
                if let Some(bad) = chunk
                    .chars()
                    .find(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
                {
                    return err(format!(
                        "label `{text}` contains `{bad}`; labels are part of kernel symbols, so use only \
                         ASCII letters, digits, `_` and `{{param}}` placeholders"
                    ));
                }
                segments.push(Segment::Text(chunk.to_string()));
                rest = &rest[end..];
            }
        }
        Ok(Label {
            segments,
            format: Some(format.clone()),
            knobs: Vec::new(),
        })
    }

    pub fn render(&self, point: &[i64]) -> String {
        let mut out: String = self
            .segments
            .iter()
            .map(|s| match s {
                Segment::Text(t) => t.clone(),
                Segment::Param(i) => point[*i].to_string(),
            })
            .collect();
        for (i, text, default) in &self.knobs {
            if point[*i] != *default {
                out.push_str(&format!("{text}{}", point[*i]));
            }
        }
        out
    }

    /// Parameters the label does not mention (target knobs it appends are mentioned).
    pub fn missing(&self, params: usize) -> Vec<usize> {
        (0..params)
            .filter(|i| !self.segments.contains(&Segment::Param(*i)))
            .filter(|i| !self.knobs.iter().any(|(k, _, _)| k == i))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::format_ident;

    fn params() -> Vec<Ident> {
        vec![format_ident!("tile_m"), format_ident!("tile_n")]
    }

    #[test]
    fn renders_formats_and_defaults() {
        let f: LitStr = syn::parse_quote!("{tile_m}x{tile_n}_s");
        let l = Label::parse(&f, &params()).unwrap();
        assert_eq!(l.render(&[128, 64]), "128x64_s");
        assert_eq!(
            Label::default_for(&params()).render(&[128, 64]),
            "tile_m128_tile_n64"
        );
        let f: LitStr = syn::parse_quote!("{tile_m}");
        assert_eq!(Label::parse(&f, &params()).unwrap().missing(2), vec![1]);
    }

    #[test]
    fn rejects_bad_formats() {
        for (src, needle) in [
            (
                "{tile_q}",
                "placeholder `{tile_q}` names no parameter; parameters are: tile_m, tile_n",
            ),
            ("{tile_m", "never closes"),
            ("{tile_m}-{tile_n}", "contains `-`"),
        ] {
            let f = LitStr::new(src, proc_macro2::Span::call_site());
            let e = Label::parse(&f, &params()).unwrap_err().to_string();
            assert!(e.contains(needle), "{src}: {e}");
        }
    }
}

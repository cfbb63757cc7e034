//! Shapes files: the shipped BERT example, and the errors a bad file gets.

use std::path::PathBuf;
use tessera_dsl::problem::ProblemError;
use tessera_dsl::{DType, EpilogueOp, GemmProblem, Layout, OpKind, Problem};
use tessera_tuner::shapes::{parse_file, parse_str, NamedProblem, ShapeIssue, ShapesError};

fn bert_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/shapes/bert.yaml")
}

fn err(text: &str) -> ShapesError {
    match parse_str(text, "bad.yaml") {
        Ok(p) => panic!("expected an error, parsed {p:?}"),
        Err(e) => e,
    }
}

fn gemm(p: &NamedProblem) -> &GemmProblem {
    p.problem.as_gemm().expect("a GEMM problem")
}

#[test]
fn bert_yaml_has_every_bert_base_gemm() {
    let mut problems = parse_file(bert_path()).expect("bert.yaml parses");
    assert_eq!(problems.len(), 36);
    let fused = problems.split_off(24);
    let keys: Vec<String> = fused.iter().map(|p| p.problem.key()).collect();
    assert_eq!(
        keys[0],
        "attention batch=1 heads=12 seq_q=128 seq_kv=128 head_dim=64 f16 mask=padding"
    );
    assert_eq!(fused[5].name, "attention[seq=384,batch=32]");
    assert_eq!(keys[11], "layernorm rows=12288 cols=768 f16 fused=residual");

    let ms = [128u64, 384, 1024, 3072, 4096, 12288];
    let layers: [(&str, u64, u64, &[EpilogueOp]); 4] = [
        ("qkv", 2304, 768, &[EpilogueOp::Bias]),
        ("attn_out", 768, 768, &[EpilogueOp::Bias]),
        ("ffn_up", 3072, 768, &[EpilogueOp::Bias, EpilogueOp::Gelu]),
        (
            "ffn_down",
            768,
            3072,
            &[EpilogueOp::Bias, EpilogueOp::Residual],
        ),
    ];
    let mut expected = Vec::new();
    for (name, n, k, epi) in layers {
        for m in ms {
            expected.push(NamedProblem {
                name: format!("{name}[m={m}]"),
                problem: Problem::Gemm(GemmProblem {
                    m,
                    n,
                    k,
                    batch: 1,
                    input: DType::F16,
                    output: DType::F16,
                    layout_b: Layout::Col,
                    epilogue: epi.to_vec(),
                    store: Default::default(),
                }),
            });
        }
    }
    assert_eq!(problems, expected);
    for p in &problems {
        assert_eq!(gemm(p).layout_code(), "rcr");
        assert_eq!(gemm(p).alignment(), 8, "{}", p.name);
    }
}

#[test]
fn malformed_yaml_reports_file_line_column() {
    let text = "problems:\n  - name: qkv\n    m: [128, 384\n    n: 2304\n";
    let e = err(text);
    let ShapesError::Yaml { line, column, .. } = &e else {
        panic!("not a YAML error: {e:?}");
    };
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!("bad.yaml:{line}:{column}: ")),
        "{shown}"
    );
    // The parser's own " at line L column C" for the error point is not repeated; the context
    // (where the unclosed list began) keeps its position.
    assert_eq!(
        shown,
        "bad.yaml:4:6: did not find expected ',' or ']', \
         while parsing a flow sequence at line 3 column 8"
    );

    // A tab where indentation is expected: the position is exact.
    let e = err("problems:\n\t- m: 1\n");
    assert!(e.to_string().starts_with("bad.yaml:2:1: "), "{e}");
}

#[test]
fn duplicate_yaml_keys_are_malformed() {
    let e = err("problems:\n  - {op: gemm, m: 1, m: 2, n: 3, k: 4}\n");
    assert!(matches!(e, ShapesError::Yaml { line: 2, .. }), "{e:?}");
}

#[test]
fn zero_size_is_rejected_naming_op_problem_and_dimension() {
    let e = err("problems:\n  - {name: qkv, op: gemm, m: 384, n: 0, k: 768}\n");
    assert_eq!(
        e.to_string(),
        "bad.yaml: problems[0] (qkv): gemm: dimension `n` must be positive (got 0)"
    );
    assert!(matches!(
        e,
        ShapesError::Invalid {
            issue: ShapeIssue::Problem(ProblemError::NonPositive {
                op: OpKind::Gemm,
                dim: "n",
                value: 0
            }),
            ..
        }
    ));
}

#[test]
fn negative_size_is_rejected_naming_op_problem_and_dimension() {
    let e =
        err("problems:\n  - {op: gemm, m: 1, n: 1, k: 1}\n  - {op: gemm, m: 8, n: 8, k: -64}\n");
    assert_eq!(
        e.to_string(),
        "bad.yaml: problems[1]: gemm: dimension `k` must be positive (got -64)"
    );
    let e = err("problems: [{name: up, op: gemm, m: [128, -1], n: 8, k: 8, batch: 2}]");
    assert_eq!(
        e.to_string(),
        "bad.yaml: problems[0] (up[m=-1]): gemm: dimension `m` must be positive (got -1)"
    );
    let e = err("defaults: {op: gemm, batch: 0}\nproblems: [{m: 8, n: 8, k: 8}]");
    assert!(e
        .to_string()
        .ends_with("gemm: dimension `batch` must be positive (got 0)"));
}

#[test]
fn unknown_choices_are_listed() {
    let e = err("problems: [{op: conv, m: 1, n: 2, k: 3}]");
    assert_eq!(
        e.to_string(),
        "bad.yaml: problems[0]: unknown op `conv`; valid ops: gemm, layernorm, softmax, attention, embedding"
    );

    let e = err("defaults: {dtype: f64}\nproblems: [{op: gemm, m: 1, n: 2, k: 3}]");
    assert_eq!(
        e.to_string(),
        "bad.yaml: defaults: unknown dtype `f64`; use f16, bf16 or f32"
    );

    let e = err("problems: [{name: up, op: gemm, m: 1, n: 2, k: 3, epilogue: [bias, gleu]}]");
    assert_eq!(
        e.to_string(),
        "bad.yaml: problems[0] (up): unknown epilogue op `gleu`; \
         use beta_c, bias, relu, gelu, gelu_tanh, silu or residual"
    );

    let e = err("problems: [{op: gemm, m: 1, n: 2, k: 3, layout: rcc}]");
    assert!(
        e.to_string().contains("unknown layout `rcc`; use rcr"),
        "{e}"
    );

    let e = err("problems: [{op: gemm, m: 1, n: 2, k: 3, bias: true}]");
    assert_eq!(
        e.to_string(),
        "bad.yaml: problems[0]: unknown key `bias`; valid keys: \
         name, op, m, n, k, rows, cols, heads, kv_heads, seq, seq_q, seq_kv, head_dim, \
         mask_period, hidden, vocab, positions, types, tokens, packed, lens, lens_kv, fused, mask, batch, \
         dtype, out_dtype, layout, epilogue, store"
    );
}

#[test]
fn duplicate_problems_are_reported() {
    let e = err(
        "problems:\n  - {name: a, op: gemm, m: 8, n: 8, k: 8}\n  - {op: gemm, m: 8, n: 8, k: 8}\n",
    );
    assert_eq!(
        e.to_string(),
        "bad.yaml: problems[1]: duplicate problem: gemm m=8 n=8 k=8 f16->f16 rcr \
         (already problems[0] (a))"
    );
    let e = err("problems: [{op: gemm, m: [8, 16, 8], n: 8, k: 8}]");
    assert!(
        e.to_string()
            .starts_with("bad.yaml: problems[0] [m=8]: duplicate problem"),
        "{e}"
    );
}

#[test]
fn lists_expand_to_one_problem_each() {
    let text = "defaults: {op: gemm, dtype: bf16, out_dtype: f32, layout: rrr}\n\
                problems:\n  - {name: g, m: [128, 384, 1024], n: 64, k: 32, batch: [1, 4]}\n";
    let p = parse_str(text, "list.yaml").expect("parses");
    let got: Vec<(&str, u64, u64)> = p
        .iter()
        .map(|p| (p.name.as_str(), gemm(p).m, gemm(p).batch))
        .collect();
    assert_eq!(
        got,
        [
            ("g[m=128,batch=1]", 128, 1),
            ("g[m=128,batch=4]", 128, 4),
            ("g[m=384,batch=1]", 384, 1),
            ("g[m=384,batch=4]", 384, 4),
            ("g[m=1024,batch=1]", 1024, 1),
            ("g[m=1024,batch=4]", 1024, 4),
        ]
    );
    for q in &p {
        let g = gemm(q);
        assert_eq!(
            (g.n, g.k, g.input, g.output),
            (64, 32, DType::BF16, DType::F32)
        );
        assert_eq!(g.layout_code(), "rrr");
    }
}

#[test]
fn missing_file_is_an_io_error_naming_it() {
    let e = parse_file("/nonexistent/shapes.yaml").unwrap_err();
    assert!(matches!(e, ShapesError::Io { .. }));
    assert!(
        e.to_string().starts_with("/nonexistent/shapes.yaml: "),
        "{e}"
    );
}

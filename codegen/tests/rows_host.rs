//! Generated row-wise kernels run on the CPU: the CUDA source (minus its PTX prelude) is
//! compiled as C++ against a small host emulation (support/host_shim.hpp: a thread per GPU
//! thread, barriers for `__syncthreads` and warp shuffles) and its output is compared with an
//! f64 reference of layernorm / softmax; rows past the end must stay untouched. This checks the
//! indexing, predication, reductions and fusions without a GPU. Needs a C++20 `g++`; CI may set
//! TESSERA_REQUIRE_CXX.

#[path = "support/rows_ir.rs"]
mod rows_ir;

use rows_ir::{layernorm, layernorm_problem, softmax, softmax_problem, Shape};
use std::path::PathBuf;
use std::process::Command;
use tessera_dsl::{DType, KernelIr, Target};

const SHIM: &str = include_str!("support/host_shim.hpp");

fn cxx_available() -> bool {
    Command::new("g++")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// The kernel's source without the CUDA prelude (its inline PTX has no host meaning).
fn kernel_text(ir: &KernelIr) -> String {
    let src = tessera_codegen::emit(ir, Target::Sm80).expect("codegen");
    let marker = format!("// {} for", src.name);
    let at = src.source.find(&marker).expect("kernel comment");
    src.source[at..].to_string()
}

struct Case {
    ir: KernelIr,
    rows: u64,
    cols: u64,
    bf16: bool,
}

fn main_fn(c: &Case, softmax: bool, fused: bool, period: u64) -> String {
    let tile = c.ir.row_tile().expect("row tile");
    let (rpb, threads) = (u64::from(tile.rows), tile.rows * tile.threads);
    let blocks = c.rows.div_ceil(rpb);
    let call = if softmax {
        format!(
            "{}(x.data(), {}, y.data(), rows, cols, {period}, 0.5f)",
            c.ir.name,
            if fused { "mask.data()" } else { "nullptr" }
        )
    } else {
        format!(
            "{}(x.data(), {}, {}, gamma.data(), beta.data(), y.data(), rows, cols, 1e-5f)",
            c.ir.name,
            if fused { "residual.data()" } else { "nullptr" },
            if fused { "bias.data()" } else { "nullptr" }
        )
    };
    let reference = if softmax {
        format!(
            r#"    double top = -1e300, sum = 0;
    for (int c = 0; c < cols; ++c) {{
      h[c] = cv(x[r * cols + c]) * 0.5{};
      top = h[c] > top ? h[c] : top;
    }}
    for (int c = 0; c < cols; ++c) {{ h[c] = std::exp(h[c] - top); sum += h[c]; }}
    for (int c = 0; c < cols; ++c) h[c] /= sum;"#,
            if fused {
                format!(" + cv(mask[(r / {period}) * cols + c])")
            } else {
                String::new()
            }
        )
    } else {
        format!(
            r#"    double mean = 0, var = 0;
    for (int c = 0; c < cols; ++c) {{
      h[c] = cv(x[r * cols + c]){};
      mean += h[c];
    }}
    mean /= cols;
    for (int c = 0; c < cols; ++c) var += (h[c] - mean) * (h[c] - mean);
    var /= cols;
    for (int c = 0; c < cols; ++c) h[c] = (h[c] - mean) / std::sqrt(var + 1e-5) * cv(gamma[c]) + cv(beta[c]);"#,
            if fused {
                " + cv(residual[r * cols + c]) + cv(bias[c])"
            } else {
                ""
            }
        )
    };
    format!(
        r#"
int main() {{
  const int rows = {rows}, cols = {cols};
  const bool bf = {bf};
  auto cv = [&](unsigned short v) {{ return (double)(bf ? tsr_bf16_to_f32(v) : tsr_f16_to_f32(v)); }};
  auto x = tsr_fill((size_t)rows * cols, 1, bf);
  auto residual = tsr_fill((size_t)rows * cols, 2, bf);
  auto mask = tsr_fill((size_t)rows * cols, 3, bf);
  auto bias = tsr_fill(cols, 4, bf);
  auto gamma = tsr_fill(cols, 5, bf);
  auto beta = tsr_fill(cols, 6, bf);
  std::vector<unsigned short> y((size_t)(rows + {rpb}) * cols, 0x7777);
  tsr_launch({blocks}, {threads}, [&] {{ {call}; }});
  std::vector<double> h(cols);
  int bad = 0;
  double worst = 0;
  for (int r = 0; r < rows; ++r) {{
{reference}
    for (int c = 0; c < cols; ++c) {{
      const double got = cv(y[r * cols + c]), err = std::fabs(got - h[c]);
      const double tol = (bf ? 1.6e-2 : 2e-3) * std::fabs(h[c]) + (bf ? 2e-2 : 4e-3);
      worst = err > worst ? err : worst;
      if (!(err <= tol) && bad++ < 5) std::printf("row %d col %d: got %g want %g\n", r, c, got, h[c]);
    }}
  }}
  for (size_t i = (size_t)rows * cols; i < y.size(); ++i)
    if (y[i] != 0x7777 && bad++ < 5) std::printf("wrote past the last row at %zu\n", i);
  std::printf("max error %g, %d bad\n", worst, bad);
  return bad ? 1 : 0;
}}
"#,
        rows = c.rows,
        cols = c.cols,
        bf = c.bf16,
    )
}

fn run(c: &Case, softmax: bool, fused: bool, period: u64) -> Result<String, String> {
    let dir = std::env::temp_dir().join(format!("tessera_rows_host_{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let src: PathBuf = dir.join(format!("{}.cpp", c.ir.name));
    let exe = dir.join(&c.ir.name);
    let text = format!(
        "{SHIM}\n{}\n{}",
        kernel_text(&c.ir),
        main_fn(c, softmax, fused, period)
    );
    std::fs::write(&src, text).map_err(|e| e.to_string())?;
    let out = Command::new("g++")
        .args(["-std=c++20", "-O1", "-pthread", "-w", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "g++ failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let out = Command::new(&exe).output().map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

#[test]
fn row_kernels_match_the_reference_on_the_host() {
    if !cxx_available() {
        assert!(
            std::env::var_os("TESSERA_REQUIRE_CXX").is_none(),
            "TESSERA_REQUIRE_CXX is set but g++ cannot run"
        );
        eprintln!("skipped: no g++");
        return;
    }
    // (shape, rows, cols): sub-warp, one-warp and multi-warp rows; partial chunks (1000, 768);
    // rows that leave the last block partly empty.
    let cases: [(Shape, u64, u64); 5] = [
        ((4, 32, 8), 7, 768),
        ((1, 128, 8), 3, 1024),
        ((2, 64, 4), 5, 1000),
        ((1, 1024, 8), 2, 4096),
        ((4, 256, 2), 6, 1000),
    ];
    let mut failures = Vec::new();
    for (i, (shape, rows, cols)) in cases.into_iter().enumerate() {
        for fused in [false, true] {
            let bf16 = (i + usize::from(fused)) % 2 == 1;
            let dtype = if bf16 { DType::BF16 } else { DType::F16 };
            let ln = layernorm(shape, &layernorm_problem(rows, cols, dtype, fused, fused));
            let period = if rows % 2 == 0 { 2 } else { 1 };
            let sm = softmax(
                shape,
                &softmax_problem(rows, cols, dtype, fused.then_some(period)),
            );
            for (ir, is_softmax) in [(ln, false), (sm, true)] {
                let case = Case {
                    ir,
                    rows,
                    cols,
                    bf16,
                };
                match run(&case, is_softmax, fused, period) {
                    Ok(out) => println!("{}: {}", case.ir.name, out.trim()),
                    Err(e) => failures.push(format!("{}: {e}", case.ir.name)),
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

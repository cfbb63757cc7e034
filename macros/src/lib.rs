//! tessera-macros: `#[gpu_template]`, the attribute that turns an inline module written in
//! Tessera's template DSL into a registered `tessera_dsl::Template`.
//!
//! This crate owns the DSL's grammar (`params!`, `constraints!`, `dtypes!`, `kernel!` and the
//! attribute's keys), its compile-time checks, and the expansion into calls of tessera-dsl's
//! API (`KernelBuilder`, `ParamSpace`, `Template`, the `inventory` registry), always by
//! absolute `::tessera_dsl::...` paths. It also computes each template's source hash, its
//! version in the tuning cache.
//!
//! The macro is parse ([`parse`], [`kernel`], [`row_expr`]) → validate ([`validate`],
//! [`expr`], [`space`], [`feasibility`]) → expand ([`expand`]). Every diagnostic is a
//! `syn::Error` spanned at the offending tokens that says how to fix it; on any error the
//! output is the errors plus a fallback stub of the template (same struct and `TEMPLATE`
//! static, `unreachable!()` bodies), so code that refers to the template reports nothing else.
//!
//! # `kernel!` statements
//!
//! Which statements an op's kernels use is part of its row in [`op`]: GEMM and attention are
//! written with tiles (they need a `fragment` and an `epilogue`), layernorm and softmax with
//! rows (they need `rows` and `store`).
//!
//! Tiles (gemm, attention):
//! - `shared NAME: OPERAND[ROWS, COLS] x STAGES;` a shared tile staging an input;
//! - `fragment NAME: acc[ROWS, COLS] warps [WM, WN];` a register accumulator;
//! - `load OPERAND -> SHARED;` inside a mainloop one slice per iteration, outside it the
//!   whole tile once (attention's Q block);
//! - `mainloop VAR step STEP stages STAGES { ... }` the pipelined loop (over K, or key blocks);
//! - `mma ACC += A * B;` / `mma ACC = A * B^T;` (`=` zeroes ACC first; `^T` transposes B;
//!   A may be a fragment, e.g. attention's probabilities);
//! - `mask S;`, `softmax S online ACC;` (inside the mainloop) and `normalize ACC;` (after
//!   it): attention's masking and online softmax;
//! - `epilogue ACC -> OPERAND;` the fused epilogue and the store.
//!
//! Rows (layernorm, softmax):
//! - `rows NAME: OPERAND[ROWS] threads T vector V;` the row tile: ROWS rows per block, each
//!   over T threads that access V contiguous elements at a time, loaded as f32;
//! - `when OPERAND { ... }` updates that apply only when the problem supplies that optional
//!   operand (layernorm `residual`, `bias`; softmax `mask`);
//! - `NAME = EXPR;` updates every element of the row tile;
//! - `reduce NAME = sum(EXPR);` / `max(EXPR)` a row scalar; `let NAME = EXPR;` a row scalar
//!   from row scalars;
//! - `store NAME -> OPERAND;` stores the row tile to the output.
//!
//! Row expressions are f32: `+ - * /`, parentheses, numbers, `exp`, `rsqrt`, `sqrt`,
//! `max(a, b)`, and names: the row tile, row scalars, input operands, the op's runtime
//! arguments (layernorm `eps`, softmax `scale`) and `cols` (the row length). Tile sizes are
//! integer expressions over the parameters and the op's problem sizes (attention's
//! `head_dim`, checked at compile time at its largest value, 128).
//!
//! A GEMM and a layernorm:
//!
//! ```ignore
//! /// GEMM: D = epilogue(alpha·A·B) on tensor cores.
//! #[gpu_template(name = "gemm", op = gemm, label = "{tile_m}x{tile_n}x{tile_k}_w{warps_m}x{warps_n}_s{stages}")]
//! pub mod gemm {
//!     params! { tile_m in [64, 128, 256], tile_n in [64, 128, 256] + sm_90a [192], tile_k in [32, 64],
//!               warps_m in [1, 2, 4], warps_n in [1, 2, 4], stages in [2, 3, 4] + sm_90a [6, 8] }
//!     constraints! { tile_m % (warps_m * 16) == 0, tile_n % (warps_n * 16) == 0 }
//!     dtypes! { input: [f16, bf16], acc: f32, output: [f16, bf16, f32] }
//!     kernel! {
//!         shared sa: a[tile_m, tile_k] x stages;
//!         shared sb: b[tile_k, tile_n] x stages;
//!         fragment acc: acc[tile_m, tile_n] warps [warps_m, warps_n];
//!         mainloop k step tile_k stages stages {
//!             load a -> sa;
//!             load b -> sb;
//!             mma acc += sa * sb;
//!         }
//!         epilogue acc -> d;
//!     }
//! }
//!
//! /// Layernorm with an optional fused residual and bias.
//! #[gpu_template(name = "layernorm", op = layernorm, label = "r{rows_per_block}_t{threads_per_row}_v{vector}")]
//! pub mod layernorm {
//!     params! { rows_per_block in [1, 2, 4, 8], threads_per_row in [32, 64, 128, 256, 512, 1024], vector in [2, 4, 8] }
//!     constraints! { rows_per_block * threads_per_row >= 64, rows_per_block * threads_per_row <= 1024 }
//!     dtypes! { input: [f16, bf16], acc: f32, output: [f16, bf16] }
//!     kernel! {
//!         rows h: x[rows_per_block] threads threads_per_row vector vector;
//!         when residual { h = h + residual; }
//!         when bias { h = h + bias; }
//!         reduce total = sum(h);
//!         let mean = total / cols;
//!         h = h - mean;
//!         reduce squares = sum(h * h);
//!         let rstd = rsqrt(squares / cols + eps);
//!         h = h * rstd * gamma + beta;
//!         store h -> y;
//!     }
//! }
//! ```

use proc_macro::TokenStream;

mod diagnostics;
mod dtype;
mod expand;
mod expr;
mod feasibility;
mod hash;
mod kernel;
mod label;
mod op;
mod parse;
mod row_expr;
mod space;
mod target;
mod template;
mod validate;

/// Turn an inline module written in the template DSL into a registered
/// `tessera_dsl::Template`. See the crate docs for the syntax.
#[proc_macro_attribute]
pub fn gpu_template(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand(attr.into(), item.into()).into()
}

fn expand(
    attr: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> proc_macro2::TokenStream {
    let hash = hash::source_hash(&attr, &item);
    let module = match syn::parse2::<syn::ItemMod>(item.clone()) {
        Ok(m) if m.content.is_some() => m,
        Ok(m) => {
            return syn::Error::new_spanned(
                &m,
                "#[gpu_template] needs the module's body inline: `mod gemm { params! { ... } ... }`",
            )
            .to_compile_error();
        }
        Err(_) => {
            let mut out = syn::Error::new_spanned(
                &item,
                "#[gpu_template] goes on an inline module: `#[gpu_template(name = \"gemm\", op = gemm)] \
                 pub mod gemm { params! { ... } ... }`",
            )
            .to_compile_error();
            out.extend(item);
            return out;
        }
    };

    let mut diags = diagnostics::Diagnostics::default();
    let attr = parse::attr(attr, &mut diags);
    let source = parse::module(module, &mut diags);
    let struct_ident = validate::struct_ident(&attr, &source.shell.ident);
    let name = attr
        .name
        .as_ref()
        .map_or_else(|| source.shell.ident.to_string(), |n| n.value());
    let result = diags
        .finish()
        .and_then(|()| validate::template(&attr, &source));
    match result {
        Ok(t) => expand::template(&t, &source.shell, &hash),
        Err(e) => {
            let mut out = e.to_compile_error();
            out.extend(expand::stub(&source.shell, &name, &struct_ident));
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;

    #[test]
    fn expands_to_a_registered_template_with_absolute_paths() {
        let out = super::expand(
            quote!(name = "tiny_gemm", op = gemm),
            quote! {
                /// Tiny.
                mod tiny {
                    params! { t in [64, 128] }
                    constraints! { t >= 64 }
                    dtypes! { input: [f16], acc: f32, output: [f16] }
                    kernel! {
                        shared sa: a[t, 32] x 2;
                        shared sb: b[32, t] x 2;
                        fragment acc: acc[t, t] warps [2, 2];
                        mainloop k step 32 stages 2 { load a -> sa; load b -> sb; mma acc += sa * sb; }
                        epilogue acc -> d;
                    }
                }
            },
        )
        .to_string();
        println!("{out}");
        for needle in [
            "pub struct TinyGemm",
            "pub static TEMPLATE : TinyGemm = TinyGemm",
            "impl :: tessera_dsl :: Template for TinyGemm",
            "__k . shared (\"sa\" , \"a\" , t , 32i64 , 2i64) ?",
            "__k . fragment (\"acc\" , :: tessera_dsl :: DType :: F32 , t , t , 2i64 , 2i64) ?",
            "text : \"t >= 64\"",
            ":: tessera_dsl :: __private :: inventory :: submit !",
        ] {
            assert!(out.contains(needle), "missing `{needle}` in {out}");
        }
        assert!(!out.contains("params !"), "{out}");
        assert!(!out.contains("compile_error"), "{out}");
    }

    #[test]
    fn expands_row_and_attention_statements_to_builder_calls() {
        let out = super::expand(
            quote!(name = "tiny_softmax", op = softmax),
            quote! {
                mod tiny {
                    params! { r in [1, 2] }
                    dtypes! { input: [f16], acc: f32, output: [f16] }
                    kernel! {
                        rows s: x[r] threads 128 vector 4;
                        when mask { s = s + mask; }
                        reduce top = max(s);
                        let half = top * 0.5;
                        s = exp(s - half);
                        store s -> y;
                    }
                }
            },
        )
        .to_string();
        for needle in [
            "__k . rows (\"s\" , \"x\" , r , 128i64 , 4i64) ?",
            "if __k . present (\"mask\")",
            "__k . map (\"s\" , __e) ?",
            "__k . row_reduce (\"top\" , :: tessera_dsl :: ir :: ReduceOp :: Max , __e) ?",
            "__k . row_let (\"half\" , __e) ?",
            ":: tessera_dsl :: ir :: RowExpr :: Lit (0.5f32)",
            ":: tessera_dsl :: ir :: RowFn :: Exp",
            "__k . row_store (\"s\" , \"y\") ?",
        ] {
            assert!(out.contains(needle), "missing `{needle}` in {out}");
        }
        assert!(!out.contains("compile_error"), "{out}");

        let out = super::expand(
            quote!(name = "tiny_attention", op = attention),
            quote! {
                mod tiny {
                    params! { q in [64] }
                    dtypes! { input: [f16], acc: f32, output: [f16] }
                    kernel! {
                        shared sq: q[q, head_dim];
                        shared sk: k[64, head_dim] x 2;
                        shared sv: v[64, head_dim] x 2;
                        fragment s: acc[q, 64] warps [4, 1];
                        fragment acc: acc[q, head_dim] warps [4, 1];
                        load q -> sq;
                        mainloop j step 64 stages 2 {
                            load k -> sk;
                            load v -> sv;
                            mma s = sq * sk^T;
                            mask s;
                            softmax s online acc;
                            mma acc += s * sv;
                        }
                        normalize acc;
                        epilogue acc -> o;
                    }
                }
            },
        )
        .to_string();
        for needle in [
            "__k . shared (\"sq\" , \"q\" , q , :: core :: primitive :: i64 :: from (__config . variant . extent) , 1i64) ?",
            "__k . load (\"q\" , \"sq\") ? ; __k . begin_mainloop (64i64 , 2i64) ?",
            "__k . mma_with (\"s\" , \"sq\" , \"sk\" , true , true) ?",
            "__k . mask (\"s\") ?",
            "__k . online_softmax (\"s\" , \"acc\") ?",
            "__k . mma_with (\"acc\" , \"s\" , \"sv\" , false , false) ?",
            "__k . end_mainloop () ? ; __k . normalize (\"acc\") ?",
        ] {
            assert!(out.contains(needle), "missing `{needle}` in {out}");
        }
        assert!(!out.contains("compile_error"), "{out}");
    }
}

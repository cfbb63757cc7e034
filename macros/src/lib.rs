//! tessera-macros: `#[gpu_template]`, the attribute that turns an inline module written in
//! Tessera's template DSL into a registered `tessera_dsl::Template`.
//!
//! This crate owns the DSL's grammar (`params!`, `constraints!`, `dtypes!`, `kernel!` and the
//! attribute's keys), its compile-time checks, and the expansion into calls of tessera-dsl's
//! API (`KernelBuilder`, `ParamSpace`, `Template`, the `inventory` registry), always by
//! absolute `::tessera_dsl::...` paths. It also computes each template's source hash, its
//! version in the tuning cache.
//!
//! The macro is parse ([`parse`], [`kernel`]) → validate ([`validate`], [`expr`], [`space`],
//! [`feasibility`]) → expand ([`expand`]). Every diagnostic is a `syn::Error` spanned at the
//! offending tokens that says how to fix it; on any error the output is the errors plus a
//! fallback stub of the template (same struct and `TEMPLATE` static, `unreachable!()` bodies),
//! so code that refers to the template reports nothing else.
//!
//! ```ignore
//! /// GEMM: D = epilogue(alpha·A·B) on tensor cores.
//! #[gpu_template(name = "gemm", op = gemm, label = "{tile_m}x{tile_n}x{tile_k}_w{warps_m}x{warps_n}_s{stages}")]
//! pub mod gemm {
//!     params! { tile_m in [64, 128, 256], tile_n in [64, 128, 256], tile_k in [32, 64],
//!               warps_m in [1, 2, 4], warps_n in [1, 2, 4], stages in [2, 3, 4] }
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
}

//! Print one generated GEMM kernel (development aid): `cargo run -p tessera-codegen --example dump -- sm_80 rcr`.

mod fixture;
use tessera_dsl::{DType, EpilogueOp, Target};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let target: Target = args
        .get(1)
        .map(String::as_str)
        .unwrap_or("sm_80")
        .parse()
        .expect("target");
    let layout = args.get(2).cloned().unwrap_or_else(|| "rcr".into());
    let ir = fixture::gemm_ir(
        [128, 128, 32],
        [2, 2],
        4,
        fixture::variant(
            DType::F16,
            DType::F16,
            &layout,
            vec![EpilogueOp::Bias, EpilogueOp::Gelu],
        ),
    );
    print!(
        "{}",
        tessera_codegen::emit(&ir, target).expect("emit").source
    );
}

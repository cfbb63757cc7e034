//! Shared test fixture: GEMM IR built through `KernelBuilder` exactly as the `gemm` template's
//! kernel body does, so codegen is tested without depending on the template library.

use tessera_dsl::ir::Operand;
use tessera_dsl::{Config, DType, KernelBuilder, KernelIr, OpKind, Variant};

#[allow(dead_code)]
pub fn gemm_ir(tile: [u32; 3], warps: [u32; 2], stages: u32, variant: Variant) -> KernelIr {
    let [tm, tn, tk] = tile.map(i64::from);
    let [wm, wn] = warps.map(i64::from);
    let st = i64::from(stages);
    let config = Config {
        template: "gemm".into(),
        params: vec![
            ("tile_m".into(), tm),
            ("tile_n".into(), tn),
            ("tile_k".into(), tk),
            ("warps_m".into(), wm),
            ("warps_n".into(), wn),
            ("stages".into(), st),
        ],
        label: format!("{tm}x{tn}x{tk}_w{wm}x{wn}_s{st}"),
        variant,
    };
    let mut k = KernelBuilder::new(&config, OpKind::Gemm);
    k.shared("sa", Operand::A.name(), tm, tk, st).unwrap();
    k.shared("sb", Operand::B.name(), tk, tn, st).unwrap();
    k.fragment("acc", DType::F32, tm, tn, wm, wn).unwrap();
    k.begin_mainloop(tk, st).unwrap();
    k.load("a", "sa").unwrap();
    k.load("b", "sb").unwrap();
    k.mma("acc", "sa", "sb").unwrap();
    k.end_mainloop().unwrap();
    k.epilogue("acc", "d").unwrap();
    k.finish().unwrap()
}

#[allow(dead_code)]
pub fn variant(
    input: DType,
    output: DType,
    layout: &str,
    epilogue: Vec<tessera_dsl::EpilogueOp>,
) -> Variant {
    Variant {
        input,
        acc: DType::F32,
        output,
        layout: layout.into(),
        epilogue,
        align: 8,
        store: Default::default(),
        extent: 0,
        mask: Default::default(),
    }
}
